"""The wide-camera initialiser: each rung recovers a known rig, ``auto`` refuses degenerate answers
and says why, the world frame puts the content inside the field's box, and the start is recorded
in the cameras (and survives a checkpoint)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mzen_ns.evaluation.alignment import pairwise_rotation_error
from mzen_ns.geometry.initialiser import InitialiserError, choose, judge, world_frame
from mzen_ns.geometry.rotation import solve_rotation
from mzen_ns.geometry.sfm import solve_sfm
from mzen_ns.geometry.similarity import rotation_angles_deg
from mzen_ns.geometry.solution import CONTENT_FILL, WideSolution, cv_pose_to_gl


@pytest.fixture(scope="module")
def parallax_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine wide views of the scene maker's relief at 128×96, spread over a real baseline."""
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    root = tmp_path_factory.mktemp("parallax")
    make_scene(SceneMakerConfig(output=root, zooms=(1.0,), n_wide=9, n_zoom=0, n_test=0, seed=3))
    return root


def wide_truth(scene: Path):
    manifest = json.loads((scene / "transforms.json").read_text())
    frames = manifest["frames"]
    paths = [scene / frame["file_path"] for frame in frames]
    return paths, np.array([frame["gt_transform_matrix"] for frame in frames])[:, :3], manifest["gt_focal"]


@pytest.fixture(scope="module")
def rotation_scene(tmp_path_factory: pytest.TempPathFactory):
    """Seven 256×192 views turned by a few degrees about one optical centre (a photograph as the
    far content), with their true camera-to-world rotations (nerfstudio axes) and focal."""
    from skimage import data

    root = tmp_path_factory.mktemp("rotation")
    panorama = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (768, 576), interpolation=cv2.INTER_AREA)
    focal, width, height = 240.0, 256, 192
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    paths, rotations = [], []
    for index in range(7):
        angles = [0.0, 0.0, 0.0] if index == 0 else rng.uniform(-4.0, 4.0, 3) * [1, 1, 0.5]
        rotation = Rotation.from_euler("yxz", angles, degrees=True).as_matrix()  # camera-to-world, OpenCV axes
        rays = np.stack([(cols - width / 2 + 0.5) / focal, (rows - height / 2 + 0.5) / focal, np.ones_like(cols)], -1)
        world = rays @ rotation.T
        map_x = (world[..., 0] / world[..., 2] * 2 * focal + 384 - 0.5).astype(np.float32)
        map_y = (world[..., 1] / world[..., 2] * 2 * focal + 288 - 0.5).astype(np.float32)
        path = root / f"view_{index}.png"
        cv2.imwrite(str(path), cv2.remap(panorama, map_x, map_y, cv2.INTER_CUBIC))
        paths.append(path)
        pose = np.zeros((3, 4))
        pose[:, :3] = rotation
        rotations.append(cv_pose_to_gl(pose))
    return paths, np.array(rotations), focal


def test_sfm_recovers_a_known_rig(parallax_scene: Path) -> None:
    paths, true, true_focal = wide_truth(parallax_scene)
    solution = solve_sfm(paths)
    assert judge(solution, 128) is None
    assert solution.evidence["registered"] == 9
    assert pairwise_rotation_error(solution.c2w, true) < 0.5
    assert abs(solution.focal / true_focal - 1.0) < 0.03
    assert solution.points.shape[1] == 3 and len(solution.points) >= 50


def test_sfm_gives_one_answer_for_one_scene(parallax_scene: Path) -> None:
    paths, _, _ = wide_truth(parallax_scene)
    answers = [solve_sfm(paths) for _ in range(5)]
    for other in answers[1:]:
        assert other.evidence["points"] == answers[0].evidence["points"]
        assert np.allclose(other.c2w, answers[0].c2w, atol=1e-6)


