"""Position search: placing zoom-ins inside candidate images."""

import numpy as np
import pytest
import torch

from mzen_ns.priming.search import PositionSearchConfig, corresponding, ncc_map, pair_width, search_positions
from tests.helpers import texture, zoom_in


@pytest.mark.parametrize("centre", [(64.0, 48.0), (30.0, 70.0), (100.0, 25.0)])
def test_finds_the_right_candidate_and_where_the_zoom_in_sits(centre):
    candidates = torch.stack([texture(seed) for seed in range(4)])
    query = zoom_in(candidates[2], centre, 4.0)[None]
    placement = search_positions(query, candidates, torch.full((1, 4), 4.0), PositionSearchConfig(work_width=128))
    (score, runner_up), (best, _) = placement.score[0].topk(2)
    assert int(best) == 2 and float(score) > 0.9 and float(runner_up) < float(score) - 0.2
    assert np.allclose(placement.centre[0, 2].numpy(), centre, atol=2.0)
    assert float(placement.zoom[0, 2]) == pytest.approx(4.0, rel=0.06)


def test_absorbs_dial_error_with_the_scale_search():
    candidates = torch.stack([texture(seed) for seed in range(3)])
    query = zoom_in(candidates[1], (50.0, 40.0), 4.0 * 1.1)[None]  # the dial says 4, the truth is 4.4
    placement = search_positions(query, candidates, torch.full((1, 3), 4.0), PositionSearchConfig(work_width=128))
    assert int(placement.score[0].argmax()) == 1
    assert float(placement.zoom[0, 1]) == pytest.approx(4.4, rel=0.06)


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_a_window_without_contrast_is_no_candidate(level):
    """Black (outside the rendered content) or saturated patches: OpenCV's NCC there is rounding
    noise (0, or clipped to ±1, which placed deep zoom-ins in black margins); such windows score −1."""
    rng = np.random.default_rng(0)
    image = rng.random((96, 128)).astype(np.float32)
    image[:, 80:] = level
    image[:40, 90:] += rng.normal(0.0, 1e-5, (40, 38)).astype(np.float32)  # near-flat: noise over noise
    template = image[30:42, 10:26].copy()
    scores = ncc_map(image, template)
    assert (scores[:, 80:] == -1.0).all()
    assert np.unravel_index(scores.argmax(), scores.shape) == (30, 10) and scores.max() > 0.99


def test_too_deep_zoom_is_not_placed_directly():
    candidates = texture(0)[None]
    query = zoom_in(candidates[0], (64.0, 48.0), 32.0)[None]
    placement = search_positions(query, candidates, torch.full((1, 1), 32.0), PositionSearchConfig(work_width=128))
    assert float(placement.score[0, 0]) == -1.0  # footprint below min_template: hierarchical matching's job


def test_a_pair_is_searched_where_its_footprint_has_the_smallest_useful_size():
    config = PositionSearchConfig(min_footprint=12, scales=(1.0,))
    assert pair_width(96, 4.0, 512, 384, config) == 96  # 24 x 18 px at 96: enough
    assert pair_width(96, 16.0, 512, 384, config) == 256  # 12 px tall at 256
    assert pair_width(96, 16.0, 128, 96, config) == 128  # never above the native size


@pytest.mark.parametrize("x_first", [24.0, 124.0])
def test_the_same_spot_near_a_border_of_either_view_corresponds(x_first):
    """Two views 20 px apart: the spot at x 24 of the first is at x 4 of the second, by its left
    border; the spot at x 124 of the first lies 4 px from that view's right border. A context
    patch around either would leave a view: only what both views show is compared."""
    scene = texture(3, height=96, width=148)
    first, second = scene[:, :128], scene[:, 20:]
    window = torch.tensor([x_first, 40.0])
    assert corresponding(first, window, 8.0, second, window - torch.tensor([20.0, 0.0]), 8.0)
    assert not corresponding(first, window, 8.0, second, torch.tensor([64.0, 70.0]), 8.0)
