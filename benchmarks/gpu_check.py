"""The checks to run the day a GPU is lent (called by benchmarks/gpu_check.sh): one JSON of results.

1. the command line on the GPU: ``nowcast predict`` (fp32 and bf16, with a picture), ``nowcast evaluate``
   (default model against extrapolation) and ``nowcast visualize-trend`` on sample_data/radar.nc;
2. the network's speed: the shipped default model and the paper's radar network (4 x 64, 5x5), inference
   in fp32 and bf16 at 64x64 (batch 8) and 256x256 (batch 1), and a training step (batch 8, 64x64) in
   each precision, with peak GPU memory;
3. a few minutes of ``nowcast train`` with mixed precision, stopped by SIGTERM (the trainer saves and
   returns), its throughput and loss read from its log.

Every step is recorded with its exit status, so one failure does not hide the others. --device cpu with
--tiny makes the same script run in seconds on a CPU, to check the script itself.

    python benchmarks/gpu_check.py OUT.json [--device cuda] [--train-seconds 150] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "sample_data" / "radar.nc"
PAPER = dict(num_layers=4, hidden=64, kernel_size=5)
TINY_NET = dict(num_layers=2, hidden=8, kernel_size=3)  # --tiny: stands in for the paper's network
T_IN, T_OUT = 5, 10


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="JSON file to write")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to check the script")
    ap.add_argument("--train-seconds", type=float, default=150.0, help="length of the training run")
    ap.add_argument("--train-precision", default="auto", help="bf16, fp16 or auto (bf16 where the GPU has it)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes and repeats: seconds, for a CPU dry run")
    return ap.parse_args(argv)


# ------------------------------------------------------------------------------------ command line


def _cli(args: list[str], timeout: float, env=None) -> dict:
    """Run ``nowcast ARGS`` (this interpreter), timed; exit status and the end of its output."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "nowcast", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=str(ROOT), env=env)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        rc, tail = 124, f"timed out after {timeout:.0f} s"
    return {"command": "nowcast " + " ".join(args), "rc": rc, "seconds": time.perf_counter() - t0,
            "output_tail": tail}


def commands(device: str, tmp: Path) -> dict:
    sample = str(SAMPLE)
    return {
        "predict_fp32": _cli(["predict", sample, "-o", str(tmp / "fc.nc"), "--plot", str(tmp / "fc.png"),
                              "--device", device], 180),
        "predict_bf16": _cli(["predict", sample, "-o", str(tmp / "fc16.nc"), "--device", device,
                              "--precision", "bf16"], 180),
        "evaluate": _cli(["evaluate", sample, "--model", "default", "--baseline", "extrapolation", "--stride", "4",
                          "--json", str(tmp / "scores.json"), "--device", device], 240),
        "visualize_trend": _cli(["visualize-trend", sample, "-o", str(tmp / "trend.png"), "--device", device], 180),
    }


# ------------------------------------------------------------------------------------ network speed


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, device, repeats: int) -> float:
    for _ in range(min(repeats, 2)):  # warm-up: kernels chosen, memory pooled
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _measure(fn, device, repeats: int) -> dict:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        seconds = _median_seconds(fn, device, repeats)
    except Exception as exc:  # one failing case (say bf16 on an old GPU) must not hide the others
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    out = {"seconds": seconds}
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _inference(model, precision, device, batch, size):
    import torch

    from nowcast.runtime import autocast

    x = torch.rand(batch, T_IN, size, size, device=device)

    def run():
        with torch.inference_mode(), autocast(precision, device):
            model(x, T_OUT)
    return run


