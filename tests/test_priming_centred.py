"""Crop-and-match on constructed cases: the surrogate is the wide view whose central crop the
zoom-in shows."""

from __future__ import annotations

import torch

from mzen_ns.priming.centred import central_crop, crop_and_match


def smooth_random_images(count: int, height: int, width: int, seed: int) -> torch.Tensor:
    noise = torch.rand(count, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def test_zoom_in_cut_from_a_wide_view_matches_it():
    height, width = 48, 64
    wides = smooth_random_images(6, height, width, seed=0)
    sources = torch.tensor([4, 1, 2])
    dials = torch.tensor([4.0, 4.0, 2.0])
    zoom_ins = central_crop(wides[sources], dials, (height, width))
    images = torch.cat([wides, zoom_ins]).permute(0, 2, 3, 1)
    all_dials = torch.cat([torch.ones(6), dials])
    result = crop_and_match(images, all_dials, all_dials == 1.0, work_width=16)
    assert result.zoom_indices.tolist() == [6, 7, 8]
    assert result.matched.tolist() == sources.tolist()
    assert torch.all(result.mse < 1e-10)
    assert torch.all(result.margin > 1e-3)
    assert result.coarse_mse.shape == (3, 6)


def test_downsampled_scoring_keeps_the_full_resolution_decision():
    height, width = 96, 128
    wides = smooth_random_images(12, height, width, seed=3)
    zoom = central_crop(wides[[7]], torch.tensor([4.0]), (height, width))
    zoom = (zoom + 0.05 * torch.randn(zoom.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    images = torch.cat([wides, zoom]).permute(0, 2, 3, 1)
    dials = torch.cat([torch.ones(12), torch.tensor([4.0])])
    coarse = crop_and_match(images, dials, dials == 1.0, work_width=16)
    exact = crop_and_match(images, dials, dials == 1.0, work_width=128, rescore_top=12)
    assert coarse.matched.tolist() == exact.matched.tolist() == [7]
