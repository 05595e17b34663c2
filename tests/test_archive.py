"""Lazy archives: many per-frame files read a window at a time give exactly what the eager reader gives."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pytest
import xarray as xr
from radar_files import storm, times, write_nc

from nowcast import archive, radar
from nowcast.data import LazyFrames, SamplerConfig, WindowSampler, as_seqdata
from nowcast.errors import NowcastError
from nowcast.evaluate import evaluate
from nowcast.methods import get_method
from nowcast.radar import open_radar
from nowcast.synthetic import generate, write_netcdf
from nowcast.windows import iter_windows

N_FILES = 60
MISSING = (20, 21, 22)  # a gap of three frames


@pytest.fixture(scope="module")
def frame_archive(tmp_path_factory):
    """60 per-frame files as nowcast writes them (int16 packed dBZ, NaN outside coverage), a 3-frame gap,
    one repeated time in a later file (dropped), names not in time order for the last few."""
    folder = tmp_path_factory.mktemp("frames")
    da = generate(n_frames=N_FILES + len(MISSING), height=40, width=48, seed=11, motion="uniform")
    da[:, :6, :9] = np.nan
    kept = [k for k in range(da.sizes["time"]) if k not in MISSING]
    for n, k in enumerate(kept):
        name = f"r{n:03d}.nc" if n < N_FILES - 5 else f"q{n:03d}.nc"  # q... sort before r...
        write_netcdf(da.isel(time=[k]), folder / name)
    dup = da.isel(time=[5]).copy(data=np.full((1, 40, 48), 33.0, np.float32))
    write_netcdf(dup, folder / "s_repeat.nc")  # the same time as r005.nc, later in name order
    return folder


def _open(paths, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_radar(paths if isinstance(paths, list) else str(paths), **kw)


def _pair(folder, tmp_path, pattern="*.nc", **kw):
    eager = _open(folder / pattern, lazy=False, **kw)
    lazy = _open(folder / pattern, lazy=True, index_cache=tmp_path / "cache", **kw)
    return eager, lazy


@pytest.fixture(scope="module")
def eager(frame_archive):
    """The archive read at once (the reference); tests must not change it."""
    return _open(frame_archive / "*.nc", lazy=False)


@pytest.fixture
def lazy(frame_archive):
    """The archive read lazily (a new one per test: its own counters and cache of frames)."""
    return _open(frame_archive / "*.nc", lazy=True, index_cache=frame_archive.parent / "index")


def test_lazy_equals_eager_values_times_gaps_and_notes(eager, lazy):
    assert archive.is_lazy(lazy) and not archive.is_lazy(eager)
    assert lazy.shape == eager.shape == (N_FILES, 40, 48)
    np.testing.assert_array_equal(lazy["time"].values, eager["time"].values)
    assert "gap of 3 missing frame(s)" in lazy.attrs["nowcast_notes"]
    assert "dropped 1 frame(s) with a duplicate time" in lazy.attrs["nowcast_notes"]
    xr.testing.assert_identical(lazy, eager)  # values (NaN where NaN), coordinates, grid mapping, attributes
    assert archive.is_lazy(lazy)  # comparing read it, but did not load it


def test_lazy_indexing_reads_only_what_is_asked(eager, lazy):
    src = archive.source_of(lazy)
    for key in [(slice(3, 9), slice(2, 30), 7), (-1,), (slice(50, 10, -3), 5, slice(None, None, 2)),
                ([4, 1, 33], slice(0, 5), [0, 3, 40])]:
        np.testing.assert_array_equal(lazy[key].values, eager[key].values)
    assert src.reads == 6 + 1 + 14 + 2  # each frame once (frame 4 was read with the first slice)


@pytest.mark.parametrize("kind", ["rate", "pixels", "accumulation", "levels", "level"])
def test_lazy_equals_eager_for_every_unit_and_layout(tmp_path, kind):
    """Multi-frame files (runs of frames read together), rain rates with small negatives, 8-bit pixels,
    accumulations over the step, an extra dimension reduced or one level of it selected."""
    v = storm(n=24, h=20, w=24)
    rate = np.maximum(10 ** (v / 16.0) - 1.0, 0).astype(np.float32)
    rate[:, 0, 0] = -0.05  # processing noise: no echo
    rate[3, 4:6, 4:6] = np.nan
    kw, t = {}, times(24)
    for f in range(4):
        part = slice(6 * f, 6 * f + 6)
        path = tmp_path / f"part{f}.nc"
        if kind == "rate":
            write_nc(path, rate[part], units="mm/h", time=t[part])
        elif kind == "pixels":
            write_nc(path, np.clip(v[part] * 2 + 20, 0, 255).astype(np.uint8), units=None, time=t[part])
        elif kind == "accumulation":
            write_nc(path, rate[part] / 12, units="mm", time=t[part])
        else:
            write_nc(path, np.stack([v[part], v[part] + 1.5], 1), time=t[part], dims=("time", "level", "y", "x"))
            kw = {"reduce": "max"} if kind == "levels" else {"select": {"level": 1}}
    eager, lazy = _pair(tmp_path, tmp_path, "part*.nc", **kw)
    if kind in ("rate", "accumulation"):
        # the eager reader counts the small negatives; a lazy one would have to read everything first
        assert eager.attrs.pop("nowcast_notes") == "24 slightly negative rain value(s) treated as no echo"
    xr.testing.assert_identical(lazy, eager)


def test_per_frame_files_with_a_scalar_time_stored_in_different_units(tmp_path):
    """No time dimension, a scalar valid_time; half the files store it in seconds since 1970 (decoded
    together), the others in each file's own units, as xarray chooses them."""
    v = np.maximum(storm(n=12, h=16, w=20), -10) / 10 + 1.0
    for k, t in enumerate(times(12, step_min=10)):
        ds = xr.Dataset({"precip": (("y", "x"), v[k], {"units": "kg m-2"}), "valid_time": ((), t)})
        enc = {"valid_time": {"units": "seconds since 1970-01-01", "dtype": "int64"}} if k % 2 else {}
        ds.to_netcdf(tmp_path / f"frame_{k:02d}.nc", encoding=enc)
    eager, lazy = _pair(tmp_path, tmp_path, "frame_*.nc")
    assert lazy.attrs["conversion"].startswith("accumulation over 10 min")
    xr.testing.assert_identical(lazy, eager)


