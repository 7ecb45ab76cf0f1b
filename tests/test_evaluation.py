"""ns-eval for mzen runs: registration of held-out views, per-zoom keys, camera errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mzen_ns.evaluation.alignment import camera_errors, sim3_alignment
from mzen_ns.evaluation.evaluate import aggregate, evaluate
from mzen_ns.evaluation.registration import (
    LocatedHeldOut,
    RegistrationConfig,
    evaluation_root,
    held_views,
)
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene
from tests.helpers import tiny_trainer_config, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    scene = root / "scene"
    make_scene(
        SceneMakerConfig(output=scene, width=32, height=24, zooms=(1.0, 4.0), n_wide=3, n_zoom=2, n_test=1, seed=2)
    )
    return train(tiny_trainer_config(scene, root / "runs", steps=12))


@pytest.mark.slow
def test_eval_keys_and_independent_recomputation(trained):
    pipeline = trained.pipeline
    renders = []
    results = evaluate(
        pipeline.mzen_model,
        pipeline.datamanager,
        RegistrationConfig(steps=5, rays_per_step=64),
        pipeline.config.priming,
        renders,
    )
    for name in ("psnr", "ssim", "gss", "lss"):
        assert {name, f"{name}_1x", f"{name}_4x"} <= set(results)
        assert results[name] == pytest.approx((results[f"{name}_1x"] + results[f"{name}_4x"]) / 2)
    for name in (
        "rot_err_deg",
        "trans_err",
        "zoom_err_rel",
        "focal_err_rel",
        "test_rot_err_deg",
        "test_trans_err",
        "test_zoom_err_rel",
        "wide_pair_rot_err_deg",
    ):
        assert name in results and np.isfinite(results[name])
    train_dials = sorted(set(pipeline.mzen_model.cameras.dials.tolist()))
    per_level = [results[f"rot_err_deg_{dial:g}x"] for dial in train_dials]  # per zoom level as well
    assert min(per_level) <= results["rot_err_deg"] <= max(per_level)
    test = pipeline.datamanager.eval_dataset
    dials = test.metadata["mzen_dial"].tolist()
    for render, index in zip(renders, range(len(test))):
        truth = test.get_image_float32(index)[..., :3].numpy()
        mse = float(np.mean((render.numpy() - truth) ** 2))
        assert results[f"psnr_{dials[index]:g}x"] == pytest.approx(-10 * np.log10(mse), rel=1e-4)
    assert "lpips" not in results or pipeline.mzen_model.lpips_available


@pytest.mark.slow
def test_eval_reports_own_pixel_errors_per_level_and_counts_a_zoom_in_placed_wrong(trained):
    pipeline = trained.pipeline
    cameras = pipeline.mzen_model.cameras
    results = evaluate(pipeline.mzen_model, pipeline.datamanager, RegistrationConfig(steps=0), pipeline.config.priming)
    for key in ("reproj_px_1x", "reproj_px_4x", "reproj_px_4x_p90", "test_reproj_px_1x", "test_reproj_px_4x"):
        assert np.isfinite(results[key]) and results[key] >= 0
    assert results["reproj_px_4x_p90"] >= results["reproj_px_4x"]
    placed = sum(results[f"zoom_ins_{kind}"] for kind in ("placed_2d3d", "placed_search", "flagged"))
    assert placed == cameras.zoom_index.numel()
    zoom_ins = cameras.zoom_index
    kept = cameras.base_c2w[zoom_ins].clone()
    try:
        with torch.no_grad():
            turn = torch.tensor([[0.94, 0.0, 0.342], [0.0, 1.0, 0.0], [-0.342, 0.0, 0.94]])  # 20° about y
            cameras.base_c2w[zoom_ins, :3, :3] = cameras.base_c2w[zoom_ins, :3, :3] @ turn  # another part
        moved = evaluate(
            pipeline.mzen_model, pipeline.datamanager, RegistrationConfig(steps=0), pipeline.config.priming
        )
    finally:
        with torch.no_grad():
            cameras.base_c2w[zoom_ins] = kept
    assert moved["zoom_ins_wrong_unflagged"] + moved["zoom_ins_wrong_flagged"] == zoom_ins.numel()
    assert moved["reproj_px_4x_p90"] > results["reproj_px_4x_p90"]


@pytest.mark.slow
def test_a_training_zoom_in_never_trained_on_is_not_primed_again_at_evaluation(trained, monkeypatch):
    from mzen_ns.cameras import ZoomCameras

    pipeline = trained.pipeline
    cameras = pipeline.mzen_model.cameras
    zoom_in = int(cameras.zoom_index[0])
    kept = cameras.c2w(torch.tensor([zoom_in])).detach().clone()
    primed, prime_from = [], ZoomCameras.prime_from

    def recording(self, indices, *args):
        primed.append((self is cameras, indices.tolist()))
        return prime_from(self, indices, *args)

    monkeypatch.setattr(ZoomCameras, "prime_from", recording)
    cameras.record.trained_on[zoom_in] = False  # as a flagged zoom-in whose phases were all skipped
    try:
        results = evaluate(
            pipeline.mzen_model, pipeline.datamanager, RegistrationConfig(steps=0), pipeline.config.priming
        )
    finally:
        cameras.record.trained_on[zoom_in] = True
    held_out = pipeline.datamanager.eval_dataset
    assert primed and all(not trained_ones and 0 <= min(i) and max(i) < len(held_out) for trained_ones, i in primed)
    assert np.isfinite(results["psnr_4x"]) and results["views_4x"] == 1
    assert torch.equal(cameras.c2w(torch.tensor([zoom_in])).detach(), kept)


@pytest.mark.slow
def test_registration_does_not_worsen_the_fit(trained):
    pipeline = trained.pipeline
    before = evaluate(pipeline.mzen_model, pipeline.datamanager, RegistrationConfig(steps=0), pipeline.config.priming)
    after = evaluate(
        pipeline.mzen_model,
        pipeline.datamanager,
        RegistrationConfig(steps=60, rays_per_step=256, lr=5e-3),
        pipeline.config.priming,
    )
    assert after["psnr"] >= before["psnr"] - 0.05


def _primed_held_out(pipeline):
    """The run's held-out views primed as ``ns-eval`` primes them: (cameras, images, dials)."""
    from mzen_ns.datamanager import stack_images
    from mzen_ns.evaluation.registration import prime_views

    test = pipeline.datamanager.eval_dataset
    images, dials = stack_images(test), test.metadata["mzen_dial"].float()
    train_images = stack_images(pipeline.datamanager.train_dataset)
    cameras, _ = prime_views(pipeline.mzen_model, train_images, images, dials, pipeline.config.priming)
    return cameras, images, dials


