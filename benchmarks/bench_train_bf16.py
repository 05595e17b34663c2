"""Training steps in bf16 autocast against fp32 on the device torch picks (the CPU here).

    python benchmarks/bench_train_bf16.py [--quick] [--json results.json]

Speed: the paper's radar network (4 x 64 hidden, 5x5 kernels, batch 8, 64x64, 5 -> 10) and a small one
(3 x 32, 3x3), each a full training step of ``nowcast.train.Trainer`` (sample, forward with scheduled
sampling, L1+L2 loss, backward, Adam), fp32 and bf16 alternating step by step (medians; the first step of
each warms up). Fidelity: the small network trained for ~30 steps from the same seed in both precisions,
loss side by side (batch 2 of 32x32 crops to keep it short; bf16 should follow fp32 closely; it keeps float32 master weights).
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcast.synthetic import generate  # noqa: E402
from nowcast.train import TrainConfig, Trainer  # noqa: E402

NETWORKS = {
    "paper 4x64 5x5": dict(num_layers=4, hidden=64, kernel_size=5),
    "small 3x32 3x3": dict(num_layers=3, hidden=32, kernel_size=3),
}


def sequences(n: int = 3):
    return [(f"syn{i}", generate(n_frames=40, height=96, width=96, seed=i)) for i in range(n)]


def trainer(network: dict, precision: str, data, out: Path, seed: int = 0, batch: int = 8,
            crop: int = 64) -> Trainer:
    config = TrainConfig.from_flat(out=out / precision, device="auto", precision=precision, batch_size=batch,
                                   crop=crop, n_in=5, n_out=10, coarsen_factors=(1,), time_strides=(1,), seed=seed,
                                   iterations=1000, **network)
    t = Trainer(config, data)
    t.build()
    return t


def timed_step(t: Trainer) -> tuple[float, float]:
    start = time.perf_counter()
    loss, _, _ = t.step()
    if t.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss


def speed(network: dict, steps: int, data, out: Path) -> dict:
    runs = {p: trainer(network, p, data, out) for p in ("fp32", "bf16")}
    times = {p: [] for p in runs}
    for i in range(steps + 1):
        for p, t in runs.items():
            seconds, _ = timed_step(t)
            if i:  # the first step warms up
                times[p].append(seconds)
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    return {"fp32_s_per_step": fp32, "bf16_s_per_step": bf16, "speedup": fp32 / bf16, "steps": steps}


def loss_curves(network: dict, steps: int, data, out: Path) -> dict:
    curves = {}
    for p in ("fp32", "bf16"):
        # batch 2 of 32x32 crops: the same arithmetic, cheap enough for 30 steps on a CPU
        t = trainer(network, p, data, out, seed=1, batch=2, crop=32)
        curves[p] = [timed_step(t)[1] for _ in range(steps)]
    diffs = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(curves["fp32"], curves["bf16"])]
    return {**curves, "max_relative_difference": max(diffs), "mean_relative_difference": sum(diffs) / len(diffs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few timed steps (a smoke run)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per precision (default 10, quick 3)")
    ap.add_argument("--curve-steps", type=int, default=30, help="steps of the loss-curve comparison")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    steps = args.steps or (3 if args.quick else 10)
    data = sequences()
    result = {"device": "cuda" if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "speed": {}, "loss_curve": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, network in NETWORKS.items():
            r = speed(network, steps, data, Path(tmp))
            result["speed"][name] = r
            print(f"{name:16s} fp32 {r['fp32_s_per_step']:.3f} s/step  bf16 {r['bf16_s_per_step']:.3f} s/step  "
                  f"speed-up {r['speedup']:.2f}x  ({steps} steps, medians)", flush=True)
        curve = loss_curves(NETWORKS["small 3x32 3x3"], args.curve_steps, data, Path(tmp))
    result["loss_curve"]["small 3x32 3x3"] = curve
    print(f"loss curve, small network (batch 2, 32x32), {args.curve_steps} steps, seed 1:")
    for i in range(0, args.curve_steps, max(1, args.curve_steps // 6)):
        print(f"  step {i + 1:3d}  fp32 {curve['fp32'][i]:.4f}  bf16 {curve['bf16'][i]:.4f}")
    print(f"  largest relative difference {curve['max_relative_difference']:.2%}, "
          f"mean {curve['mean_relative_difference']:.2%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
