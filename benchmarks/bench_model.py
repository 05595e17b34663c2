"""Model speed benchmark (issue 3): MotionRNN-PredRNN vs plain PredRNN in the paper's radar setting.

64x64 frames, 4x4 patches, 4 layers x 64 channels, 5x5 kernels, 5 -> 10 frames. Measures parameters,
multiply-accumulates (torch.utils.flop_counter), inference time (batch 1 and 8, 64x64; batch 1 at
128x128 and 256x256), training-step time (batch 8), peak memory (the process's peak resident set during the calls,
via /proc/self/clear_refs + VmHWM on Linux),
and achieved GFLOP/s beside the GFLOP/s of one large 5x5 convolution measured in the same run.

    python benchmarks/bench_model.py [--quick] [--json FILE] [--threads N]

Backbone table (issue 13): ``--backbones all`` (or ``--backbones mim,e3d,...``) measures instead, side by side in
one run, every backbone of ``nowcast.nn.backbones`` in the same setting, plain and (recurrent blocks only) inside
MotionRNN: parameters, MACs, inference time at 64x64 and 256x256 (batch 1) and a training step (batch 8, 64x64).
``--tiny`` runs the table on a toy setting, only to check that it works (its numbers mean nothing).

    python benchmarks/bench_model.py --backbones all [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from nowcast.nn import ModelConfig, backbones, build_model, count_parameters  # noqa: E402

MODELS = {
    "motionrnn": dict(),  # defaults = the paper's radar setting
    "predrnn": dict(motion=False, highway=False),
}
T_IN, T_OUT = 5, 10


def make(name: str):
    torch.manual_seed(0)
    return build_model(ModelConfig(**MODELS[name]))


def macs(model, batch: int, size: int) -> int:
    x = torch.rand(batch, T_IN, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x, T_OUT)
    return fc.get_total_flops() // 2


def _proc_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux); False where that is not possible.

    Freed heap is handed back first (glibc malloc_trim) so that one model's leftovers do not count
    for the next."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def time_interleaved(fns: dict, repeats: int, memory: bool = False):
    """Median seconds per call; the candidates alternate so that machine-load drift hits both alike.

    With memory=True also returns the process's peak resident set during the timed calls (MiB): the
    kernel's high-water mark is reset before each call (after trimming the heap); compare with
    rss_baseline_mb, the resident set of the interpreter, torch and the models before any call.
    """
    for fn in fns.values():
        fn()  # warm-up (oneDNN primitive creation)
    times = {k: [] for k in fns}
    peaks = {k: None for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            track = memory and _reset_peak_rss()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
            hwm = _proc_kib("VmHWM") if track else None
            if hwm is not None:
                peaks[k] = max(hwm / 1024.0, peaks[k] or 0.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return (med, peaks) if memory else med


def infer_fn(model, batch, size):
    x = torch.rand(batch, T_IN, size, size)

    def run():
        with torch.inference_mode():
            model(x, T_OUT)

    return run


def train_fn(model, batch=8, size=64):
    x = torch.rand(batch, T_IN, size, size)
    y = torch.rand(batch, T_OUT, size, size)
    mask = (torch.rand(batch, T_OUT - 1) < 0.5).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)

    def run():
        opt.zero_grad(set_to_none=True)
        out = model(x, T_OUT, truth=y, sampling_mask=mask)
        loss = F.mse_loss(out, y) + F.l1_loss(out, y)
        loss.backward()
        opt.step()

    return run


def conv_ceiling(repeats: int) -> float:
    """GFLOP/s of one large 5x5 convolution (the shape class of the model's big gate convolutions)."""
    conv = torch.nn.Conv2d(128, 256, 5, padding=2, bias=False)
    x = torch.rand(8, 128, 64, 64)
    flops = 2 * 128 * 256 * 25 * 8 * 64 * 64
    with torch.inference_mode():
        t = time_interleaved({"c": lambda: conv(x)}, repeats)["c"]
    return flops / t / 1e9

# -- backbone table (issue 13) ----------------------------------------------------------------------------------

FORMS = {"plain": dict(motion=False, highway=False), "motionrnn": dict(motion=True, highway=True)}
# toy setting for --tiny: sizes for (small inference, large inference, training), batch of the training step
TINY = dict(model=dict(num_layers=2, hidden=8, kernel_size=3, patch_size=4), sizes=(16, 32, 16), train_batch=2)
FULL = dict(model=dict(), sizes=(64, 256, 64), train_batch=8)


def parse_backbones(text: str) -> list[str]:
    known = backbones.names()
    names = known if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown backbone(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(known)} or 'all'")
    return names


def table_variants(names: list[str], setting: dict) -> dict[str, dict]:
    """'<backbone>/<form>' -> ModelConfig keywords; stand-alone networks only in their plain form."""
    out = {}
    for name in names:
        for form, switches in FORMS.items():
            if form == "motionrnn" and backbones.is_standalone(name):
                continue
            out[f"{name}/{form}"] = dict(backbone=name, **setting["model"], **switches)
    return out


def backbone_table(names: list[str], tiny: bool, quick: bool) -> dict[str, dict]:
    """Every variant measured side by side (the timing loops alternate between them)."""
    setting = TINY if tiny else FULL
    small, large, train_size = setting["sizes"]
    r_small, r_large, r_train = (1, 1, 1) if tiny else ((5, 1, 1) if quick else (9, 3, 3))
    variants = table_variants(names, setting)

    def build(kw):
        torch.manual_seed(0)
        return build_model(ModelConfig(**kw))

    models = {k: build(kw).eval() for k, kw in variants.items()}
    rows = {k: {"params": count_parameters(m), f"macs_{small}_b1": macs(m, 1, small)} for k, m in models.items()}
    for key, size, rep in ((f"infer_{small}_b1_s", small, r_small), (f"infer_{large}_b1_s", large, r_large)):
        for k, v in time_interleaved({k: infer_fn(m, 1, size) for k, m in models.items()}, rep).items():
            rows[k][key] = round(v, 4)
        print(f"{key}: " + ", ".join(f"{k} {rows[k][key]:.3f}" for k in rows), flush=True)
    del models
    b = setting["train_batch"]
    fns = {k: train_fn(build(kw).train(), batch=b, size=train_size) for k, kw in variants.items()}
    for k, v in time_interleaved(fns, r_train).items():
        rows[k][f"train_{train_size}_b{b}_s"] = round(v, 4)
    return rows


def format_table(rows: dict[str, dict]) -> str:
    """A markdown table, one line per variant, MotionRNN's ratio to the plain backbone beside its times."""
    keys = list(next(iter(rows.values())))
    lines = ["| backbone | form | " + " | ".join(keys) + " |", "|---|---|" + "---:|" * len(keys)]
    for name, row in rows.items():
        backbone, form = name.split("/")
        plain = rows.get(f"{backbone}/plain")
        cells = []
        for k in keys:
            v = row[k]
            cell = f"{v:,}" if isinstance(v, int) else f"{v:.3f}"
            if form != "plain" and plain and plain[k]:
                cell += f" ({v / plain[k]:.2f}x)"
            cells.append(cell)
        lines.append(f"| {backbone} | {form} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, under two minutes")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--backbones", type=parse_backbones, metavar="all|A,B,...",
                    help="measure the backbone table instead: these backbones ('all': every registered one)")
    ap.add_argument("--tiny", action="store_true", help="with --backbones: a toy setting, to check the script")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r1, r8, rbig, rtrain = (7, 2, 2, 1) if args.quick else (11, 5, 3, 3)

    res = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()} {platform.release()}".strip(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "command": " ".join(["python", "benchmarks/bench_model.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    if args.backbones:
        return _table_main(args, res)
    models = {k: make(k).eval() for k in MODELS}
    rss = _proc_kib("VmRSS")
    res["rss_baseline_mb"] = None if rss is None else round(rss / 1024.0, 1)  # interpreter + torch + models
    for k, m in models.items():
        res[f"params_{k}"] = count_parameters(m)
        res[f"macs_64_b1_{k}"] = macs(m, 1, 64)
        res[f"macs_256_b1_{k}"] = res[f"macs_64_b1_{k}"] * 16  # MACs scale with the area exactly
    res["conv_ceiling_gflops"] = round(conv_ceiling(r8), 1)

    cases = [("infer_b1_s", 1, 64, r1), ("infer_b8_s", 8, 64, r8), ("infer_128_b1_s", 1, 128, rbig),
             ("infer_256_b1_s", 1, 256, rbig)]
    for key, b, s, rep in cases:
        t, mem = time_interleaved({k: infer_fn(m, b, s) for k, m in models.items()}, rep, memory=True)
        for k, v in t.items():
            res[f"{key}_{k}"] = round(v, 4)
            if b == 8 and mem[k] is not None:
                res[f"peak_rss_infer_b8_mb_{k}"] = round(mem[k], 1)
        print(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
    del models
    t, mem = time_interleaved({k: train_fn(make(k).train()) for k in MODELS}, rtrain, memory=True)
    for k, v in t.items():
        res[f"train_b8_s_{k}"] = round(v, 4)
        if mem[k] is not None:
            res[f"peak_rss_train_b8_mb_{k}"] = round(mem[k], 1)
    print("train_b8_s: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
    res["load_average_end"] = [round(v, 2) for v in os.getloadavg()]

    for k in MODELS:
        for s, tkey in ((64, "infer_b1_s"), (256, "infer_256_b1_s")):
            g = 2 * res[f"macs_{s}_b1_{k}"] / res[f"{tkey}_{k}"] / 1e9
            res[f"gflops_{s}_b1_{k}"] = round(g, 1)
            res[f"frac_ceiling_{s}_b1_{k}"] = round(g / res["conv_ceiling_gflops"], 3)
    for key in ("params", "macs_64_b1", "infer_b1_s", "infer_b8_s", "infer_128_b1_s", "infer_256_b1_s", "train_b8_s"):
        res[f"ratio_{key}"] = round(res[f"{key}_motionrnn"] / res[f"{key}_predrnn"], 3)

    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return res


def _table_main(args, res):
    res["setting"] = "tiny (a check only)" if args.tiny else "paper radar setting"
    res["backbones"] = backbone_table(args.backbones, args.tiny, args.quick)
    res["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(format_table(res["backbones"]))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
