"""Verifying placements by the camera model (issue 7): is the zoom-in a pure rotation of the candidate?

A zoom-in taken from (nearly) a candidate view's optical centre is that view's image seen through
a rotation homography ``u_c ~ K_c R K_q⁻¹ u_q`` — three rotation angles and the zoom, nothing
else. Seen from another view's centre the same patch also differs by parallax and foreshortening,
which this model cannot absorb. The position search (:mod:`mzen_ns.position_search`) slides an
axis-aligned template at a few scales, so between overlapping views its scores differ mostly by its
own grid and scale steps; here each of a query's best placements is refined to the rotation (roll
included) and zoom under which the candidate's own pixels best match the query blurred to the
candidate's resolution (per-channel NCC, Levenberg–Marquardt), and candidates are ranked by that
score. On scene-maker scenes with overlapping wide views this picks the view a zoom-in was taken
from for 97–100% of zoom-ins where the sliding window alone picks 37–52% (``benchmarks/priming.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


MIN_PIXELS = 16
"""Fewest candidate pixels a window is compared on (fewer: it scores −1)."""


@dataclass
class WindowFitConfig:
    """Refinement of each zoom-in's best placements to a rotation and zoom."""

    candidates: int = 9
    """Best placements per query refined (the best one leading to another wide view is always
    added, so the runner-up is refined too); 0 ranks by the position search alone."""
    fit_width: int = 160
    """Images are fitted on copies at most this wide."""
    iterations: int = 20
    """Most Levenberg–Marquardt iterations per fit (it stops once every fit has settled)."""
    margin: float = 0.1
    """Candidate pixels compared: those falling inside the query, less this fraction of its size
    on every side, at the start of the fit."""
    free_focal: bool = True
    """Fit a scale of both focals too: the focal phase A leaves is often ~15% off, and a wrong focal
    bends the homography at off-axis windows (measured at 50% off-axis with a 17% short focal: 97% /
    93% of zoom-ins on their own wide view at 4× / 16× with the focal fixed, 100% / 97% with it
    free, as with the true focal). The fitted rotation is then re-expressed for the cameras'
    focal, keeping the window centre's pixel and the roll."""
    focal_prior: float = 0.2
    """With ``free_focal``: spread of the log focal scale's prior (a residual log s / prior), so
    the focal moves only where the window's perspective shows it (off-axis), not on centred ones
    (measured on centred zoom-ins with the true focal: 95% right at 4× without the prior, 100% with
    0.1 or 0.2)."""
    min_inside: float = 0.95
    """A fitted window must lie this much inside the candidate, or it scores −1."""


@dataclass
class Fit:
    """One refined placement."""

    score: float
    """Normalised cross-correlation at the optimum (−1: window left the candidate)."""
    rotation: Float[Tensor, "3 3"]
    """The query camera's orientation in the candidate camera's frame (OpenGL axes)."""
    relative_zoom: float
    """Query focal over candidate focal."""