@pytest.mark.slow
def test_registration_leaves_the_pose_and_zoom_of_held_views_alone(trained):
    from mzen_ns.evaluation.registration import register

    pipeline = trained.pipeline
    cameras, images, dials = _primed_held_out(pipeline)
    held = dials != 1.0
    everything = torch.arange(dials.numel())
    c2w, zoom = cameras.c2w(everything).detach().clone(), cameras.zoom(everything).detach().clone()
    config = RegistrationConfig(steps=20, rays_per_step=256, lr=5e-3, max_shift=math.inf)
    register(pipeline.mzen_model, cameras, images, config, held)
    assert torch.equal(cameras.c2w(everything).detach()[held], c2w[held])
    assert torch.equal(cameras.zoom(everything).detach()[held], zoom[held])
    assert not torch.equal(cameras.c2w(everything).detach()[~held], c2w[~held])  # the others were registered


@pytest.mark.slow
def test_a_view_registration_moves_further_than_the_limit_goes_back_where_it_was_placed(trained):
    from mzen_ns.evaluation.registration import register

    pipeline = trained.pipeline
    cameras, images, dials = _primed_held_out(pipeline)
    everything = torch.arange(dials.numel())
    c2w, zoom = cameras.c2w(everything).detach().clone(), cameras.zoom(everything).detach().clone()
    went_back = register(
        pipeline.mzen_model, cameras, images, RegistrationConfig(steps=20, rays_per_step=256, lr=5e-3, max_shift=0.0)
    )
    assert bool(went_back.all())
    assert torch.equal(cameras.c2w(everything).detach(), c2w) and torch.equal(cameras.zoom(everything).detach(), zoom)


