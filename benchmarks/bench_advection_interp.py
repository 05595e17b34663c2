"""How much heavy echo does advection's interpolation take away? Extrapolation with three interpolations.

pysteps' semi-Lagrangian extrapolation (the project's `extrapolation` baseline) samples the last frame at
sub-pixel positions with bilinear interpolation by default (``interp_order=1``). A narrow core of 40 dBZ or
more, one or two pixels wide, is averaged with its weaker neighbours and falls below the threshold: the area of
heavy echo shrinks at the first lead and stays shrunk. Nearest-neighbour sampling (order 0) moves every value
unchanged; cubic (order 3) is in between. The Lagrangian networks advect their inputs, their training truth
and their forecasts the same way, so what this loses they lose too.

For each service of the development radar (the pysteps example data) this scores the three on the windows
the leave-one-service-out protocol scores (`bench_skill.py --by-service`), every observed pixel:

    python benchmarks/bench_advection_interp.py --radar-dir DIR --json benchmarks/advection_interp.json
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nowcast.baselines.extrapolation import Extrapolation  # noqa: E402
from nowcast.errors import NowcastWarning  # noqa: E402
from nowcast.evaluate import evaluate, to_json  # noqa: E402
from nowcast.radar import open_radar  # noqa: E402

ORDERS = {0: "nearest", 1: "bilinear", 3: "cubic"}


class InterpolatedExtrapolation(Extrapolation):
    """pysteps' extrapolation with a chosen spline order for sampling the advected frame."""

    def __init__(self, order: int):
        super().__init__()
        self.order = int(order)
        self.name = f"extrapolation-{ORDERS[self.order]}"

    def advect(self, seq, velocity, n_out):
        import numpy as np

        from nowcast.units import DBZ_FLOOR

        last = np.nan_to_num(seq[-1], nan=DBZ_FLOOR).astype(np.float64)
        return self._extrapolate(last, velocity, n_out, outval=np.nan, interp_order=self.order)


def main(argv=None) -> int:
    from bench_skill import SERVICE_STRIDE, format_rows, service_rows
    from loso import SERVICES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--radar-dir", type=Path, required=True)
    p.add_argument("--service", action="append", choices=sorted(SERVICES), help="default: all three")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore", NowcastWarning)
    all_rows, started = [], time.time()
    for service in args.service or ["mch", "fmi", "bom"]:
        files = [str(args.radar_dir / f) for f in SERVICES[service]]
        seqs = [(Path(f).parent.name if "*" in f else Path(f).name, open_radar(f)) for f in files]
        methods = [InterpolatedExtrapolation(order) for order in ORDERS]
        result = evaluate(seqs, methods, stride=SERVICE_STRIDE[service])
        rows = service_rows(result, service)
        for line in format_rows(rows):
            print(line, flush=True)
        all_rows += rows
    if args.json:
        import json

        args.json.write_text(json.dumps({"rows": all_rows, "wall_time_s": round(time.time() - started, 1)},
                                        indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