def fit_windows(
    query: Float[Tensor, "H W C"], candidates: Float[Tensor, "B H W C"], candidate_fx: Float[Tensor, "B"],
    aspect: float, query_principal: Float[Tensor, "2"], candidate_principal: Float[Tensor, "B 2"],
    rotation: Float[Tensor, "B 3 3"], relative_zoom: Float[Tensor, "B"], template_zoom: float,
    config: WindowFitConfig = WindowFitConfig(),
) -> List[Fit]:
    """Refine placements of ``query`` in each of ``candidates`` (same size, full resolution),
    starting from ``rotation`` (query orientation in each candidate's frame) and ``relative_zoom``;
    ``candidate_fx`` is each candidate's focal in pixels, ``aspect`` fy / fx of all.

    Each candidate's own pixels inside the window are compared, never resampled: each is mapped into
    the query, which is blurred to the candidates' resolution (Gaussian, σ = 0.3 × ``template_zoom``,
    the nominal relative zoom: about one candidate pixel's area) and sampled bilinearly; the score
    is the per-channel NCC, averaged. The fits are independent and solved side by side
    (Levenberg–Marquardt on the standardised residuals, one damping per fit)."""
    height, width = query.shape[:2]
    shrink = min(1.0, config.fit_width / width)
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    scale = torch.tensor([size[0] / width, size[1] / height], dtype=torch.float64)
    # one candidate pixel covers template_zoom query pixels at any common scale of the two images
    source = torch.from_numpy(_blur(_resize(query, size), 0.3 * template_zoom)).double().permute(2, 0, 1)[None]
    fx = candidate_fx.double() * scale[0]
    fy = candidate_fx.double() * aspect * scale[1]
    c_principal = candidate_principal.double() * scale
    q_principal = query_principal.double() * scale
    base = rotation.double()

    def to_query(rotation: Tensor, log_zoom: Tensor, pixels: Tensor, log_focal: Tensor) -> Tensor:  # (B, P, 2) → (B, P, 2)
        f = torch.exp(log_focal)[:, None]
        rays = torch.stack([(pixels[..., 0] - c_principal[:, None, 0]) / (fx[:, None] * f),
                            -(pixels[..., 1] - c_principal[:, None, 1]) / (fy[:, None] * f),
                            -torch.ones_like(pixels[..., 0])], dim=-1) @ rotation
        depth = (-rays[..., 2]).clamp(min=1e-6)
        zoom = torch.exp(log_zoom)[:, None]
        return torch.stack([q_principal[0] + fx[:, None] * f * zoom * rays[..., 0] / depth,
                            q_principal[1] - fy[:, None] * f * zoom * rays[..., 1] / depth], dim=-1)

    # the candidate pixels compared: those whose centres fall in the query's central part at the start
    vs, us = torch.meshgrid(torch.arange(size[1], dtype=torch.float64) + 0.5,
                            torch.arange(size[0], dtype=torch.float64) + 0.5, indexing="ij")
    grid = torch.stack([us, vs], dim=-1).reshape(1, -1, 2).expand(len(candidates), -1, -1)
    start = relative_zoom.double().log()
    mapped = to_query(base, start, grid, torch.zeros_like(start))
    low, high = config.margin * torch.tensor(size), (1 - config.margin) * torch.tensor(size)
    keep = ((mapped > low) & (mapped < high)).all(dim=-1)
    count = int(keep.sum(dim=1).max())
    if count < MIN_PIXELS:  # no window overlaps its candidate enough to be compared
        return [Fit(score=-1.0, rotation=r.float(), relative_zoom=float(z)) for r, z in zip(base, relative_zoom)]
    order = keep.double().argsort(dim=1, descending=True, stable=True)[:, :count]  # kept pixels first
    pixels = grid.gather(1, order[..., None].expand(-1, -1, 2))
    mask = keep.gather(1, order).double()[..., None]
    values = torch.stack([torch.from_numpy(_resize(c, size)).double().reshape(-1, query.shape[-1]) for c in candidates])
    target = _standardise(values.gather(1, order[..., None].expand(-1, -1, values.shape[-1])), mask)
    batch = len(candidates)

    def sample(theta: Tensor) -> Tuple[Tensor, Tensor]:
        rotated = base @ torch.linalg.matrix_exp(_skew(theta[:, :3]))
        where = to_query(rotated, theta[:, 3], pixels, theta[:, 4] if config.free_focal else torch.zeros_like(theta[:, 3]))
        where = where / torch.tensor(size) * 2 - 1
        sampled = torch.nn.functional.grid_sample(source, where.reshape(1, 1, -1, 2), mode="bilinear",
                                                  padding_mode="border", align_corners=False)
        inside = ((where.abs() <= 1).all(dim=-1, keepdim=True).double() * mask).sum(1) / mask.sum(1).clamp(min=1)
        return sampled[0, :, 0].T.reshape(batch, count, -1), inside[:, 0]

    def residual(theta: Tensor) -> Tensor:  # (B, P·C [+ 1]); the image part's mean square is 2 (1 − NCC)
        image = ((_standardise(sample(theta)[0], mask) - target) * mask).reshape(batch, -1)
        if not config.free_focal:
            return image
        return torch.cat([image, theta[:, 4:] / config.focal_prior], dim=1)  # log focal scale ~ N(0, prior²)

    theta = torch.cat([torch.zeros(batch, 3, dtype=torch.float64), start[:, None]]
                      + [torch.zeros(batch, 1, dtype=torch.float64)] * config.free_focal, dim=1)
    theta = _levenberg_marquardt(residual, theta, config.iterations)
    with torch.no_grad():
        sampled, inside = sample(theta)
        score = (_standardise(sampled, mask) * target * mask).sum(dim=(1, 2)) / ((mask.sum(dim=(1, 2)) - 1) * target.shape[-1])
        fitted = base @ torch.linalg.matrix_exp(_skew(theta[:, :3]))
        if config.free_focal:
            fitted = _refocus(fitted, theta[:, 4].exp(), candidate_fx.double(), aspect, candidate_principal.double())
        fitted = fitted.float()
    valid = torch.isfinite(score) & (inside >= config.min_inside) & (mask.sum(dim=(1, 2)) >= MIN_PIXELS)
    score = torch.where(valid, score, torch.full_like(score, -1.0))
    return [Fit(score=float(s), rotation=r, relative_zoom=float(z)) for s, r, z in zip(score, fitted, theta[:, 3].exp())]


