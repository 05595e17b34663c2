"""Score several forecast methods on exactly the same windows of one or more radar sequences.

Methods get full frames (nothing is resized or cropped) and are timed per window. The result is an
``EvaluationResult`` (frozen dataclasses down to ``verify.Scores``); ``to_json`` writes it as strict JSON
(``EvaluationResult.to_dict()`` is the layout); the CLI's ``cli.tables.score_table`` shows it.

The scoring domain (``DOMAINS``): by default ("observed") every method is scored on every pixel the radar
observed, and a method's missing (NaN) forecast there counts as no echo, so adding a method never changes
another's scores. "common" scores every method only on the pixels where all of them have a forecast. Either
way each method's ``Coverage`` (the fraction of observed pixels it forecast, per lead) comes with its scores.
Per-lead figures beside the scores are accumulated per method in ``_MethodSums``, next to the scores.

The windows are scored in chunks, each by the same function (``_score_task``): in this process
(workers=1), in a pool of spawned processes (workers=N), or on a dask.distributed cluster (scheduler=...).
Each chunk returns one accumulator per method; they are merged in chunk order, and since accumulators
add counts and exact sums, the result is the same to the last bit however the windows were split, as long as
each method forecasts the same: a torch model does when workers run as many torch threads as this process
(``torch_threads``; by default they run one, and a model's scores then agree to rounding).
"""

from __future__ import annotations

import functools
import math
import pickle
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import strict_json
from .errors import MissingDependencyError, NowcastError
from .forecast_io import batch_motion
from .forecast_method import ForecastMethod
from .invented import InventedEcho, InventedEchoAccumulator, advected_last_input, pixel_km_of, source_support
from .methods import MODEL, options_for, resolve
from .options import ModelOptions
from .verify import (DEFAULT_THRESHOLDS, Coverage, CoverageAccumulator, ScoreAccumulator, Scores,
                     no_echo_where_missing, normalize_thresholds)
from .windows import WindowSet, iter_windows

CHUNKS_PER_WORKER = 4  # a few chunks per worker keep them all busy to the end
SCHEDULER_TIMEOUT_S = 10.0
# where methods are scored: every observed pixel (a missing forecast = no echo), or the pixels all methods forecast
DOMAINS = ("observed", "common")
CLUSTER_EXTRA = "pip install 'nowcast[cluster]'"


# ---------------------------------------------------------------------------------------------
# typed results


@dataclass(frozen=True)
class MethodResult:
    """One method's scores on every window, the share of the observed pixels it forecast, and its time: the
    method's own seconds per window, without the window's optical flow (estimated once, for every method)."""

    name: str
    scores: Scores
    seconds_per_window: float
    coverage: Coverage | None = None
    invented: InventedEcho | None = None  # heavy echo with no source in the advected last input (nowcast.invented)

    def to_dict(self) -> dict:
        cover = self.coverage.to_dict() if self.coverage is not None else {}
        invented = self.invented.to_dict() if self.invented is not None else {}
        return {**self.scores.to_dict(), **cover, **invented, "seconds_per_window": self.seconds_per_window}


@dataclass(frozen=True)
class SequenceWindows:
    """How many windows one input sequence gave, and how many were skipped for gaps in time."""

    name: str
    windows: int
    skipped_windows: int


@dataclass(frozen=True)
class EvaluationResult:
    """Every method scored on the same windows (``evaluate``)."""

    windows: int
    skipped_windows: int
    too_short_sequences: tuple[str, ...]
    input_frames: int
    lead_frames: int
    # one number when every scored sequence has the same step, else one per scored sequence
    time_step_minutes: float | tuple[float, ...] | None
    thresholds: tuple[float, ...]
    data: tuple[SequenceWindows, ...]
    methods: tuple[MethodResult, ...]
    domain: str = "observed"  # see DOMAINS

    @property
    def results(self) -> dict[str, MethodResult]:
        """The methods by name, in the order they were given."""
        return {m.name: m for m in self.methods}

    def method(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"no method named {name!r}; methods: {[m.name for m in self.methods]}")

    def to_dict(self) -> dict:
        """The JSON layout of ``nowcast evaluate --json``."""
        step = self.time_step_minutes
        return {
            "windows": self.windows,
            "skipped_windows": self.skipped_windows,
            "too_short_sequences": list(self.too_short_sequences),
            "input_frames": self.input_frames,
            "lead_frames": self.lead_frames,
            "time_step_minutes": list(step) if isinstance(step, tuple) else step,
            "thresholds_dbz": [_plain_number(t) for t in self.thresholds],
            "domain": self.domain,
            "data": [d.name for d in self.data],
            "data_windows": {d.name: {"windows": d.windows, "skipped_windows": d.skipped_windows} for d in self.data},
            "results": {m.name: m.to_dict() for m in self.methods},
        }


