"""`nowcast watch` against a cold `nowcast predict`: latency from a frame's arrival to its forecast written, the
optical flow reused or not, and peak memory over a long simulated feed.

    python benchmarks/bench_watch.py sample_data/radar.nc FMI_COMPOSITE.nc --json benchmarks/watch.json

Each radar file is split into per-frame netCDF files in a temporary folder. A watcher (`nowcast.watch.Watcher`,
the method made once, inotify) runs in a thread; the feed renames one file in at a time and waits for its forecast.
Latency is the watcher's own: from the file's ctime (set by the rename) to latest.nc replaced. The cold figure is
`nowcast predict` run as a new process on the same frames (start, imports, model load, read, forecast, write).
Memory: `--cycles` (default 1,000) cycles of a simulated feed on a small grid with `--memory-method`, driven
through `Watcher.poll()`; peak RSS (ru_maxrss) and current RSS at cycle 10 and at the last cycle. Run it with no
radar file for a fresh process (the peak of a run after the latency runs is theirs). `--flow-only`: the optical
flow alone, pysteps from scratch against PairwiseFlow, interleaved window by window.

    python benchmarks/bench_watch.py --memory-cycles 1000 --json benchmarks/watch_memory.json
    python benchmarks/bench_watch.py sample_data/radar.nc FMI_COMPOSITE.nc --flow-only --json benchmarks/watch_flow.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import xarray as xr

from nowcast.methods import resolve
from nowcast.watch import LATEST, Watcher, stamp


def split(source: Path, folder: Path) -> list[Path]:
    """One netCDF file per frame of `source`, named by time."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with xr.open_dataset(source) as ds:
        for i in range(ds.sizes["time"]):
            path = folder / f"frame_{stamp(ds['time'].values[i])}.nc"
            ds.isel(time=[i]).load().to_netcdf(path)
            paths.append(path)
    return paths


