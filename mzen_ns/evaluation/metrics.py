"""Image metrics of the evaluation protocol (``docs/method.md``): PSNR, SSIM, LPIPS (cached weights only),
and the gradient / Laplacian structure similarities GSS and LSS.

Both GSS and LSS start from the same smoothing: each image is converted to luminance
(Y = 0.299 R + 0.587 G + 0.114 B) and convolved with a Gaussian (σ = 1 px, 7×7 kernel, zero
padding, same size). Similarities are averaged over the pixels at least ``BORDER`` (4) pixels from
the image edge, so zero padding never counts.

GSS (gradient similarity, the gradient-magnitude similarity of GMSD, Xue et al. 2014):
    Gx, Gy = three-point central differences of the smoothed image ((I[x+1] − I[x−1]) / 2),
    G = sqrt(Gx² + Gy²),
    GSS = mean( (2 G_ref G_rec + c_g) / (G_ref² + G_rec² + c_g) ),   c_g = 170 / 255² ≈ 0.0026.
    Each term lies in (0, 1], equals 1 where the gradient magnitudes agree, and is unchanged by
    a constant intensity offset of either image.

LSS (Laplacian structure similarity):
    L = (5-point Laplacian of the smoothed image) / (μ + ε),  μ = Gaussian(σ = 2 px) local mean
    luminance, ε = 0.05,
    s = (2 L_ref L_rec + c_l) / (L_ref² + L_rec² + c_l) ∈ (−1, 1],   c_l = 1e-3,
    LSS = mean( (1 + s) / 2 ) ∈ [0, 1].
    It equals 1 for identical images and, through the local normalisation, is nearly unchanged
    by a gain (multiplicative change of exposure); it is not offset-invariant.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

BORDER = 4
"""Pixels at the image edge left out of GSS / LSS averages (zero padding lives there)."""
GSS_C = 170.0 / 255.0**2
"""GMSD's stability constant, for intensities in [0, 1]."""
LSS_C = 1e-3
"""Stability constant of the Laplacian similarity."""
LSS_EPS = 0.05
"""Added to the local mean intensity before dividing the Laplacian by it."""
_LUMA = (0.299, 0.587, 0.114)


def _as_batch(image: Tensor) -> Float[Tensor, "B C H W"]:
    """(H, W, C), (C, H, W) or (B, C, H, W) → (B, C, H, W)."""
    if image.dim() == 3 and image.shape[-1] in (1, 3) and image.shape[0] not in (1, 3):
        image = image.permute(2, 0, 1)
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4:
        raise ValueError(f"expected an image (H, W, C), (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
    return image.float()


def _luminance(image: Float[Tensor, "B C H W"]) -> Float[Tensor, "B 1 H W"]:
    if image.shape[1] == 1:
        return image
    weights = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image[:, :3] * weights).sum(dim=1, keepdim=True)


def _gaussian(image: Float[Tensor, "B 1 H W"], sigma: float) -> Float[Tensor, "B 1 H W"]:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.conv2d(image, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(out, kernel.view(1, 1, -1, 1), padding=(radius, 0))


def _interior_mean(values: Float[Tensor, "B 1 H W"]) -> Float[Tensor, " B"]:
    height, width = values.shape[-2:]
    if height <= 2 * BORDER or width <= 2 * BORDER:
        raise ValueError(f"images must be larger than {2 * BORDER} pixels each way, got {width}x{height}")
    return values[..., BORDER:-BORDER, BORDER:-BORDER].mean(dim=(1, 2, 3))


def gradient_magnitude(image: Tensor) -> Float[Tensor, "B 1 H W"]:
    """G of the GSS definition (smoothed luminance, central differences)."""
    smooth = _gaussian(_luminance(_as_batch(image)), 1.0)
    gx = torch.zeros_like(smooth)
    gy = torch.zeros_like(smooth)
    gx[..., :, 1:-1] = (smooth[..., :, 2:] - smooth[..., :, :-2]) / 2.0
    gy[..., 1:-1, :] = (smooth[..., 2:, :] - smooth[..., :-2, :]) / 2.0
    return torch.sqrt(gx**2 + gy**2)


def normalised_laplacian(image: Tensor) -> Float[Tensor, "B 1 H W"]:
    """L of the LSS definition (Laplacian of the smoothed luminance over local mean intensity)."""
    luminance = _luminance(_as_batch(image))
    smooth = _gaussian(luminance, 1.0)
    kernel = torch.tensor(
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=smooth.dtype, device=smooth.device
    )
    laplacian = F.conv2d(smooth, kernel.view(1, 1, 3, 3), padding=1)
    return laplacian / (_gaussian(luminance, 2.0) + LSS_EPS)


def gss(reference: Tensor, rendered: Tensor) -> Float[Tensor, " B"]:
    """Gradient similarity in [0, 1] per image (1: identical gradient magnitudes)."""
    g_ref, g_rec = gradient_magnitude(reference), gradient_magnitude(rendered)
    return _interior_mean((2 * g_ref * g_rec + GSS_C) / (g_ref**2 + g_rec**2 + GSS_C))


def lss(reference: Tensor, rendered: Tensor) -> Float[Tensor, " B"]:
    """Laplacian structure similarity in [0, 1] per image (1: identical)."""
    l_ref, l_rec = normalised_laplacian(reference), normalised_laplacian(rendered)
    similarity = (2 * l_ref * l_rec + LSS_C) / (l_ref**2 + l_rec**2 + LSS_C)
    return _interior_mean((1.0 + similarity) / 2.0)


def psnr(reference: Tensor, rendered: Tensor) -> Float[Tensor, " B"]:
    """PSNR in dB for intensities in [0, 1], per image."""
    ref, rec = _as_batch(reference), _as_batch(rendered)
    mse = (ref - rec).square().mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse.clamp(min=1e-12))


def ssim(reference: Tensor, rendered: Tensor) -> Float[Tensor, " B"]:
    """SSIM (torchmetrics, Gaussian 11×11, σ = 1.5, as nerfacto reports it), per image."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    ref, rec = _as_batch(reference), _as_batch(rendered)
    return structural_similarity_index_measure(rec, ref, data_range=1.0, reduction="none")


def image_metrics(reference: Tensor, rendered: Tensor, lpips: Optional[torch.nn.Module] = None) -> Dict[str, float]:
    """All metrics for one image pair; ``lpips`` only when given (cached weights), never made up."""
    values = {
        "psnr": float(psnr(reference, rendered)[0]),
        "ssim": float(ssim(reference, rendered)[0]),
        "gss": float(gss(reference, rendered)[0]),
        "lss": float(lss(reference, rendered)[0]),
    }
    if lpips is not None and getattr(lpips, "available", True):
        ref, rec = _as_batch(reference).clamp(0, 1), _as_batch(rendered).clamp(0, 1)
        values["lpips"] = float(lpips(rec, ref))
    return values
