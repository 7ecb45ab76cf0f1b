"""The pipeline's phase hooks on tiny end-to-end runs on CPU: which images each phase draws, what it
freezes, priming when phase B starts, what the checkpoint keeps of it, flagged zoom-ins kept out of
the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from nerfstudio.engine.callbacks import TrainingCallbackLocation

from mzen_ns.cameras import ZoomCameras
from mzen_ns.trainer import MZENTrainer
from tests.helpers import add_callback, build, tiny_scene, tiny_trainer_config


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return tiny_scene(tmp_path_factory.mktemp("tiny") / "scene")


def snapshot(trainer: MZENTrainer, groups) -> Dict[str, List[torch.Tensor]]:
    state: Dict[str, List[torch.Tensor]] = {}
    for name in groups:
        params = trainer.optimizers.parameters[name]
        opt_state = trainer.optimizers.optimizers[name].state
        state[name] = [p.detach().clone() for p in params]
        state[name + ":momentum"] = [opt_state[p]["exp_avg"].clone() for p in params if p in opt_state]
    return state


@dataclass
class ThreePhaseRun:
    """A tiny run through phases A, B and C, with what was sampled and saved along the way."""

    trainer: MZENTrainer
    sampled: Dict[int, torch.Tensor]
    """Image index of every ray drawn, per step."""
    snapshots: Dict
    """Frozen groups' parameters and Adam moments at B's and C's first step; the zoom-ins' optimizer state
    and pose corrections at B's first step."""


FROZEN_IN_B = ("fields", "proposal_networks", "wide_poses", "focal")


@pytest.fixture(scope="module")
def three_phase_run(scene, tmp_path_factory) -> ThreePhaseRun:
    trainer = build(tiny_trainer_config(scene, tmp_path_factory.mktemp("run"), steps=12, boundaries=(0.34, 0.67)))
    pipeline = trainer.pipeline
    schedule = pipeline.phase_schedule
    assert (schedule.b_start, schedule.c_start) == (4, 8)
    sampled: Dict[int, torch.Tensor] = {}
    original_next_train = pipeline.datamanager.next_train

    def recording_next_train(step):
        bundle, batch = original_next_train(step)
        sampled[step] = batch["indices"][:, 0].clone()
        return bundle, batch

    pipeline.datamanager.next_train = recording_next_train
    snapshots = {}

    def take(step):
        if step in (schedule.b_start, schedule.c_start):
            snapshots[step] = snapshot(trainer, FROZEN_IN_B)
        if step == schedule.b_start:
            snapshots["zoom_state_at_b"] = dict(trainer.optimizers.optimizers["zoom_poses"].state)
            snapshots["zoom_pose_at_b"] = pipeline.mzen_model.cameras.zoom_pose.detach().clone()

    add_callback(trainer, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION, take)
    trainer.train()
    return ThreePhaseRun(trainer, sampled, snapshots)


def _image_sets(cameras: ZoomCameras):
    wide = set(torch.nonzero(cameras.is_wide).squeeze(-1).tolist())
    return wide, set(torch.nonzero(~cameras.is_wide).squeeze(-1).tolist())


@pytest.mark.slow
def test_each_phase_draws_rays_from_its_images_only(three_phase_run):
    pipeline = three_phase_run.trainer.pipeline
    wide, zoom = _image_sets(pipeline.mzen_model.cameras)
    for step, indices in three_phase_run.sampled.items():
        seen = set(indices.tolist())
        phase = pipeline.phase_schedule.phase_at(step)
        assert seen <= ({"A": wide, "B": zoom, "C": wide | zoom}[phase]), (step, phase, seen)
    in_c = set(torch.cat([three_phase_run.sampled[s] for s in range(8, 12)]).tolist())
    assert in_c & wide and in_c & zoom


@pytest.mark.slow
def test_phase_b_leaves_the_field_and_wide_cameras_untouched(three_phase_run):
    schedule = three_phase_run.trainer.pipeline.phase_schedule
    before, after = three_phase_run.snapshots[schedule.b_start], three_phase_run.snapshots[schedule.c_start]
    for name in before:  # parameters and Adam moments bit-identical from B's first step to C's first step
        for a, b in zip(before[name], after[name]):
            assert torch.equal(a, b), name
    assert len(before["fields:momentum"]) > 0  # the field had been stepped in phase A


@pytest.mark.slow
def test_zoom_ins_are_not_stepped_before_priming_and_are_registered_after(three_phase_run):
    assert three_phase_run.snapshots["zoom_state_at_b"] == {}  # no optimizer state from phase A
    assert not bool(three_phase_run.snapshots["zoom_pose_at_b"].any())  # priming restarts corrections at zero
    cameras = three_phase_run.trainer.pipeline.mzen_model.cameras
    assert not torch.equal(cameras.zoom_pose.detach(), torch.zeros_like(cameras.zoom_pose))  # registered in B/C


@pytest.mark.slow
def test_priming_places_and_reports_every_zoom_in(three_phase_run):
    trainer = three_phase_run.trainer
    cameras = trainer.pipeline.mzen_model.cameras
    _, zoom = _image_sets(cameras)
    assert bool((cameras.match.root[list(zoom)] >= 0).all())
    assert (trainer.base_dir / "priming.png").is_file()
    rows = json.loads((trainer.base_dir / "priming.json").read_text())
    assert len(rows) == len(zoom) and {"window_centre_px", "relative_zoom", "score", "flagged"} <= set(rows[0])


