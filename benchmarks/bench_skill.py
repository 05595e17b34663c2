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

--by-service: the leave-one-service-out protocol (benchmarks/loso.py trains the runs). For each service held
out, every run that never saw it is scored on it beside extrapolation, one row per run: CSI>=30 and CSI>=40 pooled
and as the mean over leads, bias>=30 and bias>=40 pooled and per lead, GDL, and the invented-heavy-echo fraction.
Then each (recipe, network) is summarised over its seeds (mean +- sd) per service, and checked against the
selection rule (benchmarks/RESULTS.md, "Skill that transfers"). One service per process, then --summarize:

    python benchmarks/bench_skill.py --by-service --service bom --radar-dir DIR --runs runs/loso \
        --json benchmarks/skill_loso_bom.json
    python benchmarks/bench_skill.py --summarize benchmarks/skill_loso_*.json
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


# Windows per held-out service: every 5th window on the 5-minute services, every 10th on BoM's 10-minute day
SERVICE_STRIDE = {"mch": 5, "fmi": 5, "bom": 10}


def service_methods(runs: Path, service: str, precision: str, only: str = "*", iterations: int = 150) -> list:
    """Every finished LOSO run matching ``only`` that held ``service`` out (its last weights), named
    recipe-network-seed. A run still training has a last.safetensors too: it is left out."""
    from loso import finished

    methods = []
    for ckpt in sorted(runs.glob(f"{only}-no{service}/last.safetensors")):
        if not finished(ckpt.parent, iterations):
            continue
        method = resolve("model", str(ckpt), precision=precision, lead_smoothing=0)
        method.name = ckpt.parent.name.rsplit("-no", 1)[0]
        methods.append(method)
    return methods


def by_service(args) -> int:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loso import SERVICES

    service = args.service
    files = [str(Path(args.radar_dir) / f) for f in SERVICES[service]]
    warnings.simplefilter("ignore", NowcastWarning)
    seqs = [(Path(f).parent.name if "*" in f else Path(f).name, open_radar(f)) for f in files]
    methods = service_methods(Path(args.runs), service, args.precision, args.only, args.iterations)
    if not methods:
        print(f"{args.runs}: no finished run matching {args.only!r} held {service} out", file=sys.stderr)
        return 2
    methods += resolve_all(comparison_specs([], args.baseline or ["extrapolation"]), precision=args.precision)
    start = time.time()
    result = evaluate(seqs, methods, stride=args.stride or SERVICE_STRIDE[service])
    extra = {"wall_time_s": round(time.time() - start, 1), "held_out": service, "precision": args.precision}
    rows = service_rows(result, service)
    for line in format_rows(rows):
        print(line)
    if args.json:
        args.json.write_text(to_json({**result.to_dict(), **extra, "rows": rows}))
    return 0


def _lead_mean(values) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def service_rows(result, service: str) -> list[dict]:
    """One dict per method: the protocol's figures on one held-out service."""
    rows = []
    for m in result.methods:
        s = m.scores
        row = {"service": service, "method": m.name, "gdl": s.gdl}
        for t in ("30", "40"):
            row[f"csi{t}"] = s.at(t).csi
            row[f"csi{t}_lead_mean"] = _lead_mean(s.lead_values("csi", t))
            row[f"bias{t}"] = s.at(t).bias
            row[f"bias{t}_per_lead"] = [round(v, 3) for v in s.lead_values("bias", t)]
        invented = getattr(m, "invented", None)
        row["invented_heavy"] = invented.pooled if invented is not None else float("nan")
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> list[str]:
    head = (f"{'held out':<8} {'method':<28} {'CSI30':>6} {'mean':>6} {'CSI40':>6} {'mean':>6} {'bias30':>6} "
            f"{'bias40':>6} {'GDL':>7} {'invent':>6}  bias40 by lead")
    lines = [head]
    for r in rows:
        lines.append(f"{r['service']:<8} {r['method']:<28} {r['csi30']:6.3f} {r['csi30_lead_mean']:6.3f} "
                     f"{r['csi40']:6.3f} {r['csi40_lead_mean']:6.3f} {r['bias30']:6.2f} {r['bias40']:6.2f} "
                     f"{r['gdl']:7.4f} {r['invented_heavy']:6.3f}  "
                     + " ".join(f"{v:.2f}" for v in r["bias40_per_lead"]))
    return lines


SUMMARY_KEYS = ("csi30", "csi30_lead_mean", "csi40", "csi40_lead_mean", "bias30", "bias40", "gdl", "invented_heavy")