def test_retrieval_keeps_each_views_best_partners_and_tries_a_lonely_view_with_all() -> None:
    from mzen_ns.geometry.sfm import retrieve_pairs

    views = ["a", "b", "c", "d", "e"]
    scored = [("a", "b", 50), ("a", "c", 40), ("a", "d", 10), ("b", "c", 5), ("c", "d", 0), ("d", "e", 0)]
    # a keeps b, c; b keeps a, c; c keeps a, b; d keeps a (its only verified partner, not c at 0);
    # e, with no verified partner, is tried with every view at full size
    lonely = [("a", "e"), ("b", "e"), ("c", "e"), ("d", "e")]
    assert retrieve_pairs(views, scored, 2) == sorted([("a", "b"), ("a", "c"), ("a", "d"), ("b", "c")] + lonely)
    assert retrieve_pairs(views, scored, 1) == sorted([("a", "b"), ("a", "c"), ("a", "d")] + lonely)


def test_many_wide_views_are_matched_only_with_retrieved_partners(parallax_scene: Path, monkeypatch) -> None:
    from mzen_ns.geometry import sfm

    matched = []
    match_pairs = sfm._match_pairs
    monkeypatch.setattr(sfm, "_match_pairs", lambda *args: matched.append(list(args[1])) or match_pairs(*args))
    monkeypatch.setattr(sfm, "NEIGHBOURS", 3)
    paths, true, true_focal = wide_truth(parallax_scene)
    solution = solve_sfm(paths, exhaustive_up_to=4)
    assert len(matched) == 1 and 9 * 3 / 2 <= len(matched[0]) < 36  # fewer than every pair of nine views
    assert solution.evidence["registered"] == 9
    assert pairwise_rotation_error(solution.c2w, true) < 0.5
    assert abs(solution.focal / true_focal - 1.0) < 0.03


def test_rotation_only_recovers_a_known_rotation_and_focal(rotation_scene) -> None:
    paths, true, true_focal = rotation_scene
    solution = solve_rotation(paths)
    assert judge(solution, 256) is None
    assert pairwise_rotation_error(solution.c2w, true) < 0.1
    assert abs(solution.focal / true_focal - 1.0) < 0.01
    assert np.allclose(solution.c2w[:, :, 3], 0.0)  # one optical centre


def test_auto_refuses_a_degenerate_sfm_answer_and_falls_through_saying_why(rotation_scene) -> None:
    paths, true, _ = rotation_scene
    decision = choose("auto", paths, 256)
    assert decision.start == "rotation"
    assert "sfm refused" in decision.reason
    sfm, refusal = decision.verdicts[0]
    assert sfm.rung == "sfm" and refusal is not None and refusal in decision.reason
    assert pairwise_rotation_error(decision.solution.c2w, true) < 0.1


def test_auto_prefers_sfm_where_there_is_parallax(parallax_scene: Path) -> None:
    paths, _, _ = wide_truth(parallax_scene)
    decision = choose("auto", paths, 128)
    assert decision.start == "sfm" and len(decision.verdicts) == 1  # rotation-only never needed


