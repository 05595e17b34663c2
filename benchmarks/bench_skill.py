"""Forecast skill on held-out real radar: models beside persistence and optical-flow extrapolation.

The held-out data are the validation split of the shipped model's training run:
  - mch_rainrate_2.nc (MeteoSwiss, 2016-07-11), never used for training;
  - the last 30 % of the BoM sequence (bom_prcp-c10, 43 of 144 frames), 15 frames after the training part ends.
All methods are scored on exactly the same windows with `nowcast.evaluate.evaluate`.

    python benchmarks/bench_skill.py --model models/motionrnn-predrnn-radar.safetensors \
        --model runs/predrnn/best.safetensors --json benchmarks/skill.json

The MeteoSwiss part alone is also what `nowcast evaluate ../shared/radar/mch_rainrate_2.nc --model default
--baseline persistence --baseline extrapolation` prints.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcast.data import split_in_time  # noqa: E402
from nowcast.errors import NowcastWarning  # noqa: E402
from nowcast.evaluate import evaluate, format_table, to_json  # noqa: E402
from nowcast.forecast import ModelForecaster, name_clashing_models  # noqa: E402
from nowcast.methods import get_method  # noqa: E402
from nowcast.radar import open_radar  # noqa: E402

SHARED = ROOT.parent / "shared" / "radar"


def held_out_sequences(radar_dir: Path, which: str):
    warnings.simplefilter("ignore", NowcastWarning)
    seqs = []
    if which in ("all", "mch"):
        seqs.append(("mch_rainrate_2.nc", open_radar(radar_dir / "mch_rainrate_2.nc")))
    if which in ("all", "bom"):
        bom = open_radar(str(radar_dir / "bom_prcp-c10" / "*.nc"))
        _, val = split_in_time(bom, 0.3, gap=15, min_val=15)  # the training run's split (n_in + n_out = 15)
        seqs.append(("bom_prcp-c10 (last 30 %)", val))
    return seqs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="checkpoint(s) to score")
    ap.add_argument("--data", choices=["all", "mch", "bom"], default="all")
    ap.add_argument("--radar-dir", type=Path, default=SHARED)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the evaluate() result here")
    args = ap.parse_args(argv)
    if not args.radar_dir.is_dir():
        print(f"{args.radar_dir}: radar folder not found; nothing to measure", file=sys.stderr)
        return 2
    methods = [ModelForecaster.from_checkpoint(m, device="auto") for m in args.model]
    name_clashing_models(methods, args.model)
    methods += [get_method("persistence"), get_method("extrapolation")]
    start = time.time()
    result = evaluate(held_out_sequences(args.radar_dir, args.data), methods, stride=args.stride)
    result["wall_time_s"] = round(time.time() - start, 1)
    from rich.console import Console

    Console(width=160).print(format_table(result))
    if args.json:
        args.json.write_text(to_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