@dataclass(frozen=True)
class MethodSpec:
    """A forecast method as a recipe that pickles: ``methods.resolve(spec, model, ...)`` builds it where it
    runs, so each worker process loads its own copy (a model is a checkpoint name or path, which workers on
    other machines must be able to read). ``name`` renames the built method (as name_clashing_models does)."""

    spec: str | None = None
    model: str | None = None
    options: ModelOptions = ModelOptions()
    name: str | None = None

    def build(self):
        method = resolve(self.spec, self.model, self.options)
        if self.name is not None:
            method.name = self.name
        return method

    @classmethod
    def recipes(cls, specs, built, options: ModelOptions | None = None) -> list["MethodSpec"]:
        """The methods that ``methods.resolve_all(specs, options)`` built here, as recipes for workers, under the
        names they have here (a checkpoint file by its absolute path: workers may run elsewhere)."""
        options = options if options is not None else ModelOptions()
        models_asked = any(spec == MODEL for spec, _ in specs)
        recipes = []
        for (spec, model), method in zip(specs, built):
            if model is not None and Path(model).exists():  # a checkpoint or a run folder
                model = str(Path(model).resolve())
            recipes.append(cls(spec, model, options_for(spec, options, models_asked), name=method.name))
        return recipes


# ---------------------------------------------------------------------------------------------
# scoring one chunk of windows (the one path, in this process or in a worker)


def common_targets(targets: np.ndarray, forecasts) -> np.ndarray:
    """The targets with NaN wherever some method has no forecast, so every method is scored on the same pixels
    (``domain="common"``).

    Methods that advect (extrapolation, Lagrangian models) have no forecast where the trajectory comes from
    beyond the grid; persistence has one everywhere.
    """
    missing = np.zeros(targets.shape, dtype=bool)
    for fc in forecasts:
        missing |= np.isnan(fc)
    return np.where(missing, np.nan, targets) if missing.any() else targets


def scoring_domain(domain: str, targets: np.ndarray, forecasts) -> tuple[np.ndarray, list]:
    """(targets, forecasts) as they are scored: "observed" fills each method's missing forecast with no echo
    where the radar observed; "common" leaves the forecasts and drops the pixels some method did not forecast."""
    if domain == "observed":
        return targets, [no_echo_where_missing(fc, targets) for fc in forecasts]
    if domain == "common":
        return common_targets(targets, forecasts), list(forecasts)
    raise NowcastError(f"unknown scoring domain {domain!r}; choose from {', '.join(DOMAINS)}")


@dataclass(frozen=True)
class _Task:
    """A chunk of consecutive windows of one sequence, with everything needed to score it elsewhere."""

    data_name: str
    frames: object  # the DataArray slice (time, y, x) that holds the chunk's windows
    starts: tuple[int, ...]  # window starts in `frames`
    n_in: int
    n_out: int
    batch_size: int
    thresholds: tuple[float, ...]
    methods: tuple  # MethodSpec (built where the task runs) or picklable method objects
    names: tuple[str, ...]
    torch_threads: int | None = None
    domain: str = "observed"


class _MethodSums:
    """One method's sums over a chunk: its scores (on the scoring domain) and, beside them, figures taken from
    its forecast as it came (coverage). A new per-lead figure is one more accumulator here, in ``update`` and in
    ``MethodResult``."""

    def __init__(self, thresholds, n_leads: int):
        self.scores = ScoreAccumulator(thresholds, n_leads)
        self.coverage = CoverageAccumulator(n_leads)
        self.invented = InventedEchoAccumulator(n_leads)

    def update(self, forecast, targets, scored_forecast, scored_targets, support) -> None:
        self.scores.update(scored_forecast, scored_targets)
        self.coverage.update(forecast, targets)
        self.invented.update(forecast, targets, support)

    def merge(self, other: "_MethodSums") -> None:
        self.scores.merge(other.scores)
        self.coverage.merge(other.coverage)
        self.invented.merge(other.invented)

    def result(self, name: str, seconds_per_window: float) -> MethodResult:
        return MethodResult(name, self.scores.result(), seconds_per_window, self.coverage.result(),
                            self.invented.result())


@dataclass
class _Partial:
    """What scoring a chunk gives back: the sums and the forecast seconds per method."""

    sums: list
    seconds: list
    windows: int


