"""Loss terms that do not pay for weakening strong echoes: symmetric heavy-echo weights and soft CSI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.train.config import OptimConfig
from nowcast.train.objectives import masked_loss, soft_csi_loss, unit_to_dbz_unclipped
from nowcast.errors import NowcastError


def unit(dbz):
    return (torch.as_tensor(dbz, dtype=torch.float32) + 10.0) / 80.0


def test_symmetric_weights_charge_a_heavy_false_alarm_like_a_heavy_miss():
    mask = torch.ones(1, 1, 1, 2)
    truth = unit([[[[50.0, 0.0]]]])
    miss = unit([[[[0.0, 0.0]]]])  # the 50 dBZ cell forecast dry
    false_alarm = unit([[[[50.0, 50.0]]]])  # a 50 dBZ cell forecast where it is dry
    target_only = masked_loss(false_alarm, truth, mask, "l1", balanced=True)
    both = masked_loss(false_alarm, truth, mask, "l1", balanced=True, balance_on="both")
    # by hand: |error| = 50/80 on one pixel of two; weight 1 (target 0 dBZ) or 30 (forecast >= 30 mm/h)
    assert float(target_only) == pytest.approx(0.625 * 1 / 2)
    assert float(both) == pytest.approx(0.625 * 30 / 2)
    assert float(masked_loss(miss, truth, mask, "l1", balanced=True, balance_on="both")) == pytest.approx(0.625 * 30 / 2)


def test_soft_csi_is_near_the_real_csi_and_has_gradients():
    truth = torch.full((1, 1, 8, 8), -10.0)
    truth[..., :4, :] = 60.0  # half the frame is a 60 dBZ cell (far above both thresholds)
    fc = torch.full((1, 1, 8, 8), -10.0)
    fc[..., 2:6, :] = 60.0  # moved by two rows: CSI = 16 / 48 = 1/3 at both thresholds
    pred = unit(fc).requires_grad_()
    loss = soft_csi_loss(pred, unit(truth), torch.ones_like(truth))
    assert float(loss) == pytest.approx(1 - 1 / 3, abs=0.02)
    loss.backward()
    assert pred.grad.abs().sum() > 0
    perfect = soft_csi_loss(unit(truth), unit(truth), torch.ones_like(truth))
    assert float(perfect) < 0.02


def test_soft_csi_ignores_no_data_and_dry_batches():
    truth = torch.full((1, 1, 4, 4), 45.0)
    mask = torch.zeros_like(truth)
    assert float(soft_csi_loss(unit(truth), unit(truth - 50), mask)) == 0.0
    dry = unit(torch.full((1, 1, 4, 4), -10.0))
    assert float(soft_csi_loss(dry, dry, torch.ones_like(dry))) == 0.0
    total = masked_loss(dry, dry, torch.ones_like(dry), soft_csi=1.0)
    assert float(total) == 0.0


def test_optim_config_checks_the_new_settings():
    with pytest.raises(NowcastError, match="balance_on"):
        OptimConfig(balance_on="forecast")
    with pytest.raises(NowcastError, match="soft_csi"):
        OptimConfig(soft_csi=-1.0)


def test_gdl_loss_equals_the_gdl_score_and_pays_for_smoothing():
    from nowcast.train.objectives import gdl_loss
    from nowcast.verify import gdl

    rng = np.random.default_rng(3)
    truth = rng.uniform(-10, 60, (2, 3, 12, 10)).astype(np.float32)
    fc = truth + rng.normal(0, 4, truth.shape).astype(np.float32)
    fc[0, 1, 4:6, 2:5] = np.nan  # no data: pairs touching it are left out by both
    mask = np.isfinite(fc).astype(np.float32)
    unit = lambda a: torch.from_numpy((np.clip(np.nan_to_num(a, nan=-10.0), -10, 70) + 10.0) / 80.0)  # noqa: E731
    # verify.gdl averages per frame; the loss pools the batch, so compare frame by frame
    for b in range(2):
        for t in range(3):
            got = float(gdl_loss(unit(fc[b, t])[None], unit(truth[b, t])[None], torch.from_numpy(mask[b, t])[None]))
            assert got == pytest.approx(gdl(fc[b, t], truth[b, t]), rel=1e-5)
    smooth = torch.full((1, 12, 10), 0.5)
    sharp = unit(truth[0, 0])[None]
    assert float(gdl_loss(sharp, sharp, torch.ones_like(sharp))) == 0.0
    assert float(gdl_loss(smooth, sharp, torch.ones_like(sharp))) > 0.05
    pred = smooth.clone().requires_grad_(True)
    masked_loss(pred, sharp, torch.ones_like(sharp), gdl=1.0).backward()
    assert float(pred.grad.abs().sum()) > 0


def test_optim_config_checks_the_gdl_weight():
    with pytest.raises(NowcastError, match="gdl"):
        OptimConfig(gdl=-0.5)


def test_the_loss_terms_see_dbz_past_the_range_and_its_gradient():
    from nowcast.units import unit_to_dbz

    x = torch.tensor([-0.1, 0.5, 1.2], requires_grad=True)
    dbz = unit_to_dbz_unclipped(x)
    assert dbz.detach().tolist() == pytest.approx([-18.0, 30.0, 86.0])  # not clipped to [-10, 70]
    assert unit_to_dbz(x.detach().numpy()).tolist() == pytest.approx([-10.0, 30.0, 70.0])  # the clipped one
    dbz.sum().backward()
    assert x.grad.tolist() == pytest.approx([80.0, 80.0, 80.0])