def _train_step(model, precision, device, batch, size):
    import torch
    import torch.nn.functional as F

    from nowcast.runtime import autocast

    x = torch.rand(batch, T_IN, size, size, device=device)
    y = torch.rand(batch, T_OUT, size, size, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def run():
        opt.zero_grad(set_to_none=True)
        with autocast(precision, device):
            out = model(x, T_OUT)
            loss = F.l1_loss(out.float(), y) + F.mse_loss(out.float(), y)
        loss.backward()
        opt.step()
    return run


def network_speed(device_name: str, tiny: bool) -> dict:
    import torch

    from nowcast.checkpoint import DEFAULT_MODEL_NAME, load_model
    from nowcast.nn import ModelConfig, build_model, count_parameters

    device = torch.device(device_name)
    sizes = [(8, 32), (1, 64)] if tiny else [(8, 64), (1, 256)]
    repeats = 1 if tiny else 10
    shipped, _ = load_model(DEFAULT_MODEL_NAME, device=device)
    torch.manual_seed(0)
    other = ("tiny_2x8", TINY_NET) if tiny else ("paper_4x64", PAPER)
    nets = {"shipped": shipped, other[0]: build_model(ModelConfig(**other[1])).to(device)}
    results = {}
    for name, model in nets.items():
        row = {"parameters": count_parameters(model)}
        for precision in ("fp32", "bf16"):
            model.eval()
            for batch, size in sizes:
                row[f"infer_{precision}_b{batch}_{size}"] = _measure(_inference(model, precision, device, batch,
                                                                                size), device, repeats)
            model.train()
            b, s = sizes[0]
            row[f"train_step_{precision}_b{b}_{s}"] = _measure(_train_step(model, precision, device, b, s),
                                                               device, repeats)
            model.eval()
        results[name] = row
    return results


# ------------------------------------------------------------------------------------ training run


def training_run(device: str, precision: str, seconds: float, tmp: Path, tiny: bool) -> dict:
    """``nowcast train`` on the sample, stopped with SIGTERM after ``seconds``; throughput from its log."""
    out = tmp / "train"
    args = ["train", str(SAMPLE), "--out", str(out), "--device", device, "--precision", precision,
            "--iterations", "1000000", "--log-every", "2" if tiny else "10", "--val-every", "1000000",
            "--checkpoint-every", "1000000", "--seed", "0"]
    if tiny:  # the paper's network (the default) on the GPU; a toy one for a CPU dry run
        args += ["--layers", "2", "--hidden", "8", "--kernel", "3", "--crop", "32", "--batch-size", "2"]
    cmd = [sys.executable, "-m", "nowcast", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT))
    try:
        text, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the trainer stops after the current iteration and saves
        try:
            text, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
    rows = []
    log = out / "log.jsonl"
    if log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if r.get("it_per_s") is not None]
    return {
        "command": "nowcast " + " ".join(args), "precision": precision, "rc": proc.returncode,
        "stopped_by_sigterm": proc.returncode == 130,  # the trainer's exit status after saving on a signal
        "wall_seconds": time.perf_counter() - t0, "iterations": steps[-1]["iteration"] if steps else 0,
        "train_seconds": steps[-1].get("elapsed_s") if steps else None,
        "it_per_s_last": steps[-1]["it_per_s"] if steps else None,
        "loss_first": steps[0]["loss"] if steps else None, "loss_last": steps[-1]["loss"] if steps else None,
        "saved_state": any(out.glob("*.safetensors")) or any(out.glob("state*")),
        "output_tail": (text or "")[-1500:],
    }


# ------------------------------------------------------------------------------------ main


def machine(device_name: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
            "cpus": os.cpu_count(), "device": device_name}
    if device_name.startswith("cuda"):
        dev = torch.device(device_name)
        props = torch.cuda.get_device_properties(dev)
        info.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30,
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    result = {"benchmark": "gpu_check", "date": time.strftime("%Y-%m-%d %H:%M"), "tiny": args.tiny,
              "machine": machine(args.device)}

    def save():
        result["total_seconds"] = time.perf_counter() - t_start
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")

    with tempfile.TemporaryDirectory(prefix="nowcast-gpu-check-") as tmp:
        steps = (("network", lambda: network_speed(args.device, args.tiny)),
                 ("commands", lambda: commands(args.device, Path(tmp))),
                 ("training", lambda: training_run(args.device, args.train_precision, args.train_seconds,
                                                   Path(tmp), args.tiny)))
        for name, step in steps:
            print(f"gpu_check: {name} ...", flush=True)
            try:
                result[name] = step()
            except Exception as exc:  # recorded; the remaining steps still run
                result[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
            save()  # what is done so far survives a kill
    failed = [k for k, v in result.get("commands", {}).items() if v.get("rc") != 0]
    failed += [k for k in ("network", "training") if "error" in result.get(k, {})]
    result["failed"] = failed
    save()
    print(f"gpu_check: wrote {args.out} in {result['total_seconds']:.0f} s; "
          + (f"failed: {', '.join(failed)}" if failed else "every step ran"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
