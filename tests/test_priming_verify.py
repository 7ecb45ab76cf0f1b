"""Verifying placements by the camera model: rotation + zoom fits, and what they decide."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mzen_ns.geometry.similarity import rotation_angles_deg
from mzen_ns.priming.plan import PrimingConfig, Views, plan_priming
from mzen_ns.priming.verify import WindowFitConfig, axis_pixel, fit_windows, window_rotation
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene
from tests.helpers import texture, turn, turned_view

HEIGHT, WIDTH, FOCAL = 96, 128, 150.0
PRINCIPAL = torch.tensor([WIDTH / 2, HEIGHT / 2])


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(rotation_angles_deg(a[None].double().numpy(), b[None].double().numpy())[0])


def _start(pixel, count: int = 1) -> torch.Tensor:
    return window_rotation(torch.tensor([pixel]), PRINCIPAL[None], torch.tensor([FOCAL]), torch.tensor([FOCAL])).expand(
        count, 3, 3
    )


def _fit(query, candidates, start, zoom, config=WindowFitConfig()):
    count = len(candidates)
    return fit_windows(
        query,
        candidates,
        torch.full((count,), FOCAL),
        1.0,
        PRINCIPAL,
        PRINCIPAL[None].expand(count, 2),
        start,
        torch.full((count,), zoom),
        4.0,
        config,
    )


def _turned_query():
    wide = texture(0)
    truth = turn([0.0, 1.0, 0.0], 8.0) @ turn([1.0, 0.0, 0.0], -5.0) @ turn([0.0, 0.0, 1.0], 3.0)
    centre = axis_pixel(truth[None], torch.tensor([FOCAL]), 1.0, PRINCIPAL[None])[0]
    start = _start((float(centre[0]) + 2.0, float(centre[1]) - 2.0))  # a sliding-window guess: no roll, 2 px off
    return wide, turned_view(wide, truth, 4.1, FOCAL), truth, centre, start


def test_fit_recovers_the_turn_roll_included_and_the_zoom():
    wide, query, truth, _, start = _turned_query()
    assert _angle_deg(start[0], truth) > 3.0
    fixed = _fit(query, wide[None], start, 4.0, WindowFitConfig(free_focal=False))[0]
    assert _angle_deg(fixed.rotation, truth) < 0.05
    assert fixed.relative_zoom == pytest.approx(4.1, rel=0.002)
    assert fixed.score > 0.97  # the query is an upsampled copy: no detail finer than the wide view
    free = _fit(query, wide[None], start, 4.0)[0]  # the focal free as well: weaker, still close
    assert _angle_deg(free.rotation, truth) < 0.3
    assert free.relative_zoom == pytest.approx(4.1, rel=0.01)


def _with_dial(query, candidate, start, searched: float, dial: float):
    args = (query, candidate[None], torch.tensor([FOCAL]), 1.0, PRINCIPAL, PRINCIPAL[None], start)
    args += (torch.tensor([searched]), dial)
    return fit_windows(*args, WindowFitConfig(), torch.tensor([dial]))[0], fit_windows(*args, WindowFitConfig())[0]


def test_a_window_that_pins_the_zoom_keeps_it_against_the_dial():
    wide, query, truth, _, start = _turned_query()  # true zoom 4.1: 2.5% off the dial's 4.0
    held, free = _with_dial(query, wide, start, 4.0, 4.0)
    assert free.relative_zoom == pytest.approx(4.1, rel=0.01)
    assert held.relative_zoom == pytest.approx(4.1, rel=0.01)  # the window's zoom, not the dial's
    assert held.relative_zoom > free.relative_zoom * (1 - 0.002)  # the dial below pulls it less than 0.2%


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_zoom_the_window_pins_loosely_is_drawn_to_the_dial(seed):
    """A 16× zoom-in's footprint is 8×6 wide pixels at 128×96: with noise its pixels pin the zoom to
    about a per cent, and the dial (here the true zoom) holds it closer."""
    wide, truth = texture(seed), turn([0.0, 1.0, 0.0], 6.0) @ turn([1.0, 0.0, 0.0], -4.0)
    noise = 0.05 * torch.randn(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(seed))
    query = turned_view(wide, truth, 16.0, FOCAL) + noise
    centre = axis_pixel(truth[None], torch.tensor([FOCAL]), 1.0, PRINCIPAL[None])[0]
    start = _start((float(centre[0]) + 0.5, float(centre[1]) - 0.5))
    held, free = _with_dial(query, wide, start, 16.8, 16.0)  # the search's guess 5% long
    assert abs(free.relative_zoom / 16.0 - 1) > 0.005
    assert abs(held.relative_zoom / 16.0 - 1) < 0.8 * abs(free.relative_zoom / 16.0 - 1)


def test_a_free_focal_absorbs_a_wrong_focal_and_keeps_the_window_centre():
    wide, query, truth, centre, _ = _turned_query()
    short = FOCAL * 0.83  # phase A often leaves the focal ~15% short
    start = window_rotation(
        centre[None] + torch.tensor([[2.0, -2.0]]), PRINCIPAL[None], torch.tensor([short]), torch.tensor([short])
    )  # the search's guess, at the cameras' focal
    args = (query, wide[None], torch.tensor([short]), 1.0, PRINCIPAL, PRINCIPAL[None], start, torch.tensor([4.0]), 4.0)
    fixed = fit_windows(*args, WindowFitConfig(free_focal=False))[0]
    free = fit_windows(*args, WindowFitConfig())[0]
    assert free.score > fixed.score
    found = axis_pixel(free.rotation[None], torch.tensor([short]), 1.0, PRINCIPAL[None])[0]
    assert torch.allclose(found, centre, atol=0.5)  # the same pixel, under the cameras' focal


def test_fits_side_by_side_are_independent():
    wide, other = texture(0), texture(1)
    truth = turn([0.0, 1.0, 0.0], -6.0)
    query = turned_view(wide, truth, 4.0, FOCAL)
    centre = axis_pixel(truth[None], torch.tensor([FOCAL]), 1.0, PRINCIPAL[None])[0]
    start = _start((float(centre[0]) + 1.5, float(centre[1])), 2)
    alone = _fit(query, wide[None], start[:1], 4.0)[0]
    both = _fit(query, torch.stack([wide, other]), start, 4.0)
    # the same fit up to floating point (a batch takes other BLAS paths, which can move a stopping decision)
    assert both[0].score == pytest.approx(alone.score, abs=1e-4)
    assert torch.allclose(both[0].rotation, alone.rotation, atol=1e-3)
    assert both[1].score < both[0].score - 0.3  # the unrelated view does not fit


def test_a_window_outside_the_candidate_scores_minus_one():
    wide = texture(0)
    query = turned_view(wide, torch.eye(3), 4.0, FOCAL)
    outside = turn([0.0, 1.0, 0.0], 40.0)[None]  # 40° away: beyond the 46° field of view's edge
    assert _fit(query, wide[None], outside, 4.0)[0].score == -1.0


def test_a_flat_candidate_window_scores_minus_one():
    """A black margin has nothing to fit: its score is −1, not the 0 that standardising nothing gives."""
    wide = texture(0)
    query = turned_view(wide, torch.eye(3), 4.0, FOCAL)
    black = torch.zeros_like(wide)
    fits = _fit(query, torch.stack([wide, black]), _start((WIDTH / 2, HEIGHT / 2), 2), 4.0)
    assert fits[0].score > 0.9 and fits[1].score == -1.0


@pytest.fixture(scope="module")
def off_axis_scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("off-axis")
    make_scene(SceneMakerConfig(output=folder, seed=5, n_zoom=6, n_test=0, off_axis=0.5, nested=True))
    manifest = json.loads((folder / "transforms.json").read_text())
    frames = manifest["frames"]
    images = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.open(folder / f["file_path"]).convert("RGB")).copy()).float() / 255
            for f in frames
        ]
    )
    dials = torch.tensor([float(f["zoom"]) for f in frames])
    c2w = torch.tensor([f["gt_transform_matrix"] for f in frames])[:, :3]
    names = [f["file_path"] for f in frames]
    return images, dials, c2w, names, [f.get("gt_parent") for f in frames], float(manifest["gt_focal"])


def test_priming_finds_the_view_each_off_axis_zoom_in_was_taken_from(off_axis_scene):
    """Scene maker, zoom-ins aimed up to 50 % of the half field of view off-axis, 16× inside 4×; the
    wide views at their true poses overlap, so every zoom-in's patch is seen by several of them."""
    images, dials, c2w, names, parents, focal = off_axis_scene
    count, (height, width) = len(dials), images.shape[1:3]
    views = Views(
        images, dials, torch.tensor([[width / 2, height / 2]]).expand(count, 2), torch.full((count,), focal), 1.0
    )
    plan = plan_priming(views, dials == 1, torch.arange(count), PrimingConfig(method="hierarchical"))
    assert [names[int(r)] for r in plan.root] == [parents[int(q)] for q in plan.query]
    primed = {int(q): c2w[int(s), :, :3] @ rotation for q, s, rotation in zip(plan.query, plan.source, plan.rotation)}
    for q in sorted(primed):  # chains: compose through the source's primed pose
        source = int(plan.source[plan.query == q][0])
        if source in primed:
            primed[q] = primed[source] @ plan.rotation[plan.query == q][0]
    errors = [_angle_deg(primed[q], c2w[q, :, :3]) for q in primed]
    assert max(errors) < 1.5 and float(np.mean(errors)) < 0.6