def watch_latency(frames: list[Path], work: Path, method_name: str | None, flow: bool, cycles: int) -> dict:
    """Feed the first frames (enough for one forecast) at once, then one at a time; the watcher's latencies."""
    inbox, out = work / "in", work / "out"
    for d in (inbox, out):
        d.mkdir(parents=True)
    method = resolve(method_name)
    watcher = Watcher(inbox, out, method, flow=flow, log=lambda _: None)
    start = max(method.input_frames, 2) - 1
    for f in frames[:start]:
        os.link(f, inbox / f.name)
    thread = threading.Thread(target=watcher.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    rows = []
    for f in frames[start: start + cycles + 1]:
        before = watcher.cycles
        os.link(f, work / f.name)
        os.replace(work / f.name, inbox / f.name)  # a rename: inotify's IN_MOVED_TO
        while watcher.cycles == before and thread.is_alive():
            time.sleep(0.005)
        c = watcher.last_cycle
        rows.append({"latency_s": c.latency, "read_s": c.read, "forecast_s": c.forecast, "write_s": c.write})
    following = watcher.following
    watcher.stop()
    thread.join()
    warm = rows[1:]  # the first cycle tracks every pair of its window and warms up the method
    return {"method": method.name, "flow_reused": watcher.flow_reused, "following": following,
            "first_cycle": rows[0], "cycles": len(warm),
            **{f"median_{k}": statistics.median(r[k] for r in warm) for k in rows[0]}}


def cold_predict(frames: list[Path], work: Path, method_name: str | None, n_inputs: int, runs: int) -> dict:
    """`nowcast predict` as a new process on the same frames (the last n_inputs up to each frame)."""
    times = []
    for k in range(runs):
        end = n_inputs + 1 + k
        cmd = [sys.executable, "-m", "nowcast", "predict", *map(str, frames[end - n_inputs: end]),
               "-o", str(work / f"cold_{k}.nc")] + (["--method", method_name] if method_name else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
        times.append(time.perf_counter() - t0)
    return {"runs": runs, "median_s": statistics.median(times), "all_s": times}


def flow_only(frames: list[Path], windows: int, n_inputs: int = 5) -> dict:
    """The optical flow of consecutive windows, alone: pysteps from scratch (motion.estimate_motion) against
    PairwiseFlow (one new pair per window), interleaved so that a busy machine slows both alike."""
    from nowcast.motion import estimate_motion
    from nowcast.radar import open_radar
    from nowcast.watch import PairwiseFlow

    seq = open_radar([str(f) for f in frames[: n_inputs + windows]], lazy=False).values
    flow, scratch, reused, same = PairwiseFlow(), [], [], True
    flow(seq[:n_inputs])  # the first window tracks every pair
    for k in range(1, windows + 1):
        window = seq[k: k + n_inputs]
        t0 = time.perf_counter()
        a = estimate_motion(window)
        t1 = time.perf_counter()
        b = flow(window)
        t2 = time.perf_counter()
        scratch.append(t1 - t0)
        reused.append(t2 - t1)
        same = same and bool(np.array_equal(a, b))
    return {"windows": windows, "inputs": n_inputs, "median_scratch_s": statistics.median(scratch),
            "median_pairwise_s": statistics.median(reused), "identical_fields": same}


def _small_frame(t, rng, size: int, i: int) -> xr.Dataset:
    """A cell moving one pixel per frame (so the flow has something to track), on a grid with no mapping."""
    values = np.full((1, size, size), -10.0, dtype=np.float32)
    at = i % (size // 2)
    values[0, size // 4: size // 2, at: at + size // 4] = rng.uniform(20, 50)
    return xr.Dataset({"reflectivity": (("time", "y", "x"), values, {"units": "dBZ"})},
                      coords={"time": [t], "y": np.arange(size) * 1000.0, "x": np.arange(size) * 1000.0})


def memory_run(work: Path, method_name: str, cycles: int, size: int) -> dict:
    """`cycles` frames of a simulated feed through Watcher.poll(): RSS at cycle 10 and at the end."""
    import psutil

    inbox, out = work / "in", work / "out"
    for d in (inbox, out):
        d.mkdir(parents=True)
    watcher = Watcher(inbox, out, resolve(method_name), keep=5, log=lambda _: None, interval=0.0)
    rng, t0, marks = np.random.default_rng(0), np.datetime64("2026-01-01T00:00"), {}
    started = time.perf_counter()
    i = 0
    while watcher.cycles < cycles:
        t = t0 + np.timedelta64(5 * i, "m")
        tmp = work / f"frame_{stamp(t)}.nc"
        _small_frame(t, rng, size, i).to_netcdf(tmp)
        os.replace(tmp, inbox / tmp.name)
        while tmp.name not in watcher.feed.taken:
            watcher.poll()  # with inotify one look; without, a file needs two (its size stable)
        i += 1
        if watcher.cycles in (10, cycles) and watcher.cycles not in marks:
            marks[watcher.cycles] = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                     "rss_mib": psutil.Process().memory_info().rss / 2**20}
    watcher.close()
    return {"method": method_name, "grid": f"{size}x{size}", "cycles": watcher.cycles,
            "seconds": time.perf_counter() - started, "at_cycle_10": marks.get(10), f"at_cycle_{cycles}": marks.get(cycles)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("radar", nargs="*", type=Path, help="radar files (each is split into per-frame files)")
    ap.add_argument("--method", default=None, help="forecast method (default: nowcast's default)")
    ap.add_argument("--cycles", type=int, default=6, help="watch cycles timed per radar file")
    ap.add_argument("--cold-runs", type=int, default=2, help="cold predict runs per radar file")
    ap.add_argument("--memory-cycles", type=int, default=1000)
    ap.add_argument("--memory-method", default="extrapolation")
    ap.add_argument("--memory-grid", type=int, default=32)
    ap.add_argument("--flow-only", action="store_true", help="only the optical flow, pysteps against PairwiseFlow")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch_threads": None, "inputs": {}}
    import torch

    result["torch_threads"] = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n, source in enumerate(args.radar):
            frames = split(source, tmp / f"frames{n}")
            shape = xr.open_dataset(frames[0])["reflectivity"].shape[1:]
            entry = {"grid": f"{shape[0]}x{shape[1]}", "frames": len(frames)}
            if args.flow_only:
                entry["flow_only"] = flow_only(frames, args.cycles)
                print(source.name, entry["flow_only"], flush=True)
                result["inputs"][source.name] = entry
                continue
            for flow in (True, False):
                entry[f"watch_flow_{'reused' if flow else 'cold'}"] = watch_latency(
                    frames, tmp / f"w{n}{flow}", args.method, flow, args.cycles)
                print(source.name, flow, entry[f"watch_flow_{'reused' if flow else 'cold'}"], flush=True)
            entry["flow_only"] = flow_only(frames, args.cycles)
            print(source.name, entry["flow_only"], flush=True)
            n_inputs = max(resolve(args.method).input_frames, 2)
            (tmp / f"cold{n}").mkdir()
            entry["cold_predict"] = cold_predict(frames, tmp / f"cold{n}", args.method, n_inputs, args.cold_runs)
            print(source.name, entry["cold_predict"], flush=True)
            result["inputs"][source.name] = entry
        if args.memory_cycles and not args.flow_only:
            result["memory"] = memory_run(tmp / "mem", args.memory_method, args.memory_cycles, args.memory_grid)
            print(result["memory"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
