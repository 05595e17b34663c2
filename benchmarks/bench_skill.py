"""Forecast skill on real radar: models beside persistence, extrapolation and classical post-processing.

Data: the netCDF files of the pysteps example data (FMI, MeteoSwiss, BoM), in the layout of the project's
development radar folder (give it with --radar-dir or NOWCAST_RADAR_DIR). Two sets:
  - test: the BoM Rainfields day (144 frames every 10 minutes, Australia), a whole weather service that the
    shipped Lagrangian model never saw in training or checkpoint selection;
  - val: the sequences that selected its checkpoint: mch_rainrate_2.nc (MeteoSwiss) and fmi_dbz_2.nc (FMI).
All methods are scored on exactly the same windows and pixels with `nowcast.evaluate.evaluate`; besides the
pooled table, CSI and frequency bias per lead are printed for every method.

    python benchmarks/bench_skill.py --radar-dir DIR --model motionrnn-lagrangian-radar \
        --baseline extrapolation-smoothed --stride 2 --json benchmarks/skill_test.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcast.errors import NowcastWarning  # noqa: E402
from nowcast.cli.tables import score_table  # noqa: E402
from nowcast.evaluate import evaluate, to_json  # noqa: E402
from nowcast.methods import comparison_specs, resolve, resolve_all  # noqa: E402
from nowcast.radar import open_radar  # noqa: E402

def sequences(radar_dir: Path, which: str):
    warnings.simplefilter("ignore", NowcastWarning)
    if which == "test":
        return [("bom_prcp-c10", open_radar(str(radar_dir / "bom_prcp-c10" / "*.nc")))]
    return [(name, open_radar(radar_dir / name)) for name in ("mch_rainrate_2.nc", "fmi_dbz_2.nc")]


def per_lead_lines(result, thresholds=("30", "40")) -> list[str]:
    """CSI and frequency bias per lead for every method (an EvaluationResult), as text lines."""
    lines = []
    for t in thresholds:
        for score in ("csi", "bias"):
            lines.append(f"{score.upper()}>={t} by lead")
            for m in result.methods:
                if t not in (ts.key for ts in m.scores.categorical):
                    continue
                values = m.scores.lead_values(score, t)
                shown = " ".join("  nan" if not np.isfinite(v) else f"{v:5.3f}" for v in values)
                mean = np.nanmean(values)
                lines.append(f"  {m.name:<34} {shown}   mean {mean:.3f}")
    return lines


def bf16_change(result, name: str) -> dict:
    """Pooled CSI of the model under bf16 minus the same model at the run's precision, per threshold."""
    by_name = {m.name: m.scores for m in result.methods}
    high, low = by_name[name], by_name[f"{name} (bf16)"]
    return {ts.key: round(low.at(ts.key).csi - ts.csi, 6) for ts in high.categorical}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="checkpoint(s) to score (names or files)")
    ap.add_argument("--baseline", action="append", default=None,
                    help="baselines (default: persistence, extrapolation, extrapolation-smoothed)")
    ap.add_argument("--data", choices=["test", "val"], default="test")
    ap.add_argument("--radar-dir", type=Path, default=os.environ.get("NOWCAST_RADAR_DIR"))
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--prob-match", action="store_true",
                    help="also score the first model with probability matching to the last observation")
    ap.add_argument("--raw", action="store_true",
                    help="also score the first model without its card's post-processing (lead smoothing 0)")
    ap.add_argument("--compare-bf16", action="store_true",
                    help="also score the first model under bf16 autocast, and print how far its pooled CSI moves")
    ap.add_argument("--json", type=Path, help="write the evaluate() result here")
    args = ap.parse_args(argv)
    if args.radar_dir is None or not Path(args.radar_dir).is_dir():
        print(f"{args.radar_dir}: radar folder not found (give --radar-dir or NOWCAST_RADAR_DIR)", file=sys.stderr)
        return 2
    baselines = args.baseline or ["persistence", "extrapolation", "extrapolation-smoothed"]
    methods = resolve_all(comparison_specs(args.model, baselines), precision=args.precision)
    variants = []  # of the first model, scored beside it
    if args.prob_match and args.model:
        variants.append(resolve("model", args.model[0], precision=args.precision, prob_match=True))
    if args.raw and args.model:
        variants.append(resolve("model", args.model[0], precision=args.precision, lead_smoothing=0))
        variants[-1].name = f"{methods[0].name} (network only)"
    if args.compare_bf16 and args.model:
        variants.append(resolve("model", args.model[0], precision="bf16"))
        variants[-1].name = f"{methods[0].name} (bf16)"
    methods[len(args.model):len(args.model)] = variants
    start = time.time()
    result = evaluate(sequences(Path(args.radar_dir), args.data), methods, stride=args.stride)
    wall_time_s = round(time.time() - start, 1)
    from rich.console import Console

    console = Console(width=160)
    console.print(score_table(result))
    for line in per_lead_lines(result):
        console.print(line, markup=False, highlight=False)
    extra = {"wall_time_s": wall_time_s, "data_set": args.data}
    if args.compare_bf16 and args.model:
        extra["bf16_csi_change"] = bf16_change(result, methods[0].name)
        console.print(f"bf16 minus {args.precision}, pooled CSI: {extra['bf16_csi_change']}", markup=False)
    if args.json:
        args.json.write_text(to_json({**result.to_dict(), **extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