@pytest.fixture(scope="module")
def plane_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine wide views of a textured plane at 128×96 (the scene maker with no relief)."""
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    root = tmp_path_factory.mktemp("plane")
    make_scene(SceneMakerConfig(output=root, zooms=(1.0,), n_wide=9, n_zoom=0, n_test=0, seed=21, relief=0.0))
    return root


def test_views_of_a_plane_do_not_pin_the_focal_and_a_given_one_is_held(plane_scene: Path) -> None:
    from mzen_ns.geometry.sfm import FOCAL_PINNED_RISE, focal_pinned

    paths, true, true_focal = wide_truth(plane_scene)
    free = solve_sfm(paths)
    assert free.evidence["focal_rise"] < FOCAL_PINNED_RISE and not focal_pinned(free.evidence)
    assert free.evidence["focal_given_held"] == 0.0
    for given in (true_focal, 0.95 * true_focal):
        held = solve_sfm(paths, given, (64.0, 48.0))
        assert held.evidence["focal_given_held"] == 1.0 and judge(held, 128) is None
        assert held.focal == pytest.approx(given, rel=1e-9)
    assert pairwise_rotation_error(solve_sfm(paths, true_focal, (64.0, 48.0)).c2w, true) < 0.5


def test_views_with_depth_pin_the_focal_and_a_given_one_is_freed(parallax_scene: Path) -> None:
    from mzen_ns.geometry.sfm import focal_pinned

    paths, _, true_focal = wide_truth(parallax_scene)
    solution = solve_sfm(paths, 0.9 * true_focal, (64.0, 48.0))
    assert focal_pinned(solution.evidence) and solution.evidence["focal_given_held"] == 0.0
    assert abs(solution.focal / true_focal - 1.0) < 0.03


def test_the_focal_caveat_says_whether_the_focal_is_held_or_one_of_many() -> None:
    from mzen_ns.geometry.initialiser import Decision

    pinned = _solution(focal_rise=0.05, focal_given_held=0.0)
    assert Decision("sfm", "", pinned).caveat is None and not Decision("sfm", "", pinned).focal_held
    loose = Decision("sfm", "", _solution(focal_rise=0.004, focal_given_held=0.0))
    assert "do not pin the focal" in loose.caveat and "fl_x" in loose.caveat and not loose.focal_held
    held = Decision("sfm", "", _solution(focal_rise=0.004, focal_given_held=1.0))
    assert "held at the focal the scene gives" in held.caveat and held.focal_held
    assert Decision("identity", "asked").caveat is None


def test_a_rung_asked_for_by_name_that_fails_is_an_error(rotation_scene) -> None:
    paths, _, _ = rotation_scene
    with pytest.raises(InitialiserError, match="init 'sfm' failed: sfm refused"):
        choose("sfm", paths, 256)


def _solution(**evidence) -> WideSolution:
    base = {"registered": 9.0, "views": 9.0, "reprojection_px": 0.2, "points": 500.0, "triangulation_deg": 10.0}
    base.update(evidence)
    return WideSolution("sfm", np.zeros((9, 3, 4)), 150.0, evidence=base)


@pytest.mark.parametrize(
    "evidence, focal, expected",
    [
        ({"registered": 4.0}, 150.0, "registered 4 of 9"),
        ({}, 1000.0, "focal 1000.0 px is degenerate"),
        ({}, 20.0, "focal 20.0 px is degenerate"),
        ({"reprojection_px": 2.5}, 150.0, "reprojection error 2.50"),
        ({"points": 12.0}, 150.0, "only 12 points"),
        ({"triangulation_deg": 0.3}, 150.0, "triangulation angle 0.30"),
        ({}, 150.0, None),
    ],
)
def test_judge_names_what_is_degenerate(evidence, focal, expected) -> None:
    solution = _solution(**evidence)
    solution.focal = focal
    refusal = judge(solution, 128)
    assert refusal is None if expected is None else expected in refusal


def _random_similarity(rng: np.random.Generator):
    rotation = Rotation.random(random_state=7).as_matrix()
    return rotation, rng.normal(size=3) * 5.0, 3.7


def test_world_frame_puts_the_content_inside_the_field_box() -> None:
    rng = np.random.default_rng(1)
    points = rng.uniform([-0.5, -0.4, -1.2], [0.5, 0.4, -0.8], (400, 3))  # content ~1 in front of the rig
    c2w = np.tile(np.eye(4)[:3], (5, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("xyz", rng.uniform(-5, 5, (5, 3)), degrees=True).as_matrix()
    c2w[:, :, 3] = rng.uniform(-0.1, 0.1, (5, 3))
    rotation, shift, scale = _random_similarity(rng)
    moved = c2w.copy()
    moved[:, :, :3] = rotation @ c2w[:, :, :3]
    moved[:, :, 3] = (c2w[:, :, 3] @ rotation.T) * scale + shift
    solution = WideSolution("sfm", moved, 150.0, points=(points @ rotation.T) * scale + shift)

    cameras, content, applied = world_frame(solution, "content", contraction_radius=2.0)
    spread = np.abs(content).max(axis=1)
    assert np.percentile(spread, 95) == pytest.approx(CONTENT_FILL * 2.0)
    assert np.allclose(np.median(content, axis=0), 0.0, atol=1e-9)
    assert np.allclose(cameras[0, :, :3], np.eye(3), atol=1e-9)  # the reference view's axes
    assert pairwise_rotation_error(cameras, c2w) < 1e-6
    distances = np.linalg.norm(cameras[:, None, :, 3] - cameras[None, :, :, 3], axis=-1)
    true_distances = np.linalg.norm(c2w[:, None, :, 3] - c2w[None, :, :, 3], axis=-1)
    assert np.allclose(distances, true_distances * scale * applied)

    cameras, content, _ = world_frame(solution, "camera")
    assert np.allclose(cameras[0], np.eye(4)[:3], atol=1e-9)
    assert float(np.median(-content[:, 2])) == pytest.approx(1.0)


def test_world_frame_of_a_rotation_only_answer_keeps_the_centres_at_the_origin() -> None:
    c2w = np.tile(np.eye(4)[:3], (3, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("y", [[10.0], [12.0], [15.0]], degrees=True).as_matrix()
    cameras, _, scale = world_frame(WideSolution("rotation", c2w, 150.0), "content")
    assert scale == 1.0 and np.allclose(cameras[:, :, 3], 0.0)
    assert np.allclose(cameras[0, :, :3], np.eye(3), atol=1e-9)
    assert math.isclose(pairwise_rotation_error(cameras, c2w), 0.0, abs_tol=1e-6)


def test_one_wide_view_has_nothing_to_solve(parallax_scene: Path) -> None:
    paths, _, _ = wide_truth(parallax_scene)
    assert choose("auto", paths[:1], 128).start == "identity"
    with pytest.raises(InitialiserError, match="at least two wide views"):
        choose("rotation", paths[:1], 128)


@pytest.mark.slow
def test_training_starts_from_geometry_and_records_it(parallax_scene: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from mzen_ns.cameras import ZoomCameras
    from tests.helpers import build, tiny_trainer_config

    config = tiny_trainer_config(parallax_scene, tmp_path, steps=4)
    model = config.pipeline.model
    model = replace(model, phases=replace(model.phases, stop_after="A"))
    config = replace(config, pipeline=replace(config.pipeline, model=model))
    trainer = build(config)
    pipeline = trainer.pipeline
    cameras = pipeline.mzen_model.cameras
    assert cameras.record.start is None  # decided when training starts, not when a run is loaded
    trainer.train()
    assert cameras.record.start.rung == "sfm" and "triangulation_deg" in cameras.record.start.reason
    assert pipeline.geometric_hold == "always"  # the default: phases never move cameras from geometry
    assert not cameras.wide_pose.any()  # held through phase A: the field is fitted to them
    record_focal = json.loads((Path(trainer.base_dir) / "initialiser.json").read_text())["tried"][0]["focal"]
    assert float(cameras.focal) == pytest.approx(record_focal, rel=1e-6)
    record = json.loads((Path(trainer.base_dir) / "initialiser.json").read_text())
    assert record["start"] == "sfm" and record["tried"][0]["accepted"]
    assert record["caveat"] is None and cameras.record.start.focal == "solved"  # depth pins the focal
    paths, true, true_focal = wide_truth(parallax_scene)
    learned = cameras.c2w(cameras.wide_index).detach().numpy()
    assert pairwise_rotation_error(learned, true) < 0.6
    assert abs(float(cameras.focal) / true_focal - 1.0) < 0.03

    fresh = replace(config.pipeline.model.cameras).setup(
        dials=cameras.dials,
        is_wide=cameras.is_wide,
        focal_guess=100.0,
        aspect=1.0,
        cx=cameras.cx,
        cy=cameras.cy,
        width=cameras.width,
        height=cameras.height,
    )
    assert isinstance(fresh, ZoomCameras) and fresh.record.start is None
    fresh.load_state_dict(cameras.state_dict())
    assert fresh.record.start == cameras.record.start  # a resumed run keeps its start and never solves again
    assert torch.equal(fresh.base_c2w, cameras.base_c2w)


def test_phase_a_holds_geometric_cameras_and_phase_c_refines_them() -> None:
    from mzen_ns.phases import steps

    assert not steps("A", "wide_poses", "phase-a") and not steps("A", "focal", "phase-a")
    assert steps("A", "fields", "phase-a") and steps("A", "wide_poses", "none") and steps("A", "focal", "none")
    assert steps("C", "wide_poses", "phase-a") and steps("C", "focal", "phase-a")
    assert not steps("B", "wide_poses", "phase-a") and steps("B", "zoom_poses", "phase-a")
    assert not steps("C", "wide_poses", "always") and not steps("C", "focal", "always")
    assert steps("C", "zoom_poses", "always") and steps("C", "fields", "always")  # held zoom-ins: per image


def test_what_is_held_follows_the_start_and_the_schedule() -> None:
    from mzen_ns.phases import PhaseScheduleConfig

    assert PhaseScheduleConfig().hold(False) == "none"
    assert PhaseScheduleConfig(hold_geometric_start=True, refine_geometric=True).hold(True) == "phase-a"
    assert PhaseScheduleConfig(hold_geometric_start=False, refine_geometric=True).hold(True) == "none"
    assert PhaseScheduleConfig(refine_geometric=False).hold(True) == "always"


def test_held_images_lose_their_pose_and_zoom_gradients_only() -> None:
    from tests.helpers import zoom_cameras

    cameras = zoom_cameras([1.0, 4.0, 4.0, 16.0], focal_guess=100.0, width=32, height=24)
    cameras.zoom_pose.grad = torch.ones_like(cameras.zoom_pose)
    cameras.log_zoom.grad = torch.ones_like(cameras.log_zoom)
    cameras.hold(torch.tensor([False, False, True, False]))
    cameras.drop_held_gradients()
    assert cameras.zoom_pose.grad[:, 0].tolist() == [1.0, 0.0, 1.0]  # zoom-ins 1, 2, 3: image 2 held
    assert cameras.log_zoom.grad.tolist() == [1.0, 1.0, 0.0, 1.0]
    cameras.hold(None)
    cameras.zoom_pose.grad.fill_(1.0)
    cameras.drop_held_gradients()
    assert bool((cameras.zoom_pose.grad == 1.0).all())


@pytest.mark.slow
def test_init_identity_never_runs_a_solver(parallax_scene: Path, tmp_path: Path, monkeypatch) -> None:
    from dataclasses import replace

    import mzen_ns.geometry.initialiser as initialiser
    from tests.helpers import tiny_trainer_config, train

    def refuse(*args, **kwargs):
        raise AssertionError("init identity must not run the ladder")

    monkeypatch.setattr(initialiser, "choose", refuse)
    config = tiny_trainer_config(parallax_scene, tmp_path, steps=3)
    model = config.pipeline.model
    model = replace(model, cameras=replace(model.cameras, init="identity"))
    config = replace(config, pipeline=replace(config.pipeline, model=model))
    trainer = train(config)
    cameras = trainer.pipeline.mzen_model.cameras
    assert cameras.record.start.rung == "identity"
    assert torch.equal(cameras.base_c2w[cameras.wide_index], torch.eye(4)[:3].expand(9, 3, 4))
    assert not (Path(trainer.base_dir) / "initialiser.json").exists()


@pytest.fixture(scope="module")
def zoom_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine wide views and three 4× zoom-ins (plus one held-out view per level, the zoom-in aimed
    from the held-out wide view) at 256×192."""
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    root = tmp_path_factory.mktemp("zooms")
    make_scene(
        SceneMakerConfig(
            output=root,
            zooms=(1.0, 4.0),
            n_wide=9,
            n_zoom=3,
            n_test=1,
            width=256,
            height=192,
            seed=1,
            test_zoom_target="own",  # the held-out zoom-in aimed from the held-out wide view, near its centre
        )
    )
    return root


