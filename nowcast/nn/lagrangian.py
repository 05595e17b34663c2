"""MotionRNN in Lagrangian coordinates: optical flow carries the motion, the network learns the rest.

Sources: Ritvanen et al., "Advection-free convolutional neural network for convective rainfall nowcasting"
(L-CNN, IEEE JSTARS 2023) and LUPIN (Applied Computing and Geosciences 2025); see docs/lagrangian.md.

With inputs I(t-T+1 .. t) and a motion field V (pixels per step, nowcast.motion conventions):
1. every past frame is advected forward to time t: J(t-k) = A_V^k I(t-k), so a pattern that moves with V
   stands still in J;
2. the recurrent network (residual: each output is the frame it read plus a learned change) forecasts the
   Lagrangian future K(t+1 .. t+n) from J; untrained (zero change) it gives K = I(t);
3. each K(t+k) is advected forward by k steps: F(t+k) = A_V^k K(t+k). With K = I(t) that is exactly the
   extrapolation nowcast.
The MotionGRU offsets therefore describe motion relative to the optical flow: a learned correction.
"""

from __future__ import annotations

import torch

from ..lagrangian_transform import LagrangianTransform
from .config import ModelConfig
from .motionrnn import MotionRNN


class LagrangianFrame:
    """Mixin that puts any network with MotionRNN's call contract into Lagrangian coordinates.

    ``model(frames, n_out, motion=V)``: frames (B, T, H, W) on the [0, 1] scale in ordinary (Eulerian)
    coordinates and V (B, 2, H, W) -> forecasts (B, n_out, H, W) on the grid; pixels whose trajectory
    comes from beyond the grid are the floor there (``around_network`` tells where). Both ways go through
    ``nowcast.lagrangian_transform.LagrangianTransform``, the one the training windows are cut with.
    Without ``motion`` the frames are taken to be in Lagrangian coordinates already and the Lagrangian
    forecast K is returned: that is how training uses it (the sampler cuts Lagrangian windows, so the
    loss is taken in the frame where the network works; ``truth`` must then be Lagrangian too).
    Same weights and state-dict keys as the network it extends.
    """

    def __init__(self, config: ModelConfig):
        if config.frame != "lagrangian" or not config.residual:
            raise ValueError("a Lagrangian network needs a config with frame='lagrangian' and residual=True")
        super().__init__(config)

    def forward(self, frames, n_out=None, truth=None, sampling_mask=None, return_motion: bool = False,
                motion: torch.Tensor | None = None):
        if motion is None:
            return super().forward(frames, n_out, truth=truth, sampling_mask=sampling_mask,
                                   return_motion=return_motion)
        n_out = self.config.output_frames if n_out is None else int(n_out)
        self._check_frames(frames)
        n_truth = 0 if truth is None else truth.shape[1]  # the contract lets truth run past n_out
        transform = LagrangianTransform(motion, frames.shape[1], max(n_out, n_truth), self.config.advection)
        if truth is not None:
            truth, _ = transform.future(truth)  # the truth in the frame the network forecasts in
        states = []

        def network(lagrangian):
            res = super(LagrangianFrame, self).forward(lagrangian, n_out, truth=truth, sampling_mask=sampling_mask,
                                                       return_motion=return_motion)
            if return_motion:
                res, motion_states = res
                states.append(motion_states)
            return res

        out, _ = self._around(transform, frames, network)
        return (out, states[0]) if return_motion else out

    def around_network(self, frames, motion, n_out: int, network):
        """Advect (B, T, H, W) frames into Lagrangian coordinates along ``motion``, forecast them with
        ``network`` (Lagrangian frames -> Lagrangian forecast (B, n_out, H, W)), and advect each forecast frame
        out by its lead. Returns (forecast on the grid, where it has a source). One set of trajectories serves
        both ways; the forecaster passes a tiled ``network`` on large grids."""
        self._check_frames(frames)
        return self._around(LagrangianTransform(motion, frames.shape[1], n_out, self.config.advection), frames,
                            network)

    @staticmethod
    def _around(transform: LagrangianTransform, frames, network):
        lagrangian, _ = transform.past(frames)
        return transform.to_grid(network(lagrangian))

    @staticmethod
    def _check_frames(frames) -> None:
        if frames.dim() != 4:
            raise ValueError(f"a lagrangian model reads (B, T, H, W) frames, got {tuple(frames.shape)}")


class LagrangianMotionRNN(LagrangianFrame, MotionRNN):
    """The MotionRNN (any recurrent block, with or without MotionGRU) in Lagrangian coordinates."""


_CLASSES: dict[type, type] = {MotionRNN: LagrangianMotionRNN}


def lagrangian_class(base: type) -> type:
    """The Lagrangian version of a network class (made once per class, so isinstance checks hold)."""
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Lagrangian{base.__name__}", (LagrangianFrame, base), {"__doc__": base.__doc__})
    return _CLASSES[base]
