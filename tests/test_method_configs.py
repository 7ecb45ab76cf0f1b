"""The comparison's configurations: registered methods sharing
mzen's field, sampler and camera model, with the paper's equal-budget accounting."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mzen_ns.method_configs import CONFIGURATIONS, configuration_config
from mzen_ns.trainer import MZENTrainer
from tests.helpers import tiny_scene, train

STEPS = 10  # tiny scene: 3 wide of 5 training frames, so phase A is steps 0-5


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return tiny_scene(tmp_path_factory.mktemp("configs") / "scene")


def trained(configuration, scene: Path, output: Path, steps: int = STEPS) -> MZENTrainer:
    config = configuration_config(configuration, "smoke")
    datamanager = replace(config.pipeline.datamanager, data=scene)
    config = replace(
        config,
        output_dir=output,
        experiment_name="t",
        timestamp="run",
        max_num_iterations=steps,
        vis="tensorboard",
        pipeline=replace(config.pipeline, datamanager=datamanager),
    )
    return train(config)


def last_checkpoint_step(trainer: MZENTrainer) -> int:
    return max(int(p.stem.split("-")[1]) for p in trainer.checkpoint_dir.glob("step-*.ckpt"))


def test_comparison_methods_are_registered():
    from nerfstudio.plugins.registry import discover_methods

    methods, _ = discover_methods()
    for configuration in CONFIGURATIONS:
        name = "mzen" if configuration == "mzen" else f"mzen-{configuration}"
        assert name in methods and methods[name].method_name == name


@pytest.mark.slow
def test_phase_a_stops_where_phase_b_would_start(scene, tmp_path):
    trainer = trained("phase-a", scene, tmp_path)
    schedule = trainer.pipeline.phase_schedule
    full = trained("mzen", scene, tmp_path / "full", steps=STEPS).pipeline.phase_schedule
    assert schedule.end == schedule.b_start == full.b_start == 6  # config 3 = config 4's phase A
    assert last_checkpoint_step(trainer) == schedule.end - 1
    cameras = trainer.pipeline.mzen_model.cameras
    assert bool((cameras.match.root == -1).all()) and torch.equal(cameras.record.trained_on, cameras.is_wide)
    manifest = trainer.pipeline.solved_cameras(tmp_path)
    assert len(manifest["frames"]) == 3 and len(manifest["unsolved_frames"]) == 2  # zoom-ins never trained


@pytest.mark.slow
def test_baseline_wide_loads_only_wide_frames_with_phase_a_budget(scene, tmp_path):
    trainer = trained("baseline-wide", scene, tmp_path)
    cameras = trainer.pipeline.mzen_model.cameras
    assert len(trainer.pipeline.datamanager.train_dataset) == 3 and bool(cameras.is_wide.all())
    assert trainer.pipeline.phase_schedule.end == 6  # each wide image gets phase A's passes
    assert last_checkpoint_step(trainer) == 5
    assert len(trainer.pipeline.datamanager.eval_dataset) == 5  # held-out frames of every level stay


@pytest.mark.slow
def test_baseline_joint_is_zoom_unaware_unprimed_and_joint_from_the_start(scene, tmp_path):
    trainer = trained("baseline-joint", scene, tmp_path)
    pipeline = trainer.pipeline
    cameras = pipeline.mzen_model.cameras
    assert pipeline.phase_schedule.phase_at(0) == "C" and pipeline.phase_schedule.end == STEPS
    assert "zooms" not in pipeline.get_param_groups()
    assert torch.equal(cameras.zoom().detach(), torch.ones(5))  # no dial prior, not learned
    assert bool((cameras.match.root == -1).all())  # never primed
    assert bool((cameras.zoom_pose.detach().abs().sum(-1) > 0).all())  # zoom-ins trained from step 0
    assert bool(cameras.record.trained_on.all())


@pytest.mark.slow
def test_oracle_trains_the_field_on_fixed_ground_truth_cameras(scene, tmp_path):
    trainer = trained("oracle", scene, tmp_path)
    cameras = trainer.pipeline.mzen_model.cameras
    truth = trainer.pipeline.datamanager.train_dataset.metadata["mzen_ground_truth"]
    in_frame = trainer.pipeline.mzen_model.oracle_frame().cameras(truth["c2w"][:, :3, :].double().numpy())
    assert torch.allclose(cameras.c2w().detach(), torch.from_numpy(in_frame).float(), atol=1e-5)  # the true cameras
    assert torch.allclose(cameras.zoom().detach(), truth["zoom"], rtol=1e-6)
    assert float(cameras.focal) == pytest.approx(truth["focal"], rel=1e-6)
    assert not any(p.requires_grad for p in cameras.parameters())
    assert not {"wide_poses", "zoom_poses", "focal", "zooms"} & set(trainer.pipeline.get_param_groups())


@pytest.mark.slow
def test_oracle_without_ground_truth_names_the_frame(scene, tmp_path):
    copy = tmp_path / "no-gt"
    shutil.copytree(scene, copy)
    manifest = json.loads((copy / "transforms.json").read_text())
    del manifest["frames"][1]["gt_transform_matrix"]
    (copy / "transforms.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=manifest["frames"][1]["file_path"]):
        trained("oracle", copy, tmp_path / "runs")


@pytest.mark.slow
def test_oracle_on_zoom_ins_trains_on_them_alone_and_scores_held_out_views_from_their_true_cameras(scene, tmp_path):
    from mzen_ns.evaluation.evaluate import evaluate
    from mzen_ns.evaluation.registration import RegistrationConfig

    trainer = trained("oracle-zoom-ins", scene, tmp_path)
    pipeline = trainer.pipeline
    cameras = pipeline.mzen_model.cameras
    assert len(pipeline.datamanager.train_dataset) == 2 and not bool(cameras.is_wide.any())
    assert sorted(pipeline.datamanager.train_dataset.metadata["mzen_dial"].tolist()) == [4.0, 4.0]
    truth = pipeline.datamanager.train_dataset.metadata["mzen_ground_truth"]
    in_frame = pipeline.mzen_model.oracle_frame().cameras(truth["c2w"][:, :3, :].double().numpy())
    assert torch.allclose(cameras.c2w().detach(), torch.from_numpy(in_frame).float(), atol=1e-5)
    # no wide view to prime from: held-out views (here every frame, none held out) start at the truth
    results = evaluate(pipeline.mzen_model, pipeline.datamanager, RegistrationConfig(steps=0), pipeline.config.priming)
    assert results["views_1x"] == 3 and results["views_4x"] == 2
    assert results["test_rot_err_deg"] < 0.01 and results["test_zoom_err_rel"] < 1e-4  # float noise of the Sim(3)


@pytest.mark.parametrize("preset", ["cpu", "full"])
def test_every_group_steps_with_fused_adam_and_the_same_update(preset):
    from mzen_ns.method_configs import cpu_config, full_config

    config = cpu_config() if preset == "cpu" else full_config()
    torch.manual_seed(0)
    start, grad = torch.randn(1000), torch.randn(1000)
    for name, group in config.optimizers.items():
        fused_param, plain_param = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
        fused = group["optimizer"].setup([fused_param])
        plain = torch.optim.Adam([plain_param], lr=group["optimizer"].lr, eps=group["optimizer"].eps)
        assert fused.param_groups[0]["fused"] is True, name
        for _ in range(3):
            fused_param.grad, plain_param.grad = grad.clone(), grad.clone()
            fused.step()
            plain.step()
        assert not torch.equal(fused_param, start)
        torch.testing.assert_close(fused_param, plain_param, rtol=1e-6, atol=1e-7)
