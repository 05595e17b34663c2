"""Seconds per forecast window, each method paying for its own optical flow (no shared motion cache).

`evaluate` estimates each window's flow once, outside the methods' timings, so its tables leave it out.
This measures each method alone on the same windows, alternating methods, cold caches each time.

    python benchmarks/bench_window_time.py --radar-dir DIR --windows 6 --json benchmarks/window_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcast.methods import resolve  # noqa: E402
from nowcast.radar import open_radar  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--radar-dir", type=Path, default=os.environ.get("NOWCAST_RADAR_DIR"))
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.radar_dir is None or not Path(args.radar_dir).is_dir():
        print(f"{args.radar_dir}: radar folder not found (give --radar-dir or NOWCAST_RADAR_DIR)", file=sys.stderr)
        return 2
    seq = open_radar(str(Path(args.radar_dir) / "bom_prcp-c10" / "*.nc")).values
    methods = {name: resolve(name) for name in ("extrapolation", "model")}
    times = {name: [] for name in methods}
    for w in range(args.windows):
        start = 10 + w * 20
        inputs = seq[start : start + 5]
        for name, method in methods.items():
            t0 = time.perf_counter()
            method(inputs, 10)
            times[name].append(time.perf_counter() - t0)
    result = {"grid": list(seq.shape[1:]), "windows": args.windows, "threads": int(os.environ.get("OMP_NUM_THREADS", 0)),
              "median_s": {k: statistics.median(v) for k, v in times.items()}, "all_s": times}
    result["model_over_extrapolation"] = result["median_s"]["model"] / result["median_s"]["extrapolation"]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