def split_frames(scene: Path):
    """(paths, true c2w, frames) of the training wide views, the training zoom-ins and the held-out views."""
    frames = json.loads((scene / "transforms.json").read_text())["frames"]
    groups = {
        "wide": [f for f in frames if f["zoom"] == 1.0 and f["split"] == "train"],
        "zoom": [f for f in frames if f["zoom"] != 1.0 and f["split"] == "train"],
        "test": [f for f in frames if f["split"] == "test"],
    }
    return {
        name: (
            [scene / f["file_path"] for f in group],
            np.array([f["gt_transform_matrix"] for f in group])[:, :3],
            group,
        )
        for name, group in groups.items()
    }


def test_sfm_registers_zoom_ins_at_their_pose_zoom_and_source_view(zoom_scene: Path) -> None:
    from mzen_ns.evaluation.alignment import relative_rotation_error

    groups = split_frames(zoom_scene)
    wide_paths, wide_true, wide_frames = groups["wide"]
    zoom_paths, zoom_true, zoom_frames = groups["zoom"]
    solution = solve_sfm(wide_paths, zoom_ins=[(path, 4.0) for path in zoom_paths])
    poses = solution.zoom_ins
    assert poses is not None and poses.found.all() and (poses.inliers >= 30).all()
    parents = [[f["file_path"] for f in wide_frames].index(f["gt_parent"]) for f in zoom_frames]
    assert poses.source.tolist() == parents  # the wide view each was taken from, by its optical centre
    learned = np.concatenate([solution.c2w, poses.c2w])
    true = np.concatenate([wide_true, zoom_true])
    pairs = [(parent, len(wide_paths) + k) for k, parent in enumerate(parents)]
    assert relative_rotation_error(learned, true, pairs) < 1.0  # a wrong source is ~5° off
    true_zoom = np.array([f["gt_zoom"] for f in zoom_frames])
    assert np.abs(poses.zoom / true_zoom - 1.0).max() < 0.02  # the dials are up to 3% off