@pytest.mark.slow
def test_the_camera_state_dict_restores_the_primed_cameras(three_phase_run):
    cameras = three_phase_run.trainer.pipeline.mzen_model.cameras
    fresh = ZoomCameras(
        cameras.config,
        cameras.dials,
        cameras.is_wide,
        1.0,
        float(cameras.aspect),
        cameras.cx,
        cameras.cy,
        cameras.width,
        cameras.height,
    )
    fresh.load_state_dict(cameras.state_dict())
    assert torch.equal(fresh.c2w(), cameras.c2w()) and torch.equal(fresh.zoom(), cameras.zoom())
    assert torch.equal(fresh.match.root, cameras.match.root)
    assert torch.equal(fresh.match.source, cameras.match.source)


@pytest.mark.slow
def test_sampler_phase_masks_images(scene, tmp_path):
    trainer = build(tiny_trainer_config(scene, tmp_path, steps=10))
    pipeline = trainer.pipeline
    cameras = pipeline.mzen_model.cameras
    pipeline.datamanager.set_allowed_images(~cameras.is_wide)
    for step in range(5):
        _, batch = pipeline.datamanager.next_train(step)
        assert set(batch["indices"][:, 0].tolist()) <= set(torch.nonzero(~cameras.is_wide).squeeze(-1).tolist())


@pytest.mark.slow
def test_a_flagged_zoom_in_is_registered_in_phase_b_and_never_drawn_in_phase_c(scene, tmp_path):
    trainer = build(tiny_trainer_config(scene, tmp_path, steps=10, boundaries=(0.4, 0.7)))
    pipeline = trainer.pipeline
    cameras = pipeline.mzen_model.cameras
    pipeline.enter_phase_of(4)  # phase B: priming ran
    flagged = int(cameras.zoom_index[0])
    cameras.match.flagged[flagged] = True  # as priming records a zoom-in it could not verify
    pipeline.phase = None  # enter phase B again with the flag set
    pipeline.enter_phase_of(4)
    drawn_b = {i for step in range(4, 7) for i in pipeline.datamanager.next_train(step)[1]["indices"][:, 0].tolist()}
    assert flagged in drawn_b
    pipeline.enter_phase_of(7)
    assert pipeline.phase == "C"
    drawn_c = {i for step in range(7, 12) for i in pipeline.datamanager.next_train(step)[1]["indices"][:, 0].tolist()}
    assert (
        flagged not in drawn_c and int(cameras.zoom_index[1]) in drawn_c and set(cameras.wide_index.tolist()) <= drawn_c
    )


@pytest.mark.slow
def test_a_checkpoint_keeps_how_every_zoom_in_was_primed(scene, tmp_path):
    trained = build(tiny_trainer_config(scene, tmp_path / "a", steps=10)).pipeline
    record = trained.mzen_model.cameras.match
    zoom_in = int(trained.mzen_model.cameras.zoom_index[0])
    record.record(
        torch.tensor([zoom_in]),
        source=torch.tensor([0]),
        centre=torch.tensor([[3.0, 4.0]]),
        relative_zoom=torch.tensor([4.1]),
        score=torch.tensor([57.0]),
        runner_up=torch.tensor([0.5]),
        flagged=torch.tensor([True]),
        geometric=torch.tensor([True]),
    )
    loaded = build(tiny_trainer_config(scene, tmp_path / "b", steps=10)).pipeline
    loaded.load_pipeline(dict(trained.state_dict()), step=5)
    for name, value in record.state_dict().items():
        assert torch.equal(getattr(loaded.mzen_model.cameras.match, name), value), name


def test_colours_do_not_depend_on_which_training_image_a_ray_came_from(three_phase_run):
    """No per-image appearance code: the field a held-out view is rendered through (which has no code
    of its own) is the field every training image was fitted through."""
    from nerfstudio.cameras.rays import Frustums, RaySamples
    from nerfstudio.field_components.field_heads import FieldHeadNames

    field = three_phase_run.trainer.pipeline.mzen_model.field
    torch.manual_seed(0)
    count = 16
    starts = torch.rand(count, 1, 1) + 0.5
    frustums = Frustums(
        origins=torch.zeros(count, 1, 3),
        directions=torch.nn.functional.normalize(
            torch.randn(count, 1, 3) * 0.2 + torch.tensor([0.0, 0.0, -1.0]), dim=-1
        ),
        starts=starts,
        ends=starts + 0.05,
        pixel_area=torch.full((count, 1, 1), 1e-4),
    )
    colours = []
    was_training = field.training
    field.train()
    try:
        for image in (0, three_phase_run.trainer.pipeline.mzen_model.cameras.dials.numel() - 1):
            samples = RaySamples(frustums=frustums, camera_indices=torch.full((count, 1, 1), image, dtype=torch.long))
            with torch.no_grad():
                colours.append(field(samples)[FieldHeadNames.RGB])
    finally:
        field.train(was_training)
    assert torch.equal(colours[0], colours[1])