def test_single_file_can_be_read_lazily(tmp_path):
    path = write_nc(tmp_path / "one.nc", storm(n=12))
    eager = _open(path, lazy=False)
    lazy = _open(path, lazy=True)
    assert archive.is_lazy(lazy)
    np.testing.assert_array_equal(lazy[4:9].values, eager[4:9].values)
    assert archive.source_of(lazy).reads == 5
    assert not list(tmp_path.glob("**/archive-index"))  # one file: no index to keep


def test_windows_and_scores_from_the_lazy_archive_equal_the_eager_ones(eager, lazy):
    we, wl = iter_windows(eager, 4, 6, stride=3), iter_windows(lazy, 4, 6, stride=3)
    assert wl.starts == we.starts and wl.skipped == we.skipped > 0
    for (ie, te, re), (il, tl, rl) in zip(we.batches(4), wl.batches(4), strict=True):
        np.testing.assert_array_equal(il, ie)
        np.testing.assert_array_equal(tl, te)
        np.testing.assert_array_equal(rl, re)
    methods = [get_method("persistence")]
    assert _scores(evaluate([("a", lazy)], methods, n_in=4, n_out=6)) == \
        _scores(evaluate([("a", eager)], methods, n_in=4, n_out=6))


def test_windows_far_apart_read_only_their_frames(eager, lazy):
    we, wl = iter_windows(eager, 3, 4, stride=12), iter_windows(lazy, 3, 4, stride=12)
    for (ie, te, _), (il, tl, _) in zip(we.batches(3), wl.batches(3), strict=True):
        np.testing.assert_array_equal(il, ie)
        np.testing.assert_array_equal(tl, te)
    assert archive.source_of(lazy).reads == 7 * wl.count  # not the frames between the windows


def _scores(result) -> dict:
    """An evaluation as a dict, less the timings."""
    d = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    for r in d["results"].values():
        r.pop("seconds_per_window")
    return d


