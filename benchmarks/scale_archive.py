"""Memory and time of a season's archive read lazily: N per-frame files, then N/10, each in a fresh process.

Writes a synthetic archive of N per-frame netCDF files (5-minute frames, nowcast's int16 packing, a one-frame
gap every 1000 frames) into a temporary folder, deleted afterwards. For the first N/10 files and for all N,
a fresh Python process measures, with the kernel's peak-RSS mark reset before each phase:

(a) opening the archive lazily (`open_radar(..., lazy=True)`): cold (every file's time read, index written)
    and warm (times from the index cache);
(b) scoring persistence on every evaluation window (`nowcast.evaluate.evaluate`, 5 -> 10 frames);
(c) drawing training samples (`nowcast.data.WindowSampler`).

Memory is flat when the peak RSS with N files is about that with N/10 (``peak_ratio`` near 1); the eager reader
would hold ``eager_frames_mib`` of float32 frames on top.

    python benchmarks/scale_archive.py --files 20000 --json benchmarks/scale_archive.json
    python benchmarks/scale_archive.py --quick

`run(args) -> dict` is what other benchmarks import (args: an argparse.Namespace, a dict, or None for the
defaults; see `parse_args`).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = dict(files=20000, quick=False, size=64, samples=100, eval_stride=1, json=None, tmpdir=None)
QUICK = dict(files=1000, size=32, samples=30)
GAP_EVERY = 1000  # one missing frame every GAP_EVERY frames: gaps are kept, windows across them skipped


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=None, help="files in the archive (default 20000; --quick 1000)")
    ap.add_argument("--quick", action="store_true", help="a small run (1000 files of 32x32) to check it works")
    ap.add_argument("--size", type=int, default=None, help="frame size in pixels (default 64; --quick 32)")
    ap.add_argument("--samples", type=int, default=None, help="training samples drawn (default 100)")
    ap.add_argument("--eval-stride", type=int, default=1, help="frames between evaluation windows (1: all)")
    ap.add_argument("--tmpdir", type=Path, default=None, help="where the temporary archive goes")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _settings(args) -> dict:
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    given = {k: v for k, v in given.items() if v is not None}
    base = {**DEFAULTS, **(QUICK if given.get("quick") else {})}
    if given.get("quick"):  # --quick keeps its small archive unless --files says otherwise
        given.setdefault("files", QUICK["files"])
    out = {**base, **{k: v for k, v in given.items() if k in DEFAULTS}}
    out["files"], out["size"], out["samples"] = int(out["files"]), int(out["size"]), int(out["samples"])
    return out


# ----------------------------------------------------------------------------- the archive


def write_archive(folder: Path, n_files: int, size: int) -> float:
    """n_files per-frame files as nowcast writes radar (int16 in 0.01 dBZ, zlib); returns seconds taken."""
    import netCDF4

    from nowcast.synthetic import generate

    t0 = time.perf_counter()
    base = generate(n_frames=48, height=size, width=size, seed=2026, motion="uniform")
    packed = np.where(np.isnan(base.values), -32768, np.round(base.values / 0.01)).astype(np.int16)
    y, x = base["y"].values, base["x"].values
    written, k = 0, 0
    while written < n_files:
        if k % GAP_EVERY != GAP_EVERY - 1:
            _write_frame(netCDF4, folder / f"radar_{written:06d}.nc", packed[k % len(packed)], 5 * k, y, x)
            written += 1
        k += 1
    return time.perf_counter() - t0


def _write_frame(netCDF4, path: Path, frame: np.ndarray, minutes: int, y, x) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.Conventions = "CF-1.8"
        for name, n in (("time", 1), ("y", len(y)), ("x", len(x))):
            nc.createDimension(name, n)
        t = nc.createVariable("time", "i4", ("time",))
        t.units, t.calendar, t.standard_name = "minutes since 2026-06-01 00:00:00", "standard", "time"
        t[:] = [minutes]
        for name, values in (("y", y), ("x", x)):
            v = nc.createVariable(name, "f8", (name,))
            v.units, v.standard_name = "m", f"projection_{name}_coordinate"
            v[:] = values
        crs = nc.createVariable("crs", "i4", ())
        crs.grid_mapping_name = "azimuthal_equidistant"
        crs.latitude_of_projection_origin, crs.longitude_of_projection_origin = 60.0, 25.0
        r = nc.createVariable("reflectivity", "i2", ("time", "y", "x"), zlib=True, complevel=1,
                              fill_value=np.int16(-32768))
        r.set_auto_maskandscale(False)
        r.scale_factor, r.add_offset = np.float32(0.01), np.float32(0.0)
        r.units, r.grid_mapping = "dBZ", "crs"
        r[0] = frame


# ----------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Peak:
    """Peak RSS of a phase: the kernel's high-water mark reset first (Linux), else sampled every 5 ms.
    Also the phase's wall and CPU seconds (CPU time tells the work apart from waiting on a busy machine)."""

    def __enter__(self):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed memory back to the system before the phase
        except (OSError, AttributeError):
            pass
        self.start_kib = _status_kib("VmRSS")
        self.t_wall, self.t_cpu = time.perf_counter(), time.process_time()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.sampler = None
        except OSError:
            self.sampled, self.stop = self.start_kib, threading.Event()
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.sampled = max(self.sampled, _status_kib("VmRSS"))

    def __exit__(self, *exc):
        self.wall_s, self.cpu_s = time.perf_counter() - self.t_wall, time.process_time() - self.t_cpu
        if self.sampler is None:
            self.peak_kib = _status_kib("VmHWM")
        else:
            self.stop.set()
            self.sampler.join()
            self.peak_kib = max(self.sampled, _status_kib("VmRSS"))
        self.mib, self.end_mib = self.peak_kib / 1024, _status_kib("VmRSS") / 1024
        return False


