"""Zoom-aware camera model: exact gradients, field of view, principal point, priming."""

from __future__ import annotations

import math

import pytest
import torch

from mzen_ns.cameras import ZoomCameras, ZoomCamerasConfig

W, H = 40, 30


def make_cameras(dtype=torch.float64, cx=W / 2, cy=H / 2, **config) -> ZoomCameras:
    dials = torch.tensor([1.0, 1.0, 4.0, 16.0])
    cameras = ZoomCameras(
        ZoomCamerasConfig(**config),
        dials=dials,
        is_wide=dials == 1.0,
        focal_guess=35.0,
        aspect=1.0,
        cx=torch.full((4,), float(cx)),
        cy=torch.full((4,), float(cy)),
        width=W,
        height=H,
    )
    return cameras.to(dtype)


def randomise(cameras: ZoomCameras, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cameras.wide_pose.copy_(0.2 * torch.randn(cameras.wide_pose.shape, generator=generator, dtype=torch.float64))
        cameras.zoom_pose.copy_(0.2 * torch.randn(cameras.zoom_pose.shape, generator=generator, dtype=torch.float64))
        cameras.log_zoom.add_(0.05 * torch.randn(4, generator=generator, dtype=torch.float64))


def test_gradients_match_finite_differences():
    cameras = make_cameras(learn_wide_zoom=True)
    randomise(cameras)
    indices = torch.tensor([0, 1, 2, 3, 2, 0])
    pixels = torch.tensor([[3, 5], [29, 39], [15, 20], [0, 0], [7, 33], [20, 2]])
    weights = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def objective() -> torch.Tensor:
        origins, directions, norms, _ = cameras.rays(indices, pixels)
        return (weights * (origins + 0.7 * directions * norms)).sum()

    for param in (cameras.log_focal, cameras.log_zoom, cameras.wide_pose, cameras.zoom_pose):
        cameras.zero_grad()
        objective().backward()
        analytic = param.grad.clone()
        numeric = torch.zeros_like(param)
        flat = param.data.view(-1)
        for k in range(flat.numel()):
            old = float(flat[k])
            flat[k] = old + 1e-6
            plus = float(objective().detach())
            flat[k] = old - 1e-6
            minus = float(objective().detach())
            flat[k] = old
            numeric.view(-1)[k] = (plus - minus) / 2e-6
        assert torch.allclose(analytic, numeric, rtol=1e-5, atol=1e-6), (param.shape, analytic, numeric)


def test_zoom_narrows_field_of_view_exactly():
    cameras = make_cameras()
    pixel = torch.tensor([[0, 0]])  # corner pixel
    angles = []
    for index in (0, 2, 3):  # dials 1, 4, 16, identity poses
        _, direction, _, _ = cameras.rays(torch.tensor([index]), pixel)
        angles.append(math.hypot(float(direction[0, 0]), float(direction[0, 1])) / -float(direction[0, 2]))
    zooms = cameras.zoom().detach()
    assert angles[0] / angles[1] == pytest.approx(float(zooms[2] / zooms[0]), rel=1e-12)
    assert angles[0] / angles[2] == pytest.approx(float(zooms[3] / zooms[0]), rel=1e-12)
    assert zooms.tolist() == pytest.approx([1.0, 1.0, 4.0, 16.0], rel=1e-7)  # initialised at the dial


def test_principal_point_is_honoured():
    cameras = make_cameras(cx=10.0, cy=7.0)
    origin, direction, norm, _ = cameras.rays(
        torch.tensor([2]), torch.tensor([[6, 9]])
    )  # centre of pixel (9, 6) = (9.5, 6.5)
    expected = torch.tensor([(9.5 - 10.0) / 140.0, -(6.5 - 7.0) / 140.0, -1.0], dtype=torch.float64)
    assert torch.allclose(direction[0], expected / expected.norm())
    assert float(norm) == pytest.approx(float(expected.norm()))
    assert torch.equal(origin[0], torch.zeros(3, dtype=torch.float64))


def test_wide_zoom_is_the_focal_gauge_unless_asked():
    cameras = make_cameras()
    cameras.zoom().sum().backward()
    assert torch.equal(cameras.log_zoom.grad[:2], torch.zeros(2, dtype=torch.float64))
    assert bool((cameras.log_zoom.grad[2:] != 0).all())


def test_priming_copies_pose_and_resets_zoom():
    cameras = make_cameras()
    randomise(cameras)
    assert not cameras.match.primed_images.any() and not cameras.match.primed(cameras.zoom_index)
    wide_pose = cameras.c2w(torch.tensor([1])).detach()
    cameras.prime_from(torch.tensor([2, 3]), wide_pose.expand(2, 3, 4), torch.tensor([4.0, 16.0]), torch.tensor([1, 1]))
    assert torch.allclose(cameras.c2w(torch.tensor([2, 3])), wide_pose.expand(2, 3, 4))
    assert cameras.zoom(torch.tensor([2, 3])).tolist() == pytest.approx([4.0, 16.0])
    assert cameras.match.root.tolist() == [-1, -1, 1, 1]
    assert cameras.match.primed(cameras.zoom_index)
    assert cameras.match.primed_images.tolist() == [False, False, True, True]  # the wide views are not primed


def test_learned_cameras_export_matches_rays():
    cameras = make_cameras()
    randomise(cameras)
    exported = cameras.to_cameras()
    rays = exported.generate_rays(camera_indices=3, coords=torch.tensor([[12.5, 17.5]], dtype=torch.float64))
    origin, direction, _, _ = cameras.rays(torch.tensor([3]), torch.tensor([[12, 17]]))
    assert torch.allclose(rays.origins.double(), origin, atol=1e-5)
    assert torch.allclose(rays.directions.double(), direction, atol=1e-5)


def test_a_held_focal_is_recorded_with_the_start_and_survives_a_checkpoint():
    cameras = make_cameras()
    assert cameras.record.start is None  # nothing started yet
    cameras.start_wides("sfm", "why", torch.eye(4)[:3].expand(2, 3, 4).double(), 40.0, focal_held=True)
    assert cameras.record.start.focal_held and float(cameras.focal) == pytest.approx(40.0)
    resumed = make_cameras()
    resumed.load_state_dict(cameras.state_dict())
    assert resumed.record.start.focal_held and resumed.record.start == cameras.record.start
    cameras.start_wides("sfm", "why", focal=40.0)
    assert not cameras.record.start.focal_held and cameras.record.start.focal == "solved"


def test_a_checkpoint_that_kept_the_record_on_the_cameras_still_loads():
    cameras = make_cameras()
    cameras.start_wides("sfm", "why", focal=40.0, focal_held=True)
    poses = torch.eye(4)[:3].expand(2, 3, 4)
    cameras.prime_from(torch.tensor([2, 3]), poses, torch.tensor([4.0, 4.0]), torch.tensor([1, 0]))
    cameras.record.trained_on[:] = True
    state = cameras.state_dict()
    older = {k: v for k, v in state.items() if not k.startswith(("record.", "match.root"))}
    older["matched_wide"], older["solved"] = state["match.root"], state["record.trained_on"]
    older["_extra_state"] = state["record._extra_state"]
    resumed = make_cameras()
    resumed.load_state_dict(older)
    assert resumed.match.root.tolist() == [-1, -1, 1, 0] and bool(resumed.record.trained_on.all())
    assert resumed.record.start == cameras.record.start and resumed.record.start.focal_held