def _random_rotations(rng, count):
    q = rng.normal(size=(count, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def test_sim3_alignment_recovers_a_similarity():
    rng = np.random.default_rng(0)
    learned = np.concatenate([_random_rotations(rng, 6), rng.normal(size=(6, 3, 1))], axis=2)
    rotation = _random_rotations(rng, 1)[0]
    shift = np.array([1.0, -2.0, 0.5])
    true = np.concatenate([rotation @ learned[:, :, :3], 2.5 * rotation @ learned[:, :, 3:] + shift[:, None]], axis=2)
    scale, r, t = sim3_alignment(learned, true)
    assert scale == pytest.approx(2.5) and np.allclose(r, rotation) and np.allclose(t, shift)
    assert camera_errors(learned, true, (scale, r, t)) == pytest.approx((0.0, 0.0), abs=1e-5)
    same_centre = learned.copy()
    same_centre[:, :, 3] = 0.0
    assert sim3_alignment(same_centre, true)[0] == 1.0  # coincident centres: no divide by zero


def test_sim3_alignment_is_well_conditioned_for_a_forward_facing_rig():
    """Nearly coplanar centres (a forward-facing rig) with a little noise: the orientation-based
    alignment finds the small true rotation where a centres-only fit could flip about the plane."""
    rng = np.random.default_rng(1)
    count = 9
    centres = np.concatenate([rng.uniform(-0.1, 0.1, (count, 2)), rng.uniform(-0.005, 0.005, (count, 1))], 1)
    tilt = _random_rotations(rng, count) * 0 + np.eye(3)  # every camera looks down -z
    true = np.concatenate([tilt, centres[:, :, None]], axis=2)
    learned = true.copy()
    learned[:, :, 3] += rng.normal(scale=0.01, size=(count, 3))  # centre noise comparable to the depth spread
    scale, r, t = sim3_alignment(learned, true)
    rotation_error, _ = camera_errors(learned, true, (scale, r, t))
    assert rotation_error < 1e-6


def test_aggregate_is_mean_of_level_means_with_spread_worst_view_and_count():
    per_image = [{"psnr": 10.0, "lpips": 0.2}, {"psnr": 20.0, "lpips": 0.4}, {"psnr": 40.0, "lpips": 0.1}]
    results = aggregate(per_image, [1.0, 1.0, 16.0])
    assert results["psnr"] == 27.5 and results["psnr_1x"] == 15.0 and results["psnr_16x"] == 40.0
    assert results["psnr_1x_std"] == pytest.approx(np.std([10.0, 20.0], ddof=1)) and results["psnr_16x_std"] == 0.0
    assert results["psnr_1x_worst"] == 10.0 and results["lpips_1x_worst"] == 0.4  # LPIPS: larger is worse
    assert results["views_1x"] == 2 and results["views_16x"] == 1


def test_held_out_renders_are_saved_as_ground_truth_beside_render_named_by_level(tmp_path):
    from PIL import Image

    from mzen_ns.evaluation.evaluate import save_renders

    reference, rendered = torch.zeros(4, 6, 3), torch.ones(4, 6, 3)
    [path] = save_renders(tmp_path / "renders", ["images/16x/test_001.png"], [16.0], [reference], [rendered])
    assert path.name == "16x_test_001.png"
    pair = np.asarray(Image.open(path))
    assert pair.shape == (4, 12, 3) and pair[:, :6].max() == 0 and pair[:, 6:].min() == 255


def test_pairwise_rotation_error_is_gauge_free():
    from scipy.spatial.transform import Rotation

    from mzen_ns.evaluation.alignment import pairwise_rotation_error

    truth = np.stack([np.eye(4)] * 4)
    truth[:, :3, :3] = Rotation.from_rotvec(np.random.default_rng(1).normal(scale=0.1, size=(4, 3))).as_matrix()
    gauge = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    learned = truth.copy()
    learned[:, :3, :3] = gauge @ truth[:, :3, :3]
    assert pairwise_rotation_error(learned, truth) == pytest.approx(0.0, abs=1e-5)
    learned[0, :3, :3] = learned[0, :3, :3] @ Rotation.from_rotvec([0, 0, np.radians(2.0)]).as_matrix()
    assert pairwise_rotation_error(learned, truth) == pytest.approx(2.0 * 3 / 6, rel=1e-4)  # 3 of 6 pairs off by 2°


def test_rotation_errors_of_single_precision_cameras_are_exact_near_zero():
    """Trained cameras are float32: a 0.01° error must read as 0.01°, not vanish in their rounding."""
    from scipy.spatial.transform import Rotation

    from mzen_ns.evaluation.alignment import pairwise_rotation_error, per_camera_errors

    turns = Rotation.from_rotvec(np.random.default_rng(2).normal(scale=0.3, size=(6, 3))).as_matrix()
    truth = np.tile(np.eye(4), (6, 1, 1))
    truth[:, :3, :3] = turns
    learned = truth.copy()
    learned[0, :3, :3] = Rotation.from_rotvec([np.radians(0.01), 0.0, 0.0]).as_matrix() @ turns[0]
    learned32, truth32 = learned.astype(np.float32), truth.astype(np.float32)
    assert pairwise_rotation_error(learned32, truth32) == pytest.approx(0.01 * 5 / 15, rel=0.02)  # 5 of 15 pairs
    rot, _ = per_camera_errors(learned32, truth32, (1.0, np.eye(3), np.zeros(3)))
    assert rot[0] == pytest.approx(0.01, rel=0.02) and max(rot[1:]) < 2e-4


def test_a_located_views_wide_view_is_numbered_over_training_then_held_out_views():
    # the run has 10 training views, wide ones at 0, 3, 7; the held-out set has wide views at 1 and 4
    source = torch.tensor([0, 2, 3, 4, -1])  # locate's numbering: training wides, then held-out wides
    root = evaluation_root(source, torch.tensor([0, 3, 7]), torch.tensor([1, 4]), n_train=10)
    assert root.tolist() == [0, 7, 11, 14, -1]


def test_held_out_views_placed_by_2d3d_keep_their_pose_unless_asked_to_refine():
    c2w = torch.zeros(3, 3, 4)
    c2w[1] = float("nan")  # the second view was not placed
    located = LocatedHeldOut(c2w, torch.tensor([1.0, float("nan"), 4.0]), torch.tensor([0, -1, 0]))
    assert held_views(located, RegistrationConfig()).tolist() == [True, False, True]
    assert held_views(located, RegistrationConfig(refine_located=True)) is None
    assert held_views(None, RegistrationConfig()) is None
    turned = LocatedHeldOut(c2w, torch.tensor([1.0, float("nan"), 1.0]), torch.tensor([0, -1, 0]), full_pose=False)
    assert held_views(turned, RegistrationConfig()) is None  # turns about the run's centre are refined


def test_the_shift_in_own_pixels_of_a_turned_zoom_in_is_its_focal_times_the_turn():
    from mzen_ns.evaluation.registration import grid_pixels, own_pixel_shift
    from tests.helpers import zoom_cameras

    cameras = zoom_cameras([1.0, 16.0], focal_guess=100.0, width=64, height=48)
    pixels = grid_pixels(8, 48, 64)
    points = []
    for view in range(2):
        origins, directions, _, _ = cameras.rays(torch.full((pixels.shape[0],), view), pixels)
        points.append(origins + 2.0 * directions)
    points = torch.stack(points)
    assert own_pixel_shift(cameras, points, pixels).tolist() == pytest.approx([0.0, 0.0], abs=1e-3)
    turn = 1e-3  # radians about the camera's y axis: a sideways shift of focal × turn pixels
    with torch.no_grad():
        cameras.zoom_pose[0, 4] = turn
    shift = own_pixel_shift(cameras, points, pixels)
    assert shift[0] == 0.0 and float(shift[1]) == pytest.approx(1600.0 * turn, rel=0.02)


def test_registration_learning_rate_decays_to_its_final_fraction():
    from mzen_ns.evaluation.registration import registration_optimizer

    config = RegistrationConfig(steps=50, lr=3e-3, final_lr_fraction=0.01)
    optimizer, schedule = registration_optimizer([torch.zeros(3, requires_grad=True)], config)
    rates = []
    for _ in range(config.steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(3e-3) and rates[-1] == pytest.approx(3e-5, rel=1e-6)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))
    with pytest.raises(ValueError, match="final_lr_fraction"):
        registration_optimizer([torch.zeros(3, requires_grad=True)], RegistrationConfig(final_lr_fraction=0.0))


def test_the_console_names_held_out_views_flagged_or_sent_back(capsys):
    from mzen_ns.evaluation.evaluate import say_unsure_views

    names = ["images/1x/test_0.png", "images/4x/test_1.png", "images/16x/test_2.png"]
    say_unsure_views(names, torch.tensor([False, True, False]), torch.tensor([False, False, True]), 0.1)
    out = capsys.readouterr().out
    assert "with a flag" in out and "images/4x/test_1.png" in out.split("with a flag")[1].split("\n")[0]
    assert "images/16x/test_2.png" in out.split("0.1 of their width")[1]
    assert "test_0.png" not in out
    say_unsure_views(names, torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool), 0.1)
    assert capsys.readouterr().out == ""


