"""The phase pixel sampler: only the images a phase allows, each image's share of a batch as configured."""

from __future__ import annotations

import pytest
import torch

from mzen_ns.datamanager import (
    UNSEEN_ERROR,
    PhasePixelSampler,
    PhasePixelSamplerConfig,
    draw_pixels,
    image_shares,
    pixel_weights,
)

IS_WIDE = torch.tensor([True, True, True, False, False])


def sampler(share, rays: int = 20000, **options) -> PhasePixelSampler:
    config = PhasePixelSamplerConfig(num_rays_per_batch=rays, zoom_in_share=share, **options)
    sampler = PhasePixelSampler(config, num_rays_per_batch=rays)
    sampler.is_wide = IS_WIDE
    return sampler


def draw(sampler: PhasePixelSampler, rays: int = 20000) -> torch.Tensor:
    """The (image, row, column) of each ray of one batch of ``rays`` from five 6×8 images."""
    torch.manual_seed(0)
    batch = {"image": torch.rand(5, 6, 8, 3), "image_idx": torch.arange(5)}
    drawn = sampler.collate_image_dataset_batch(batch, rays)
    assert drawn["image"].shape == (rays, 3)
    rows = drawn["indices"]
    # every ray's colour is its own image's pixel at its indices
    assert torch.equal(drawn["image"], batch["image"][rows[:, 0], rows[:, 1], rows[:, 2]])
    return rows


def counts(sampler: PhasePixelSampler, rays: int = 20000) -> torch.Tensor:
    return torch.bincount(draw(sampler, rays)[:, 0], minlength=5).float() / rays


def test_each_image_gets_the_share_it_is_configured_to():
    got = counts(sampler(0.75))
    expected = torch.tensor([0.25 / 3] * 3 + [0.75 / 2] * 2)
    assert torch.allclose(got, expected, atol=0.02)


def test_without_a_share_every_image_is_drawn_alike():
    assert torch.allclose(counts(sampler(None)), torch.full((5,), 0.2), atol=0.02)


def test_a_phase_of_wide_views_alone_draws_them_alike_whatever_the_share():
    only_wide = sampler(0.9)
    only_wide.allowed_images = IS_WIDE.clone()
    got = counts(only_wide)
    assert got[3:].sum() == 0 and torch.allclose(got[:3], torch.full((3,), 1 / 3), atol=0.02)


def test_shares_sum_to_one_and_a_share_outside_zero_to_one_is_refused():
    shares = image_shares(IS_WIDE, 0.6)
    assert shares is not None and float(shares.sum()) == pytest.approx(1.0)
    assert image_shares(IS_WIDE, None) is None
    with pytest.raises(ValueError, match="zoom_in_share must lie in \\[0, 1\\], got 1.5"):
        image_shares(IS_WIDE, 1.5)


def test_pixel_weights_mix_even_draws_with_draws_by_error_and_keep_each_images_share():
    errors = torch.zeros(2, 2, 2)
    errors[0, 0, 0], errors[1, 1, 1] = 3.0, 1.0
    by_error = pixel_weights(errors, None, 0.0)
    assert torch.allclose(by_error, errors / 4.0)
    mixed = pixel_weights(errors, None, 0.5)
    assert float(mixed.sum()) == pytest.approx(1.0) and float(mixed[0, 1, 1]) == pytest.approx(0.5 / 8)
    shared = pixel_weights(errors, torch.tensor([0.2, 0.8]), 0.0)
    assert torch.allclose(shared.sum(dim=(1, 2)), torch.tensor([0.2, 0.8]))
    assert float(shared[1, 1, 1]) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="uniform_share must lie in \\[0, 1\\], got -0.1"):
        pixel_weights(errors, None, -0.1)


def test_pixels_are_drawn_in_proportion_to_their_weights_and_never_where_it_is_zero():
    torch.manual_seed(0)
    weights = torch.zeros(3, 4, 5)
    weights[2, 3, 4], weights[0, 1, 2] = 3.0, 1.0
    drawn = draw_pixels(weights, 8000)
    assert drawn.shape == (8000, 3)
    hits = {tuple(row) for row in drawn.tolist()}
    assert hits == {(2, 3, 4), (0, 1, 2)}
    assert float((drawn[:, 0] == 2).float().mean()) == pytest.approx(0.75, abs=0.02)