def test_evaluation_reads_every_frame_once_and_keeps_little(frame_archive, tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "FRAME_CACHE_BYTES", 30 * 40 * 48 * 4)  # 30 frames
    lazy = _open(frame_archive / "*.nc", lazy=True, index_cache=tmp_path)
    src = archive.source_of(lazy)
    result = _scores(evaluate([("a", lazy)], [get_method("persistence")], n_in=4, n_out=6, batch_size=8))
    assert result["windows"] > 30
    assert src.reads == N_FILES  # overlapping windows share frames through the cache
    assert src.cached <= 30
    assert archive.is_lazy(lazy)  # nothing loaded the sequence


def test_sampler_draws_the_same_samples_from_lazy_and_eager(eager, lazy):
    assert isinstance(as_seqdata("a", lazy).frames, LazyFrames)
    config = SamplerConfig(n_in=3, n_out=4, crop=16, coarsen_factors=(1, 2), time_strides=(1, 2))
    se = WindowSampler([("a", eager)], config, seed=7)
    sl = WindowSampler([("a", lazy)], config, seed=7)
    assert archive.source_of(lazy).reads == 0  # setting up reads nothing
    for _ in range(12):
        a, b = se.sample(return_info=True), sl.sample(return_info=True)
        assert a["info"] == b["info"]
        for k in ("inputs", "targets", "mask"):
            np.testing.assert_array_equal(a[k], b[k])
    assert se.rejected == sl.rejected
    drawn = sl.count + sl.rejected
    assert 0 < archive.source_of(lazy).reads <= drawn * 13  # each draw reads at most its window's frames
    assert archive.is_lazy(lazy)


