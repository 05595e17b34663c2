"""Training samples: windows of (inputs, targets) cut from radar sequences, with augmentation.

A sample is ``n_in + n_out`` consecutive frames (or every k-th frame, a "speed" augmentation) of one
sequence, cropped to a square, optionally coarsened, rotated and flipped. The network sees the frames
on its [0, 1] scale with no data filled by the floor; the loss gets a validity mask so that no-data
pixels never count (docs/conventions.md).

A lazily read archive (`nowcast.radar.open_radar` with ``lazy``) is sampled from disk: each draw reads
only its window's frames (`LazyFrames`), and the draws are the same as from the archive held in memory.

Two ways to draw, both a function of the seed alone:

- ``sample()`` / ``sample_batch(n)``: a stream from the sampler's own numpy Generator;
  ``state_dict()/load_state_dict()`` let a resumed run continue the exact same stream.
- ``sample_at(iteration, slot)`` / ``batch_at(iteration, slots)``: the sample of one slot of one iteration's
  global batch, from a Generator seeded by (seed, iteration, slot). No state is carried from draw to draw, so
  any process or DataLoader worker can draw any slot and gets the same sample (training uses this).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import timeaxis
from .archive import is_lazy
from .errors import NowcastError
from .units import DBZ_FLOOR, apply_floor, dbz_to_unit


# ---------------------------------------------------------------------------------------------
# sequences


class LazyFrames:
    """The (T, H, W) frames of a lazily read sequence (`nowcast.archive`), read when sliced.

    Slicing gives what slicing the eager array gives: float32 dBZ with the floor applied; only the
    frames the slice needs are read, so a sampler over a season's archive holds one window at a time.
    """

    def __init__(self, data):
        self.data = data
        self.shape = tuple(int(s) for s in data.shape)
        self.ndim = 3
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        arr = np.asarray(self.data[key].values)
        return np.ascontiguousarray(apply_floor(arr.astype(np.float32)), dtype=np.float32)


@dataclass
class SeqData:
    """One sequence as float32 dBZ frames (T, H, W) with NaN = no data, and its contiguous runs.

    ``frames`` is an array, or `LazyFrames` for a lazily read archive (sliced the same way).
    ``segment[t]`` numbers the runs of frames with the regular time step: a window is valid only
    when all its frames lie in one run (no time gap inside).
    """

    name: str
    frames: np.ndarray | LazyFrames
    segment: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    def valid_starts(self, span: int) -> np.ndarray:
        """Start indices t such that frames t .. t+span-1 exist and contain no time gap."""
        n = self.n_frames - span + 1
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        t = np.arange(n)
        return t[self.segment[t] == self.segment[t + span - 1]]


def time_segments(times) -> np.ndarray | None:
    """Number the runs of regularly spaced times (`nowcast.timeaxis.runs`: the rule open_radar uses)."""
    return timeaxis.runs(times)


def as_seqdata(name: str, data) -> SeqData:
    """SeqData from a DataArray (time, y, x) in dBZ, or from a plain (T, H, W) array.

    A DataArray whose data are not in memory (a lazily read archive) stays on disk: `LazyFrames`.
    """
    times = None
    # a DataArray: `hasattr(data, "values")` would read a lazy archive whole, so ask for `variable`
    if hasattr(data, "dims") and hasattr(data, "variable"):
        if data.ndim != 3:
            raise NowcastError(f"sequence {name!r} must be (time, y, x), got dims {tuple(data.dims)}")
        if "time" in data.coords:
            times = data["time"].values
        if is_lazy(data):
            seg = time_segments(times)
            return SeqData(str(name), LazyFrames(data), np.zeros(data.shape[0], np.int64) if seg is None else seg)
        arr = data.values
    else:
        arr = np.asarray(data)
        if arr.ndim != 3:
            raise NowcastError(f"sequence {name!r} must be (T, H, W), got shape {arr.shape}")
    arr = np.ascontiguousarray(apply_floor(arr.astype(np.float32)), dtype=np.float32)
    seg = time_segments(times)
    if seg is None:
        seg = np.zeros(arr.shape[0], dtype=np.int64)
    return SeqData(str(name), arr, seg)


def split_in_time(data, val_fraction: float, gap: int, min_val: int):
    """Split a (time, ...) sequence into (train, val): val = the last part, a gap of ``gap`` frames between.

    The val part has max(round(T * val_fraction), min_val) frames. Returns (data, None) when the
    sequence is too short to keep at least ``min_val`` frames on each side of the gap.
    """
    n = int(data.shape[0])
    n_val = max(int(round(n * float(val_fraction))), int(min_val))
    n_train = n - n_val - int(gap)
    if n_train < min_val:
        return data, None
    if hasattr(data, "isel"):
        return data.isel(time=slice(0, n_train)), data.isel(time=slice(n - n_val, n))
    return data[:n_train], data[n - n_val:]


def parse_time_range(text: str) -> tuple[np.datetime64, np.datetime64]:
    """'START/END' (ISO 8601 times, END excluded) -> two datetime64[ns]."""
    parts = str(text).split("/")
    if len(parts) != 2:
        raise NowcastError(f"time range {text!r} must be START/END, e.g. 2020-10-31T12:00/2020-10-31T18:00")
    try:
        start, end = (np.datetime64(p.strip(), "ns") for p in parts)
    except ValueError:
        raise NowcastError(f"time range {text!r}: not ISO 8601 times (YYYY-MM-DDTHH:MM)") from None
    if not end > start:
        raise NowcastError(f"time range {text!r}: the end must come after the start")
    return start, end


def split_by_time_range(data, start, end, gap: int, min_len: int):
    """Split a (time, ...) DataArray into (train parts, val): val = the frames with start <= time < end;
    the training parts are what lies before and after, less ``gap`` frames on each side of the range, and
    keep only parts of at least ``min_len`` frames. val is None when fewer than ``min_len`` frames fall
    in the range (the sequence is then all training)."""
    times = np.asarray(data["time"].values)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise NowcastError("a validation time range needs sequences with date-time coordinates")
    i0 = int(np.searchsorted(times, np.datetime64(start, "ns"), side="left"))
    i1 = int(np.searchsorted(times, np.datetime64(end, "ns"), side="left"))
    if i1 - i0 < min_len:
        return [data], None
    n = int(data.sizes["time"])
    spans = [(0, i0 - gap), (i1 + gap, n)]
    parts = [data.isel(time=slice(a, b)) for a, b in spans if b - a >= min_len]
    return parts, data.isel(time=slice(i0, i1))


# ---------------------------------------------------------------------------------------------
# augmentation helpers (numpy, (T, H, W) arrays)


def coarsen_dbz(frames: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool dBZ frames by ``factor`` in linear reflectivity Z, NaN-aware, then back to dBZ.

    Averaging in Z (not in dBZ) keeps the strong cores from being washed out by surrounding weak echo,
    as a coarser radar would see them. A block's value is the mean of its valid pixels; a block with
    no valid pixel is NaN. H and W must be multiples of ``factor``.
    """
    factor = int(factor)
    if factor == 1:
        return frames
    t, h, w = frames.shape
    if h % factor or w % factor:
        raise ValueError(f"frame size {h}x{w} is not a multiple of the coarsening factor {factor}")
    z = np.power(10.0, frames.astype(np.float64) / 10.0)
    blocks = z.reshape(t, h // factor, factor, w // factor, factor)
    valid = np.isfinite(blocks)
    count = valid.sum(axis=(2, 4))
    total = np.where(valid, blocks, 0.0).sum(axis=(2, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        out = 10.0 * np.log10(mean)
    return apply_floor(out).astype(np.float32)


def shift_intensity(frames: np.ndarray, offset_db: float) -> np.ndarray:
    """Echo (above the floor) shifted by ``offset_db``; the floor stays the floor, no data stays NaN."""
    shifted = np.maximum(frames + np.float32(offset_db), np.float32(DBZ_FLOOR))
    return np.where(frames > DBZ_FLOOR, shifted, frames).astype(frames.dtype)


def dihedral(frames: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate (T, H, W) frames by k * 90 degrees, then flip left-right if asked."""
    out = np.rot90(frames, k=int(k) % 4, axes=(1, 2))
    if flip:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------------
# the sampler

# keeps the keyed Generators apart from any other stream seeded from the same run seed
KEYED_STREAM = 0x5A3D


@dataclass
class SamplerConfig:
    n_in: int = 5
    n_out: int = 10
    crop: int = 64
    coarsen_factors: tuple = (1,)  # spatial coarsening factor drawn uniformly from this set
    time_strides: tuple = (1,)  # speed augmentation: every k-th frame, k drawn from this set
    flips: bool = True  # random 90-degree rotations and left-right flips (the 8 symmetries of the square)
    echo_threshold: float = 15.0  # dBZ; a pixel at or above it counts as echo
    min_echo_fraction: float = 0.02  # crops with less echo (of their valid pixels) are "dry"
    dry_keep_probability: float = 0.1  # a dry crop is kept with this probability, else drawn again
    min_valid_fraction: float = 0.5  # crops with fewer valid (not NaN) pixels are always drawn again
    max_tries: int = 50  # after this many rejections the last crop is taken as it is
    synthetic_fraction: float = 0.0  # probability that a sample comes from the synthetic pool
    frame: str = "eulerian"  # or "lagrangian": windows advected along their optical flow (nowcast.lagrangian_windows)
    advection: str = "bilinear"  # how a Lagrangian window's frames are sampled: the model's (ModelConfig.advection)
    # climate augmentation: every echo of a sample is shifted by one offset drawn uniformly from +-this many dB,
    # so the network meets weaker and stronger climates than its training services' (0 = off)
    intensity_offset_db: float = 0.0

    def validate(self) -> None:
        def bad(msg):
            raise NowcastError(f"invalid sampler settings: {msg}")

        if self.n_in < 1 or self.n_out < 1:
            bad("n_in and n_out must be positive")
        if self.crop < 1:
            bad(f"crop must be positive, got {self.crop}")
        if not self.coarsen_factors or any(int(f) < 1 for f in self.coarsen_factors):
            bad(f"coarsen factors must be positive integers, got {self.coarsen_factors}")
        if not self.time_strides or any(int(k) < 1 for k in self.time_strides):
            bad(f"time strides must be positive integers, got {self.time_strides}")
        if self.frame not in ("eulerian", "lagrangian"):
            bad(f"frame must be eulerian or lagrangian, got {self.frame!r}")
        if self.advection not in ("bilinear", "nearest"):
            bad(f"advection must be bilinear or nearest, got {self.advection!r}")
        if not 0.0 <= float(self.intensity_offset_db) <= 20.0:
            bad(f"intensity_offset_db must lie in [0, 20], got {self.intensity_offset_db}")
        for name in ("min_echo_fraction", "dry_keep_probability", "min_valid_fraction", "synthetic_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                bad(f"{name} must lie in [0, 1], got {v}")


class Draw(NamedTuple):
    """Where a drawn window lies: sequence, first frame, frame stride, crop corner and size (native pixels),
    coarsening factor, rotation (quarter turns) and flip."""

    seq: SeqData
    t0: int
    stride: int
    y0: int
    x0: int
    size: int
    factor: int
    rot: int
    flip: bool


class WindowSampler:
    """Random training windows from sequences; deterministic given the seed, resumable.

    ``sample()`` returns the stream's next window, ``sample_batch(n)`` a batch; ``sample_at(iteration, slot)``
    and ``batch_at(iteration, slots)`` the keyed ones (module docstring). Each is a dict of float32 arrays:
    ``inputs`` (n_in, h, w) and ``targets`` (n_out, h, w) on the network's [0, 1] scale (no data = 0),
    ``mask`` (n_out, h, w) with 1 where the target has data, 0 where it has none.

    With ``config.frame == "lagrangian"`` every window is cut in Lagrangian coordinates at the time of its
    last input (``nowcast.lagrangian_windows``); ``motion_cache`` keeps the windows' optical flow (give it a
    folder to keep the flow across runs; by default it lives in memory).
    """

    def __init__(self, sequences, config: SamplerConfig | None = None, seed: int = 0, synthetic=(),
                 motion_cache=None):
        self.config = config or SamplerConfig()
        if self.config.frame == "lagrangian" and motion_cache is None:
            from .lagrangian_windows import MotionCache

            motion_cache = MotionCache()
        self.motion_cache = motion_cache
        self.config.validate()
        self.pools = [self._prepare(sequences), self._prepare(synthetic)]
        if not self.pools[0] and not self.pools[1]:
            raise NowcastError("no training sequences given")
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.count = 0  # samples drawn so far
        self.rejected = 0
        self._starts_cache: dict = {}
        self._check_fits()

    @staticmethod
    def _prepare(sequences) -> list[SeqData]:
        out = []
        for i, item in enumerate(sequences or ()):
            if isinstance(item, SeqData):
                out.append(item)
            elif isinstance(item, tuple) and len(item) == 2:
                out.append(as_seqdata(item[0], item[1]))
            else:
                out.append(as_seqdata(f"sequence{i}", item))
        return out

    def _span(self, stride: int) -> int:
        return (self.config.n_in + self.config.n_out - 1) * stride + 1

    def _starts(self, pool: int, index: int, stride: int) -> np.ndarray:
        key = (pool, index, stride)
        if key not in self._starts_cache:
            self._starts_cache[key] = self.pools[pool][index].valid_starts(self._span(stride))
        return self._starts_cache[key]

    def _candidates(self, pool: int, stride: int, size: int):
        """Sequences of the pool that hold a window at this stride and crop size, weighted by their windows."""
        key = ("candidates", pool, stride, size)
        if key in self._starts_cache:
            return self._starts_cache[key]
        idx, weights = [], []
        for i, s in enumerate(self.pools[pool]):
            _, h, w = s.frames.shape
            n = len(self._starts(pool, i, stride))
            if n and h >= size and w >= size:
                idx.append(i)
                weights.append(n)
        self._starts_cache[key] = idx, np.asarray(weights, dtype=np.float64)
        return self._starts_cache[key]

    def _check_fits(self) -> None:
        c = self.config
        for pool, label in ((0, "training sequences"), (1, "synthetic sequences")):
            if not self.pools[pool]:
                continue
            if not self._candidates(pool, min(c.time_strides), c.crop * min(c.coarsen_factors))[0]:
                raise NowcastError(
                    f"none of the {label} holds a window of {c.n_in}+{c.n_out} frames "
                    f"and {c.crop}x{c.crop} pixels"
                )

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain-python state (safe for torch.load(weights_only=True) and for JSON)."""
        return {
            "seed": self.seed,
            "count": self.count,
            "rejected": self.rejected,
            "bit_generator": copy.deepcopy(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.count = int(state["count"])
        self.rejected = int(state.get("rejected", 0))
        self.rng = np.random.default_rng(self.seed)
        self.rng.bit_generator.state = copy.deepcopy(state["bit_generator"])

    # -- sampling ---------------------------------------------------------------------------

    def _draw_window(self, rng: np.random.Generator):
        """One candidate window: (dBZ frames (L, crop, crop), description)."""
        c = self.config
        use_syn = bool(self.pools[1]) and (not self.pools[0] or rng.random() < c.synthetic_fraction)
        pool = 1 if use_syn else 0
        # a stride / factor combination no sequence can serve is replaced by the smallest ones
        stride = int(rng.choice(c.time_strides))
        factor = int(rng.choice(c.coarsen_factors))
        idx, weights = self._candidates(pool, stride, c.crop * factor)
        if not idx:
            stride, factor = min(c.time_strides), min(c.coarsen_factors)
            idx, weights = self._candidates(pool, stride, c.crop * factor)
        i = idx[int(rng.choice(len(idx), p=weights / weights.sum()))]
        seq = self.pools[pool][i]
        starts = self._starts(pool, i, stride)
        t0 = int(starts[rng.integers(len(starts))])
        size = c.crop * factor
        _, h, w = seq.frames.shape
        y0 = int(rng.integers(h - size + 1))
        x0 = int(rng.integers(w - size + 1))
        rot = int(rng.integers(4)) if c.flips else 0
        flip = bool(rng.integers(2)) if c.flips else False
        frames = seq.frames[t0 : t0 + self._span(stride) : stride, y0 : y0 + size, x0 : x0 + size]
        frames = coarsen_dbz(frames, factor)
        frames = dihedral(frames, rot, flip)
        info = dict(sequence=seq.name, start=t0, stride=stride, factor=factor, y=y0, x=x0, rot=rot, flip=flip)
        return frames, info, Draw(seq, t0, stride, y0, x0, size, factor, rot, flip)

    def _lagrangian_window(self, draw: Draw) -> np.ndarray:
        """The drawn window cut again in Lagrangian coordinates (only for accepted windows: it costs more)."""
        from .lagrangian_windows import cut_window

        cache = self.motion_cache
        coarse = cache.coarse(draw.seq.frames, draw.t0, draw.stride, self.config.n_in)
        frames = cut_window(draw.seq.frames[draw.t0 : draw.t0 + self._span(draw.stride) : draw.stride],
                            lambda y, x, h, w: cache.region(coarse, y, x, h, w), self.config.n_in,
                            draw.y0, draw.x0, draw.size, self.config.advection)
        return dihedral(coarsen_dbz(frames, draw.factor), draw.rot, draw.flip)

    def _acceptable(self, frames: np.ndarray, rng: np.random.Generator) -> bool:
        c = self.config
        valid = np.isfinite(frames)
        n_valid = int(valid.sum())
        if n_valid < c.min_valid_fraction * frames.size or n_valid == 0:
            return False
        echo = float((frames[valid] >= c.echo_threshold).mean())
        if echo >= c.min_echo_fraction:
            return True
        # a dry crop: keep a few so the network also learns that nothing comes from nothing
        return bool(rng.random() < c.dry_keep_probability)

    def _sample(self, rng: np.random.Generator, return_info: bool) -> dict:
        """Draw one training window with ``rng`` (see the class docstring)."""
        frames, info, draw = None, None, None
        for _ in range(max(1, self.config.max_tries)):
            # acceptance looks at the plain crop, which holds about the same echo as its Lagrangian version
            frames, info, draw = self._draw_window(rng)
            if self._acceptable(frames, rng):
                break
            self.rejected += 1
        if self.config.frame == "lagrangian":
            frames = self._lagrangian_window(draw)
        if self.config.intensity_offset_db > 0:
            frames = shift_intensity(frames, rng.uniform(-1.0, 1.0) * self.config.intensity_offset_db)
        self.count += 1
        n_in = self.config.n_in
        out = {
            "inputs": dbz_to_unit(frames[:n_in]),
            "targets": dbz_to_unit(frames[n_in:]),
            "mask": np.isfinite(frames[n_in:]).astype(np.float32),
        }
        if return_info:
            out["info"] = info
        return out

    def sample(self, return_info: bool = False):
        """Draw the next window of the sampler's stream (see the class docstring)."""
        return self._sample(self.rng, return_info)

    def sample_batch(self, batch_size: int) -> dict:
        """A batch of the stream's next windows stacked along a new first axis."""
        return _stack([self.sample() for _ in range(int(batch_size))])

    # -- keyed draws ------------------------------------------------------------------------

    def keyed_rng(self, iteration: int, slot: int) -> np.random.Generator:
        """The Generator of one slot of one iteration's global batch: a function of (seed, iteration, slot)."""
        return np.random.default_rng([self.seed, KEYED_STREAM, int(iteration), int(slot)])

    def sample_at(self, iteration: int, slot: int, return_info: bool = False) -> dict:
        """The window of slot ``slot`` of iteration ``iteration``; the sampler's stream is not touched."""
        return self._sample(self.keyed_rng(iteration, slot), return_info)

    def batch_at(self, iteration: int, slots) -> dict:
        """The windows of these slots of one iteration's global batch, stacked in slot order."""
        return _stack([self.sample_at(iteration, slot) for slot in slots])


def _stack(items: list[dict]) -> dict:
    return {k: np.stack([it[k] for it in items]) for k in items[0] if k != "info"}
