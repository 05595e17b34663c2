"""bf16 autocast against fp32: speed, and what it does to a forecast.

    python benchmarks/bench_bf16.py --model motionrnn-predrnn-radar --json bf16.json

Speed: the paper's radar setting (64x64, 4 x 64 hidden, 5x5 kernels, 5 -> 10), batch 1 and 8, fp32 and
bf16 alternating within one loop (medians), on the CPU or GPU that torch picks. Effect: the given model on
real radar windows (mch_rainrate_2.nc), largest |dBZ difference| and CSI at 30/40 dBZ for both precisions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcast import verify  # noqa: E402
from nowcast.errors import NowcastWarning  # noqa: E402
from nowcast.forecast import ModelForecaster  # noqa: E402
from nowcast.nn import ModelConfig, build_model  # noqa: E402
from nowcast.radar import open_radar  # noqa: E402
from nowcast.windows import iter_windows  # noqa: E402


def speed(device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig()).to(device).eval()
    out = {}
    for batch in (1, 8):
        x = torch.rand(batch, 5, 64, 64, device=device)
        times = {"fp32": [], "bf16": []}
        with torch.inference_mode():
            for i in range(repeats + 1):
                for prec in ("fp32", "bf16"):
                    t = time.perf_counter()
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
                        model(x, 10)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    if i:  # the first round warms up
                        times[prec].append(time.perf_counter() - t)
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        out[f"b{batch}"] = {"fp32_s": fp32, "bf16_s": bf16, "speedup": fp32 / bf16}
    return out


def effect(model_name: str, radar: Path, stride: int) -> dict:
    warnings.simplefilter("ignore", NowcastWarning)
    seq = open_radar(radar)
    fp32 = ModelForecaster.from_checkpoint(model_name, device="auto")
    bf16 = ModelForecaster.from_checkpoint(model_name, device="auto", precision="bf16")
    acc = {p: verify.ScoreAccumulator((30, 40), n_leads=10) for p in ("fp32", "bf16")}
    worst = 0.0
    windows = iter_windows(seq, 5, 10, stride=stride)
    for inputs, targets, _ in windows:
        a, b = fp32(inputs, 10), bf16(inputs, 10)
        worst = max(worst, float(np.nanmax(np.abs(a - b))))
        acc["fp32"].update(a, targets)
        acc["bf16"].update(b, targets)
    res = {p: {t.key: t.csi for t in acc[p].result().categorical} for p in acc}
    return {"windows": windows.count, "max_abs_dbz_difference": worst, "csi_fp32": res["fp32"], "csi_bf16": res["bf16"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="motionrnn-predrnn-radar")
    ap.add_argument("--radar", type=Path, default=None,
                    help="a radar file to measure the effect on a forecast (MeteoSwiss mch_rainrate_2.nc of the "
                         "pysteps example data was used); without it only the speed is measured")
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "speed_paper_setting_64x64": speed(device, args.repeats)}
    if args.radar is not None and args.radar.is_file():
        result["effect_on_forecast"] = effect(args.model, args.radar, args.stride)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
