"""Why does the shipped Lagrangian MotionRNN invent heavy echo while its PredRNN ablation does not?

Inference-only measurements on sequences the shipped networks never trained on (the BoM day, and MeteoSwiss
mch_rainrate_2.nc, which only chose their checkpoint), network forecasts without post-processing:
  - MotionRNN against its PredRNN ablation (same recipe, same budget): bias at 40 dBZ per lead and the
    invented-heavy-echo fraction;
  - the same MotionRNN with its output held under the last frame's local maximum + 3 dB (the growth cap, applied
    at inference only to weights trained without it): how much of the excess is growth beyond any source;
  - a colder and a warmer climate: every echo of the data shifted by -4 and +4 dB, the same networks: how the
    excess depends on the intensity of the input.

    python benchmarks/bench_cause.py --radar-dir DIR --json benchmarks/cause.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcast.checkpoint import rewrite_settings  # noqa: E402
from nowcast.data import shift_intensity  # noqa: E402
from nowcast.errors import NowcastWarning  # noqa: E402
from nowcast.evaluate import evaluate  # noqa: E402
from nowcast.methods import resolve  # noqa: E402
from nowcast.radar import open_radar  # noqa: E402

SETS = {"bom": ("bom_prcp-c10/*.nc", 10), "mch2": ("mch_rainrate_2.nc", 5)}
MOTIONRNN = ROOT / "models" / "motionrnn-lagrangian-radar.safetensors"
PREDRNN = ROOT / "models" / "predrnn-lagrangian-ablation.safetensors"


def methods(precision: str, folder: Path):
    """The shipped MotionRNN's weights without the growth cap (as trained; the shipped file carries the cap since)
    and with it, each written as its own checkpoint (``rewrite_settings``) in ``folder``; the ablation;
    extrapolation."""
    def variant(cap, name):
        path = rewrite_settings(MOTIONRNN, folder / f"{name}.safetensors", {"growth_cap_dbz": cap,
                                                                              "growth_cap_radius": 4})
        method = resolve("model", str(path), precision=precision, lead_smoothing=0)
        method.name = name
        return method

    motion = variant(None, "motionrnn")
    capped = variant(3.0, "motionrnn, capped at inference")
    plain = resolve("model", str(PREDRNN), precision=precision, lead_smoothing=0)
    plain.name = "predrnn ablation"
    return [motion, capped, plain, resolve("extrapolation")]


def shifted(seq, offset_db: float):
    if offset_db == 0:
        return seq
    return seq.copy(data=shift_intensity(np.asarray(seq.values, dtype=np.float32), offset_db))


def rows_of(result, data: str, offset: float) -> list[dict]:
    rows = []
    for m in result.methods:
        s = m.scores
        rows.append({
            "data": data, "offset_db": offset, "method": m.name,
            "csi30": s.at("30").csi, "csi40": s.at("40").csi, "bias30": s.at("30").bias, "bias40": s.at("40").bias,
            "bias40_per_lead": [round(v, 3) for v in s.lead_values("bias", "40")],
            "invented_heavy": m.invented.pooled,
            "invented_heavy_per_lead": [round(v, 3) for v in m.invented.per_lead],
        })
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--radar-dir", type=Path, default=os.environ.get("NOWCAST_RADAR_DIR"))
    ap.add_argument("--data", action="append", choices=sorted(SETS))
    ap.add_argument("--offsets", default="0,-4,4", help="climate shifts in dB, comma separated")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", NowcastWarning)
    rows, start = [], time.time()
    for data in args.data or sorted(SETS):
        pattern, stride = SETS[data]
        seq = open_radar(str(args.radar_dir / pattern))
        for offset in (float(v) for v in args.offsets.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                result = evaluate([(data, shifted(seq, offset))], methods(args.precision, Path(tmp)), stride=stride)
            for r in rows_of(result, data, offset):
                rows.append(r)
                print(f"{data:<5} {offset:+4.0f} dB  {r['method']:<32} CSI30 {r['csi30']:.3f} CSI40 {r['csi40']:.3f} "
                      f"bias30 {r['bias30']:.2f} bias40 {r['bias40']:.2f} invented {r['invented_heavy']:.3f}  "
                      f"bias40 by lead {' '.join(f'{v:.2f}' for v in r['bias40_per_lead'])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "precision": args.precision,
                                         "wall_time_s": round(time.time() - start, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
