"""GSS / LSS / PSNR / SSIM: identity, range, monotone in blur, documented invariances."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mzen_ns.evaluation.metrics import gss, image_metrics, lss, psnr, ssim


def textured(seed: int = 0, size=(48, 64)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, size[0] // 4, size[1] // 4, generator=generator)
    coarse = F.interpolate(noise, size=size, mode="bicubic", align_corners=False)
    fine = 0.3 * torch.rand(1, 3, *size, generator=generator)
    return (0.7 * coarse + fine).clamp(0, 1)[0].permute(1, 2, 0)  # (H, W, 3) like nerfstudio images


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return image
    radius = int(3 * sigma) + 1
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    chw = image.permute(2, 0, 1)[:, None]
    chw = F.conv2d(F.pad(chw, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    chw = F.conv2d(F.pad(chw, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return chw[:, 0].permute(1, 2, 0)


@pytest.mark.parametrize("metric", [gss, lss])
def test_identical_images_score_one(metric):
    image = textured()
    assert float(metric(image, image)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("metric", [gss, lss])
def test_range_zero_to_one(metric):
    for seed in range(5):
        value = metric(textured(seed), textured(seed + 10))
        assert 0.0 <= float(value) <= 1.0
    flat = torch.full((48, 64, 3), 0.5)
    assert 0.0 <= float(metric(textured(1), flat)) <= 1.0


@pytest.mark.parametrize("metric", [gss, lss, ssim, psnr])
def test_strictly_decreasing_with_blur(metric):
    image = textured(3)
    values = [float(metric(image, blur(image, sigma))) for sigma in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_gss_ignores_a_constant_offset_and_lss_a_gain():
    image = textured(4) * 0.8
    assert float(gss(image, image + 0.15)) == pytest.approx(1.0, abs=1e-6)
    assert float(lss(image, image * 1.2)) > 0.99
    assert float(lss(image, image + 0.15)) < 1.0  # LSS does not promise offset invariance


def test_batched_and_layouts_agree():
    a, b = textured(5), blur(textured(5), 1.0)
    single = float(gss(a, b))
    batch = gss(torch.stack([a, a]).permute(0, 3, 1, 2), torch.stack([b, a]).permute(0, 3, 1, 2))
    assert float(batch[0]) == pytest.approx(single, rel=1e-6) and float(batch[1]) == pytest.approx(1.0)
    assert float(gss(a.permute(2, 0, 1), b.permute(2, 0, 1))) == pytest.approx(single, rel=1e-6)


def test_image_metrics_leaves_out_unavailable_lpips():
    from mzen_ns.patches import UnavailableLPIPS

    a = textured(6)
    values = image_metrics(a, blur(a, 1.0), lpips=UnavailableLPIPS())
    assert set(values) == {"psnr", "ssim", "gss", "lss"}


def test_rejects_tiny_or_malformed_images():
    with pytest.raises(ValueError, match="larger than"):
        gss(torch.rand(6, 6, 3), torch.rand(6, 6, 3))
    with pytest.raises(ValueError, match="expected an image"):
        gss(torch.rand(5), torch.rand(5))
