"""The share of training step time spent waiting for samples: drawn in the training process (0 loader workers,
the path every run took before issue 21 item 6) against drawn ahead by DataLoader workers.

Each setting trains the default recipe (``--preset default``, fp32, one torch thread) for a few iterations on
the same radar file, in a fresh run folder, so each pays for its own optical flow (a cold motion cache, as at
the start of a run on new data). With keyed draws every setting trains on the same samples. The wait of a
step is the time ``next(batch)`` blocks; log rows carry it as ``data_wait_fraction``. The first step is left
out of the means (it starts the workers and fills their queues) and reported on its own.

The machine may be shared and noisy: give a setting more than once (``--workers 0,1,0,1``) to interleave
them; the summary averages each setting's runs and divides by the first setting's.

    python benchmarks/bench_loader.py --radar sample_data/radar.nc --iterations 10 --workers 0,1,0,1 \\
        --json benchmarks/loader.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nowcast.radar import open_radar  # noqa: E402
from nowcast.train import train  # noqa: E402
from nowcast.train.config import preset  # noqa: E402


def settings(out: Path, workers: int, iterations: int) -> dict:
    return {"run.out": str(out), "run.loader_workers": workers, "run.device": "cpu", "run.precision": "fp32",
            "optim.iterations": iterations, "run.log_every": 1, "run.checkpoint_every": iterations,
            "validation.every": 10**6}


def step_times(out: Path) -> list[tuple[float, float]]:
    """(step seconds, seconds waiting for samples) of each iteration, from the run's log rows (one per step)."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(1.0 / r["it_per_s"], r["data_wait_fraction"] / r["it_per_s"]) for r in rows]


def measure(radar, workers: int, iterations: int, out: Path) -> dict:
    t0 = time.perf_counter()
    train(preset("default").override(settings(out, workers, iterations)), [(Path(radar).name, radar_data(radar))])
    wall = time.perf_counter() - t0
    times = step_times(out)
    steady = times[1:]
    step_s, wait_s = sum(t for t, _ in steady), sum(w for _, w in steady)
    return {"workers": workers, "steps": len(steady), "s_per_step": step_s / len(steady),
            "wait_s_per_step": wait_s / len(steady), "wait_fraction": wait_s / step_s,
            "first_step_s": times[0][0], "first_step_wait_s": times[0][1], "wall_s": wall}


def summarize(runs: list[dict]) -> list[dict]:
    """Per worker count: the mean wait fraction and step time of its runs, and the step time over the first
    setting's."""
    rows = []
    for w in dict.fromkeys(r["workers"] for r in runs):
        mine = [r for r in runs if r["workers"] == w]
        rows.append({"workers": w, "runs": len(mine),
                     "wait_fraction": sum(r["wait_fraction"] for r in mine) / len(mine),
                     "s_per_step": sum(r["s_per_step"] for r in mine) / len(mine)})
    for row in rows:
        row["step_time_ratio"] = row["s_per_step"] / rows[0]["s_per_step"]
    return rows


def radar_data(path):
    return open_radar([str(path)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--radar", type=Path, default=ROOT / "sample_data" / "radar.nc")
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--workers", default="0,1", help="loader worker counts to compare, the first the reference")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.radar.is_file():
        print(f"{args.radar}: radar file not found", file=sys.stderr)
        return 2
    if args.iterations < 2:
        print("--iterations must be 2 or more (the first step is left out)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(args.radar, w, args.iterations, Path(tmp) / f"run{i}") for i, w in enumerate(counts)]
    result = {"radar": str(args.radar), "iterations": args.iterations, "cores": len(os.sched_getaffinity(0)),
              "load_average": os.getloadavg(), "summary": summarize(runs), "runs": runs}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