def test_locate_places_held_out_views_in_the_runs_frame(zoom_scene: Path) -> None:
    from mzen_ns.geometry.locate import locate
    from mzen_ns.geometry.similarity import apply_similarity

    groups = split_frames(zoom_scene)
    wide_paths, wide_true, _ = groups["wide"]
    test_paths, test_true, test_frames = groups["test"]
    run = (2.0, Rotation.from_euler("xyz", [10.0, -20.0, 5.0], degrees=True).as_matrix(), np.array([0.3, -0.1, 2.0]))
    wide_index = [k for k, f in enumerate(test_frames) if f["zoom"] == 1.0]
    zoom_index = [k for k, f in enumerate(test_frames) if f["zoom"] != 1.0]
    located = locate(
        "sfm",
        wide_paths,
        apply_similarity(run, wide_true),  # the run's cameras: the truth in another frame
        [test_paths[k] for k in wide_index],
        [(test_paths[k], 4.0) for k in zoom_index],
    )
    views = located.views
    assert views.found.all(), located.reason
    expected = apply_similarity(run, test_true[wide_index + zoom_index])
    angles = rotation_angles_deg(views.c2w[:, :, :3], expected[:, :, :3])
    assert angles[0] < 0.2 and angles[1] < 2.0  # a 4× at 256 px: rotation trades with sideways position
    assert np.linalg.norm(views.c2w[0, :, 3] - expected[0, :, 3]) < 0.02 * run[0]  # a wide view's centre
    assert views.source.tolist() == [len(wide_paths), len(wide_paths)]  # the zoom-in's wide view is the held-out one
    assert views.zoom[0] == 1.0 and abs(views.zoom[1] / test_frames[zoom_index[0]]["gt_zoom"] - 1) < 0.02


