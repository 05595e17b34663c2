"""Lagrangian training windows cut with the cache's coarse float16 flow against the full-resolution flow.

The training cache (nowcast.lagrangian_windows.MotionCache) keeps each window's Lucas-Kanade flow block-averaged
to 1/4 of the grid in float16; inference advects with the full-resolution float32 field. On one window per
service of the pysteps example data (MeteoSwiss, FMI, BoM), at the crops with the most echo, this measures how
far the two windows lie apart in dBZ over the pixels with echo (>= 15 dBZ, the sampler's echo threshold, in
either window, both with a source): mean and 99th percentile of |difference|, overall and at the worst lead.
For scale, the same figures for the full-resolution flow estimated one frame earlier (the flow's own
sensitivity to which frames it saw). Costs per window: the cached field's size (memory and disk), reading it
from disk, and cutting the window (the coarse field is upsampled per window).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_lagrangian_flow.py --radar-dir DIR \\
        --json benchmarks/lagrangian_flow.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcast.lagrangian_windows import MotionCache, cut_window  # noqa: E402
from nowcast.motion import estimate_motion  # noqa: E402
from nowcast.radar import open_radar  # noqa: E402

SERVICES = {"MeteoSwiss": "mch_rainrate_1.nc", "FMI": "fmi_dbz.nc", "BoM": "bom_prcp-c10/*.nc"}
N_IN, N_OUT = 5, 10  # the sampler's defaults
SIZE = 128  # native pixels of a crop: the default 64-pixel crop at coarsening factor 2
ECHO_DBZ = 15.0
REPEATS = 3  # timings: the median of this many


def full_region(flow: np.ndarray):
    """velocity_of from a full-resolution field (beyond the grid: the nearest edge's flow, as the cache gives)."""

    def velocity_of(y, x, h, w):
        ys = np.clip(np.arange(y, y + h), 0, flow.shape[1] - 1)
        xs = np.clip(np.arange(x, x + w), 0, flow.shape[2] - 1)
        return flow[:, ys][:, :, xs].astype(np.float32)

    return velocity_of


def busiest_start(frames: np.ndarray) -> int:
    """The window start whose last input holds the most echo (every 5th start considered)."""
    starts = range(1, frames.shape[0] - N_IN - N_OUT + 1, 5)  # from 1: the flow one frame earlier exists
    return max(starts, key=lambda s: int(np.nansum(frames[s + N_IN - 1] >= ECHO_DBZ)))


def echo_crops(last: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping crop corners with the most echo in the last input (half valid at least)."""
    h, w = last.shape
    cands = []
    for y in range(0, h - SIZE + 1, SIZE // 4):
        for x in range(0, w - SIZE + 1, SIZE // 4):
            crop = last[y : y + SIZE, x : x + SIZE]
            if np.isfinite(crop).mean() >= 0.5:
                cands.append((int(np.nansum(crop >= ECHO_DBZ)), y, x))
    chosen: list[tuple[int, int]] = []
    for _, y, x in sorted(cands, reverse=True):
        if all(abs(y - cy) >= SIZE or abs(x - cx) >= SIZE for cy, cx in chosen):
            chosen.append((y, x))
        if len(chosen) == count:
            break
    return chosen


def timed(fn):
    times, out = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def differences(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """|a - b| in dBZ at the echo pixels where both have a source, and the worst lead's 99th percentile."""
    echo = np.isfinite(a) & np.isfinite(b) & ((a >= ECHO_DBZ) | (b >= ECHO_DBZ))
    diff = np.abs(a - b)
    per_lead = [np.percentile(diff[k][echo[k]], 99) if echo[k].any() else 0.0 for k in range(a.shape[0])]
    return diff[echo], float(max(per_lead))


def summarise(parts: list[np.ndarray], worst: list[float]) -> dict:
    diff = np.concatenate(parts)
    return {"echo_pixels": int(diff.size), "mean_abs_dbz": float(diff.mean()),
            "p99_abs_dbz": float(np.percentile(diff, 99)), "max_abs_dbz": float(diff.max()),
            "worst_lead_p99_abs_dbz": float(max(worst))}


def storage(cache: MotionCache, coarse: np.ndarray, full: np.ndarray, folder: Path) -> dict:
    """Bytes of the cached field and the seconds to read it back from disk, coarse against full resolution."""
    out = {}
    for name, field in (("coarse", coarse), ("full", full)):
        path = folder / f"{name}.npy"
        np.save(path, field, allow_pickle=False)
        _, seconds = timed(lambda: np.load(path, allow_pickle=False))
        out[name] = {"bytes": int(field.nbytes), "load_s": seconds}
    return out


def bench_service(name: str, frames: np.ndarray, crops: int, folder: Path) -> dict:
    start = busiest_start(frames)
    window = frames[start : start + N_IN + N_OUT]
    cache = MotionCache()
    t0 = time.perf_counter()
    coarse = cache.coarse(frames, start, 1, N_IN)  # estimates the full-resolution flow, then coarsens it
    lk_s = time.perf_counter() - t0
    full = np.array(estimate_motion(window[:N_IN]))  # the same estimate, remembered by motion.py
    earlier = np.array(estimate_motion(frames[start - 1 : start - 1 + N_IN]))
    parts = {"coarse": [], "earlier": []}
    worst = {"coarse": [], "earlier": []}
    cut_s = {"coarse": [], "full": []}
    corners = echo_crops(window[N_IN - 1], crops)
    for y0, x0 in corners:
        ref, cut_s_full = timed(lambda: cut_window(window, full_region(full), N_IN, y0, x0, SIZE))
        lo, cut_s_coarse = timed(lambda: cut_window(
            window, lambda y, x, h, w: cache.region(coarse, y, x, h, w), N_IN, y0, x0, SIZE))
        other = cut_window(window, full_region(earlier), N_IN, y0, x0, SIZE)
        for key, win in (("coarse", lo), ("earlier", other)):
            part, lead = differences(win, ref)
            parts[key].append(part)
            worst[key].append(lead)
        cut_s["full"].append(cut_s_full)
        cut_s["coarse"].append(cut_s_coarse)
    print(f"{name}: start {start}, {len(corners)} crops, flow {lk_s:.1f} s", file=sys.stderr)
    return {
        "grid": list(frames.shape[1:]), "window_start": start, "crops": [list(c) for c in corners],
        "coarse_vs_full": summarise(parts["coarse"], worst["coarse"]),
        "flow_one_frame_earlier_vs_full": summarise(parts["earlier"], worst["earlier"]),
        "flow_estimate_s": lk_s,
        "cut_window_s": {k: statistics.median(v) for k, v in cut_s.items()},
        "cached_field": storage(cache, coarse, full, folder),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--radar-dir", type=Path, default=os.environ.get("NOWCAST_RADAR_DIR"))
    ap.add_argument("--crops", type=int, default=4, help="crops per window (the ones with the most echo)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.radar_dir is None or not Path(args.radar_dir).is_dir():
        print(f"{args.radar_dir}: radar folder not found (give --radar-dir or NOWCAST_RADAR_DIR)", file=sys.stderr)
        return 2
    result = {"n_in": N_IN, "n_out": N_OUT, "crop_px": SIZE, "echo_dbz": ECHO_DBZ, "coarsen": MotionCache().coarsen,
              "threads": os.environ.get("OMP_NUM_THREADS"), "services": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, pattern in SERVICES.items():
            frames = open_radar(str(Path(args.radar_dir) / pattern)).values
            result["services"][name] = bench_service(name, frames, args.crops, Path(tmp))
    everything = [s["coarse_vs_full"] for s in result["services"].values()]
    result["worst_service"] = {k: max(s[k] for s in everything)
                               for k in ("mean_abs_dbz", "p99_abs_dbz", "worst_lead_p99_abs_dbz")}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
