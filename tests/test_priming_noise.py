"""What window NCC the images' noise allows a right placement, and the flag it raises."""

import numpy as np
import pytest
import torch

from mzen_ns.priming.noise import attainable_ncc, noise_sigma
from tests.helpers import texture, zoom_in
from tests.test_priming_plan import _plan, _scene


def _noisy(image: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return image + sigma * torch.randn(image.shape, generator=generator)


def _smooth(height: int = 96, width: int = 128) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([0.2 + 0.5 * xs, 0.3 + 0.4 * ys, 0.5 + 0.2 * xs * ys], -1)


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_noise_sigma_recovers_the_added_noise_and_ignores_smooth_structure(sigma):
    # the same noise in the three channels: the grey image carries sigma itself
    generator = torch.Generator().manual_seed(3)
    noise = sigma * torch.randn(96, 128, 1, generator=generator)
    assert noise_sigma(_smooth() + noise) == pytest.approx(sigma, rel=0.1)
    assert noise_sigma(_smooth()) < 1e-3


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("sigma", [0.0, 0.05, 0.15])
def test_attainable_ncc_is_the_ncc_of_the_exact_window_under_the_noise(sigma):
    import cv2

    wide = _smooth(192, 256) * 0.3 + 0.7 * texture(5, 192, 256)
    blurred = torch.nn.functional.avg_pool2d(wide.permute(2, 0, 1)[None], 3, 1, 1)  # little fine texture
    wide = blurred[0].permute(1, 2, 0)
    centre, zoom = (100.0, 80.0), 4.0
    query = _noisy(zoom_in(wide, centre, zoom), sigma, 1)
    source = _noisy(wide, sigma, 2)
    shrunk = cv2.resize(query.mean(-1).numpy(), (64, 48), interpolation=cv2.INTER_AREA)
    window = source.mean(-1).numpy()[80 - 24 : 80 + 24, 100 - 32 : 100 + 32]
    measured = _ncc(shrunk, window)
    predicted = attainable_ncc(query, source, zoom)
    assert predicted == pytest.approx(measured, abs=0.05)
    assert predicted <= 1.0 and (sigma > 0 or predicted > 0.98)


def test_a_zoom_in_that_fits_its_best_window_far_worse_than_the_noise_allows_is_flagged():
    images, dials = _scene()
    stray = zoom_in(texture(42), (40.0, 30.0), 4.0)  # shows nothing any view shows
    images, dials = torch.cat([images[:5], stray[None]]), torch.cat([dials[:5], torch.tensor([4.0])])
    # no margin: only the noise floor can flag
    plan = _plan(images, dials, "position", flag_margin=0.0)
    assert plan.query.tolist() == [4, 5] and plan.flagged.tolist() == [False, True]
    assert float(plan.score[1]) < 0.9 * float(plan.attainable[1])
    assert float(plan.score[0]) > 0.9 * float(plan.attainable[0])  # the right one fits as its noise allows
    assert _plan(images, dials, "position", flag_margin=0.0, noise_floor=0.0).flagged.tolist() == [False, False]
