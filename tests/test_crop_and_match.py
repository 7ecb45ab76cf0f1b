"""Crop-and-match on constructed cases: the surrogate is the wide view whose central crop the
zoom-in shows."""

from __future__ import annotations

import torch
from rich.console import Console

from mzen_ns.crop_and_match import central_crop, crop_and_match, match_table, save_match_picture


def smooth_random_images(count: int, height: int, width: int, seed: int) -> torch.Tensor:
    noise = torch.rand(count, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def test_zoom_in_cut_from_a_wide_view_matches_it(tmp_path):
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

    names = [f"img{i}" for i in range(9)]
    console = Console(record=True, width=120)
    console.print(match_table(result, names, all_dials))
    text = console.export_text()
    assert "img6" in text and "img4" in text and "runner-up margin" in text
    picture = save_match_picture(result, images, all_dials, tmp_path / "match.png", names)
    from PIL import Image

    with Image.open(picture) as image:
        assert image.size[0] == 2 * width + 4 and image.size[1] >= 3 * height


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
