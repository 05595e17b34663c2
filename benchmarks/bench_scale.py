"""Speed and scale: the default model on a national composite and on a continental grid.

(a) composite: the default model against the extrapolation baseline on the FMI composite (1226 x 760,
    ``fmi_dbz.nc`` in --radar-dir), 5 -> 10 frames, timed alternately in this process (median of the
    repeats; the motion-field cache is cleared before every call, so both pay for their optical flow);
    the ratio model / extrapolation is the figure to keep at or under 3.
(b) memory: the process's peak resident set while the default model forecasts a 2200 x 1900 grid (OPERA
    size, synthetic radar from nowcast.synthetic) with its automatic tiling, in a fresh process (the
    kernel's high-water mark is reset after the radar is made, so the peak covers the forecast with the
    radar, torch and the model resident); with --whole-grid also the untiled run, for comparison.
(c) sections from benchmarks/scale_archive.py (archive memory) and benchmarks/scale_dask.py (dask
    equality), where those files exist, run with their own defaults (or their --quick settings).

    python benchmarks/bench_scale.py --radar-dir DIR --json benchmarks/scale.json
    python benchmarks/bench_scale.py --radar-dir DIR --quick --sections composite,memory
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_model import _proc_kib, _reset_peak_rss  # noqa: E402  (one way to read the process's memory)

SECTIONS = ("composite", "memory", "archive", "dask")
OPERA = (2200, 1900)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radar-dir", type=Path, help="folder with fmi_dbz.nc (section composite)")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--quick", action="store_true", help="one repeat, a quarter-size grid for memory")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per method (default 3; --quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--whole-grid", action="store_true", help="memory: also the untiled forecast")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _model(name, **kwargs):
    from nowcast.checkpoint import DEFAULT_MODEL_NAME
    from nowcast.forecast import ModelForecaster

    return ModelForecaster.from_checkpoint(name or DEFAULT_MODEL_NAME, device="cpu", **kwargs)


def _timed(fn, inputs) -> float:
    t0 = time.perf_counter()
    fn(inputs, 10)
    return time.perf_counter() - t0


def composite(args) -> dict:
    """Section (a): model and extrapolation on the FMI composite, alternately."""
    from nowcast import tiling
    from nowcast.methods import get_method
    from nowcast.radar import open_radar

    path = args.radar_dir / "fmi_dbz.nc" if args.radar_dir else None
    if path is None or not path.exists():
        return {"skipped": "give --radar-dir with fmi_dbz.nc"}
    seq = open_radar(path)
    inputs = seq.values[-5:]  # the last five frames of the file
    methods = {"extrapolation": get_method("extrapolation"), "model": _model(args.model)}
    methods["model_tiled"] = _model(args.model, tile_size=tiling.DEFAULT_TILE)  # the tiled path, same grid
    repeats = args.repeats or (1 if args.quick else 3)
    for fn in methods.values():  # warm-up: imports, oneDNN kernels, caches
        _timed(fn, inputs[:, :256, :256])
    times = {k: [] for k in methods}
    for _ in range(repeats):
        for k, fn in methods.items():
            times[k].append(_timed(fn, inputs))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "grid": list(inputs.shape[1:]), "file": path.name, "frames": "last 5 of the file, 10 leads",
        "model": methods["model"].name, "repeats": repeats, "seconds": med, "all_seconds": times,
        "tiles_in_default_run": len(methods["model"].tiles_for(inputs.shape[1:], 10) or []),
        "ratio_model_to_extrapolation": med["model"] / med["extrapolation"],
        "tiled": {"tile_size": tiling.DEFAULT_TILE, "halo": _default_halo(methods["model"]),
                  "tiles": len(methods["model_tiled"].tiles_for(inputs.shape[1:], 10))},
        "ratio_tiled_to_extrapolation": med["model_tiled"] / med["extrapolation"],
        "goal_ratio_at_most": 3.0,
    }


def _synthetic(shape, seed=7):
    """Synthetic radar of ``shape`` (rows, cols), 5 frames: made at half size, upsampled (generating it at
    full size takes minutes and the memory of the forecast does not depend on the echoes' detail)."""
    import numpy as np
    from scipy.ndimage import zoom

    from nowcast.synthetic import generate

    h, w = shape
    small = generate(n_frames=5, height=(h + 1) // 2, width=(w + 1) // 2, seed=seed, pixel_km=2.0).values
    return np.ascontiguousarray(zoom(small, (1, 2, 2), order=1)[:, :h, :w], dtype=np.float32)


def memory_child(spec: dict) -> dict:
    """In a fresh process: make the radar, reset the high-water mark, forecast, read the peak."""
    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    inputs = _synthetic(tuple(spec["shape"]))
    fc = _model(spec["model"], tile_size=spec["tile_size"])
    fc(inputs[:, :64, :64], 2)  # load kernels and imports before the measured call
    tiles = fc.tiles_for(inputs.shape[1:], 10)
    before = _proc_kib("VmRSS")
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    out = fc(inputs, 10)
    seconds = time.perf_counter() - t0
    return {"grid": list(inputs.shape[1:]), "tile_size": spec["tile_size"], "tiles": len(tiles or []),
            "halo": None if tiles is None else (fc.tile_halo or _default_halo(fc)),
            "seconds": seconds, "rss_before_mib": before / 1024, "peak_rss_mib": _proc_kib("VmHWM") / 1024,
            "peak_is_of_the_forecast": reset, "finite_fraction": float(np.isfinite(out).mean()),
            "torch_threads": torch.get_num_threads()}


def _default_halo(fc) -> int:
    from nowcast import tiling

    return tiling.halo_for(fc.config, 10, fc.lagrangian)


def _in_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True, cwd=str(ROOT))
    if proc.returncode != 0:
        return {"failed": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory(args) -> dict:
    """Section (b): peak memory of the default model on a 2200 x 1900 grid (a quarter of it with --quick)."""
    shape = (OPERA[0] // 2, OPERA[1] // 2) if args.quick else OPERA
    spec = {"shape": list(shape), "model": args.model, "threads": args.threads}
    out = {"auto_tiling": _in_child({**spec, "tile_size": None}), "goal_peak_mib_at_most": 4096}
    if args.whole_grid:
        out["whole_grid"] = _in_child({**spec, "tile_size": 0})
    return out


def _other(name: str, args) -> dict:
    """Section (c): benchmarks/<name>.py's run(), where another helper's file exists."""
    path = ROOT / "benchmarks" / f"{name}.py"
    if not path.exists():
        return {"skipped": f"benchmarks/{name}.py is not there"}
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run({"quick": args.quick})


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(memory_child(json.loads(args.child))))
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    run = {"composite": composite, "memory": memory, "archive": lambda a: _other("scale_archive", a),
           "dask": lambda a: _other("scale_dask", a)}
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    if args.radar_dir:  # the folder is the reader's own: recorded as $RADAR
        argv_text = argv_text.replace(str(args.radar_dir), "$RADAR")
    result = {
        "benchmark": "bench_scale",
        "command": "python benchmarks/bench_scale.py " + argv_text,
        "date": dt.datetime.now().isoformat(timespec="minutes"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "load_average_at_start": list(os.getloadavg())},
    }
    for name in wanted:
        t0 = time.perf_counter()
        result[name] = run[name](args)
        result[name]["section_seconds"] = time.perf_counter() - t0
        print(f"{name}: {json.dumps(result[name])}", flush=True)
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
