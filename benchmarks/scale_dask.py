"""Evaluation on a dask.distributed cluster against one process: the same scores to the last bit, and the time.

Writes a synthetic archive (one netCDF file per sequence, nowcast.synthetic radar) into a temporary folder,
deleted afterwards, and scores the methods on every window (`nowcast.evaluate.evaluate`, 5 -> 10 frames):

(a) in this process (workers=1);
(b) on a dask cluster: a `LocalCluster` of --workers processes with one thread each that this script starts
    (its start-up timed apart), or the running scheduler given with --scheduler;
(c) with --pool, also on --workers spawned processes of this machine (workers=N).

`equal` says whether each parallel run's scores (everything but the timings) equal the one-process ones
exactly; `speedup` is one-process seconds / parallel seconds (start-up of the local cluster not counted).

    python benchmarks/scale_dask.py --workers 4 --json benchmarks/scale_dask.json
    python benchmarks/scale_dask.py --quick
    python benchmarks/scale_dask.py --scheduler tcp://head:8786   # workers must have nowcast installed

`run(args) -> dict` is what other benchmarks import (args: an argparse.Namespace, a dict, or None for the
defaults; see `parse_args`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = dict(quick=False, sequences=4, frames=40, size=96, workers=2, methods="persistence,extrapolation",
                scheduler=None, pool=False, batch_size=8, json=None, tmpdir=None)
QUICK = dict(sequences=2, frames=20, size=48)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small archive (2 x 20 frames of 48x48)")
    ap.add_argument("--sequences", type=int, default=None, help="sequences (files) in the archive (default 4)")
    ap.add_argument("--frames", type=int, default=None, help="frames per sequence (default 40)")
    ap.add_argument("--size", type=int, default=None, help="frame size in pixels (default 96)")
    ap.add_argument("--workers", type=int, default=DEFAULTS["workers"], help="local cluster / pool processes")
    ap.add_argument("--methods", default=DEFAULTS["methods"], help="comma-separated method names")
    ap.add_argument("--scheduler", default=None, help="a running dask scheduler instead of a local cluster")
    ap.add_argument("--pool", action="store_true", help="also time workers=N processes without dask")
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--tmpdir", type=Path, default=None, help="where the temporary archive goes")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    return ap.parse_args(argv)


def _settings(args) -> dict:
    """DEFAULTS, then --quick's sizes, then whatever `args` (Namespace or dict) sets explicitly."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    s = dict(DEFAULTS)
    if given.get("quick"):
        s.update(QUICK)
    s.update({k: v for k, v in given.items() if v is not None and k in DEFAULTS})
    return s


def write_archive(folder: Path, sequences: int, frames: int, size: int) -> list[Path]:
    from nowcast.synthetic import generate, write_netcdf

    paths = []
    for i in range(sequences):
        da = generate(n_frames=frames, height=size, width=size, seed=100 + i,
                      motion=("mixed", "uniform", "rotation")[i % 3])
        paths.append(write_netcdf(da, folder / f"seq_{i:02d}.nc"))
    return paths


def _scores(result) -> str:
    """Everything but the timings, every float to the last bit."""
    d = result.to_dict()
    for r in d["results"].values():
        r.pop("seconds_per_window")
    return json.dumps(d)


def _timed(sequences, methods, s, **kw):
    from nowcast.evaluate import evaluate

    t0 = time.perf_counter()
    result = evaluate(sequences, methods, batch_size=s["batch_size"], **kw)
    return result, time.perf_counter() - t0


def _on_dask(sequences, methods, s, reference: str, one_s: float) -> dict:
    import distributed

    out = {"scheduler": s["scheduler"] or "LocalCluster", "threads_per_worker": 1}
    t0 = time.perf_counter()
    if s["scheduler"]:
        client, cluster = distributed.Client(s["scheduler"], timeout=30), None
    else:
        cluster = distributed.LocalCluster(n_workers=s["workers"], threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        client = distributed.Client(cluster)
    try:
        client.wait_for_workers(1, timeout=60)
        out["startup_s"] = time.perf_counter() - t0
        out["workers"] = len(client.scheduler_info()["workers"])
        result, seconds = _timed(sequences, methods, s, scheduler=client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    out.update(seconds=seconds, equal=_scores(result) == reference, speedup=one_s / seconds)
    return out


def run(args=None) -> dict:
    """Write the archive, score it in one process, on dask (and a process pool), delete it; the result as a dict."""
    from nowcast.evaluate import MethodSpec
    from nowcast.radar import open_radar

    s = _settings(args)
    methods = [MethodSpec(name.strip()) for name in s["methods"].split(",") if name.strip()]
    root = Path(tempfile.mkdtemp(prefix="nowcast-dask-", dir=s["tmpdir"]))
    t_start = time.time()
    try:
        paths = write_archive(root, s["sequences"], s["frames"], s["size"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sequences = [(p.name, open_radar(p)) for p in paths]
            one, one_s = _timed(sequences, methods, s)
            reference = _scores(one)
            dask_run = _on_dask(sequences, methods, s, reference, one_s)
            pool_run = None
            if s["pool"]:
                pooled, pool_s = _timed(sequences, methods, s, workers=s["workers"])
                pool_run = {"workers": s["workers"], "seconds": pool_s, "equal": _scores(pooled) == reference,
                            "speedup": one_s / pool_s}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "benchmark": "scale_dask",
        "command": "python benchmarks/scale_dask.py " + " ".join(sys.argv[1:]) if __name__ == "__main__" else None,
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(t_start)),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in s.items()},
        "windows": one.windows,
        "methods": [m.name for m in one.methods],
        "one_process_s": one_s,
        "dask": dask_run,
        "process_pool": pool_run,
        "equal": dask_run["equal"] and (pool_run is None or pool_run["equal"]),
        "total_s": time.time() - t_start,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