def _levenberg_marquardt(residual, theta: Float[Tensor, "B K"], iterations: int, step: float = 1e-6,
                         tolerance: float = 1e-4) -> Float[Tensor, "B K"]:
    """Minimise each row's sum of squared ``residual`` (rows independent) by Levenberg–Marquardt;
    Jacobians by central differences, one pair of evaluations per parameter for all rows at once.
    Stops early once every row's cost falls by less than ``tolerance`` (relative) per step."""
    damping = torch.full((theta.shape[0], 1, 1), 1e-3, dtype=theta.dtype)
    eye = torch.eye(theta.shape[1], dtype=theta.dtype) * step
    r = residual(theta)
    cost = r.pow(2).sum(dim=1)
    active = torch.ones_like(cost, dtype=torch.bool)
    for _ in range(iterations):
        jacobian = torch.stack([(residual(theta + e) - residual(theta - e)) / (2 * step) for e in eye], dim=-1)
        normal = jacobian.transpose(1, 2) @ jacobian  # (B, K, K)
        gradient = jacobian.transpose(1, 2) @ r[..., None]
        diagonal = torch.diag_embed(normal.diagonal(dim1=1, dim2=2).clamp(min=1e-12))
        trial = theta - torch.linalg.solve(normal + damping * diagonal, gradient)[..., 0]
        trial_r = residual(trial)
        trial_cost = trial_r.pow(2).sum(dim=1)
        better = active & torch.isfinite(trial_cost) & (trial_cost < cost)
        settled = (better & (cost - trial_cost < tolerance * cost)) | (~better & (damping[:, 0, 0] >= 1e6))
        theta = torch.where(better[:, None], trial, theta)
        r = torch.where(better[:, None], trial_r, r)
        cost = torch.where(better, trial_cost, cost)
        damping = torch.where(better[:, None, None], damping / 3, damping * 4).clamp(1e-9, 1e9)
        active = active & ~settled  # a settled row stops moving: each row's path is its own
        if not bool(active.any()):
            break
    return theta


def _skew(v: Float[Tensor, "B 3"]) -> Float[Tensor, "B 3 3"]:
    zero = torch.zeros_like(v[:, 0])
    return torch.stack([zero, -v[:, 2], v[:, 1], v[:, 2], zero, -v[:, 0], -v[:, 1], v[:, 0], zero], dim=-1).view(-1, 3, 3)


def _standardise(values: Float[Tensor, "B P C"], mask: Float[Tensor, "B P 1"]) -> Float[Tensor, "B P C"]:
    count = mask.sum(dim=1, keepdim=True).clamp(min=2)
    mean = (values * mask).sum(dim=1, keepdim=True) / count
    std = ((((values - mean) * mask) ** 2).sum(dim=1, keepdim=True) / (count - 1)).sqrt().clamp(min=1e-8)
    return (values - mean) / std


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma) if sigma > 0.3 else image
    return blurred.reshape(image.shape)


def _resize(image: Tensor, size: Tuple[int, int]) -> np.ndarray:
    import cv2

    array = image.detach().cpu().numpy().astype(np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if size == (array.shape[1], array.shape[0]):
        return array
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], array.shape[2])


def _refocus(rotation: Float[Tensor, "B 3 3"], scale: Float[Tensor, "B"], fx: Float[Tensor, "B"], aspect: float,
             principal: Float[Tensor, "B 2"]) -> Float[Tensor, "B 3 3"]:
    """A rotation fitted with focal ``scale`` × ``fx``, re-expressed for ``fx``: the same window
    centre pixel and the same roll about the axis."""
    centre = axis_pixel(rotation, fx * scale, aspect, principal)
    roll = window_rotation(centre, principal, fx * scale, fx * scale * aspect).transpose(1, 2) @ rotation
    return window_rotation(centre, principal, fx, fx * aspect) @ roll


def axis_pixel(
    rotation: Float[Tensor, "Q 3 3"], fx: Float[Tensor, "Q"], aspect: float, principal: Float[Tensor, "Q 2"]
) -> Float[Tensor, "Q 2"]:
    """Where each rotated camera's optical axis meets the source image (pixels): the window centre."""
    axis = -rotation[:, :, 2]
    depth = (-axis[:, 2]).clamp(min=1e-6)
    return torch.stack([principal[:, 0] + fx * axis[:, 0] / depth, principal[:, 1] - fx * aspect * axis[:, 1] / depth], -1)


def window_rotation(
    centre: Float[Tensor, "Q 2"], principal: Float[Tensor, "Q 2"], fx: Float[Tensor, "Q"], fy: Float[Tensor, "Q"]
) -> Float[Tensor, "Q 3 3"]:
    """Rotation (in the source camera's frame, OpenGL: looking down −z) that turns the optical axis
    onto the ray through pixel ``centre``: a pan about the camera's y axis, then a tilt about the
    panned x axis (no roll)."""
    a = (centre[:, 0] - principal[:, 0]) / fx
    b = -(centre[:, 1] - principal[:, 1]) / fy
    pan = -torch.atan(a)
    tilt = torch.atan(b * torch.cos(pan))
    return _rotation_y(pan) @ _rotation_x(tilt)


def _rotation_x(angle: Tensor) -> Tensor:
    c, s, zero, one = angle.cos(), angle.sin(), torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([one, zero, zero, zero, c, -s, zero, s, c], -1).view(-1, 3, 3)


def _rotation_y(angle: Tensor) -> Tensor:
    c, s, zero, one = angle.cos(), angle.sin(), torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], -1).view(-1, 3, 3)