# ----------------------------------------------------------------------------- one process


def measure(files: list[str], cache_dir: str, size: int, samples: int, eval_stride: int) -> dict:
    """The three phases on `files`, in this process (run by a fresh child per archive length)."""
    from nowcast import archive
    from nowcast.data import SamplerConfig, WindowSampler
    from nowcast.evaluate import evaluate
    from nowcast.methods import get_method
    from nowcast.radar import open_radar

    warnings.simplefilter("ignore")  # the gap notes
    out: dict = {"files": len(files), "baseline_rss_mib": _status_kib("VmRSS") / 1024}
    peaks, cpu, ends = {}, {}, {}
    for phase in ("open_cold", "open_warm"):
        seq = None
        gc.collect()
        with Peak() as p:
            seq = open_radar(files, lazy=True, index_cache=cache_dir)
        out[f"{phase}_s"], cpu[phase], peaks[phase], ends[phase] = p.wall_s, p.cpu_s, p.mib, p.end_mib
    out["frames"] = int(seq.sizes["time"])
    out["gaps"] = seq.attrs.get("nowcast_notes", "").count("gap of")
    with Peak() as p:
        result = evaluate([("archive", seq)], [get_method("persistence")], n_in=5, n_out=10, stride=eval_stride)
    out["evaluate_s"], cpu["evaluate"], peaks["evaluate"], ends["evaluate"] = p.wall_s, p.cpu_s, p.mib, p.end_mib
    res = result.to_dict() if hasattr(result, "to_dict") else result
    out["windows"], out["skipped_windows"] = res["windows"], res["skipped_windows"]
    out["csi30_persistence"] = res["results"]["persistence"]["csi"]["30"]
    src = archive.source_of(seq)
    out["frames_read_by_evaluate"] = src.reads
    crop = min(64, size)
    with Peak() as p:
        sampler = WindowSampler([("archive", seq)], SamplerConfig(crop=crop, time_strides=(1, 2)), seed=0)
        for _ in range(samples):
            sampler.sample()
    out["sample_s"], cpu["sample"], peaks["sample"], ends["sample"] = p.wall_s, p.cpu_s, p.mib, p.end_mib
    out.update(samples=samples, sample_crop=crop, rejected_draws=sampler.rejected,
               frames_read_total=src.reads, cache_frames=src.cache_frames, still_lazy=archive.is_lazy(seq))
    out["cpu_s"] = cpu
    out["peak_rss_mib"], out["rss_after_mib"] = peaks, ends
    out["eager_frames_mib"] = out["frames"] * size * size * 4 / 2**20
    return out


def _child(files: list[Path], cache_dir: Path, s: dict) -> dict:
    spec = json.dumps({"files": [str(f) for f in files], "cache": str(cache_dir), "size": s["size"],
                       "samples": s["samples"], "eval_stride": s["eval_stride"]})
    listing = cache_dir.parent / f"spec_{len(files)}.json"
    listing.write_text(spec)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(listing)],
                          capture_output=True, text=True, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {len(files)} files failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args=None) -> dict:
    """Write the archive, measure N/10 and N files in fresh processes, delete the archive; the result as a dict."""
    s = _settings(args)
    n = s["files"]
    root = Path(tempfile.mkdtemp(prefix="nowcast-scale-", dir=s["tmpdir"]))
    t_start = time.time()
    try:
        folder = root / "archive"
        folder.mkdir()
        write_s = write_archive(folder, n, s["size"])
        files = sorted(folder.glob("radar_*.nc"))
        runs = [_child(files[: max(n // 10, 20)], root / "cache", s), _child(files, root / "cache", s)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    small, full = runs
    ratios = {k: full["peak_rss_mib"][k] / small["peak_rss_mib"][k] for k in full["peak_rss_mib"]}
    return {
        "benchmark": "scale_archive",
        "command": "python benchmarks/scale_archive.py " + " ".join(sys.argv[1:]) if __name__ == "__main__" else None,
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(t_start)),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in s.items()},
        "frame_size": [s["size"], s["size"]],
        "write_archive_s": write_s,
        "total_s": time.time() - t_start,
        "runs": runs,
        "peak_ratio": ratios,  # full archive / one tenth: near 1 = memory does not grow with the archive
        "flat": all(r < 1.25 for r in ratios.values()),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(Path(args.child).read_text())
        result = measure(spec["files"], spec["cache"], spec["size"], spec["samples"], spec["eval_stride"])
        print(json.dumps(result))
        return 0
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
