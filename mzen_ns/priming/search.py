"""Position search: where does a zoom-in's footprint sit inside each candidate image?

The paper primes a zoom-in from the wide view whose *central* crop matches it, which fails when the
operator moved the stage before zooming. Here each zoom-in is shrunk to its footprint in a
candidate image — ``(W / z, H / z)`` for the relative zoom ``z``, at a few scales around the dial
to absorb dial error — and slid over the whole candidate with normalised cross-correlation
(OpenCV's ``matchTemplate``, ``TM_CCOEFF_NORMED``) on grayscale copies downsampled to
``work_width``; candidates are ranked by their best score. A pair whose footprint would be smaller
than ``min_footprint`` pixels on those copies is searched on wider ones (up to the native size), so
a 16× zoom-in is searched in every wide view, not only in the shallower zoom-ins. The centred match
is the special case of a window found at the image centre at scale 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mzen_ns.priming.images import area_resize, gray


@dataclass
class PositionSearchConfig:
    """How zoom-ins are placed inside candidate images."""

    work_width: int = 256
    """The best candidates are re-searched on grayscale copies this wide (never upsampled)."""
    coarse_width: int = 96
    """Every candidate is first searched on copies this wide."""
    refine_top: int = 3
    """Candidates per query re-searched at ``work_width`` (0: coarse only)."""
    scales: Tuple[float, ...] = (0.9, 0.95, 1.0, 1.05, 1.1)
    """Multipliers of the relative dial zoom tried (dial error)."""
    min_template: int = 6
    """Smallest footprint searched (pixels either side); smaller ones score −1 and need hierarchical priming."""
    min_footprint: int = 12
    """A pair whose footprint's shorter side would be below this on the copies is searched on wider ones."""


@dataclass
class WindowMatches:
    """The best window of each query in each candidate (window search)."""

    score: Float[Tensor, "Q C"] = field(repr=False)
    """Normalised cross-correlation of the best window (−1 … 1; −1: could not be searched)."""
    centre: Float[Tensor, "Q C 2"] = field(repr=False)
    """Window centre (x, y) in the candidate's full-resolution pixels (the image centre where the
    footprint was too small to search)."""
    zoom: Float[Tensor, "Q C"] = field(repr=False)
    """Relative zoom of the best window (query focal / candidate focal)."""


def search_positions(
    queries: Float[Tensor, "Q H W 3"],
    candidates: Float[Tensor, "C H W 3"],
    relative_zoom: Float[Tensor, "Q C"],
    config: PositionSearchConfig = PositionSearchConfig(),
) -> WindowMatches:
    """Place every query (zoom-in) in every candidate at ``relative_zoom`` (query zoom over the
    candidate's, e.g. the dial ratio) × each of ``config.scales``: all pairs on copies
    ``coarse_width`` wide, then each query's ``refine_top`` best candidates at ``work_width``
    (their scores replace the coarse ones; the others keep their coarse score)."""
    height, width = queries.shape[1:3]
    gray_q = [gray(q.cpu().numpy()) for q in queries]
    gray_c = [gray(c.cpu().numpy()) for c in candidates]
    pairs = [(q, c) for q in range(len(gray_q)) for c in range(len(gray_c))]
    coarse = _search(gray_q, gray_c, relative_zoom, pairs, min(config.coarse_width, config.work_width), width, config)
    if config.refine_top <= 0 or config.coarse_width >= config.work_width:
        return coarse
    top = coarse.score.topk(min(config.refine_top, len(gray_c)), dim=1).indices
    too_small = (coarse.score <= -1.0).all(dim=1)  # footprints below min_template at the coarse width
    refined_pairs = [
        (q, c) for q in range(len(gray_q)) for c in (range(len(gray_c)) if too_small[q] else top[q].tolist())
    ]
    fine = _search(gray_q, gray_c, relative_zoom, refined_pairs, config.work_width, width, config)
    for q, c in refined_pairs:
        coarse.score[q, c] = fine.score[q, c]
        coarse.centre[q, c] = fine.centre[q, c]
        coarse.zoom[q, c] = fine.zoom[q, c]
    return coarse