def test_error_sampling_draws_unmeasured_and_badly_fitted_pixels_more_often():
    by_error = sampler(None, sampling="error", uniform_share=0.2)
    first = draw(by_error)
    assert by_error.errors is not None and torch.all(by_error.errors == UNSEEN_ERROR)
    assert torch.allclose(counts(by_error), torch.full((5,), 0.2), atol=0.02)  # all unseen: alike
    by_error.record_errors(first, torch.full((first.shape[0],), 1e-3))  # every pixel measured, fitted
    by_error.record_errors(torch.tensor([[3, 2, 5]]), torch.tensor([0.5]))  # one pixel badly fitted
    assert float(by_error.errors[3, 2, 5]) == 0.5 and float(by_error.errors[0, 0, 0]) == pytest.approx(1e-3)
    rows = draw(by_error)
    bad = (rows == torch.tensor([3, 2, 5])).all(dim=-1).float().mean()
    total = 0.5 + 1e-3 * (5 * 6 * 8 - 1)
    expected = 0.2 / (5 * 6 * 8) + 0.8 * 0.5 / total
    assert float(bad) == pytest.approx(expected, abs=0.02)


def test_error_sampling_keeps_to_the_allowed_images_and_their_shares():
    by_error = sampler(0.75, sampling="error")
    by_error.allowed_images = torch.tensor([True, True, False, True, True])
    draw(by_error)
    by_error.errors[0] = 0.9  # a badly fitted wide view does not take the zoom-ins' share
    got = counts(by_error)
    assert got[2] == 0
    assert torch.allclose(got, torch.tensor([0.125, 0.125, 0.0, 0.375, 0.375]), atol=0.02)


@pytest.mark.slow
def test_a_run_states_the_rays_per_pixel_each_level_drew_and_keeps_the_errors_its_rays_measured(tmp_path):
    import json
    from dataclasses import replace
    from pathlib import Path

    from tests.helpers import tiny_scene, tiny_trainer_config, train

    scene = tiny_scene(tmp_path / "scene")
    config = tiny_trainer_config(scene, tmp_path / "out", steps=6, boundaries=(0.34, 0.5))
    sampler = replace(config.pipeline.datamanager.pixel_sampler, zoom_in_share=0.9, sampling="error")
    config = replace(
        config,
        pipeline=replace(config.pipeline, datamanager=replace(config.pipeline.datamanager, pixel_sampler=sampler)),
    )
    trainer = train(config)
    datamanager = trainer.pipeline.datamanager
    summary = json.loads((Path(trainer.base_dir) / "mzen_run_summary.json").read_text())
    per_pixel = summary["rays_per_pixel"]
    dials = datamanager.train_dataset.metadata["mzen_dial"]
    cameras = datamanager.train_dataset.cameras
    areas = (cameras.width * cameras.height).view(-1)
    pixels = {f"{d:g}x": float(areas[dials == d].sum()) for d in set(dials.tolist())}
    assert set(per_pixel) == set(pixels) and len(pixels) >= 2
    drawn = sum(per_pixel[level] * pixels[level] for level in pixels)
    assert drawn == pytest.approx(summary["steps"] * datamanager.config.train_num_rays_per_batch)
    assert all(value > 0 for value in per_pixel.values())
    # sampling by error: every pixel a ray measured holds that ray's error, the rest are unseen
    errors = datamanager.train_pixel_sampler.errors
    measured = errors != UNSEEN_ERROR
    assert 0 < int(measured.sum()) <= drawn
    assert bool(((errors[measured] >= 0) & (errors[measured] < UNSEEN_ERROR)).all())
    last = datamanager.last_batch["indices"]
    assert bool(measured[last[:, 0], last[:, 1], last[:, 2]].all())
