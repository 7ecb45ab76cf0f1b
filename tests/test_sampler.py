"""The phase pixel sampler: only the images a phase allows, each image's share of a batch as configured."""

from __future__ import annotations

import pytest
import torch

from mzen_ns.datamanager import PhasePixelSampler, PhasePixelSamplerConfig, image_shares

IS_WIDE = torch.tensor([True, True, True, False, False])


def sampler(share, rays: int = 20000) -> PhasePixelSampler:
    config = PhasePixelSamplerConfig(num_rays_per_batch=rays, zoom_in_share=share)
    sampler = PhasePixelSampler(config, num_rays_per_batch=rays)
    sampler.is_wide = IS_WIDE
    return sampler


def counts(sampler: PhasePixelSampler, rays: int = 20000) -> torch.Tensor:
    torch.manual_seed(0)
    batch = {"image": torch.rand(5, 6, 8, 3), "image_idx": torch.arange(5)}
    drawn = sampler.collate_image_dataset_batch(batch, rays)
    assert drawn["image"].shape == (rays, 3)
    rows = drawn["indices"]
    # every ray's colour is its own image's pixel at its indices
    assert torch.equal(drawn["image"], batch["image"][rows[:, 0], rows[:, 1], rows[:, 2]])
    return torch.bincount(rows[:, 0], minlength=5).float() / rays


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


@pytest.mark.slow
def test_the_run_summary_states_the_rays_per_pixel_each_level_drew(tmp_path):
    import json
    from dataclasses import replace
    from pathlib import Path

    from tests.helpers import tiny_scene, tiny_trainer_config, train

    scene = tiny_scene(tmp_path / "scene")
    config = tiny_trainer_config(scene, tmp_path / "out", steps=6, boundaries=(0.34, 0.5))
    sampler = replace(config.pipeline.datamanager.pixel_sampler, zoom_in_share=0.9)
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
