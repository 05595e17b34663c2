"""The Lagrangian frame of one window: the one transform training windows and forecasts both use.

With n_in past frames I(t-n_in+1 .. t), n_out future frames and a flow V (B, 2, H, W) in pixels per step
(``nowcast.motion`` conventions), the frame moves with V and coincides with the grid at time t, the last
input:
- past frame j is advected forward by n_in-1-j steps: J(t-k) = A_V^k I(t-k) (the last input is itself);
- an observed future frame t+k is advected backward by k steps, A_{-V}^k I(t+k): the truth in that frame;
- a Lagrangian forecast K(t+k) goes back onto the grid forward by k steps: F(t+k) = A_V^k K(t+k).
Each result comes with where it has a source: its trajectory stays on the grid and, when the caller gives a
data mask (training windows do), every pixel it interpolates had data.

Frames are sampled along the trajectories bilinearly or at the nearest pixel (``mode``; ``motion.ADVECTION_MODES``):
a model is trained and run with one mode, its config's ``advection``.

Trajectories are integrated once per direction, as far as the longest use asked for so far (a later, longer
use continues them; ``motion.displacements`` gives the same values either way).
"""

from __future__ import annotations

import torch

from .motion import ADVECTION_MODES, advect_frames, displacements


class LagrangianTransform:
    """Past frames, observed future frames and forecasts between the grid and the Lagrangian frame of V.

    ``velocity`` (B, 2, H, W); frames are (B, N, H, W) in any units on that grid, ``valid`` (B, N, H, W)
    bool where they have data (optional; without it only the trajectory decides). Each method returns
    (frames, source) with ``source`` bool, the frames' shape (the window's, given a ``window``).
    """

    def __init__(self, velocity: torch.Tensor, n_in: int, n_out: int, mode: str = "bilinear", window=None):
        if velocity.dim() != 4 or velocity.shape[1] != 2:
            raise ValueError(f"velocity must be (B, 2, H, W), got {tuple(velocity.shape)}")
        if mode not in ADVECTION_MODES:
            raise ValueError(f"advection mode must be one of {', '.join(ADVECTION_MODES)}, got {mode!r}")
        self.mode = mode
        # (y0, x0, h, w): past and future frames are wanted on this crop only (training windows); only its
        # pixels' trajectories are integrated, over the whole velocity grid
        self.window = None if window is None else tuple(int(v) for v in window)
        self.velocity = velocity
        self.n_in, self.n_out = int(n_in), int(n_out)
        self._disp = {1: None, -1: None}  # upstream displacements D_1.. along +V and along -V

    def displacements(self, sign: int, steps: int) -> torch.Tensor:
        """D_1..D_steps (B, steps, 2, H, W) along ``sign`` * V (+1: past frames and forecasts, -1: observed
        future frames), integrated once and continued when a use needs more steps."""
        have = self._disp[sign]
        done = 0 if have is None else have.shape[1]
        if have is None or steps > done:
            more = displacements(sign * self.velocity, steps - done, None if have is None else have[:, -1],
                                 self.window)
            self._disp[sign] = more if have is None else torch.cat([have, more], 1)
        return self._disp[sign][:, :steps]

    def past(self, frames: torch.Tensor, valid: torch.Tensor | None = None):
        """The n_in past frames in the Lagrangian frame: frame j advected forward by n_in-1-j steps."""
        self._check(frames, self.n_in, "past")
        leads = range(self.n_in - 1, -1, -1)
        return advect_frames(frames, self.velocity, leads, self.displacements(1, self.n_in - 1), valid,
                             self.mode, self.window)

    def future(self, frames: torch.Tensor, valid: torch.Tensor | None = None):
        """Observed future frames t+1..t+N (N <= n_out) in the Lagrangian frame: frame t+k advected back k steps."""
        n = self._check(frames, self.n_out, "future")
        if n == 0:
            frames = frames if self.window is None else frames[..., :self.window[2], :self.window[3]]
            return frames, torch.ones_like(frames, dtype=torch.bool)
        return advect_frames(frames, -self.velocity, range(1, n + 1), self.displacements(-1, n), valid,
                             self.mode, self.window)

    def to_grid(self, forecast: torch.Tensor):
        """A Lagrangian forecast K(t+1..t+N) (N <= n_out) back onto the grid: K(t+k) advected forward k steps."""
        n = self._check(forecast, self.n_out, "forecast")
        if self.window is not None:
            raise ValueError("a forecast goes back onto the whole grid: make the transform without a window")
        return advect_frames(forecast, self.velocity, range(1, n + 1), self.displacements(1, n), mode=self.mode)

    def _check(self, frames: torch.Tensor, most: int, what: str) -> int:
        if frames.dim() != 4 or frames.shape[-2:] != self.velocity.shape[-2:]:
            raise ValueError(f"{what} frames must be (B, N, H, W) on the flow's grid "
                             f"{tuple(self.velocity.shape[-2:])}, got {tuple(frames.shape)}")
        n = frames.shape[1]
        if (what == "past" and n != most) or n > most:
            raise ValueError(f"{n} {what} frames for a transform of {self.n_in} inputs and {self.n_out} outputs")
        return n
