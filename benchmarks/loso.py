"""Leave one service out: train on two weather services, score on the third, each in turn.

The services of the development radar (the pysteps example data as netCDF): MeteoSwiss (mch_rainrate_*.nc),
FMI (fmi_dbz*.nc) and BoM (bom_prcp-c10/). A recipe is a set of `nowcast train` options; a job is
(recipe, network, seed, held-out service). Every run trains for the same number of iterations and keeps its
last weights (no checkpoint is chosen on the held-out service, nor on anything else).

    python benchmarks/loso.py train --radar-dir DIR --runs runs/loso --recipe capped --net motionrnn \
        --net predrnn --seed 0 --seed 1 --seed 2 --parallel 2
    python benchmarks/bench_skill.py --by-service --radar-dir DIR --runs runs/loso --recipe capped ...

Runs are resumable: a finished run is skipped, an interrupted one continues (`nowcast train --resume`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SERVICES = {
    "mch": ["mch_rainrate_1.nc", "mch_rainrate_2.nc", "mch_rainrate_3.nc"],
    "fmi": ["fmi_dbz.nc", "fmi_dbz_2.nc"],
    "bom": ["bom_prcp-c10/*.nc"],
}

# The shipped default's recipe (models/motionrnn-lagrangian-radar.md), shortened to the protocol's budget. fp32:
# every run must do the same arithmetic, and bf16 is emulated (about 13x slower) on CPUs without native bf16.
BASE = ("--frame lagrangian --layers 3 --hidden 32 --kernel 3 --patch 4 --crop 64 --lr 3e-4 --lr-schedule cosine "
        "--warmup 20 --min-lr 3e-5 --grad-clip 1.0 --balanced-loss --balance-power 0.5 --balance-on both "
        "--sampling-iterations 0 --precision fp32 --device cpu --checkpoint-every 50 --log-every 10 "
        "--synthetic-fraction 0 --baselines none").split()
RECIPES = {
    # what shipped: heavy-echo weights from forecast and truth, soft CSI at 30/40 dBZ, coarsening 1-2, strides 1-2
    "shipped": ["--coarsen", "1,2", "--time-strides", "1,2", "--soft-csi", "0.5"],
    # bounded growth (a forecast pixel stays within 3 dB of the last frame's maximum within 4 pixels) and
    # augmentation over climates (+-4 dB) and pixel sizes (coarsening 1-4); time steps as shipped (strides 1-2)
    "capped": ["--coarsen", "1,2,4", "--time-strides", "1,2", "--soft-csi", "0.5", "--growth-cap", "3",
               "--growth-cap-radius", "4", "--intensity-offset", "4"],
    # capped, with frames carried along the flow at the nearest pixel instead of bilinearly (inputs, training
    # truth and forecasts): bilinear sampling halves FMI's 40 dBZ area at the first lead
    # (bench_advection_interp.py), and the network then learns from a truth that has lost it
    "nearest": ["--coarsen", "1,2,4", "--time-strides", "1,2", "--soft-csi", "0.5", "--growth-cap", "3",
                "--growth-cap-radius", "4", "--intensity-offset", "4", "--advection", "nearest"],
}
NETS = {"motionrnn": ["--motion"], "predrnn": ["--no-motion"]}


def train_files(radar_dir: Path, held_out: str) -> list[str]:
    return [str(radar_dir / f) for s, files in SERVICES.items() if s != held_out for f in files]


def run_dir(runs: Path, recipe: str, net: str, seed: int, held_out: str) -> Path:
    return runs / f"{recipe}-{net}-s{seed}-no{held_out}"


def command(radar_dir: Path, out: Path, recipe: str, net: str, seed: int, held_out: str, iterations: int) -> list[str]:
    resume = ["--resume"] if (out / "train_state.pt").exists() else []
    # every run reads the one flow cache of the runs folder (`loso.py flows` fills it up front)
    shared_flow = ["--motion-cache", str(out.parent / "motion_cache")]
    return ([sys.executable, "-m", "nowcast", "train", *train_files(radar_dir, held_out), "--out", str(out),
             *BASE, *RECIPES[recipe], *NETS[net], "--seed", str(seed), "--iterations", str(iterations)]
            + shared_flow + resume)


def finished(out: Path, iterations: int) -> bool:
    log = out / "log.csv"
    if not (out / "last.safetensors").exists() or not log.exists():
        return False
    rows = log.read_text().strip().splitlines()
    return len(rows) > 1 and rows[-1].split(",")[0].strip() == str(iterations)


def precompute_flows(radar_dir: Path, folder: Path, services) -> int:
    """Fill the runs' shared flow cache with every window the recipes can draw (strides 1-2), once, up front:
    otherwise parallel runs compute the same fields at the same time."""
    import warnings

    import torch

    from nowcast.data import as_seqdata
    from nowcast.errors import NowcastWarning
    from nowcast.lagrangian_windows import MotionCache
    from nowcast.radar import open_radar

    torch.set_num_threads(1)
    warnings.simplefilter("ignore", NowcastWarning)
    cache = MotionCache(folder)
    for service in services:
        for name in SERVICES[service]:
            seq = as_seqdata(name, open_radar(str(radar_dir / name)))
            for stride in (1, 2):
                for start in seq.valid_starts(14 * stride + 1):
                    cache.coarse(seq.frames, int(start), stride, 5)
            print(f"{name}: {cache.computed} fields computed so far", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["train", "list", "flows"])
    ap.add_argument("--service", action="append", choices=sorted(SERVICES), help="flows: these services only")
    ap.add_argument("--radar-dir", type=Path, default=os.environ.get("NOWCAST_RADAR_DIR"))
    ap.add_argument("--runs", type=Path, default=Path("runs/loso"))
    ap.add_argument("--recipe", action="append", choices=sorted(RECIPES))
    ap.add_argument("--net", action="append", choices=sorted(NETS))
    ap.add_argument("--seed", action="append", type=int)
    ap.add_argument("--held-out", action="append", choices=sorted(SERVICES))
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (each on one thread)")
    args = ap.parse_args(argv)
    jobs = [(r, n, s, h) for s in (args.seed or [0]) for r in (args.recipe or ["capped"])
            for n in (args.net or ["motionrnn"]) for h in (args.held_out or list(SERVICES))]
    if args.action == "list":
        for job in jobs:
            out = run_dir(args.runs, *job)
            print(out, "done" if finished(out, args.iterations) else "to do")
        return 0
    if args.action == "flows":
        return precompute_flows(args.radar_dir, args.runs / "motion_cache", args.service or list(SERVICES))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(job):
        out = run_dir(args.runs, *job)
        if finished(out, args.iterations):
            return f"{out}: done already"
        start = time.time()
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{out}.log", "a") as log:
            rc = subprocess.call(command(args.radar_dir, out, *job, args.iterations), env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        return f"{out}: exit {rc} after {time.time() - start:.0f} s"

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for line in pool.map(run, jobs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
