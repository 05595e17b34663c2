"""`nowcast watch` on a simulated feed: per-frame files of the sample written elsewhere and renamed in one at a
time, with a bad file, a gap, out-of-order files, an output error, and SIGTERM during a forecast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast.errors import NowcastWarning
from nowcast.methods import resolve
from nowcast.motion import estimate_motion
from nowcast.watch import LATEST, PairwiseFlow, Watcher, stamp

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    """The sample's 24 frames, one netCDF file each, in a staging folder (never the watched one)."""
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    with xr.open_dataset(SAMPLE) as ds:
        for i in range(ds.sizes["time"]):
            path = folder / f"radar_{stamp(ds['time'].values[i])}.nc"
            ds.isel(time=[i]).load().to_netcdf(path)
            paths.append(path)
    return paths


def drop(source: Path, folder: Path, name: str | None = None, data: bytes | None = None) -> Path:
    """Write a file beside the watched folder and rename it in, as a feed does."""
    staging = folder.parent / "staging"
    staging.mkdir(exist_ok=True)
    tmp = staging / (name or source.name)
    tmp.write_bytes(source.read_bytes() if data is None else data)
    target = folder / (name or source.name)
    os.replace(tmp, target)
    return target


def truncated(source: Path) -> bytes:
    return source.read_bytes()[: source.stat().st_size // 3]


def check_complete(path: Path, leads: int = 10) -> None:
    with xr.open_dataset(path) as ds:
        assert ds.sizes["time"] == leads
        assert np.isfinite(ds["reflectivity"].values).any()


def stray(out: Path) -> list[str]:
    """Anything in the output folder that is neither a forecast nor latest.*"""
    return sorted(p.name for p in out.iterdir()
                  if not (p.name.startswith("forecast_") or p.name.startswith("latest.")))


def forecasts(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("forecast_*.nc"))


def look(watcher: Watcher):
    """Two looks, so the test passes with inotify (a rename counts at once) and without (size stable)."""
    first = watcher.poll()
    second = watcher.poll()
    return first or second


def test_feed_with_a_bad_file_a_gap_and_late_files(tmp_path, frames):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    lines = []
    watcher = Watcher(inbox, out, resolve("persistence"), log=lines.append)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for f in frames[:7]:
            drop(f, inbox)
            look(watcher)
        drop(frames[0], inbox, name="radar_broken.nc", data=truncated(frames[0]))
        look(watcher)
        for f in frames[8:11]:  # frames[7] is missing: a gap
            drop(f, inbox)
            look(watcher)
        drop(frames[12], inbox)  # out of order: 12 before 11, a gap until 11 comes
        look(watcher)
        drop(frames[11], inbox)
        look(watcher)
    messages = [str(w.message) for w in caught if issubclass(w.category, NowcastWarning)]
    bad = [m for m in messages if "radar_broken.nc" in m]
    assert len(bad) == 1 and "skipped" in bad[0]
    gap = [m for m in messages if "gap" in m]
    assert len(gap) == 2 and all("1 frame(s) missing" in m for m in gap), messages
    made = forecasts(out)
    # persistence needs 2 frames: 1..6 after the first, none at 8 (gap), 9, 10, none at 12 until 11 comes
    expected = [f"forecast_{stamp(t)}.nc" for t in _times(frames, [1, 2, 3, 4, 5, 6, 9, 10, 11, 12])]
    assert made == expected
    assert len(lines) == len(expected) and all("latency" in line and "persistence" in line for line in lines)
    check_complete(out / LATEST)
    assert (out / LATEST).read_bytes() == (out / expected[-1]).read_bytes()
    assert stray(out) == []
    watcher.close()


def _times(frames, indices):
    with xr.open_dataset(SAMPLE) as ds:
        return [ds["time"].values[i] for i in indices]


def test_a_frame_forecast_already_is_not_forecast_again(tmp_path, frames):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for f in frames[:4]:
        drop(f, inbox)
    assert Watcher(inbox, out, resolve("persistence"), log=lambda _: None).run(once=True) == "once"
    first = (out / LATEST).stat().st_mtime_ns
    assert forecasts(out) == [f"forecast_{stamp(_times(frames, [3])[0])}.nc"]
    assert Watcher(inbox, out, resolve("persistence"), log=lambda _: None).run(once=True) == "once"
    assert (out / LATEST).stat().st_mtime_ns == first


def test_keep_deletes_old_forecasts(tmp_path, frames):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    watcher = Watcher(inbox, out, resolve("persistence"), keep=2, log=lambda _: None)
    for f in frames[:6]:
        drop(f, inbox)
        look(watcher)
    assert forecasts(out) == [f"forecast_{stamp(t)}.nc" for t in _times(frames, [4, 5])]


def test_output_error_is_reported_and_retried_at_the_next_frame(tmp_path, frames, monkeypatch):
    import nowcast.forecast_file as forecast_file

    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    watcher = Watcher(inbox, out, resolve("persistence"), log=lambda _: None)
    real = forecast_file.write_forecast
    full = {"on": True}

    def write(*args, **kwargs):
        if full["on"]:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(forecast_file, "write_forecast", write)
    for f in frames[:2]:
        drop(f, inbox)
    with pytest.warns(NowcastWarning, match="No space left on device.*next frame"):
        look(watcher)
    assert forecasts(out) == [] and stray(out) == []
    full["on"] = False
    drop(frames[2], inbox)
    look(watcher)
    assert forecasts(out) == [f"forecast_{stamp(_times(frames, [2])[0])}.nc"]


class _SignalsItself:
    """Persistence that sends this process SIGTERM in the middle of its third forecast."""

    name, input_frames = "persistence", 2

    def __init__(self):
        self.calls = 0
        self.inner = None

    def __call__(self, inputs, n_out):
        self.calls += 1
        if self.calls == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this: the forecast never finishes
        return np.repeat(inputs[-1:], n_out, axis=0)


def _feed(paths, inbox: Path, every: float) -> None:
    for f in paths:
        drop(f, inbox)
        time.sleep(every)


def test_sigterm_during_a_forecast_leaves_no_partial_file(tmp_path, frames):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    method = _SignalsItself()
    watcher = Watcher(inbox, out, method, interval=0.1, log=lambda _: None)
    feeder = threading.Thread(target=_feed, args=(frames[:6], inbox, 0.8), daemon=True)
    previous = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    feeder.start()
    assert watcher.run() == "SIGTERM"
    assert time.monotonic() - started < 10
    assert signal.getsignal(signal.SIGTERM) is previous
    assert method.calls == 3
    assert len(forecasts(out)) == 2 and stray(out) == []
    check_complete(out / LATEST)
    feeder.join()


def test_pairwise_flow_equals_estimate_motion(frames):
    with xr.open_dataset(SAMPLE) as ds:
        seq = ds["reflectivity"].values.astype(np.float32)
    flow = PairwiseFlow()
    for end in (5, 6, 7):
        window = seq[end - 5: end]
        assert np.array_equal(flow(window), estimate_motion(window))
    assert flow.tracked == 4 + 1 + 1  # the first window's 4 pairs, then one new pair per frame


def test_the_watcher_reuses_the_flow_of_extrapolation(tmp_path, frames):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    method = resolve("extrapolation")
    watcher = Watcher(inbox, out, method, log=lambda _: None)
    assert watcher.flow_reused
    for f in frames[:5]:
        drop(f, inbox)
        look(watcher)
    assert len(forecasts(out)) == 3
    with xr.open_dataset(out / LATEST) as fc, xr.open_dataset(SAMPLE) as ds:
        cold = resolve("extrapolation")(ds["reflectivity"].values[2:5].astype(np.float32), 10)
        assert np.allclose(fc["reflectivity"].values, cold, atol=0.006, equal_nan=True)  # int16 packing


def _feed_and_stop(tmp_path, frames, every: float, method: str, paced_from: int | None = None):
    """The must-show: 12 files dropped one every `every` seconds (with `paced_from`, from that file on also
    not before the previous file's forecast is there), a bad file after the seventh, latest.nc checked all
    along, then SIGTERM. Returns (exit code, seconds to stop, stdout, stderr, output folder, broken looks)."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "nowcast", "watch", str(inbox), "-o", str(out), "--method",
                             method, "--interval", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    stderr, ready = [], threading.Event()
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, stderr, ready), daemon=True)
    reader.start()
    broken, looking = _Looks(), threading.Event()
    checker = threading.Thread(target=_keep_checking_latest, args=(out / LATEST, broken, looking), daemon=True)
    checker.start()
    try:
        assert ready.wait(120), "".join(stderr)  # the watcher is set up (imports, method) before the feed starts
        for i, f in enumerate(frames[:12]):
            drop(f, inbox)
            if i == 6:
                drop(frames[0], inbox, name="radar_truncated.nc", data=truncated(frames[0]))
            time.sleep(every)
            if paced_from is not None and i >= paced_from:
                _wait_for((out / f.name.replace("radar_", "forecast_")).exists, timeout=20)
        _wait_for(lambda: len(forecasts(out)) >= 10, timeout=60)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        stdout = proc.communicate(timeout=20)[0]
        stopped = time.monotonic() - sent
    finally:
        looking.set()
        if proc.poll() is None:
            proc.kill()
    checker.join()
    reader.join(5)
    return proc.returncode, stopped, stdout, "".join(stderr), out, broken


def _read_lines(stream, lines: list, ready: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if "watching" in line:
            ready.set()


class _Looks(list):
    """The failures to read latest.nc, and how many times it was read."""

    looks = 0


def _keep_checking_latest(latest: Path, broken: _Looks, stop: threading.Event) -> None:
    while not stop.is_set():
        if latest.exists():
            try:
                broken.looks += 1
                check_complete(latest)
            except Exception as exc:  # noqa: BLE001  (any failure to read it is what the test looks for)
                broken.append(repr(exc))
        time.sleep(0.05)


def _wait_for(condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not condition():
        time.sleep(0.2)


def _check_must_show(code, stopped, stdout, stderr, out, broken) -> None:
    made = forecasts(out)
    assert len(made) >= 8, (made, stderr)
    assert broken == []
    check_complete(out / LATEST)
    assert "radar_truncated.nc" in stderr and "skipped, the watch goes on" in stderr
    assert sum("radar_truncated.nc" in line for line in stderr.splitlines()) == 1
    assert len([line for line in stdout.splitlines() if "latency" in line]) == len(made)
    assert code in (0, 130, 143) and stopped < 20
    assert stray(out) == [] and "Traceback" not in stderr
    print(f"must-show: {len(made)} forecasts, latest.nc complete at all {broken.looks} looks, stopped "
          f"{stopped:.1f} s after SIGTERM, exit code {code}")


def test_must_show_fast_feed(tmp_path, frames):
    """The must-show at the pace of the machine (the next file once the last forecast is there), by default."""
    _check_must_show(*_feed_and_stop(tmp_path, frames, every=0.05, method="persistence", paced_from=1))


@pytest.mark.slow
def test_must_show_feed_every_two_seconds(tmp_path, frames):
    """The must-show as the issue states it: one file every 2 s, extrapolation (optical flow reused)."""
    _check_must_show(*_feed_and_stop(tmp_path, frames, every=2.0, method="extrapolation"))


def test_plot_puts_a_picture_beside_each_forecast(tmp_path, frames):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    watcher = Watcher(inbox, out, resolve("persistence"), plot=True, keep=1, log=lambda _: None)
    for f in frames[:3]:
        drop(f, inbox)
        look(watcher)
    name = f"forecast_{stamp(_times(frames, [2])[0])}"
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{name}.nc", f"{name}.png", LATEST, "latest.png"])
    assert (out / "latest.png").read_bytes() == (out / f"{name}.png").read_bytes()