def test_locate_registers_zoom_ins_with_the_training_ones_and_without_held_out_wide_views(monkeypatch) -> None:
    from mzen_ns.geometry import locate as locate_module
    from mzen_ns.geometry.solution import PlacedViews

    rng = np.random.default_rng(0)
    poses = np.zeros((4, 3, 4))
    poses[:, :, :3] = Rotation.from_rotvec(rng.normal(0.0, 0.05, (4, 3))).as_matrix()
    poses[:, :, 3] = rng.normal(0.0, 0.2, (4, 3))
    train_c2w, held_out_wide = poses[:3], poses[3]
    calls, priors = [], []

    def solve(paths, focal_prior=None, principal_point=None, zoom_ins=()):  # the run's cameras; zoom-ins at view 3
        calls.append((list(paths), list(zoom_ins)))
        priors.append(focal_prior)
        solution = WideSolution("sfm", poses[: len(paths)].copy(), 100.0)
        if zoom_ins:
            solution.zoom_ins = PlacedViews.unplaced(len(zoom_ins))
            solution.zoom_ins.c2w[:] = held_out_wide
            solution.zoom_ins.zoom[:] = np.arange(len(zoom_ins)) + 2.0
            solution.zoom_ins.source[:] = 0
        return solution

    monkeypatch.setattr(locate_module, "solve_sfm", solve)
    train, wide, zoom_in, support = [Path(f"t{k}.png") for k in range(3)], Path("w.png"), Path("z.png"), Path("s.png")
    located = locate_module.locate("sfm", train, train_c2w, [wide], [(zoom_in, 4.0)], support=[(support, 4.0)])
    assert calls == [(train + [wide], []), (train, [(support, 4.0), (zoom_in, 4.0)])]
    views = located.views
    assert views.found.all(), located.reason
    assert views.zoom.tolist() == [1.0, 3.0]  # the held-out zoom-in's answer, not the support's
    assert views.source.tolist() == [3, 3]  # nearest centre: the held-out wide view, which the zoom-in solve never saw
    assert priors == [None, None]  # COLMAP finds its own focal unless the run held the scene's
    locate_module.locate("sfm", train, train_c2w, [wide], [(zoom_in, 4.0)], focal_prior=120.0)
    assert priors[2:] == [120.0, 120.0]