def _score_task(task: _Task, methods, progress: Callable[[int], None] | None = None) -> _Partial:
    sums = [_MethodSums(task.thresholds, task.n_out) for _ in task.names]
    seconds = [0.0] * len(task.names)
    windows = WindowSet(seq=task.frames, n_in=task.n_in, n_out=task.n_out, stride=1, starts=list(task.starts))
    for inputs, targets, _ in windows.batches(task.batch_size):
        # each window's optical flow, once: every method that advects takes it, and so does the invented-echo
        # reference (a plain callable method is called without it)
        motion = batch_motion(inputs)
        forecasts = []
        for i, (name, method) in enumerate(zip(task.names, methods)):
            t0 = time.perf_counter()
            given = {"motion": motion} if isinstance(method, ForecastMethod) else {}
            fc = np.asarray(method(inputs, task.n_out, **given))
            seconds[i] += time.perf_counter() - t0
            if fc.shape != targets.shape:
                raise NowcastError(
                    f"method {name} returned shape {fc.shape} for {task.data_name}, expected {targets.shape}"
                )
            forecasts.append(fc)
        scored_targets, scored = scoring_domain(task.domain, targets, forecasts)
        # one reference per window for every method: where the last observation, moved on, had heavy echo near
        support = source_support(advected_last_input(inputs, motion, task.n_out), pixel_km_of(task.frames))
        for acc, fc, scored_fc in zip(sums, forecasts, scored):
            acc.update(fc, targets, scored_fc, scored_targets, support)
        if progress is not None:
            progress(len(inputs))
    return _Partial(sums, seconds, len(task.starts))


@functools.lru_cache(maxsize=None)
def _built_method(spec: MethodSpec):
    """The method ``spec`` builds, built once per process and kept for its life: a worker scores many chunks,
    and a model is loaded once per worker process, not once per chunk (``_built_method.cache_info()``)."""
    return spec.build()


def _limit_torch_threads(n: int | None) -> None:
    """n torch threads in this process, set through torch itself: the library writes no process-wide
    environment (OMP_NUM_THREADS), and scoring loads torch anyway (``nowcast.invented`` advects with it)."""
    if n is None:
        return
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _run_task(task: _Task) -> _Partial:
    """A worker's entry point (module level, so spawned processes and dask workers can import it)."""
    _limit_torch_threads(task.torch_threads)
    methods = [_built_method(m) if isinstance(m, MethodSpec) else m for m in task.methods]
    return _score_task(task, methods)


# ---------------------------------------------------------------------------------------------
# running the chunks


@dataclass(frozen=True)
class _TaskSettings:
    """What every task of one evaluation shares (the fields of ``_Task`` beyond its windows)."""

    n_in: int
    n_out: int
    batch_size: int
    thresholds: tuple[float, ...]
    methods: tuple
    names: tuple[str, ...]
    torch_threads: int | None = None
    domain: str = "observed"


def _plan(window_sets, settings: _TaskSettings, chunks: int | None) -> list[_Task]:
    """The windows cut into tasks in the order one process scores them: per sequence, whole batches
    (so each batch holds the same windows however many chunks there are); chunks None: one per sequence."""
    batch_size = settings.batch_size
    total = sum(ws.count for _, ws in window_sets)
    per_chunk = total if chunks is None else max(1, math.ceil(total / chunks))
    per_chunk = batch_size * math.ceil(per_chunk / batch_size)
    length = settings.n_in + settings.n_out
    shared = {f.name: getattr(settings, f.name) for f in fields(settings)}  # shallow: methods are not copied
    tasks = []
    for data_name, ws in window_sets:
        for i in range(0, ws.count, per_chunk):
            starts = ws.starts[i:i + per_chunk]
            first = int(starts[0])
            frames = ws.seq.isel(time=slice(first, int(starts[-1]) + length))
            tasks.append(_Task(data_name, frames, tuple(int(s) - first for s in starts), **shared))
    return tasks


