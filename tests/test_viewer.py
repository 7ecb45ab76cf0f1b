"""The viewer's learned frustums, panel and magnification control."""

import math
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mzen_ns.viewer import LEVEL_COLOURS, PanelState, frustums, magnified_fov, panel_markdown
from tests.helpers import tiny_scene, tiny_trainer_config, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained through all three phases (zoom-ins primed and refined)."""
    root = tmp_path_factory.mktemp("viewer")
    config = tiny_trainer_config(tiny_scene(root / "scene"), root / "out", steps=12)
    return train(config).pipeline, root


@pytest.mark.slow
def test_panel_values_match_the_exported_cameras(trained):
    pipeline, root = trained
    state = pipeline.viewer_panel.refresh(step=11)
    assert pipeline.viewer_panel.refresh().phase == "C"  # the pipeline's own phase after training
    manifest = pipeline.solved_cameras(root)
    assert state.focal == pytest.approx(manifest["focal"])
    assert state.phase == "C"
    frames = manifest["frames"]
    for row in state.levels:
        zooms = [f["zoom"] for f in frames if f["dial"] == pytest.approx(row["dial"])]
        assert row["frames"] == len(zooms)
        assert (row["zoom_mean"], row["zoom_min"], row["zoom_max"]) == pytest.approx(
            (np.mean(zooms), min(zooms), max(zooms))
        )
    names = {Path(f["file_path"]).name for f in frames}
    exported_pairs = {(Path(f["file_path"]).name, Path(f["matched_wide"]).name) for f in frames if "matched_wide" in f}
    assert {(Path(a).name, Path(b).name) for a, b in state.pairs} == exported_pairs and exported_pairs
    assert {Path(a).name for a, _ in state.pairs} <= names
    text = panel_markdown(state)
    assert f"{manifest['focal']:.2f} px" in text and "| zoom-in | wide | |" in text
    exported_flags = {Path(f["file_path"]).name for f in frames if f.get("mzen_match", {}).get("flagged")}
    assert {Path(a).name for a in state.flagged} == exported_flags


@pytest.mark.slow
def test_frustums_use_the_learned_pose_and_zoom(trained):
    pipeline, root = trained
    cameras = pipeline.mzen_model.cameras
    levels = pipeline.datamanager.train_dataset.metadata["mzen_level"]
    drawn = frustums(cameras, levels)
    manifest = pipeline.solved_cameras(root)
    for frustum, frame in zip(drawn, manifest["frames"]):
        assert np.allclose(frustum.c2w, np.asarray(frame["transform_matrix"])[:3], atol=1e-6)
        assert math.tan(frustum.fov_y / 2) == pytest.approx(frame["h"] / 2 / frame["fl_y"], rel=1e-5)
        assert frustum.colour == LEVEL_COLOURS[frustum.level]
    wide = next(f for f in drawn if f.level == 0)
    zoom = next(f for f in drawn if f.level == 1)
    ratio = math.tan(wide.fov_y / 2) / math.tan(zoom.fov_y / 2)
    assert ratio == pytest.approx(float(cameras.zoom()[zoom.index] / cameras.zoom()[wide.index]), rel=1e-5)
    # viser draws equal volumes: depth ∝ size / cbrt(tan² · aspect), equal for every frustum
    depth = [f.size / (math.tan(f.fov_y / 2) ** 2 * f.aspect) ** (1 / 3) for f in (wide, zoom)]
    assert depth[0] == pytest.approx(depth[1], rel=1e-5) and zoom.size < wide.size


def test_magnification_narrows_the_field_of_view():
    wide = math.radians(40.0)
    assert magnified_fov(wide, 1.0) == pytest.approx(wide)
    assert math.tan(magnified_fov(wide, 16.0) / 2) == pytest.approx(math.tan(wide / 2) / 16)
    with pytest.raises(ValueError, match="magnification"):
        magnified_fov(wide, 0.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_nerfstudio_viewer_draws_the_learned_frustums_and_panel(trained, tmp_path):
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO, Viewer

    pipeline, _ = trained
    viewer = Viewer(
        ViewerConfig(websocket_port=_free_port(), websocket_host="127.0.0.1"),
        log_filename=tmp_path / "log.txt",
        datapath=tmp_path,
        pipeline=pipeline,
    )
    try:
        viewer.init_scene(train_dataset=pipeline.datamanager.train_dataset, train_state="completed")
        cameras = pipeline.mzen_model.cameras
        assert sorted(viewer.camera_handles) == list(range(cameras.dials.numel()))
        c2w = cameras.c2w().detach().numpy()
        for index, handle in viewer.camera_handles.items():
            assert np.allclose(handle.position, c2w[index, :, 3] * VISER_NERFSTUDIO_SCALE_RATIO, atol=1e-5)
        viewer.update_camera_poses()  # nerfstudio's own pose update keeps the learned poses
        for index, handle in viewer.camera_handles.items():
            assert np.allclose(handle.position, c2w[index, :, 3] * VISER_NERFSTUDIO_SCALE_RATIO, atol=1e-5)
        panel = pipeline.viewer_panel
        assert panel.summary.gui_handle is not None and "Focal" in panel.summary.gui_handle.content
        fov = panel.apply_magnification(16.0)
        assert math.tan(fov / 2) == pytest.approx(math.tan(panel.wide_fov_y() / 2) / 16)
    finally:
        viewer.viser_server.stop()
        pipeline.viewer_panel.control.viewer = None


def test_overview_camera_sees_every_frustum_from_behind():
    from mzen_ns.viewer import overview_camera

    rng = np.random.default_rng(0)
    c2w = np.tile(np.eye(4)[:3], (9, 1, 1))  # a forward-facing rig looking down -z, spread in x/y
    c2w[:, :2, 3] = rng.uniform(-0.12, 0.12, (9, 2))
    position, look_at, up = overview_camera(c2w, scale=10.0)
    forward = (look_at - position) / np.linalg.norm(look_at - position)
    assert np.allclose(look_at, c2w[:, :, 3].mean(axis=0) * 10.0)
    assert forward[2] < 0 and position[2] > 0 and up[1] > 0.9  # behind the rig, looking the same way, y up
    for centre in c2w[:, :, 3] * 10.0:
        ray = (centre - position) / np.linalg.norm(centre - position)
        assert math.degrees(math.acos(float(ray @ forward))) < 25.0  # inside a 50° field of view


def test_panel_marks_flagged_zoom_ins():
    state = PanelState(
        phase="B",
        step=3,
        focal=100.0,
        wide_fov_x_deg=60.0,
        levels=[],
        pairs=[("4x/a.png", "1x/w.png"), ("4x/b.png", "1x/w.png")],
        flagged=("4x/b.png",),
    )
    text = panel_markdown(state)
    assert "1 flagged" in text and "left out of the field" in text
    assert "| 4x/b.png | 1x/w.png | flagged, not in field |" in text and "| 4x/a.png | 1x/w.png |  |" in text
    trained_on = panel_markdown(replace(state, flagged_left_out=False))
    assert "| 4x/b.png | 1x/w.png | flagged |" in trained_on and "left out" not in trained_on