def test_locate_refuses_a_joint_answer_the_run_disagrees_with(zoom_scene: Path) -> None:
    from mzen_ns.geometry.locate import locate

    groups = split_frames(zoom_scene)
    wide_paths, wide_true, _ = groups["wide"]
    test_paths, _, test_frames = groups["test"]
    moved = wide_true.copy()
    moved[3, :, :3] = Rotation.from_euler("y", 5.0, degrees=True).as_matrix() @ moved[3, :, :3]
    located = locate("sfm", wide_paths, moved, [p for p, f in zip(test_paths, test_frames) if f["zoom"] == 1.0])
    assert not located.views.found.any()
    assert "turn up to" in located.reason


@pytest.mark.slow
def test_after_an_sfm_start_zoom_ins_are_placed_by_geometry(zoom_scene: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.helpers import tiny_trainer_config, train

    config = tiny_trainer_config(zoom_scene, tmp_path, steps=4, boundaries=(0.25, 0.5))
    model = config.pipeline.model
    config = replace(
        config, pipeline=replace(config.pipeline, model=replace(model, phases=replace(model.phases, stop_after="B")))
    )
    trainer = train(config)
    cameras = trainer.pipeline.mzen_model.cameras
    assert cameras.record.start.rung == "sfm"
    zoom_ins = cameras.zoom_index
    assert cameras.match.geometric[zoom_ins].all()
    names = [Path(p).as_posix() for p in trainer.pipeline.datamanager.train_dataset.metadata["mzen_file_paths"]]
    frames = {f["file_path"]: f for f in split_frames(zoom_scene)["zoom"][2]}
    parents = [frames[next(k for k in frames if names[i].endswith(k))]["gt_parent"] for i in zoom_ins.tolist()]
    assert [names[int(cameras.match.root[i])] for i in zoom_ins.tolist()] == [
        next(n for n in names if n.endswith(parent)) for parent in parents
    ]
    rows = json.loads((Path(trainer.base_dir) / "priming.json").read_text())
    assert {row["score_kind"] for row in rows} == {"2d3d_inliers"} and not any(row["flagged"] for row in rows)
    summary = json.loads((Path(trainer.base_dir) / "mzen_run_summary.json").read_text())
    assert summary["priming_seconds"] == trainer.pipeline.priming_seconds > 0  # the time placing them took


@pytest.mark.slow
def test_cameras_from_geometry_stay_put_when_the_phases_may_not_refine_them(zoom_scene: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.helpers import tiny_trainer_config, train

    config = tiny_trainer_config(zoom_scene, tmp_path, steps=6, boundaries=(0.34, 0.5))
    model = config.pipeline.model
    phases = replace(model.phases, refine_geometric=False)
    config = replace(config, pipeline=replace(config.pipeline, model=replace(model, phases=phases)))
    trainer = train(config)
    pipeline = trainer.pipeline
    cameras = pipeline.mzen_model.cameras
    assert pipeline.phase == "C" and pipeline.geometric_hold == "always"
    assert pipeline.phase_schedule.c_start == pipeline.phase_schedule.b_start == 2  # nothing to register: no phase B
    record = json.loads((Path(trainer.base_dir) / "initialiser.json").read_text())
    assert float(cameras.focal) == pytest.approx(record["tried"][0]["focal"], rel=1e-6)
    assert not cameras.wide_pose.any() and not cameras.zoom_pose.any()  # every zoom-in here was placed by geometry
    zoom_ins = cameras.zoom_index
    assert torch.allclose(cameras.zoom(zoom_ins), cameras.match.relative_zoom[zoom_ins])  # as placed (wide zoom 1)
    assert any(p.grad is not None for p in pipeline.mzen_model.field.parameters())  # the field did train


@pytest.mark.parametrize("refine_searched", [False, True])
@pytest.mark.slow
def test_zoom_ins_the_search_placed_after_a_geometric_start_stay_put_unless_refined(
    zoom_scene: Path, tmp_path: Path, refine_searched: bool
) -> None:
    from dataclasses import replace

    from tests.helpers import tiny_trainer_config, train

    config = tiny_trainer_config(zoom_scene, tmp_path, steps=6, boundaries=(0.34, 0.5))
    pipeline_config = replace(config.pipeline, priming=replace(config.pipeline.priming, geometry=False))
    model = pipeline_config.model
    phases = replace(model.phases, refine_searched=refine_searched)
    pipeline_config = replace(pipeline_config, model=replace(model, phases=phases))
    pipeline = train(replace(config, pipeline=pipeline_config)).pipeline
    cameras = pipeline.mzen_model.cameras
    zoom_ins = cameras.zoom_index
    assert cameras.record.start.rung == "sfm" and not cameras.match.geometric.any()
    assert bool((cameras.match.source[zoom_ins] >= 0).all())
    skipped = pipeline.phase_schedule.c_start == pipeline.phase_schedule.b_start
    assert skipped == (not refine_searched) and bool(cameras.zoom_pose.any()) == refine_searched


@pytest.mark.slow
def test_a_deep_zoom_in_of_faint_detail_registers_through_a_copy_shrunk_to_a_shallower_level(tmp_path) -> None:
    """16× zoom-ins whose detail is faint (few SIFT features at their own size) register through
    copies shrunk to look like 4× frames, placed within a few of their own pixels."""
    from mzen_ns.evaluation.reprojection import own_pixel_errors
    from mzen_ns.geometry.similarity import sim3_alignment
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    config = SceneMakerConfig(output=tmp_path, zooms=(1.0, 4.0, 16.0), n_wide=6, n_zoom=3, n_test=0, width=512)
    make_scene(replace(config, height=384, seed=2, detail_contrast=0.05, nested=True))
    manifest = json.loads((tmp_path / "transforms.json").read_text())
    wides = [f for f in manifest["frames"] if f["zoom"] == 1.0]
    deep = [f for f in manifest["frames"] if f["zoom"] == 16.0]
    solution = solve_sfm(
        [tmp_path / f["file_path"] for f in wides],
        zoom_ins=[(tmp_path / f["file_path"], f["zoom"]) for f in manifest["frames"] if f["zoom"] != 1.0],
    )
    placed = solution.zoom_ins
    found = np.flatnonzero(placed.found[-len(deep) :])
    assert len(found) >= 2  # at their own size alone, none of the three registers
    alignment = sim3_alignment(solution.c2w, np.array([f["gt_transform_matrix"] for f in wides])[:, :3])
    errors = own_pixel_errors(
        placed.c2w[-len(deep) :][found],
        placed.zoom[-len(deep) :][found] * solution.focal,
        np.array([deep[k]["gt_transform_matrix"] for k in found]),
        np.array([deep[k]["gt_zoom"] * manifest["gt_focal"] for k in found]),
        np.tile([[256.0, 192.0]], (len(found), 1)),
        1.0,
        [np.array(deep[k]["gt_points"]) for k in found],
        alignment,
    )
    assert max(float(np.median(e)) for e in errors) < 3.0  # a 16× at 512 px: its footprint in a wide view is 32 px
    true_zoom = np.array([deep[k]["gt_zoom"] for k in found])
    assert np.abs(placed.zoom[-len(deep) :][found] / true_zoom - 1.0).max() < 0.02
