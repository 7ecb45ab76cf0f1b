"""Tiny end-to-end mzen runs on CPU, the trainer's part: resume mid-phase, the non-finite guard,
offline LPIPS."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nerfstudio.engine.callbacks import TrainingCallbackLocation

from mzen_ns.trainer import NonFiniteError
from tests.helpers import add_callback, build, tiny_scene, tiny_trainer_config


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return tiny_scene(tmp_path_factory.mktemp("tiny") / "scene")


@pytest.mark.slow
def test_resume_in_phase_b_continues_phase_b(scene, tmp_path, monkeypatch):
    config = tiny_trainer_config(scene, tmp_path, steps=20, boundaries=(0.3, 0.8))
    first = build(config)
    assert first.pipeline.phase_schedule.phase_at(10) == "B"

    def crash(step):
        if step == 10:
            raise RuntimeError("simulated crash in phase B")

    add_callback(first, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION, crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.train()
    cameras = first.pipeline.mzen_model.cameras
    primed_base = cameras.base_c2w.clone()
    matched = cameras.match.root.clone()
    checkpoints = sorted(first.checkpoint_dir.glob("*.ckpt"))
    assert [p.name for p in checkpoints] == ["step-000000009.ckpt"]

    from mzen_ns import placement

    calls = []
    monkeypatch.setattr(placement, "plan_priming", lambda *a, **k: calls.append(1))
    resumed = build(
        tiny_trainer_config(scene, tmp_path / "resumed", steps=20, boundaries=(0.3, 0.8), load_dir=first.checkpoint_dir)
    )
    phases_seen = {}
    add_callback(
        resumed,
        TrainingCallbackLocation.BEFORE_TRAIN_ITERATION,
        lambda step: phases_seen.setdefault(step, resumed.pipeline.phase),
    )
    resumed.train()
    assert min(phases_seen) == 10 and phases_seen[10] == "B"
    assert calls == []  # not primed again
    again = resumed.pipeline.mzen_model.cameras
    assert torch.equal(again.match.root, matched)
    assert torch.equal(again.base_c2w, primed_base)


@pytest.mark.slow
def test_non_finite_loss_stops_with_last_good_checkpoint(scene, tmp_path):
    trainer = build(tiny_trainer_config(scene, tmp_path, steps=10))
    model = trainer.pipeline.mzen_model
    original = model.get_loss_dict

    def poisoned(outputs, batch, metrics_dict=None):
        losses = original(outputs, batch, metrics_dict)
        if trainer.pipeline.datamanager.train_count == 6:
            losses["rgb_loss"] = losses["rgb_loss"] * float("nan")
        return losses

    model.get_loss_dict = poisoned
    with pytest.raises(NonFiniteError, match="non-finite"):
        trainer.train()
    checkpoint = trainer.checkpoint_dir / "step-000000004.ckpt"
    assert checkpoint.is_file()
    state = torch.load(checkpoint, map_location="cpu")  # weights_only=True default, allow-listed types
    tensors = [v for v in state["pipeline"].values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    assert tensors and all(bool(torch.isfinite(v).all()) for v in tensors)


@pytest.mark.slow
def test_model_builds_offline_and_reports_lpips_unavailable(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    trainer = build(tiny_trainer_config(scene, tmp_path, steps=1))
    model = trainer.pipeline.mzen_model
    assert model.lpips_available is False
    image = torch.rand(24, 32, 3)
    metrics, _ = model.get_image_metrics_and_images(
        {
            "rgb": image,
            "accumulation": torch.ones(24, 32, 1),
            "depth": torch.ones(24, 32, 1),
            "prop_depth_0": torch.ones(24, 32, 1),
            "prop_depth_1": torch.ones(24, 32, 1),
        },
        {"image": image},
    )
    assert "lpips" not in metrics and metrics["psnr"] > 50
