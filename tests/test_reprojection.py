"""The error in an image's own pixels: true surface points through the true and the learned camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mzen_ns.evaluation.reprojection import MAX_ERROR_PX, level_errors, own_pixel_errors, project, wrong
from mzen_ns.geometry.similarity import sim3_alignment

WIDTH, HEIGHT, FOCAL = 128, 96, 150.0
IDENTITY = (1.0, np.eye(3), np.zeros(3))


def camera(x: float = 0.0, y: float = 0.0, turn_deg: float = 0.0) -> np.ndarray:
    """An OpenGL camera at (x, y, 0) looking down −z, turned about its y axis."""
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("y", turn_deg, degrees=True).as_matrix()
    c2w[:3, 3] = [x, y, 0.0]
    return c2w


def plane_points(c2w: np.ndarray, focal: float, depth: float = 1.0) -> np.ndarray:
    """Points on the plane z = −depth that the camera sees at a 5 × 4 grid of its pixels."""
    xs, ys = np.meshgrid((np.arange(5) + 0.5) * WIDTH / 5, (np.arange(4) + 0.5) * HEIGHT / 4)
    local = np.stack([(xs - WIDTH / 2) / focal, -(ys - HEIGHT / 2) / focal, -np.ones_like(xs)], -1).reshape(-1, 3)
    rays = local @ c2w[:3, :3].T
    return c2w[:3, 3] + rays * ((-depth - c2w[2, 3]) / rays[:, 2:3])


def errors_of(learned: np.ndarray, true: np.ndarray, zoom: float, alignment=IDENTITY, learned_zoom=None):
    points = plane_points(true, FOCAL * zoom)
    return own_pixel_errors(
        learned[None, :3],
        np.array([FOCAL * (learned_zoom or zoom)]),
        true[None],
        np.array([FOCAL * zoom]),
        np.array([[WIDTH / 2, HEIGHT / 2]]),
        1.0,
        [points],
        alignment,
    )[0]


def test_points_project_back_to_the_pixels_they_were_seen_at():
    pixels, depth = project(camera(0.1)[:3], FOCAL, FOCAL, (WIDTH / 2, HEIGHT / 2), plane_points(camera(0.1), FOCAL))
    assert pixels[0] == pytest.approx([WIDTH / 10, HEIGHT / 8])
    assert depth == pytest.approx(np.ones(20))
    assert errors_of(camera(0.1), camera(0.1), 16.0) == pytest.approx(np.zeros(20), abs=1e-9)


@pytest.mark.parametrize("zoom", [1.0, 4.0, 16.0])
def test_a_sideways_shift_costs_focal_times_shift_over_depth_pixels(zoom):
    shift = 0.001
    errors = errors_of(camera(shift), camera(), zoom)
    assert errors == pytest.approx(np.full(20, FOCAL * zoom * shift), rel=1e-6)  # a 16x pays 16x the wide's pixels


def test_a_turn_costs_about_focal_times_angle_pixels_at_the_centre():
    errors = errors_of(camera(turn_deg=0.05), camera(), 16.0)
    expected = FOCAL * 16.0 * math.radians(0.05)
    assert float(np.median(errors)) == pytest.approx(expected, rel=0.05)


def test_a_wrong_zoom_scales_about_the_principal_point():
    errors = errors_of(camera(), camera(), 4.0, learned_zoom=4.0 * 1.01)
    pixels, _ = project(camera()[:3], FOCAL * 4, FOCAL * 4, (WIDTH / 2, HEIGHT / 2), plane_points(camera(), FOCAL * 4))
    radius = np.linalg.norm(pixels - [WIDTH / 2, HEIGHT / 2], axis=-1)
    assert errors == pytest.approx(0.01 * radius, rel=1e-6)


def test_the_alignment_carries_learned_cameras_into_the_truth_frame():
    rotation = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    truth = np.stack([camera(0.1), camera(-0.1, 0.05), camera(0.0, -0.1, 3.0)])
    learned = truth.copy()  # the same rig in another frame: x ↦ (Rᵀ(x − t)) / s
    learned[:, :3, :3] = rotation.T @ truth[:, :3, :3]
    learned[:, :3, 3] = (truth[:, :3, 3] - [0.5, 0.2, -0.3]) @ rotation / 2.0
    alignment = sim3_alignment(learned[:, :3], truth[:, :3])
    assert errors_of(learned[2], truth[2], 4.0, alignment) == pytest.approx(np.zeros(20), abs=1e-6)
    assert errors_of(learned[2], truth[2], 4.0).min() > 1.0  # without it, another place


def test_points_behind_the_learned_camera_get_the_largest_error():
    flipped = camera(turn_deg=180.0)
    assert (errors_of(flipped, camera(), 1.0) == MAX_ERROR_PX).all()


def test_level_errors_pool_the_points_of_each_level_and_skip_images_without_points():
    errors = [np.array([1.0, 2.0, 3.0]), np.array([5.0]), np.zeros(0), np.arange(100.0)]
    results = level_errors(errors, [1.0, 1.0, 4.0, 16.0])
    assert results["reproj_px_1x"] == 2.5 and results["reproj_px_1x_p90"] == pytest.approx(4.4)
    assert "reproj_px_4x" not in results
    assert results["reproj_px_16x"] == pytest.approx(49.5) and results["reproj_px_16x_p90"] == pytest.approx(89.1)


def test_an_image_is_wrong_when_its_median_error_exceeds_a_quarter_of_its_width():
    errors = [np.full(5, 0.2 * WIDTH), np.full(5, 0.3 * WIDTH), np.zeros(0)]
    assert wrong(errors, WIDTH).tolist() == [False, True, False]
