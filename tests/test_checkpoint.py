"""Checkpoint tests: round trip, refusal of non-checkpoints (pickle bombs included), mismatches, SHA-256."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

import nowcast
from nowcast.checkpoint import (
    DEFAULT_MODEL_NAME,
    default_model_path,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from nowcast.errors import NowcastError
from nowcast.nn import ModelConfig, build_model

TINY = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=4)


@pytest.fixture
def tiny_ckpt(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    model = build_model(cfg)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, cfg, {"training_data": {"files": ["a.nc"], "sequences": 3}})
    return path, model, cfg


def test_round_trip_bit_identical(tiny_ckpt):
    path, model, cfg = tiny_ckpt
    loaded, info = load_model(path)
    assert info["name"] == "tiny" and info["config"] == cfg
    assert info["meta"]["normalisation"] == "dbz clip [-10,70] -> [0,1]"
    assert info["meta"]["nowcast_version"] == nowcast.__version__
    assert info["meta"]["training_data"]["sequences"] == 3
    assert info["meta"]["input_frames"] == 3
    x = torch.rand(2, 3, 19, 23)
    with torch.no_grad():
        assert torch.equal(model.eval()(x, 4), loaded(x, 4))
    assert not loaded.training
    # the same as attributes of the LoadedModel that unpacked into (loaded, info) above
    result = load_model(path)
    assert (result.name, result.config, result.meta, result.path) == (info["name"], cfg, info["meta"], info["path"])
    assert len(result.sha256) == 64 and result.info == info
    with torch.no_grad():
        assert torch.equal(result.model(x, 4), loaded(x, 4))


def test_no_temp_files_left(tiny_ckpt):
    path = tiny_ckpt[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.safetensors"]


def test_pickle_bomb_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"

    class Bomb:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("bomb.safetensors", "bomb.pt"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(Bomb()))
        with pytest.raises(NowcastError, match=name):
            load_model(path)
    assert not marker.exists()


def test_torch_save_zip_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(build_model(ModelConfig(**TINY)).state_dict(), path)
    with pytest.raises(NowcastError, match="model.pt"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"abc", b"hello world, not a model\n" * 3])
def test_non_checkpoints_refused(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(NowcastError, match="junk.safetensors"):
        load_model(path)


def test_truncated_file_refused(tiny_ckpt, tmp_path):
    data = tiny_ckpt[0].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NowcastError, match="cut.safetensors"):
        load_model(path)


def test_missing_file_and_unknown_name(tmp_path, monkeypatch):
    with pytest.raises(NowcastError, match="not found"):
        load_model(tmp_path / "nothere.safetensors")
    monkeypatch.setenv("NOWCAST_MODELS_DIR", str(tmp_path))
    with pytest.raises(NowcastError, match="no model named"):
        load_model("nothere")


def test_plain_safetensors_without_config_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(NowcastError, match="not a nowcast model"):
        load_model(path)


def _rewrite(path, out, tensors=None, config=None):
    tensors_, cfg, meta = read_checkpoint(path)
    tensors = tensors_ if tensors is None else tensors(tensors_)
    header = {
        "nowcast.format": "nowcast-model/1",
        "nowcast.config": json.dumps(cfg.to_dict() if config is None else config),
        "nowcast.meta": json.dumps(meta),
    }
    save_file(tensors, str(out), metadata=header)
    return out


def test_config_weight_mismatch_refused(tiny_ckpt, tmp_path):
    path, _, cfg = tiny_ckpt
    bigger = _rewrite(path, tmp_path / "hid.safetensors", config={**cfg.to_dict(), "hidden": 16})
    with pytest.raises(NowcastError, match="hid.safetensors.*shape"):
        load_model(bigger)
    nomotion = _rewrite(path, tmp_path / "nomo.safetensors", config={**cfg.to_dict(), "motion": False})
    with pytest.raises(NowcastError, match="unexpected weights"):
        load_model(nomotion)
    dropped = _rewrite(path, tmp_path / "drop.safetensors", tensors=lambda t: {k: v for k, v in t.items() if "conv_out" not in k})
    with pytest.raises(NowcastError, match="missing weights conv_out"):
        load_model(dropped)
    unknown = _rewrite(path, tmp_path / "unk.safetensors", config={**cfg.to_dict(), "dropout": 0.5})
    with pytest.raises(NowcastError, match="unk.safetensors.*unknown key"):
        load_model(unknown)


def test_named_models_and_sha256(tiny_ckpt, tmp_path, monkeypatch):
    path = tiny_ckpt[0]
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("NOWCAST_MODELS_DIR", str(models))
    assert default_model_path() is None
    target = models / f"{DEFAULT_MODEL_NAME}.safetensors"
    target.write_bytes(path.read_bytes())
    assert default_model_path() == target
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    (models / "SHA256SUMS").write_text(f"{digest}  {target.name}\n")
    _, info = load_model(DEFAULT_MODEL_NAME)
    assert info["sha256"] == digest and info["name"] == DEFAULT_MODEL_NAME
    (models / "SHA256SUMS").write_text(f"{'0' * 64}  {target.name}\n")
    with pytest.raises(NowcastError, match="SHA-256 mismatch"):
        load_model(DEFAULT_MODEL_NAME)


def test_shipped_models_load_and_match_their_recorded_sha256():
    from nowcast.checkpoint import models_dir

    sums = models_dir() / "SHA256SUMS"
    assert sums.is_file()
    names = [line.split()[1] for line in sums.read_text().splitlines() if line.strip()]
    assert "motionrnn-predrnn-radar.safetensors" in names
    assert "motionrnn-lagrangian-radar.safetensors" in names
    for name in names:
        model, info = load_model(name.removesuffix(".safetensors"))
        assert info["sha256"] == hashlib.sha256((models_dir() / name).read_bytes()).hexdigest()
        assert (models_dir() / name).stat().st_size < 5_000_000


def test_rewrite_settings_keeps_weights_and_applies_the_cap(tiny_ckpt, tmp_path):
    from nowcast.checkpoint import rewrite_settings

    path, model, cfg = tiny_ckpt
    capped = rewrite_settings(path, tmp_path / "capped.safetensors", {"growth_cap_dbz": 3.0, "growth_cap_radius": 2},
                              {"note": "cap added after training"})
    before, after = read_checkpoint(path), read_checkpoint(capped)
    assert before[0].keys() == after[0].keys() and all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert after[1].growth_cap_dbz == 3.0 and after[1].growth_cap_radius == 2
    assert after[2]["note"] == "cap added after training" and after[2]["training_data"]["sequences"] == 3
    loaded = load_model(capped).model
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        out = loaded(x, 4)
    # the bound: no output above the last input's maximum over a 5x5 square plus 3 dB ([0, 1] covers 80 dB)
    bound = torch.nn.functional.max_pool2d(x[:, -1:], 5, stride=1, padding=2) + 3.0 / 80
    assert (out <= bound + 1e-6).all()
    with pytest.raises(NowcastError, match="growth_cap_radius"):
        rewrite_settings(path, tmp_path / "bad.safetensors", {"growth_cap_radius": -1})
    assert not (tmp_path / "bad.safetensors").exists()