def test_an_oracle_trains_and_is_scored_in_the_content_frame_a_run_from_geometry_uses(tmp_path):
    from dataclasses import replace

    from mzen_ns.evaluation.registration import true_placement
    from mzen_ns.geometry.solution import CONTENT_FILL
    from mzen_ns.synthetic.scene_maker import grid_pixels
    from tests.helpers import build, tiny_scene

    config = tiny_trainer_config(tiny_scene(tmp_path / "scene", n_test=1), tmp_path / "runs", steps=1)
    model = config.pipeline.model
    model.cameras = replace(model.cameras, ground_truth=True)
    model.phases = replace(model.phases, boundaries=(0.0, 0.0), prime=False)
    pipeline = build(config).pipeline
    cameras, truth = pipeline.mzen_model.cameras, pipeline.datamanager.train_dataset.metadata["mzen_ground_truth"]
    frame = pipeline.mzen_model.oracle_frame()
    points = frame.points(np.concatenate([p.numpy() for p in truth["points"] if p is not None]))
    spread = np.abs(points - np.median(points, axis=0)).max(axis=1)
    assert np.percentile(spread, 95) == pytest.approx(CONTENT_FILL * model.contraction_radius, rel=1e-6)
    assert np.abs(np.median(points, axis=0)).max() < 1e-9  # the content at the grid's centre
    learned = cameras.c2w().detach().double().numpy()
    true_c2w = truth["c2w"][:, :3, :].double().numpy()
    assert np.allclose(learned, frame.cameras(true_c2w), atol=1e-5)
    assert np.allclose(learned[0, :, :3], np.eye(3), atol=1e-5)  # axes: the first training view's
    turn = learned[1, :, :3].T @ learned[2, :, :3]  # relative poses are the truth's, distances scaled
    assert np.allclose(turn, true_c2w[1, :, :3].T @ true_c2w[2, :, :3], atol=1e-5)
    apart = np.linalg.norm(learned[1, :, 3] - learned[2, :, 3]) / np.linalg.norm(true_c2w[1, :, 3] - true_c2w[2, :, 3])
    assert apart == pytest.approx(frame.scale, rel=1e-5)
    fx = cameras.fx().detach().double().numpy()
    fy, (cx, cy) = fx * float(cameras.aspect), cameras.principal_points()[0].tolist()
    for i, seen in enumerate(truth["points"]):  # the true surface points land on the pixels that see them
        local = np.einsum("pj,jk->pk", frame.points(seen.numpy()) - learned[i, :, 3], learned[i, :, :3])
        pixels = np.stack([fx[i] * local[:, 0] / -local[:, 2] + cx, -fy[i] * local[:, 1] / -local[:, 2] + cy], -1)
        assert np.median(np.abs(pixels - grid_pixels(32, 24).numpy())) < 1e-3
    test = pipeline.datamanager.eval_dataset
    held_out = true_placement(test, frame).c2w.double().numpy()
    test_c2w = test.metadata["mzen_ground_truth"]["c2w"][:, :3, :].double().numpy()
    assert np.allclose(learned[0, :, :3].T @ held_out[0, :, :3], true_c2w[0, :, :3].T @ test_c2w[0, :, :3], atol=1e-5)
    seen_from_first = learned[0, :, :3].T @ (held_out[0, :, 3] - learned[0, :, 3])
    truly = true_c2w[0, :, :3].T @ (test_c2w[0, :, 3] - true_c2w[0, :, 3]) * frame.scale
    assert np.allclose(seen_from_first, truly, atol=1e-5)  # held-out views in the same frame as training
