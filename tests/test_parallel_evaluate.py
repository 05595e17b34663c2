"""evaluate() split over processes (workers=N) or a dask cluster gives the one-process scores exactly."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import importlib

ev = importlib.import_module("nowcast.evaluate")  # the module: the package's attribute `evaluate` is the function
from nowcast import synthetic
from nowcast.errors import NowcastError
from nowcast.evaluate import MethodSpec, evaluate


class EdgeShifted:
    """The last frame moved one pixel right, with no forecast on the inflow column (like an advecting
    method): its coverage is below 1 and, with domain "common", the others lose those pixels too. Module level,
    so it pickles."""

    name = "shifted"

    def __call__(self, inputs, n_out):
        fc = np.roll(inputs[:, -1:], 1, axis=-1)
        fc[..., 0] = np.nan
        return np.repeat(fc, n_out, axis=1)


@functools.lru_cache(maxsize=1)
def archive():
    """Two small synthetic sequences; the second has a gap in time, so some windows are skipped.
    Made once (nothing changes them)."""
    a = synthetic.generate(n_frames=21, height=40, width=44, seed=11)
    b = synthetic.generate(n_frames=24, height=40, width=44, seed=12, motion="uniform")
    b = b.drop_isel(time=[9])  # a missing frame: the windows across it are skipped
    return [("a", a), ("b", b)]


def scores_only(result) -> str:
    """The whole result but the timings, every float to the last bit."""
    d = result.to_dict()
    for r in d["results"].values():
        r.pop("seconds_per_window")
    return json.dumps(d)


METHODS = ["persistence", EdgeShifted()]
KW = dict(thresholds=(20, 30, 45), n_in=4, n_out=5, batch_size=3)


@pytest.fixture(scope="module")
def one_process():
    return evaluate(archive(), METHODS, **KW)


def test_any_split_of_the_windows_merges_to_the_one_process_result(one_process):
    # the chunks workers get, scored here: each chunk holds whole batches, merged in chunk order
    seqs = archive()
    window_sets = ev._window_sets(seqs, KW["n_in"], KW["n_out"], 1)
    methods, names = ev._prepare_methods(METHODS, parallel=False)
    assert one_process.skipped_windows > 0
    for chunks in (2, 5, 100):
        settings = ev._TaskSettings(KW["n_in"], KW["n_out"], KW["batch_size"], (20.0, 30.0, 45.0), tuple(methods),
                                    tuple(names))
        tasks = ev._plan(window_sets, settings, chunks)
        assert len(tasks) > len(seqs)
        assert all(len(t.starts) % KW["batch_size"] == 0 for t in tasks[:-1] if t.data_name == tasks[-1].data_name)
        partials = [ev._score_task(t, methods) for t in tasks]
        accs, _ = ev._merge(list(reversed(partials)))  # even out of order: sums are exact
        merged = [a.result(n, 0.0) for a, n in zip(accs, names)]
        assert json.dumps([m.scores.to_dict() for m in merged]) == json.dumps([m.scores.to_dict()
                                                                              for m in one_process.methods])
        assert [m.coverage for m in merged] == [m.coverage for m in one_process.methods]


def test_two_worker_processes_equal_one_process_exactly(one_process):
    calls = []
    two = evaluate(archive(), METHODS, **KW, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert scores_only(two) == scores_only(one_process)
    assert calls[-1] == (one_process.windows, one_process.windows)
    assert [m.name for m in two.methods] == ["persistence", "shifted"]
    assert all(m.seconds_per_window > 0 for m in two.methods)


def dask_scores(processes: bool, progress_file: str) -> None:
    """Run in a child process: score on a 2-worker LocalCluster, through a Client and by address; print both.

    Writes "cluster up" to progress_file once the workers have joined, so that the test can tell a machine
    where dask cannot start from a scoring call that hangs."""
    import distributed

    with distributed.LocalCluster(n_workers=2, processes=processes, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        with open(progress_file, "w") as f:
            f.write("cluster up")
        on_client = evaluate(archive(), METHODS, **KW, scheduler=client)
        by_address = evaluate(archive(), METHODS, **KW, scheduler=cluster.scheduler_address)
        assert client.status == "running"  # a Client handed in is left open for its owner
    # to a file, not stdout: the child's stdout came back empty once dask had run in it (cause not found)
    Path(f"{progress_file}.json").write_text(json.dumps([scores_only(on_client), scores_only(by_address)]))


CHILD = "import sys; sys.path.insert(0, sys.argv[1]); import test_parallel_evaluate as t; " \
        "t.dask_scores(sys.argv[2] == 'processes', sys.argv[3])"


def _dask_equals_one_process(one_process, processes: bool, tmp_path, limit_s: float = 240.0):
    pytest.importorskip("distributed")
    progress = tmp_path / "progress"
    # A child process in its own session: a cluster that hangs (as dask has on some sandboxed machines) is
    # killed with all its workers instead of stalling the test run.
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(Path(__file__).parent),
                              "processes" if processes else "threads", str(progress)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        if not progress.exists():
            pytest.skip(f"a dask LocalCluster did not start within {limit_s:.0f} s on this machine")
        pytest.fail(f"scoring on a running dask LocalCluster took over {limit_s:.0f} s")
    assert child.returncode == 0, err[-3000:]
    on_client, by_address = json.loads(Path(f"{progress}.json").read_text())
    assert on_client == scores_only(one_process)
    assert by_address == scores_only(one_process)


def test_dask_local_cluster_equals_one_process_exactly(one_process, tmp_path):
    # Two workers as threads of one process (in-process transport): the scheduler, scatter, map and merge of a
    # real cluster, without the worker processes and sockets that some sandboxed machines do not allow.
    _dask_equals_one_process(one_process, False, tmp_path)


@pytest.mark.slow
def test_dask_cluster_of_worker_processes_equals_one_process_exactly(one_process, tmp_path):
    # Worker processes over TCP on loopback: the tasks and frames are pickled to other interpreters.
    _dask_equals_one_process(one_process, True, tmp_path)


def test_bad_parallel_settings_are_refused():
    seqs = archive()[:1]
    for workers in (0, -2, 1.5, True):
        with pytest.raises(NowcastError, match="workers"):
            evaluate(seqs, ["persistence"], workers=workers)
    with pytest.raises(NowcastError, match="not both"):
        evaluate(seqs, ["persistence"], workers=2, scheduler="tcp://127.0.0.1:1")

    class Local:  # defined in a function: cannot be pickled to a worker
        name = "local"

        def __call__(self, inputs, n_out):
            return inputs[:, -1:].repeat(n_out, axis=1)

    with pytest.raises(NowcastError, match="local cannot be sent.*MethodSpec"):
        evaluate(seqs, [Local()], workers=2)


def test_method_specs_build_where_they_run():
    spec = MethodSpec("persistence", name="last frame")
    method = spec.build()
    assert method.name == "last frame"
    methods, names = ev._prepare_methods(["persistence", spec], parallel=True)
    assert names == ["persistence", "last frame"]
    assert methods == [MethodSpec("persistence", name="persistence"), spec]  # named, so workers agree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def radar_file(tmp_path):
    path = tmp_path / "radar.nc"
    synthetic.write_netcdf(archive()[0][1], path)
    return path


def test_cli_refuses_bad_workers_and_scheduler(radar_file, capsys, monkeypatch):
    from nowcast.cli import main

    base = ["evaluate", str(radar_file), "--baseline", "persistence"]
    assert main(base + ["--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(base + ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "not both" in capsys.readouterr().err

    monkeypatch.setattr(ev, "SCHEDULER_TIMEOUT_S", 2.0)
    address = f"tcp://127.0.0.1:{_free_port()}"
    if _has_distributed():
        assert main(base + ["--scheduler", address]) == 2
        err = capsys.readouterr().err
        assert f"cannot reach the dask scheduler at {address}" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask.distributed were not installed
    assert main(base + ["--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert "pip install 'nowcast[cluster]'" in err and len(err.strip().splitlines()) == 1


def _has_distributed() -> bool:
    return importlib.util.find_spec("distributed") is not None


def _cli_scores(radar_file, out, workers: str, baselines=("persistence",)) -> dict:
    from nowcast.cli import main

    rc = main(["evaluate", str(radar_file), *(a for b in baselines for a in ("--baseline", b)),
               "--lead-frames", "4", "--thresholds", "20,30", "--workers", workers, "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    for r in d["results"].values():
        r.pop("seconds_per_window")
    return d


def test_cli_workers_send_method_specs_that_workers_build(radar_file, tmp_path, monkeypatch):
    sent = []

    def in_this_process(tasks, workers, progress):  # the worker entry point, without spawning
        sent.extend(tasks)
        return [ev._run_task(t) for t in tasks]

    monkeypatch.setattr(ev, "_run_pool", in_this_process)
    ev._built_method.cache_clear()
    parallel = _cli_scores(radar_file, tmp_path / "two.json", "2")
    cache = ev._built_method.cache_info()
    ev._built_method.cache_clear()  # no method of this test outlives it
    assert {m for t in sent for m in t.methods} == {MethodSpec("persistence", name="persistence")}
    # built once, reused by every later chunk
    assert len(sent) > 1 and (cache.misses, cache.hits) == (1, len(sent) - 1)
    assert parallel == _cli_scores(radar_file, tmp_path / "one.json", "1")
    assert parallel["windows"] == 21 - 5 - 4 + 1


def test_a_worker_sets_its_torch_threads_through_torch_not_the_environment(monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        ev._limit_torch_threads(None)  # no count asked for: this process's own
        assert torch.get_num_threads() == before
        ev._limit_torch_threads(before + 1)
        assert torch.get_num_threads() == before + 1
        assert "OMP_NUM_THREADS" not in os.environ
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_cli_workers_write_the_same_scores(radar_file, tmp_path):
    pytest.importorskip("pysteps")
    both = ("persistence", "extrapolation")
    assert _cli_scores(radar_file, tmp_path / "two.json", "2", both) == \
        _cli_scores(radar_file, tmp_path / "one.json", "1", both)


@pytest.mark.slow
def test_a_model_scored_by_workers_with_the_same_torch_threads_equals_one_process(tmp_path):
    """A network's sums depend on torch's thread count, so workers (1 thread each by default) agree with one
    process to rounding; given the parent's thread count they agree to the last bit."""
    import torch

    from nowcast.checkpoint import save_checkpoint
    from nowcast.nn import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=4, output_frames=5,
                      residual=True)
    model = build_model(cfg)
    with torch.no_grad():  # not the zero-initialised residual (persistence): real sums of products
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    path = save_checkpoint(tmp_path / "tiny.safetensors", model, cfg, {})
    methods = [MethodSpec("model", str(path), name="tiny")]
    one = evaluate(archive(), methods, **KW)
    same = evaluate(archive(), methods, **KW, workers=2, torch_threads=torch.get_num_threads())
    assert scores_only(same) == scores_only(one)
    default = evaluate(archive(), methods, **KW, workers=2).method("tiny").scores
    assert default.mse == pytest.approx(one.method("tiny").scores.mse, rel=1e-6)
