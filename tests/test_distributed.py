"""Training in a team of processes (torchrun, gloo on CPU): the same result as one process on the whole batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nowcast.distributed import Team, team_from_environment
from nowcast.errors import NowcastError
from nowcast.train import TrainConfig, load_train_state, train

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "radar.nc"
ENV = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", COLUMNS="200",
           PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(name, None)

TINY = ["--preset", "paper", "--layers", "2", "--hidden", "8", "--kernel", "3", "--patch", "4", "--crop", "32", "--batch-size", "4",
        "--coarsen", "1", "--time-strides", "1", "--seed", "3", "--device", "cpu", "--checkpoint-every", "1",
        "--sampling-iterations", "2", "--val", str(SAMPLE), "--val-every", "2", "--val-stride", "8",
        # the default recipe's loss terms that pool counts over the batch: summed over the team as well
        "--balanced-loss", "--balance-on", "both", "--soft-csi", "0.5", "--gdl", "0.3"]


def _train(out, iterations, processes, *extra):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                 str(processes)] if processes > 1 else [sys.executable])
    cmd = launcher + ["-m", "nowcast", "train", str(SAMPLE), "--out", str(out),
                      "--iterations", str(iterations), *TINY, *extra]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


def _max_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def test_team_from_environment(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert team_from_environment() == Team(0, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    team = team_from_environment()
    assert (team.rank, team.local_rank, team.world, team.enabled, team.is_main) == (3, 1, 4, True, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(NowcastError, match="does not fit"):
        team_from_environment()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(NowcastError, match="RANK"):
        team_from_environment()


def test_each_process_takes_an_equal_share_of_the_global_batch():
    batch = list(range(8))
    parts = [batch[Team(r, r, 4).share(8)] for r in range(4)]
    assert parts == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert batch[Team().share(8)] == batch


def test_a_batch_that_does_not_split_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(NowcastError, match="does not split evenly over 3"):
        train(TrainConfig.from_flat(out=tmp_path / "run", batch_size=8, iterations=1))
    assert not (tmp_path / "run" / "train_state.pt").exists()


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_two_processes_equal_one_process_on_the_whole_batch_and_resume(tmp_path):
    solo, team, resumed = tmp_path / "solo", tmp_path / "team", tmp_path / "resumed"
    _train(solo, 4, 1)
    # each process draws only its share, in a loader worker; the loss divides by the team's valid pixels
    res = _train(team, 4, 2, "--loader-workers", "1")
    # process 0 alone reports, logs and writes the files
    assert res.stdout.count("completed: 4 iterations") == 1
    assert sorted(p.name for p in team.iterdir()) == sorted(p.name for p in solo.iterdir())
    # gradients averaged over two halves of a batch of 4 = the gradient of the batch: equal up to rounding
    assert _max_difference(team / "last.safetensors", solo / "last.safetensors") < 1e-6
    assert _max_difference(team / "best.safetensors", solo / "best.safetensors") < 1e-6
    assert load_train_state(team / "train_state.pt")["best"]["iteration"] == \
        load_train_state(solo / "train_state.pt")["best"]["iteration"]

    # a team run stopped at iteration 2 and resumed by a team reaches the same weights
    _train(resumed, 2, 2)
    _train(resumed, 4, 2, "--resume")
    assert load_train_state(resumed / "train_state.pt")["iteration"] == 4
    assert _max_difference(resumed / "last.safetensors", team / "last.safetensors") < 1e-6
    lines = (resumed / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["2", "4"]  # validation rows, one each, no repeats

    # a run started by one process can be resumed by a team (and the other way round)
    mixed = tmp_path / "mixed"
    _train(mixed, 2, 1)
    _train(mixed, 4, 2, "--resume")
    assert _max_difference(mixed / "last.safetensors", solo / "last.safetensors") < 1e-6


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_two_nodes_equal_one_process(tmp_path):
    """The two-node launch of the README, both 'nodes' on this machine: node 0 hosts the rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    solo, nodes = tmp_path / "solo", tmp_path / "nodes"
    _train(solo, 4, 1)
    cmd = lambda rank: [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),  # noqa: E731
                        "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                        "-m", "nowcast", "train", str(SAMPLE), "--out", str(nodes), "--iterations", "4", *TINY]
    procs = [subprocess.Popen(cmd(rank), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    assert sum(out.count("completed: 4 iterations") for out, _ in outputs) == 1  # the main process reports
    assert _max_difference(nodes / "last.safetensors", solo / "last.safetensors") < 1e-6
