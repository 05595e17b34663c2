"""Model speed benchmark (issue 3): MotionRNN-PredRNN vs plain PredRNN in the paper's radar setting.

64x64 frames, 4x4 patches, 4 layers x 64 channels, 5x5 kernels, 5 -> 10 frames. Measures parameters,
multiply-accumulates (torch.utils.flop_counter), inference time (batch 1 and 8, 64x64; batch 1 at
128x128 and 256x256), training-step time (batch 8), peak memory (the process's peak resident set during the calls,
via /proc/self/clear_refs + VmHWM on Linux),
and achieved GFLOP/s beside the GFLOP/s of one large 5x5 convolution measured in the same run.

    python benchmarks/bench_model.py [--quick] [--json FILE] [--threads N] [--paper-code DIR] [--compile [fp32,bf16]]

Precision and the paper's own code (issue "Speed and scale"): the default report also times our MotionRNN in fp32,
under bf16 autocast, and under bf16 with channels-last weights (``use_channels_last()``) at 64x64 and 256x256
(batch 1; plain PredRNN too at 64x64), and, with ``--paper-code DIR`` (a checkout of
github.com/thuml/MotionRNN, never vendored here), the paper's MotionRNN-PredRNN built in the same setting, side by
side with ours on the same inputs (its parameter count is checked against ours). ``--compile`` adds our models
after ``compile_for_inference()`` (torch.compile; in fp32 and bf16, or the precisions named; the first call's
time, compiling included, is reported; Inductor's on-disk cache of earlier runs shortens it). ``--clock cpu``
times with the process's CPU time instead of the wall clock (robust on a loaded machine with ``--threads 1``;
with more threads it counts OpenMP's spin-waiting too). ``--skip b8,128,train`` leaves those cases out.

    python benchmarks/bench_model.py --quick --paper-code ../MotionRNN --compile --json model_speed.json

Backbone table (issue 13): ``--backbones all`` (or ``--backbones mim,e3d,...``) measures instead, side by side in
one run, every backbone of ``nowcast.nn.backbones`` in the same setting, plain and (recurrent blocks only) inside
MotionRNN: parameters, MACs, inference time at 64x64 and 256x256 (batch 1) and a training step (batch 8, 64x64).
``--tiny`` runs the table on a toy setting, only to check that it works (its numbers mean nothing).

    python benchmarks/bench_model.py --backbones all [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from nowcast.nn import ModelConfig, backbones, build_model, count_parameters  # noqa: E402
from nowcast.runtime import autocast  # noqa: E402

MODELS = {
    "motionrnn": dict(),  # defaults = the paper's radar setting
    "predrnn": dict(motion=False, highway=False),
}
T_IN, T_OUT = 5, 10
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter  # set from --clock


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
            t0 = _clock()
            fn()
            times[k].append(_clock() - t0)
            hwm = _proc_kib("VmHWM") if track else None
            if hwm is not None:
                peaks[k] = max(hwm / 1024.0, peaks[k] or 0.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return (med, peaks) if memory else med


def infer_fn(model, batch, size, precision="fp32", x=None):
    x = torch.rand(batch, T_IN, size, size) if x is None else x

    def run():
        with torch.inference_mode(), autocast(precision, "cpu"):
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

# -- precision, torch.compile and the paper's own code ------------------------------------------------------------

PAPER_MODULE = "core.models.MotionRNN_PredRNN"


def load_paper_module(directory: Path):
    """The paper's MotionRNN-PredRNN module, imported from a checkout of github.com/thuml/MotionRNN."""
    root = Path(directory).expanduser().resolve()
    if not (root / "core" / "models" / "MotionRNN_PredRNN.py").is_file():
        raise SystemExit(f"--paper-code {directory}: no core/models/MotionRNN_PredRNN.py there; "
                         "give a checkout of https://github.com/thuml/MotionRNN")
    sys.path.insert(0, str(root))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(PAPER_MODULE)
    finally:
        sys.path.remove(str(root))


