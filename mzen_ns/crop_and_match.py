"""Crop-and-match (METHOD.md, phase B step 1): find each zoom-in's surrogate wide view.

For zoom-in ``j`` with dial ``d_j`` and wide view ``i``: the central ``(H/d_j, W/d_j)`` crop of
``I_i``, bilinearly resized to ``(H, W)``, is compared with ``I_j`` by RGB MSE; the best ``i`` is
the surrogate. All pairs are scored at once on downsampled copies (area-filtered, so the ranking
follows the full-resolution one), then the ``rescore_top`` best candidates of every zoom-in are
re-scored exactly at full resolution, which is what decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from rich.table import Table
from torch import Tensor


@dataclass
class MatchResult:
    """Surrogates of the zoom-ins, with the scores that chose them."""

    zoom_indices: Int[Tensor, "Z"]
    """Image indices of the zoom-ins."""
    wide_indices: Int[Tensor, "W"]
    """Image indices of the candidate wide views."""
    matched: Int[Tensor, "Z"]
    """Image index of each zoom-in's surrogate wide view."""
    mse: Float[Tensor, "Z"]
    """Full-resolution MSE of the surrogate's resized central crop against the zoom-in."""
    runner_up_mse: Float[Tensor, "Z"]
    """The same for the second-best candidate (inf if there is none)."""
    coarse_mse: Float[Tensor, "Z W"]
    """All pairs' MSE on the downsampled copies."""

    @property
    def margin(self) -> Float[Tensor, "Z"]:
        """Runner-up MSE minus best MSE (larger = more confident)."""
        return self.runner_up_mse - self.mse


def central_crop(
    images: Float[Tensor, "N 3 H W"], zoom: Float[Tensor, "N"], size: Sequence[int]
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
    dials: Float[Tensor, "N"],
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


def share_decision(matched: Int[Tensor, "Z"], device: torch.device | str) -> Int[Tensor, "Z"]:
    """Under ``torch.distributed``, every rank adopts rank 0's surrogates (decided once)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return matched
    shared = matched.to(device).clone()
    dist.broadcast(shared, src=0)
    return shared.to(matched.device)


def match_table(result: MatchResult, names: Sequence[str], dials: Float[Tensor, "N"]) -> Table:
    """A rich table: zoom-in, dial, matched wide view, MSE, runner-up margin."""
    table = Table(title="crop-and-match: zoom-in → surrogate wide view", show_lines=False)
    for column in ("zoom-in", "dial", "matched wide", "MSE", "runner-up margin"):
        table.add_column(column, justify="right" if column in ("dial", "MSE", "runner-up margin") else "left")
    for row, zoom_index in enumerate(result.zoom_indices.tolist()):
        margin = float(result.margin[row])
        table.add_row(
            names[zoom_index],
            f"{float(dials[zoom_index]):g}",
            names[int(result.matched[row])],
            f"{float(result.mse[row]):.5f}",
            "n/a" if math.isinf(margin) else f"{margin:.5f}",
        )
    return table


def save_match_picture(
    result: MatchResult,
    images: Float[Tensor, "N H W 3"],
    dials: Float[Tensor, "N"],
    path: Path,
    names: Optional[List[str]] = None,
) -> Path:
    """Each zoom-in beside its surrogate's resized central crop (and the runner-up margin)."""
    from PIL import Image, ImageDraw

    chw = images.permute(0, 3, 1, 2).float()
    height, width = chw.shape[-2:]
    crops = central_crop(chw[result.matched], dials[result.zoom_indices], (height, width))
    label = 12
    sheet = Image.new("RGB", (2 * width + 4, max(1, result.zoom_indices.numel()) * (height + label + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, zoom_index in enumerate(result.zoom_indices.tolist()):
        top = row * (height + label + 2)
        pair = torch.cat([chw[zoom_index], torch.ones(3, height, 4), crops[row]], dim=2)
        pixels = (pair.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        sheet.paste(Image.fromarray(pixels), (0, top + label))
        text = f"{_short(names, zoom_index)} <- {_short(names, int(result.matched[row]))}"
        draw.text((1, top), text, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _short(names: Optional[List[str]], index: int) -> str:
    """Label for the picture: the last folder and file stem (``4x/train_000``), or the index."""
    if not names:
        return str(index)
    path = Path(names[index])
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