def test_a_damaged_file_is_named(frame_archive, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for f in sorted(frame_archive.glob("r0[0-1]*.nc")):
        os.symlink(f, folder / f.name)
    bad = folder / "r005.nc"
    bad.unlink()
    bad.write_bytes((frame_archive / "r005.nc").read_bytes()[:900])  # truncated
    with pytest.raises(NowcastError) as err:
        _open(folder / "*.nc", lazy=True, index_cache=False)
    assert str(err.value).startswith(f"{bad}: ") and "\n" not in str(err.value)


def test_a_file_with_another_grid_is_named(tmp_path):
    t = times(4)
    for k in range(4):
        write_nc(tmp_path / f"f{k}.nc", storm(n=1, h=20 if k != 2 else 22)[:, :, :24], time=t[k:k + 1])
    with pytest.raises(NowcastError, match=r"f2\.nc: .*different grids"):
        _open(tmp_path / "f*.nc", lazy=True, index_cache=False)


def test_unphysical_values_are_refused_when_read_naming_the_file(tmp_path):
    t = times(8)
    for k in range(8):
        write_nc(tmp_path / f"f{k}.nc", storm(n=1) * (1 if k != 6 else 40), time=t[k:k + 1])
    lazy = _open(tmp_path / "f*.nc", lazy=True, index_cache=False)  # values are checked when read
    good = _open([tmp_path / f"f{k}.nc" for k in range(5)], lazy=False)
    np.testing.assert_array_equal(lazy[:5].values, good.values)
    with pytest.raises(NowcastError, match=r"f6\.nc: values far outside any physical range"):
        lazy[4:8].values


def test_lazy_is_chosen_by_size_and_can_be_forced(frame_archive, monkeypatch, tmp_path):
    files = sorted(frame_archive.glob("r00*.nc"))
    assert not archive.is_lazy(_open(files))  # 10 small frames: read at once
    monkeypatch.setattr(radar, "LAZY_THRESHOLD_BYTES", 9 * 40 * 48 * 4)
    monkeypatch.setenv("NOWCAST_CACHE_DIR", str(tmp_path / "cache"))
    assert archive.is_lazy(_open(files))
    assert list((tmp_path / "cache" / "archive-index").glob("*.npz"))
    assert not archive.is_lazy(_open(files, lazy=False))


def test_index_cache_is_used_and_invalidated(frame_archive, tmp_path, monkeypatch):
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in sorted(frame_archive.glob("r00*.nc")):
        (folder / f.name).write_bytes(f.read_bytes())
    first = _open(folder / "*.nc", lazy=True, index_cache=tmp_path)
    scanned = []
    real = archive.read_time_values
    monkeypatch.setattr(archive, "read_time_values", lambda path, layout: scanned.append(path) or real(path, layout))
    again = _open(folder / "*.nc", lazy=True, index_cache=tmp_path)
    assert scanned == []  # times from the index
    np.testing.assert_array_equal(again["time"].values, first["time"].values)
    os.utime(folder / "r003.nc", ns=(0, 10**9))  # a changed file: the index is rebuilt
    _open(folder / "*.nc", lazy=True, index_cache=tmp_path)
    assert len(scanned) == 10


def test_lazy_sequence_pickles_and_chunks(eager, lazy):
    back = pickle.loads(pickle.dumps(lazy))  # for process pools: no lock, no cached frames travel
    np.testing.assert_array_equal(back[10:14].values, eager[10:14].values)
    pytest.importorskip("dask")
    chunked = lazy.chunk({"time": 8})
    np.testing.assert_array_equal(chunked[:, 5:9].max("time").values, eager[:, 5:9].max("time").values)


@pytest.mark.slow
def test_training_runs_on_a_lazy_archive(lazy, tmp_path):
    """The trainer samples from disk and validates on the lazy validation part (a tiny model, 2 steps)."""
    from nowcast.train import TrainConfig, Trainer

    config = TrainConfig.from_flat(
        out=tmp_path / "run", backbone="predrnn", motion=False, num_layers=1, hidden=4, kernel_size=3,
        patch_size=4, n_in=3, n_out=3, crop=16, iterations=2, batch_size=2, val_every=2, checkpoint_every=2,
        val_fraction=0.25, val_baselines=["persistence"], seed=1, device="cpu")
    trainer = Trainer(config, [("archive", lazy)])
    assert all(isinstance(s.frames, LazyFrames) for s in trainer.sampler.pools[0])
    summary = trainer.run()
    assert summary["status"] == "completed" and summary["last_validation"]["windows"] > 0
    assert archive.is_lazy(lazy) and archive.source_of(lazy).reads < 3 * N_FILES


def _spy_on_open_radar(monkeypatch) -> list:
    """Record the `lazy` argument of every open_radar call the CLI makes (and read lazily as asked)."""
    import nowcast.radar as radar

    seen, real = [], radar.open_radar

    def spy(*args, **kw):
        seen.append(kw.get("lazy"))
        return real(*args, **kw)

    monkeypatch.setattr(radar, "open_radar", spy)
    return seen


def test_cli_evaluate_lazy_and_eager_give_the_same_scores(frame_archive, tmp_path, monkeypatch, capsys):
    from nowcast.cli import main

    monkeypatch.setenv("NOWCAST_CACHE_DIR", str(tmp_path / "cache"))
    seen = _spy_on_open_radar(monkeypatch)
    scores = {}
    for flag in ("--lazy", "--eager", None):
        out = tmp_path / f"{flag}.json"
        args = ["evaluate", str(frame_archive / "*.nc"), "--baseline", "persistence", "--json", str(out)]
        assert main(args + ([flag] if flag else [])) == 0
        d = json.loads(out.read_text())
        for r in d["results"].values():
            r.pop("seconds_per_window")
        scores[flag] = d
    assert seen == [True, False, None]  # None: open_radar decides by size
    assert scores["--lazy"] == scores["--eager"] == scores[None]
    assert scores["--lazy"]["windows"] > 0


def test_cli_train_reads_lazily_when_asked(frame_archive, tmp_path, monkeypatch):
    from nowcast.cli import main

    monkeypatch.setenv("NOWCAST_CACHE_DIR", str(tmp_path / "cache"))
    seen = _spy_on_open_radar(monkeypatch)
    args = ["train", str(frame_archive / "*.nc"), "--out", str(tmp_path / "run"), "--lazy", "--iterations", "1", "--preset", "paper",
            "--layers", "2", "--hidden", "4", "--kernel", "3", "--patch", "4", "--crop", "16", "--batch-size", "2",
            "--coarsen", "1", "--time-strides", "1", "--input-frames", "3", "--lead-frames", "3",
            "--device", "cpu", "--val-every", "1", "--checkpoint-every", "1", "--baselines", "none"]
    assert main(args) == 0
    assert seen == [True]
    assert (tmp_path / "run" / "last.safetensors").exists()