class PaperModel:
    """The paper's network in our setting, called like ours: (B, T_IN, H, W) frames in, T_OUT frames predicted.

    Its own entry point takes the whole sequence as patches, (B, T_IN + T_OUT, H/p, W/p, p*p) with the future
    frames zero, and a scheduled-sampling mask that is all zeros at test time (core/trainer.py), so every step
    after the inputs reads the model's own prediction: the same 14 recurrent steps as ours."""

    def __init__(self, module, size: int, batch: int = 1):
        cfg = ModelConfig()
        self.patch = cfg.patch_size
        configs = types.SimpleNamespace(
            img_height=size, img_width=size, img_channel=1, patch_size=cfg.patch_size, filter_size=cfg.kernel_size,
            stride=1, layer_norm=0, device="cpu", batch_size=batch, input_length=T_IN, total_length=T_IN + T_OUT)
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # register_backward_hook is deprecated
            self.net = module.RNN(cfg.num_layers, cfg.hidden_list, configs).eval()
        hp = size // cfg.patch_size
        self.mask = torch.zeros(batch, T_OUT - 1, hp, hp, cfg.patch_size ** 2)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Our (B, T_IN, H, W) frames as the paper's input: reshape_patch layout, zero future frames."""
        B, T, H, W = x.shape
        p = self.patch
        seq = torch.zeros(B, T_IN + T_OUT, H // p, W // p, p * p)
        seq[:, :T] = x.reshape(B, T, H // p, p, W // p, p).permute(0, 1, 2, 4, 3, 5).reshape(B, T, H // p, W // p, -1)
        return seq

    def params(self) -> int:
        return count_parameters(self.net)

    def fn(self, x: torch.Tensor, precision: str = "fp32"):
        seq = self.patches(x)

        def run():
            with torch.inference_mode(), autocast(precision, "cpu"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.meshgrid without indexing=
                self.net(seq, self.mask)

        return run


def compiled_copy(name: str, x: torch.Tensor, precision: str):
    """A model after compile_for_inference(), and the seconds its first call (compiling) took."""
    model = make(name).eval()
    compile_fn = getattr(model, "compile_for_inference", None)
    if compile_fn is None:
        return None, None
    compile_fn()
    t0 = time.perf_counter()
    infer_fn(model, 1, 0, precision, x)()
    return model, time.perf_counter() - t0


def speed_variants(size: int, x: torch.Tensor, paper, compile_too: tuple, res: dict) -> dict:
    """name -> timed call, all on the same input x: ours in fp32 and bf16 (and compiled), the paper's code;
    at 64x64 plain PredRNN too, for MotionRNN's cost in each precision."""
    names = ("motionrnn", "predrnn") if size == 64 else ("motionrnn",)
    fns = {}
    for name in names:
        tag = "ours" if name == "motionrnn" else name
        model = make(name).eval()
        for prec in ("fp32", "bf16"):
            fns[f"{tag}_{prec}"] = infer_fn(model, 1, size, prec, x)
        nhwc = make(name).eval().use_channels_last()
        fns[f"{tag}_bf16_channels_last"] = infer_fn(nhwc, 1, size, "bf16", x)
        for prec in compile_too:
            compiled, seconds = compiled_copy(name, x, prec)
            if compiled is not None:
                fns[f"{tag}_{prec}_compiled"] = infer_fn(compiled, 1, size, prec, x)
                res[f"compile_s_{size}_{prec}_{name}"] = round(seconds, 1)
    if paper is not None:
        net = PaperModel(paper, size)
        res["params_paper"] = net.params()
        fns["paper_fp32"] = net.fn(x, "fp32")
        fns["paper_bf16"] = net.fn(x, "bf16")  # a reference only: the paper's code as published runs in fp32
    return fns


def paper_section(args, res: dict, repeats: dict) -> None:
    """Ours (fp32, bf16, compiled) beside the paper's code at 64x64 and 256x256, batch 1; fills res."""
    paper = load_paper_module(args.paper_code) if args.paper_code else None
    if paper is None:
        print("paper's code: skipped (give --paper-code DIR, a checkout of github.com/thuml/MotionRNN)")
        res["paper_code"] = None
    else:
        res["paper_code"] = str(Path(args.paper_code).resolve())
    for size in (64, 256):
        torch.manual_seed(1)
        x = torch.rand(1, T_IN, size, size)
        compile_too = tuple(p for p in args.compile.split(",") if p in ("fp32", "bf16"))
        t = time_interleaved(speed_variants(size, x, paper, compile_too, res), repeats[size])
        res[f"speed_{size}_b1_s"] = {k: round(v, 4) for k, v in t.items()}
        res[f"bf16_speedup_{size}"] = {k[5:]: round(t["ours_fp32"] / v, 3) for k, v in t.items()
                                       if k.startswith("ours_bf16")}
        if paper is not None:
            res[f"speedup_vs_paper_{size}"] = {k: round(t["paper_fp32"] / v, 3) for k, v in t.items()
                                               if k.startswith("ours")}
        if size == 64:  # MotionRNN's cost over plain PredRNN per precision, in the same loop
            res["motionrnn_over_predrnn_64_b1"] = {k[5:]: round(v / t["predrnn_" + k[5:]], 3)
                                                   for k, v in t.items() if k.startswith("ours_")}
        print(f"speed {size}x{size} b1: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
    if paper is not None:
        same = res["params_paper"] == res["params_motionrnn"]
        print(f"parameters: ours {res['params_motionrnn']:,}, paper's code {res['params_paper']:,}"
              + ("" if same else "  (NOT the same: the comparison is off)"))


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
    ap.add_argument("--paper-code", type=Path, metavar="DIR",
                    help="a checkout of github.com/thuml/MotionRNN: time the paper's own model beside ours")
    ap.add_argument("--compile", nargs="?", const="fp32,bf16", default="", metavar="fp32,bf16",
                    help="also time our models after compile_for_inference(), in these precisions (default both)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall clock (default) or the process's CPU time (for a loaded machine, with --threads 1)")
    ap.add_argument("--skip", type=parse_skip, default=(), metavar="b8,128,train",
                    help="leave these cases of the default report out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    global _clock
    _clock = CLOCKS[args.clock]
    r1, r8, rbig, rtrain = (7, 2, 2, 1) if args.quick else (11, 5, 3, 3)

    res = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()} {platform.release()}".strip(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "clock": args.clock,
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
    cases = [c for c in cases if not ({"infer_b8_s": "b8", "infer_128_b1_s": "128"}.get(c[0]) in args.skip)]
    for key, b, s, rep in cases:
        t, mem = time_interleaved({k: infer_fn(m, b, s) for k, m in models.items()}, rep, memory=True)
        for k, v in t.items():
            res[f"{key}_{k}"] = round(v, 4)
            if b == 8 and mem[k] is not None:
                res[f"peak_rss_infer_b8_mb_{k}"] = round(mem[k], 1)
        print(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
    del models
    if "train" not in args.skip:
        t, mem = time_interleaved({k: train_fn(make(k).train()) for k in MODELS}, rtrain, memory=True)
        for k, v in t.items():
            res[f"train_b8_s_{k}"] = round(v, 4)
            if mem[k] is not None:
                res[f"peak_rss_train_b8_mb_{k}"] = round(mem[k], 1)
        print("train_b8_s: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
    paper_section(args, res, {64: r1, 256: rbig})
    res["load_average_end"] = [round(v, 2) for v in os.getloadavg()]

    for k in MODELS:
        for s, tkey in ((64, "infer_b1_s"), (256, "infer_256_b1_s")):
            g = 2 * res[f"macs_{s}_b1_{k}"] / res[f"{tkey}_{k}"] / 1e9
            res[f"gflops_{s}_b1_{k}"] = round(g, 1)
            res[f"frac_ceiling_{s}_b1_{k}"] = round(g / res["conv_ceiling_gflops"], 3)
    for key in ("params", "macs_64_b1", "infer_b1_s", "infer_b8_s", "infer_128_b1_s", "infer_256_b1_s", "train_b8_s"):
        if f"{key}_motionrnn" in res:
            res[f"ratio_{key}"] = round(res[f"{key}_motionrnn"] / res[f"{key}_predrnn"], 3)
    res["goals"] = goals(res)

    text = json.dumps(res, indent=2)
    print(text)
    for line in res["goals"]["lines"]:
        print(line)
    if args.json:
        args.json.write_text(text + "\n")
    return res


def parse_skip(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in ("b8", "128", "train")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown case(s) {', '.join(bad)}; choose from b8, 128, train")
    return names


def goals(res: dict) -> dict:
    """The issue's goals against this run: >= 1.4x the paper's code at 64x64, >= 2x at 256x256 (batch 1),
    MotionRNN <= 1.15x PredRNN (batch 1, 64x64); each ratio of ours per variant (fp32, bf16, compiled)."""
    out = {"ratio_motionrnn_over_predrnn_64_b1": res.get("ratio_infer_b1_s"), "lines": []}
    ratios = dict(res.get("motionrnn_over_predrnn_64_b1") or {})
    if out["ratio_motionrnn_over_predrnn_64_b1"] is not None:
        ratios = {"fp32 (main table)": out["ratio_motionrnn_over_predrnn_64_b1"], **ratios}
    for variant, r in ratios.items():
        verdict = "met" if r <= 1.15 else "NOT met"
        out["lines"].append(f"MotionRNN / PredRNN, 64x64 b1, {variant}: {r:.3f} (goal <= 1.15: {verdict})")
    for size, goal in ((64, 1.4), (256, 2.0)):
        for variant, v in (res.get(f"speedup_vs_paper_{size}") or {}).items():
            out[f"speedup_vs_paper_{size}_{variant}"] = v
            out["lines"].append(f"ours, {variant[5:]}, vs the paper's code (fp32), {size}x{size} b1: {v:.2f}x "
                                f"(goal >= {goal}: {'met' if v >= goal else 'NOT met'})")
    for size in (64, 256):
        for variant, v in (res.get(f"bf16_speedup_{size}") or {}).items():
            out["lines"].append(f"speed-up of ours, {variant} over fp32, {size}x{size} b1: {v:.2f}x")
    return out


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