def summarize(paths: list[Path]) -> int:
    """Per (recipe, network) and service: mean +- sd over seeds; then the selection rule's checks."""
    import json

    rows = [r for p in paths for r in json.loads(Path(p).read_text())["rows"]]
    extrap = {r["service"]: r for r in rows if r["method"] == "extrapolation"}
    groups: dict = {}
    for r in rows:
        if r["method"] == "extrapolation":
            continue
        family = r["method"].rsplit("-s", 1)[0]
        groups.setdefault(family, {}).setdefault(r["service"], []).append(r)
    print(f"{'candidate':<20} {'held out':<8} {'seeds':>5} " + " ".join(f"{k:>15}" for k in SUMMARY_KEYS))
    verdicts = {}
    for family, by_service in sorted(groups.items()):
        ok, means = True, []
        for service, rs in sorted(by_service.items()):
            stats = {k: (np.mean([r[k] for r in rs]), np.std([r[k] for r in rs])) for k in SUMMARY_KEYS}
            print(f"{family:<20} {service:<8} {len(rs):>5} "
                  + " ".join(f"{m:8.3f} +-{sd:5.3f}" for m, sd in stats.values()))
            e = extrap[service]
            ok &= all(0.67 <= stats[k][0] <= 1.5 for k in ("bias30", "bias40"))
            ok &= all(stats[k][0] >= e[k] for k in ("csi30", "csi30_lead_mean", "csi40", "csi40_lead_mean"))
            means.append((stats["csi30"][0] + stats["csi40"][0]) / 2)
        verdicts[family] = (ok, float(np.mean(means)), len(by_service))
    for service, e in sorted(extrap.items()):
        print(f"{'extrapolation':<20} {service:<8} {'':>5} " + " ".join(f"{e[k]:8.3f}        " for k in SUMMARY_KEYS))
    print("\nselection rule: every held-out service with bias30 and bias40 in 0.67-1.5 and CSI30/CSI40 (pooled and "
          "lead mean) at least extrapolation's; then the highest mean over services of (CSI30 + CSI40) / 2")
    for family, (ok, score, n) in sorted(verdicts.items(), key=lambda kv: -kv[1][1]):
        print(f"  {family:<20} services {n}  admissible {'yes' if ok and n == 3 else 'no '}  mean CSI {score:.4f}")
    print_ablation(rows)
    return 0


def seed_scores(rows: list[dict]) -> dict:
    """{(recipe, network): {seed: mean over its held-out services of (CSI30 + CSI40) / 2}}, for runs scored on
    all three services."""
    per_run: dict = {}
    for r in rows:
        if r["method"] != "extrapolation":
            per_run.setdefault(r["method"], []).append((r["csi30"] + r["csi40"]) / 2)
    out: dict = {}
    for name, values in per_run.items():
        recipe, net, seed = name.rsplit("-", 2)
        if len(values) == 3:
            out.setdefault((recipe, net), {})[seed] = float(np.mean(values))
    return out


def print_ablation(rows: list[dict]) -> None:
    """Rule 4: MotionRNN against its PredRNN ablation under each recipe, seed by seed."""
    scores = seed_scores(rows)
    for recipe in sorted({k[0] for k in scores}):
        pair = [scores.get((recipe, net), {}) for net in ("motionrnn", "predrnn")]
        if not all(pair):
            continue
        seeds = sorted(set(pair[0]) & set(pair[1]))
        diffs = [pair[0][s] - pair[1][s] for s in seeds]
        print(f"\n{recipe}: MotionRNN minus PredRNN ablation, mean over services of (CSI30 + CSI40) / 2, per seed: "
              + " ".join(f"{s} {d:+.4f}" for s, d in zip(seeds, diffs))
              + f"; mean {np.mean(diffs):+.4f} +- {np.std(diffs):.4f} (MotionRNN "
              f"{np.mean([pair[0][s] for s in seeds]):.4f} +- {np.std([pair[0][s] for s in seeds]):.4f}, PredRNN "
              f"{np.mean([pair[1][s] for s in seeds]):.4f} +- {np.std([pair[1][s] for s in seeds]):.4f})")


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
    ap.add_argument("--stride", type=int, default=None, help="frames between windows (default 1; --by-service: "
                    "5 on the 5-minute services, 10 on BoM)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--prob-match", action="store_true",
                    help="also score the first model with probability matching to the last observation")
    ap.add_argument("--raw", action="store_true",
                    help="also score the first model without its card's post-processing (lead smoothing 0)")
    ap.add_argument("--compare-bf16", action="store_true",
                    help="also score the first model under bf16 autocast, and print how far its pooled CSI moves")
    ap.add_argument("--json", type=Path, help="write the evaluate() result here")
    ap.add_argument("--by-service", action="store_true", help="the leave-one-service-out protocol (see above)")
    ap.add_argument("--service", choices=sorted(SERVICE_STRIDE), help="--by-service: the held-out service")
    ap.add_argument("--runs", type=Path, default=Path("runs/loso"), help="--by-service: benchmarks/loso.py's runs")
    ap.add_argument("--only", default="*", help="--by-service: runs whose name matches this glob, e.g. '*-s0'")
    ap.add_argument("--iterations", type=int, default=150, help="--by-service: a run is finished at this iteration")
    ap.add_argument("--summarize", nargs="+", type=Path, help="summarise --by-service JSON files")
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize)
    if args.radar_dir is None or not Path(args.radar_dir).is_dir():
        print(f"{args.radar_dir}: radar folder not found (give --radar-dir or NOWCAST_RADAR_DIR)", file=sys.stderr)
        return 2
    if args.by_service:
        if args.service is None:
            ap.error("--by-service needs --service")
        return by_service(args)
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
    result = evaluate(sequences(Path(args.radar_dir), args.data), methods, stride=args.stride or 1)
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
