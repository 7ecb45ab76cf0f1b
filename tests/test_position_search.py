"""Position search (issue 7): placing zoom-ins inside candidate images."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mzen_ns.position_search import PositionSearchConfig, search_positions


def _texture(seed: int, height: int = 96, width: int = 128) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    fine = torch.rand(1, 3, height, width, generator=generator)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False) * 0.7 + 0.3 * fine
    return image[0].permute(1, 2, 0)


def _zoom_in(image: torch.Tensor, centre, zoom: float) -> torch.Tensor:
    """The view of ``image`` ``zoom``× narrower, centred on pixel ``centre`` (x, y)."""
    height, width = image.shape[:2]
    theta = torch.tensor([[[1 / zoom, 0, 2 * centre[0] / width - 1], [0, 1 / zoom, 2 * centre[1] / height - 1]]])
    grid = F.affine_grid(theta, [1, 3, height, width], align_corners=False)
    return F.grid_sample(image.permute(2, 0, 1)[None], grid, align_corners=False)[0].permute(1, 2, 0)


@pytest.mark.parametrize("centre", [(64.0, 48.0), (30.0, 70.0), (100.0, 25.0)])
def test_finds_the_right_candidate_and_where_the_zoom_in_sits(centre):
    candidates = torch.stack([_texture(seed) for seed in range(4)])
    query = _zoom_in(candidates[2], centre, 4.0)[None]
    placement = search_positions(query, candidates, torch.full((1, 4), 4.0), PositionSearchConfig(work_width=128))
    (score, runner_up), (best, _) = placement.score[0].topk(2)
    assert int(best) == 2 and float(score) > 0.9 and float(runner_up) < float(score) - 0.2
    assert np.allclose(placement.centre[0, 2].numpy(), centre, atol=2.0)
    assert float(placement.zoom[0, 2]) == pytest.approx(4.0, rel=0.06)


def test_absorbs_dial_error_with_the_scale_search():
    candidates = torch.stack([_texture(seed) for seed in range(3)])
    query = _zoom_in(candidates[1], (50.0, 40.0), 4.0 * 1.1)[None]  # the dial says 4, the truth is 4.4
    placement = search_positions(query, candidates, torch.full((1, 3), 4.0), PositionSearchConfig(work_width=128))
    assert int(placement.score[0].argmax()) == 1
    assert float(placement.zoom[0, 1]) == pytest.approx(4.4, rel=0.06)


def test_too_deep_zoom_is_not_placed_directly():
    candidates = _texture(0)[None]
    query = _zoom_in(candidates[0], (64.0, 48.0), 32.0)[None]
    placement = search_positions(query, candidates, torch.full((1, 1), 32.0), PositionSearchConfig(work_width=128))
    assert float(placement.score[0, 0]) == -1.0  # footprint below min_template: hierarchical matching's job
