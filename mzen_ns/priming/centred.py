"""The paper's crop-and-match: find each zoom-in's surrogate wide view by its central crop.

For zoom-in ``j`` with dial ``d_j`` and wide view ``i``: the central ``(H/d_j, W/d_j)`` crop of
``I_i``, bilinearly resized to ``(H, W)``, is compared with ``I_j`` by RGB MSE; the best ``i`` is
the surrogate. All pairs are scored at once on downsampled copies (area-filtered, so the ranking
follows the full-resolution one), then the ``rescore_top`` best candidates of every zoom-in are
re-scored exactly at full resolution, which is what decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class MatchResult:
    """Surrogates of the zoom-ins, with the scores that chose them."""

    zoom_indices: Int[Tensor, " Z"]
    """Image indices of the zoom-ins."""
    wide_indices: Int[Tensor, " W"]
    """Image indices of the candidate wide views."""
    matched: Int[Tensor, " Z"]
    """Image index of each zoom-in's surrogate wide view."""
    mse: Float[Tensor, " Z"]
    """Full-resolution MSE of the surrogate's resized central crop against the zoom-in."""
    runner_up_mse: Float[Tensor, " Z"]
    """The same for the second-best candidate (inf if there is none)."""
    coarse_mse: Float[Tensor, "Z W"]
    """All pairs' MSE on the downsampled copies."""

    @property
    def margin(self) -> Float[Tensor, " Z"]:
        """Runner-up MSE minus best MSE (larger = more confident)."""
        return self.runner_up_mse - self.mse


def central_crop(
    images: Float[Tensor, "N 3 H W"], zoom: Float[Tensor, " N"], size: Sequence[int]
) -> Float[Tensor, "N 3 h w"]:
    """Central ``(H/zoom, W/zoom)`` window of each image, bilinearly resampled to ``size``."""
    count = images.shape[0]
    theta = torch.zeros(count, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = 1.0 / zoom
    theta[:, 1, 1] = 1.0 / zoom
    grid = F.affine_grid(theta, [count, 3, int(size[0]), int(size[1])], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_and_match(
    images: Float[Tensor, "N H W 3"],
    dials: Float[Tensor, " N"],
    is_wide: torch.Tensor,
    work_width: int = 64,
    rescore_top: int = 3,
) -> MatchResult:
    """Surrogate wide view for every zoom-in (vectorised over zoom-ins × wide views)."""
    chw = images.permute(0, 3, 1, 2).float()
    height, width = chw.shape[-2:]
    zoom_idx = torch.nonzero(~is_wide).squeeze(-1)
    wide_idx = torch.nonzero(is_wide).squeeze(-1)
    scale = min(1.0, work_width / width)
    small = (max(1, round(height * scale)), max(1, round(width * scale)))
    coarse = _coarse_scores(chw, dials, zoom_idx, wide_idx, small)
    matched, best, runner_up = _rescore(chw, dials, zoom_idx, wide_idx, coarse, rescore_top)
    return MatchResult(zoom_idx, wide_idx, matched, best, runner_up, coarse)


def _coarse_scores(
    chw: Tensor, dials: Tensor, zoom_idx: Tensor, wide_idx: Tensor, small: Sequence[int]
) -> Float[Tensor, "Z W"]:
    height, width = chw.shape[-2:]
    zoom_small = F.interpolate(chw[zoom_idx], size=small, mode="area")
    scores = torch.empty(zoom_idx.numel(), wide_idx.numel())
    for dial in torch.unique(dials[zoom_idx]):
        rows = torch.nonzero(dials[zoom_idx] == dial).squeeze(-1)
        crop_size = (max(small[0], math.ceil(height / float(dial))), max(small[1], math.ceil(width / float(dial))))
        crops = central_crop(chw[wide_idx], dial.expand(wide_idx.numel()), crop_size)
        crops = F.interpolate(crops, size=small, mode="area")
        a = zoom_small[rows].flatten(1)
        b = crops.flatten(1)
        scores[rows] = torch.cdist(a, b).square() / a.shape[1]
    return scores


def _rescore(
    chw: Tensor, dials: Tensor, zoom_idx: Tensor, wide_idx: Tensor, coarse: Tensor, top: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact full-resolution MSE for each zoom-in's ``top`` coarse candidates."""
    height, width = chw.shape[-2:]
    k = min(top, wide_idx.numel())
    candidates = coarse.topk(k, dim=1, largest=False).indices  # (Z, k) positions in wide_idx
    pair_zoom = zoom_idx.repeat_interleave(k)
    pair_wide = wide_idx[candidates.flatten()]
    crops = central_crop(chw[pair_wide], dials[pair_zoom], (height, width))
    exact = (crops - chw[pair_zoom]).square().mean(dim=(1, 2, 3)).view(-1, k)
    order = exact.argsort(dim=1)
    best = exact.gather(1, order[:, :1])[:, 0]
    runner_up = exact.gather(1, order[:, 1:2])[:, 0] if k > 1 else torch.full_like(best, float("inf"))
    matched = wide_idx[candidates.gather(1, order[:, :1])[:, 0]]
    return matched, best, runner_up
