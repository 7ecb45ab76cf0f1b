"""The field decides between a zoom-in's best placement and its rival (another part of the scene)."""

import math

import pytest
import torch

from mzen_ns.placement import FieldJudge
from mzen_ns.priming.plan import CandidateCamera, PrimingConfig, Views, plan_priming
from mzen_ns.priming.report import plan_rows
from mzen_ns.priming.search import PositionSearchConfig
from tests.helpers import texture, turn, zoom_in

HEIGHT, WIDTH = 96, 128
FOCAL = 150.0


def _ambiguous_scene(noise: float = 0.0):
    """Four wide views and a fifth whose only likeness to the 4× zoom-in is a copy of its patch (with
    ``noise``), which the zoom-in was taken from in wide view 2: without noise two wide views explain
    it equally well in 2D."""
    wides = torch.stack([texture(seed) for seed in range(4)])
    four = zoom_in(wides[2], (30.0, 70.0), 4.0)
    repeated = texture(9).clone()
    generator = torch.Generator().manual_seed(1)
    repeated[18:42, 74:106] = wides[2][58:82, 14:46] + noise * torch.randn(24, 32, 3, generator=generator)
    return torch.cat([wides, repeated[None], four[None]]), torch.tensor([1.0, 1, 1, 1, 1, 4])


def _plan(images, dials, judge=None, **kwargs):
    count = len(dials)
    principal = torch.tensor([[WIDTH / 2, HEIGHT / 2]]).expand(count, 2)
    views = Views(images, dials, principal, torch.full((count,), FOCAL), 1.0, torch.eye(3).expand(count, 3, 3))
    search = PositionSearchConfig(work_width=128, coarse_width=64, min_template=8)
    return plan_priming(
        views, dials == 1.0, torch.arange(count), PrimingConfig(method="position", search=search, **kwargs), judge
    )


def _judge_preferring(root: int, asked: list):
    def judge(image, camera: CandidateCamera) -> float:
        asked.append(camera)
        return 0.95 if camera.root == root else 0.3

    return judge


@pytest.mark.parametrize("truth", [2, 4])
def test_the_field_decides_where_two_wide_views_explain_a_zoom_in_equally_well(truth):
    images, dials = _ambiguous_scene()
    assert _plan(images, dials).flagged.tolist() == [True]  # the windows alone cannot tell
    asked = []
    plan = _plan(images, dials, _judge_preferring(truth, asked))
    assert int(plan.root[0]) == truth and plan.flagged.tolist() == [False]
    assert plan.field_ncc[0].tolist() == pytest.approx([0.95, 0.3])
    assert {camera.root for camera in asked} == {2, 4}
    for camera in asked:  # the cameras asked about are the placements: 4× the wide view's focal
        assert camera.fx / camera.root_fx == pytest.approx(4.0, rel=0.05)
    row = plan_rows(plan, [f"img{i}" for i in range(6)], dials)[0]
    assert row["field_ncc"] == pytest.approx([0.95, 0.3]) and row["matched_wide"] == f"img{truth}"


def test_a_field_that_cannot_tell_leaves_the_flag():
    images, dials = _ambiguous_scene()
    plan = _plan(images, dials, lambda image, camera: 0.6)
    assert plan.flagged.tolist() == [True] and plan.field_ncc[0].tolist() == pytest.approx([0.6, 0.6])


def test_a_field_that_contradicts_clear_windows_moves_the_zoom_in_and_flags_it():
    images, dials = _ambiguous_scene(noise=0.3)  # a poor copy: the windows clearly prefer wide view 2
    alone = _plan(images, dials)
    assert int(alone.root[0]) == 2 and alone.flagged.tolist() == [False]
    plan = _plan(images, dials, _judge_preferring(4, []))
    assert int(plan.root[0]) == 4 and plan.flagged.tolist() == [True]
    assert float(plan.runner_up[0]) == pytest.approx(float(alone.score[0]))  # the windows' choice is now the runner-up


def test_without_field_check_the_judge_is_not_asked():
    images, dials = _ambiguous_scene()
    plan = _plan(images, dials, lambda image, camera: pytest.fail("asked"), field_check=False)
    assert plan.flagged.tolist() == [True] and bool(torch.isnan(plan.field_ncc).all())


class _Plane:
    """A stand-in for the field: a textured plane at z = −1 seen from the origin (what a field
    fitted to wide views shows), rendered at whatever size it is asked for."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.sizes = []

    @staticmethod
    def colour(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        channels = [
            torch.sin(60 * x + 2) * torch.cos(45 * y),
            torch.sin(80 * y - 1 + 30 * x),
            torch.cos(70 * x - 50 * y),
        ]
        return (torch.stack(channels, -1) + 1) / 2

    def render_rgb(self, camera):
        width, height = int(camera.width), int(camera.height)
        self.sizes.append((width, height))
        v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        local = torch.stack(
            [(u - camera.cx[0, 0]) / camera.fx[0, 0], -(v - camera.cy[0, 0]) / camera.fy[0, 0], -torch.ones_like(u)], -1
        )
        rays = local @ camera.camera_to_worlds[0, :, :3].T
        hit = rays / -rays[..., 2:]
        return self.colour(hit[..., 0], hit[..., 1])


def _camera(rotation, fx):
    return CandidateCamera(
        root=0, orientation=rotation, fx=fx, root_fx=FOCAL, principal=torch.tensor([WIDTH / 2, HEIGHT / 2])
    )


def test_the_field_judge_scores_the_true_camera_above_a_shifted_one_at_the_scale_the_field_resolves():
    plane = _Plane()
    judge = FieldJudge(plane, lambda root: torch.zeros(3), 1.0)
    truth = turn([0.0, 1.0, 0.0], 8.0).float()
    query = plane.render_rgb(_nerfstudio(truth, 4 * FOCAL))
    plane.sizes.clear()
    right = judge(query, _camera(truth, 4 * FOCAL))
    shifted = judge(query, _camera(turn([0.0, 1.0, 0.0], 10.0).float(), 4 * FOCAL))
    assert right > 0.99 and shifted < right - 0.3
    compared = WIDTH // 4  # the field resolves a wide view's pixel: a 4× zoom-in is compared at 1/4 of its size
    supersample = int(math.sqrt(4096 / (compared * compared * HEIGHT / WIDTH)))
    assert plane.sizes[0] == (compared * supersample, HEIGHT // 4 * supersample)


def _nerfstudio(rotation, fx):
    from nerfstudio.cameras.cameras import Cameras

    c2w = torch.cat([rotation, torch.zeros(3, 1)], 1)[None]
    return Cameras(camera_to_worlds=c2w, fx=fx, fy=fx, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH, height=HEIGHT)


def test_without_a_rival_the_field_is_asked_only_to_report():
    images, dials = _ambiguous_scene()
    images, dials = torch.cat([images[:4], images[5:]]), torch.tensor([1.0, 1, 1, 1, 4])  # no copy: no rival
    asked = []
    plan = _plan(images, dials, _judge_preferring(0, asked))  # the field would prefer another view
    assert int(plan.root[0]) == 2 and plan.flagged.tolist() == [False] and [c.root for c in asked] == [2]
    assert plan.field_ncc[0, 0].item() == pytest.approx(0.3) and math.isnan(plan.field_ncc[0, 1].item())
    assert plan_rows(plan, [f"img{i}" for i in range(5)], dials)[0]["field_ncc"] == [0.3, None]