def _search(
    gray_q: List[np.ndarray],
    gray_c: List[np.ndarray],
    relative_zoom: Tensor,
    pairs: Sequence[Tuple[int, int]],
    work_width: int,
    width: int,
    config: PositionSearchConfig,
) -> WindowMatches:
    """NCC placement of the listed (query, candidate) pairs on copies ``work_width`` wide, or wider
    where the footprint would be below ``config.min_footprint`` (:func:`pair_width`)."""
    import cv2

    height = gray_q[0].shape[0]
    small: dict = {}
    templates: dict = {}
    score = torch.full(tuple(relative_zoom.shape), -1.0)
    centre = torch.tensor([width / 2.0, height / 2.0]).expand(tuple(relative_zoom.shape) + (2,)).clone()
    zoom = relative_zoom.clone().float()
    for q, c in pairs:
        factor = pair_width(work_width, float(relative_zoom[q, c]), width, height, config) / width
        work_w, work_h = max(1, round(width * factor)), max(1, round(height * factor))
        if (c, work_w) not in small:
            small[(c, work_w)] = area_resize(gray_c[c], work_w, work_h)
        for scale in config.scales:
            z = float(relative_zoom[q, c]) * scale
            tw, th = round(work_w / z), round(work_h / z)
            if min(tw, th) < config.min_template or tw > work_w or th > work_h:
                continue
            if (q, tw, th) not in templates:
                templates[(q, tw, th)] = area_resize(gray_q[q], tw, th)
            result = ncc_map(small[(c, work_w)], templates[(q, tw, th)])
            _, value, _, (x, y) = cv2.minMaxLoc(result)
            if np.isfinite(value) and value > score[q, c]:
                score[q, c] = float(value)
                centre[q, c, 0] = (x + tw / 2) / factor
                centre[q, c, 1] = (y + th / 2) / factor
                zoom[q, c] = work_w / tw  # the zoom of the window actually searched (rounded size)
    return WindowMatches(score=score, centre=centre, zoom=zoom)


MIN_CONTRAST = 0.1
"""A window whose intensity spread is below this fraction of the template's scores −1: NCC against a
flat window (a saturated or featureless patch) is noise over noise, and OpenCV clips it to 1."""


def ncc_map(image: Float[np.ndarray, "H W"], template: Float[np.ndarray, "h w"]) -> Float[np.ndarray, "H-h+1 W-w+1"]:
    """Normalised cross-correlation of ``template`` at every position inside ``image`` (OpenCV's
    ``TM_CCOEFF_NORMED``), −1 where the window is flat (:data:`MIN_CONTRAST`)."""
    import cv2

    result = cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
    height, width = template.shape
    sums, squares = cv2.integral2(image.astype(np.float64), sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)

    def window(table: np.ndarray) -> np.ndarray:
        return table[height:, width:] - table[:-height, width:] - table[height:, :-width] + table[:-height, :-width]

    count = height * width
    spread = np.sqrt(np.maximum(window(squares) / count - (window(sums) / count) ** 2, 0.0))
    flat = spread < MIN_CONTRAST * float(template.std()) + 1e-6
    return np.where(flat, -1.0, result).astype(np.float32)


def pair_width(work_width: int, relative_zoom: float, width: int, height: int, config: PositionSearchConfig) -> int:
    """Width of the copies a pair is searched on: ``work_width``, or wider so that the footprint's
    shorter side reaches ``config.min_footprint`` pixels, never above the native ``width``."""
    shorter = min(width, height)
    needed = config.min_footprint * relative_zoom * max(config.scales) * width / shorter
    return min(width, max(work_width, int(math.ceil(needed))))


CONTEXT = 3.0
""":func:`corresponding` compares a patch this many times the window's size around it (more than the
window itself, so that repeated texture and planar content do not decide)."""
CONTEXT_WIDTH = 48
"""Widest copy of the context patch :func:`corresponding` matches (both images shrink alike)."""


def corresponding(
    first: Float[Tensor, "H W C"],
    first_centre: Float[Tensor, "2"],
    first_size: float,
    second: Float[Tensor, "H W C"],
    second_centre: Float[Tensor, "2"],
    second_size: float,
) -> bool:
    """Whether a window (centre (x, y), width in pixels) of ``first`` and one of ``second``, two
    views at the same zoom, show the same part of the scene: the patch :data:`CONTEXT` times the
    first window around it is found in ``second`` by normalised cross-correlation within half a
    window of the second window's centre. The patch keeps only what both views would show if the
    windows corresponded (near a border the rest lies outside one of them)."""
    import cv2

    height, width = first.shape[:2]
    side = min(max(CONTEXT * first_size, 16.0), 0.5 * width)
    half_w, half_h = side / 2, side * height / width / 2
    (cx, cy), (sx, sy) = first_centre.tolist(), second_centre.tolist()
    x0, x1 = _shared_span(cx, half_w, cx - sx, width)
    y0, y1 = _shared_span(cy, half_h, cy - sy, height)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return False
    factor = min(1.0, CONTEXT_WIDTH / (x1 - x0))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    template = area_resize(
        gray(first[y0:y1, x0:x1].cpu().numpy()), round((x1 - x0) * factor), round((y1 - y0) * factor)
    )
    scene = area_resize(gray(second.cpu().numpy()), *size)
    if min(template.shape) < 4 or template.std() < 1e-6:
        return False
    _, _, _, (x, y) = cv2.minMaxLoc(ncc_map(scene, template))
    found = torch.tensor([x / factor + cx - x0, y / factor + cy - y0])
    return float((found - second_centre.float()).norm()) <= max(0.5 * second_size, 1.0 / factor)


def _shared_span(centre: float, half: float, shift: float, size: int) -> Tuple[int, int]:
    """Along one axis, the pixels of the first view within ``half`` of ``centre`` that lie inside
    both views when the second view's pixels are the first's minus ``shift`` (both ``size`` long)."""
    return int(max(0.0, centre - half, shift)), int(min(float(size), centre + half, size + shift))
