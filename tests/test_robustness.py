"""Interrupted work: killed writes leave no partial file, killed training always resumes."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.atomic import atomic_output
from nowcast.checkpoint import load_model
from nowcast.train import load_train_state

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "radar.nc"
ENV = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", COLUMNS="200",
           PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

TINY = ["--preset", "paper", "--layers", "1", "--no-motion", "--hidden", "8", "--kernel", "3", "--crop", "32", "--batch-size", "2",
        "--coarsen", "1", "--time-strides", "1", "--seed", "3", "--device", "cpu"]


def _train_cmd(out, iterations, *extra):
    return [sys.executable, "-m", "nowcast", "train", str(SAMPLE), "--out", str(out),
            "--iterations", str(iterations), "--checkpoint-every", "2", *TINY, *extra]


def test_killed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "big.bin"
    script = textwrap.dedent(f"""
        import time
        from nowcast.atomic import atomic_output
        with atomic_output({str(target)!r}) as tmp:
            with open(tmp, "wb") as fh:
                for _ in range(1000):
                    fh.write(b"x" * 100000); fh.flush(); time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".big.bin.") for p in tmp_path.iterdir()):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert not target.exists()  # the final name never holds half a file
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".big.bin.")]
    assert leftovers  # the dead writer's temporary...
    with atomic_output(target) as tmp:  # ...is cleaned up by the next writer of the same file
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_during_training_always_resumes(tmp_path, seed):
    out = tmp_path / "run"
    delay = 4.0 + np.random.default_rng(seed).uniform(0, 6)  # imports take ~3 s; then kill at random
    proc = subprocess.Popen(_train_cmd(out, 40), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    if (out / "train_state.pt").exists():
        state = load_train_state(out / "train_state.pt")  # never a corrupt file
        assert 0 < state["iteration"] <= 40
    res = subprocess.run(_train_cmd(out, 40, "--resume") if (out / "train_state.pt").exists()
                         else _train_cmd(out, 40, "--overwrite"),
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert load_train_state(out / "train_state.pt")["iteration"] == 40
    model, info = load_model(out / "last.safetensors")
    assert info["meta"].get("iteration", 40) == 40
    x = torch.rand(1, 5, 32, 32)
    with torch.inference_mode():
        assert torch.isfinite(model(x, 3)).all()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])  # SIGTERM: what torchrun and schedulers send
def test_signal_stops_cleanly_after_saving(tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(out, 100000), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "train_state.pt").exists():
        time.sleep(0.2)
    assert (out / "train_state.pt").exists()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "interrupted" in stdout + stderr
    saved = load_train_state(out / "train_state.pt")["iteration"]
    assert saved >= 2
    model, info = load_model(out / "last.safetensors")
    assert info["meta"].get("iteration", saved) == saved