class _Progress:
    def __init__(self, callback, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def __call__(self, windows: int) -> None:
        self.done += windows
        if self.callback is not None:
            self.callback(self.done, self.total)


def _run_pool(tasks: list[_Task], workers: int, progress: _Progress) -> list[_Partial]:
    """Tasks on `workers` spawned processes (spawn: safe with torch and threads, the same on every OS)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = [pool.submit(_run_task, t) for t in tasks]
        try:
            for future in as_completed(futures):
                progress(future.result().windows)
        except BrokenProcessPool:
            raise NowcastError("a worker process stopped unexpectedly (out of memory?); try fewer workers") from None
        finally:
            for future in futures:
                future.cancel()
        return [f.result() for f in futures]  # chunk order, not completion order


def connect_scheduler(address: str, timeout: float | None = None):
    """A dask.distributed Client connected to the scheduler at `address` (e.g. 'tcp://host:8786')."""
    try:
        from distributed import Client
    except ImportError:
        raise MissingDependencyError(f"a dask scheduler needs dask.distributed: {CLUSTER_EXTRA}") from None
    timeout = SCHEDULER_TIMEOUT_S if timeout is None else timeout
    try:
        _check_reachable(address, timeout)
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NowcastError(f"cannot reach the dask scheduler at {address}: {why}") from None


def _check_reachable(address: str, timeout: float) -> None:
    """Raise OSError when a tcp scheduler does not answer: a Client that fails to connect prints a
    traceback when it is collected, so it is better not made."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    scheme, location = parse_address(address)
    get_backend(scheme)  # ValueError for an unknown scheme
    if scheme == "tcp":
        with socket.create_connection(parse_host_port(location), timeout=timeout):
            pass


def _cluster_slots(client) -> int:
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def _run_dask(tasks: list[_Task], client, progress: _Progress) -> list[_Partial]:
    from distributed import as_completed

    data = client.scatter(tasks, hash=False)  # the frames travel once, outside the task graph
    futures = client.map(_run_task, data, pure=False)
    order = {f.key: i for i, f in enumerate(futures)}
    partials: list = [None] * len(futures)
    try:
        for future, partial in as_completed(futures, with_results=True):
            partials[order[future.key]] = partial
            progress(partial.windows)
    finally:
        client.cancel(futures + data)
    return partials


def _merge(partials: list[_Partial]) -> tuple[list[_MethodSums], list[float]]:
    """The partials summed in chunk order (counts and exact sums: any order would give the same)."""
    accs, seconds = partials[0].sums, list(partials[0].seconds)
    for p in partials[1:]:
        for acc, other in zip(accs, p.sums):
            acc.merge(other)
        seconds = [a + b for a, b in zip(seconds, p.seconds)]
    return accs, seconds


# ---------------------------------------------------------------------------------------------
# evaluate


def _window_sets(sequences, n_in: int, n_out: int, stride: int):
    window_sets = [(name, iter_windows(seq, n_in=n_in, n_out=n_out, stride=stride)) for name, seq in sequences]
    if sum(ws.count for _, ws in window_sets) == 0:
        skipped = sum(ws.skipped for _, ws in window_sets)
        too_short = [name for name, ws in window_sets if ws.too_short]
        why = []
        if not window_sets:
            why.append("no input sequences")
        if too_short:
            why.append(f"{len(too_short)} sequence(s) shorter than {n_in + n_out} frames "
                       f"({n_in} inputs + {n_out} targets): {', '.join(too_short)}")
        if skipped:
            why.append(f"{skipped} window(s) skipped because they span gaps in time")
        raise NowcastError("nothing to evaluate: 0 complete windows (" + "; ".join(why or ["no windows"]) + ")")
    return window_sets


def _prepare_methods(methods, parallel: bool) -> tuple[list, list[str]]:
    """(methods to run, their names). In this process: built methods. For workers: MethodSpecs (named, so
    every worker scores under the same name) or the method objects themselves, which must pickle."""
    items = [MethodSpec(m) if isinstance(m, str) else m for m in methods]
    if not items:
        raise NowcastError("no forecast method to evaluate")
    if not parallel:
        items = [m.build() if isinstance(m, MethodSpec) else m for m in items]
    names = []
    for m in items:
        if isinstance(m, MethodSpec):
            names.append(m.name or m.build().name)  # unnamed: built once here to learn its name
        else:
            names.append(getattr(m, "name", type(m).__name__))
    if len(set(names)) != len(names):
        raise NowcastError(f"method names must be unique, got {names}")
    if parallel:
        items = [replace(m, name=n) if isinstance(m, MethodSpec) else _picklable(m, n) for m, n in zip(items, names)]
    return items, names


def _picklable(method, name: str):
    try:
        pickle.dumps(method)
    except Exception as exc:  # noqa: BLE001 - pickling can fail in many ways, all meaning the same here
        raise NowcastError(f"method {name} cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
                           "give it as a MethodSpec") from None
    return method


def _check_parallel(workers, scheduler, torch_threads) -> None:
    for name, value in (("workers", workers), ("torch_threads", 1 if torch_threads is None else torch_threads)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NowcastError(f"{name} must be a whole number of at least 1, got {value!r}")
    if scheduler is not None and workers > 1:
        raise NowcastError("give either workers (processes on this machine) or a dask scheduler, not both")


def evaluate(
    sequences: Sequence[tuple[str, object]],
    methods: Sequence,
    thresholds=DEFAULT_THRESHOLDS,
    n_in: int = 5,
    n_out: int = 10,
    stride: int = 1,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    *,
    workers: int = 1,
    scheduler=None,
    torch_threads: int | None = None,
    domain: str = "observed",
) -> EvaluationResult:
    """Run every method on every window of every sequence and score it against the targets.

    sequences: (name, DataArray (time, y, x) in dBZ) pairs. methods: ForecastMethod-like callables
    `method(inputs (B, n_in, H, W), n_out) -> (B, n_out, H, W)` with a unique `.name`, or MethodSpecs
    (or method names, e.g. "persistence") that ``methods.resolve`` builds.
    progress: called as progress(windows_done, windows_total) after each batch (each chunk in parallel).
    workers: processes on this machine. scheduler: a dask.distributed scheduler address
    ('tcp://host:port') or Client whose workers score the chunks; the sequences' frames are sent to them.
    torch_threads: torch threads in each worker (default 1 with workers or a scheduler).
    domain: "observed" (default): every method on every pixel the radar observed, a missing forecast there
    counting as no echo; "common": every method on the pixels where all of them have a forecast
    (``common_targets``). Each method's coverage (fraction of observed pixels it forecast) is reported either way.

    The result is the same, to the last bit, for any workers or scheduler, except
    that a torch model's forecasts depend on torch's thread count: with workers at the default of one thread,
    its scores agree to rounding (give ``torch_threads=torch.get_num_threads()`` for the last bit).
    Raises NowcastError when no sequence yields a single window.
    """
    thresholds = normalize_thresholds(thresholds)
    _check_parallel(workers, scheduler, torch_threads)
    if domain not in DOMAINS:
        raise NowcastError(f"unknown scoring domain {domain!r}; choose from {', '.join(DOMAINS)}")
    if batch_size < 1:
        raise NowcastError(f"batch size must be at least 1, got {batch_size}")
    parallel = workers > 1 or scheduler is not None
    methods, names = _prepare_methods(methods, parallel)
    window_sets = _window_sets(sequences, n_in, n_out, stride)
    total = sum(ws.count for _, ws in window_sets)
    bar = _Progress(progress, total)
    # workers run one torch thread unless told; this process keeps its own
    threads = (1 if torch_threads is None else torch_threads) if parallel else None
    settings = _TaskSettings(n_in, n_out, batch_size, thresholds, tuple(methods), tuple(names), threads, domain)
    if not parallel:
        partials = [_score_task(task, methods, bar) for task in _plan(window_sets, settings, None)]
    elif scheduler is None:
        partials = _run_pool(_plan(window_sets, settings, CHUNKS_PER_WORKER * workers), int(workers), bar)
    else:
        owned = isinstance(scheduler, str)
        client = connect_scheduler(scheduler) if owned else scheduler
        try:
            tasks = _plan(window_sets, settings, CHUNKS_PER_WORKER * _cluster_slots(client))
            partials = _run_dask(tasks, client, bar)
        finally:
            if owned:
                client.close()
    accs, seconds = _merge(partials)
    return _result(window_sets, n_in, n_out, thresholds, names, accs, seconds, domain)


def _result(window_sets, n_in, n_out, thresholds, names, accs, seconds, domain) -> EvaluationResult:
    total = sum(ws.count for _, ws in window_sets)
    steps = [ws.step_minutes for _, ws in window_sets if ws.count]
    unique_steps = sorted(set(steps))
    return EvaluationResult(
        windows=total,
        skipped_windows=sum(ws.skipped for _, ws in window_sets),
        too_short_sequences=tuple(name for name, ws in window_sets if ws.too_short),
        input_frames=n_in,
        lead_frames=n_out,
        time_step_minutes=unique_steps[0] if len(unique_steps) == 1 else tuple(steps),
        thresholds=tuple(thresholds),
        data=tuple(SequenceWindows(name, ws.count, ws.skipped) for name, ws in window_sets),
        methods=tuple(acc.result(name, sec / total) for name, acc, sec in zip(names, accs, seconds)),
        domain=domain,
    )


def _plain_number(t: float):
    return int(t) if float(t).is_integer() else float(t)


def to_json(result, indent: int | None = 2) -> str:
    """Strict JSON of a result (EvaluationResult, Scores or a plain dict): undefined scores are null."""
    return strict_json.dumps(result, indent=indent)
