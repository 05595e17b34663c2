"""Test-wide settings."""

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# The tests use tiny models: one thread is faster than two fighting over small tensors,
# it keeps the suite quick on a 2-core machine that is doing other work, and the training runs
# compared bit for bit need identical kernels.
torch.set_num_threads(1)
