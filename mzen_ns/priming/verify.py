"""Verifying placements by the camera model: is the zoom-in a pure rotation of the candidate?

A zoom-in taken from (nearly) a candidate view's optical centre is that view's image seen through
a rotation homography ``u_c ~ K_c R K_q⁻¹ u_q``: three rotation angles and the zoom, nothing
else. Seen from another view's centre the same patch also differs by parallax and foreshortening,
which this model cannot absorb. The position search (:mod:`mzen_ns.priming.search`) slides an
axis-aligned template at a few scales, so between overlapping views its scores differ mostly by its
own grid and scale steps; here each of a query's best placements is refined to the rotation (roll
included) and zoom under which the candidate's own pixels best match the query blurred to the
candidate's resolution (per-channel NCC, Levenberg–Marquardt), and candidates are ranked by that
score. Measured results are in ``docs/results.md`` (priming)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mzen_ns.priming.images import area_resize
from mzen_ns.priming.search import MIN_CONTRAST

MIN_PIXELS = 16
"""Fewest candidate pixels a window is compared on (fewer: it scores −1)."""


@dataclass
class WindowFitConfig:
    """Refinement of each zoom-in's best placements to a rotation and zoom."""

    candidates: int = 9
    """Best placements refined per zoom-in, plus its best one leading to another wide view (0: search alone)."""
    fit_width: int = 160
    """Images are fitted on copies at most this wide."""
    iterations: int = 20
    """Most Levenberg–Marquardt iterations per fit (it stops once every fit has settled)."""
    margin: float = 0.1
    """Fraction of the query's size left out on every side when choosing the candidate pixels compared."""
    free_focal: bool = True
    """Also fit a scale of the focal, so a wrong learned focal does not bend off-axis windows (docs/method.md)."""
    focal_prior: float = 0.2
    """Standard deviation of the prior on the log focal scale fitted with ``free_focal``."""
    min_inside: float = 0.95
    """A fitted window must lie this much inside the candidate, or it scores −1."""
    dial_spread: float = 0.03
    """Relative spread of a true zoom about its dial: a prior that holds zooms the window cannot pin (0: none)."""


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
    query: Float[Tensor, "H W C"],
    candidates: Float[Tensor, "B H W C"],
    candidate_fx: Float[Tensor, " B"],
    aspect: float,
    query_principal: Float[Tensor, "2"],
    candidate_principal: Float[Tensor, "B 2"],
    rotation: Float[Tensor, "B 3 3"],
    relative_zoom: Float[Tensor, " B"],
    template_zoom: float,
    config: WindowFitConfig = WindowFitConfig(),
    dial_zoom: Optional[Float[Tensor, " B"]] = None,
) -> List[Fit]:
    """Refine placements of ``query`` in each of ``candidates`` (same size, full resolution),
    starting from ``rotation`` (query orientation in each candidate's frame) and ``relative_zoom``;
    ``candidate_fx`` is each candidate's focal in pixels, ``aspect`` fy / fx of all.
    ``dial_zoom``, the relative zoom the dials say, is a prior on the zoom (``config.dial_spread``).

    Each candidate's own pixels inside the window are compared, never resampled: each is mapped into
    the query, which is blurred to the candidates' resolution (Gaussian, σ = 0.3 × ``template_zoom``,
    the nominal relative zoom: about one candidate pixel's area) and sampled bilinearly; the score
    is the per-channel NCC, averaged. The fits are independent and solved side by side
    (Levenberg–Marquardt on the standardised residuals, one damping per fit)."""
    height, width = query.shape[:2]
    shrink = min(1.0, config.fit_width / width)
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    scale = torch.tensor([size[0] / width, size[1] / height], dtype=torch.float64)
    warp = _Warp(
        candidate_fx.double() * scale[0],
        candidate_fx.double() * aspect * scale[1],
        candidate_principal.double() * scale,
        query_principal.double() * scale,
    )
    base, start = rotation.double(), relative_zoom.double().log()
    problem = _Problem.build(query, candidates, warp, base, start, size, template_zoom, config)
    if problem is None:  # no window overlaps its candidate enough to be compared
        return [Fit(score=-1.0, rotation=r.float(), relative_zoom=float(z)) for r, z in zip(base, relative_zoom)]
    theta = torch.cat(
        [torch.zeros(len(base), 3, dtype=torch.float64), start[:, None]]
        + [torch.zeros(len(base), 1, dtype=torch.float64)] * config.free_focal,
        dim=1,
    )
    theta = _levenberg_marquardt(problem.residual, theta, config.iterations)
    if dial_zoom is not None and config.dial_spread > 0:
        problem = problem.with_dial_prior(dial_zoom.double().log(), theta)
        theta = _levenberg_marquardt(problem.residual, theta, config.iterations)
    score = problem.score(theta)
    fitted = base @ torch.linalg.matrix_exp(_skew(theta[:, :3]))
    if config.free_focal:
        fitted = _refocus(fitted, theta[:, 4].exp(), candidate_fx.double(), aspect, candidate_principal.double())
    return [
        Fit(score=float(s), rotation=r, relative_zoom=float(z))
        for s, r, z in zip(score, fitted.float(), theta[:, 3].exp())
    ]


@dataclass
class _Warp:
    """Candidate pixels → query pixels for a query camera turned by a rotation about the candidate's
    optical centre, with a zoom and a scale of both focals (all at the fit resolution)."""

    fx: Float[Tensor, " B"]
    """Candidate focal fx per fit."""
    fy: Float[Tensor, " B"]
    """Candidate focal fy per fit."""
    candidate_principal: Float[Tensor, "B 2"]
    """Candidate principal point per fit."""
    query_principal: Float[Tensor, "2"]
    """The query's principal point."""

    def __call__(self, rotation: Tensor, log_zoom: Tensor, pixels: Tensor, log_focal: Tensor) -> Tensor:
        """(B, P, 2) candidate pixels → (B, P, 2) query pixels."""
        f = torch.exp(log_focal)[:, None]
        fx, fy, principal = self.fx[:, None], self.fy[:, None], self.candidate_principal
        rays = (
            torch.stack(
                [
                    (pixels[..., 0] - principal[:, None, 0]) / (fx * f),
                    -(pixels[..., 1] - principal[:, None, 1]) / (fy * f),
                    -torch.ones_like(pixels[..., 0]),
                ],
                dim=-1,
            )
            @ rotation
        )
        depth = (-rays[..., 2]).clamp(min=1e-6)
        zoom = torch.exp(log_zoom)[:, None]
        return torch.stack(
            [
                self.query_principal[0] + fx * f * zoom * rays[..., 0] / depth,
                self.query_principal[1] - fy * f * zoom * rays[..., 1] / depth,
            ],
            dim=-1,
        )


@dataclass
class _Problem:
    """A batch of fits: the candidate pixels compared (padded to one count, masked) and the blurred query."""

    blurred_query: Float[Tensor, "1 C h w"]
    """The query at the fit resolution, blurred to the candidates' resolution."""
    pixels: Float[Tensor, "B P 2"]
    """Candidate pixel centres compared per fit (padding at the end)."""
    mask: Float[Tensor, "B P 1"]
    """1 for compared pixels, 0 for padding."""
    target: Float[Tensor, "B P C"]
    """The candidates' standardised values at those pixels."""
    textured: Float[Tensor, " B"]
    """Whether each candidate's compared pixels have contrast (:data:`~mzen_ns.priming.search.MIN_CONTRAST`
    of the query's spread); a flat one has nothing to fit and scores −1."""
    size: Tuple[int, int]
    """(width, height) of the fit resolution."""
    base: Float[Tensor, "B 3 3"]
    """Starting rotation per fit."""
    warp: _Warp
    """Candidate pixels → query pixels."""
    config: WindowFitConfig
    """The fit's options."""
    dial: Optional[Tuple[Tensor, Tensor]] = None
    """(log relative zoom the dials say, weight) per fit: the zoom prior's residual (None: no prior)."""

    @classmethod
    def build(
        cls,
        query: Tensor,
        candidates: Tensor,
        warp: _Warp,
        base: Tensor,
        start: Tensor,
        size: Tuple[int, int],
        template_zoom: float,
        config: WindowFitConfig,
    ) -> Optional["_Problem"]:
        """Choose the candidate pixels whose centres fall in the query's central part at the start
        (None when no fit has ``MIN_PIXELS`` of them)."""
        # one candidate pixel covers template_zoom query pixels at any common scale of the two images
        blurred = _blur(area_resize(_array(query), *size), 0.3 * template_zoom)
        blurred_query = torch.from_numpy(blurred).double().permute(2, 0, 1)[None]
        vs, us = torch.meshgrid(
            torch.arange(size[1], dtype=torch.float64) + 0.5,
            torch.arange(size[0], dtype=torch.float64) + 0.5,
            indexing="ij",
        )
        grid = torch.stack([us, vs], dim=-1).reshape(1, -1, 2).expand(len(candidates), -1, -1)
        mapped = warp(base, start, grid, torch.zeros_like(start))
        low, high = config.margin * torch.tensor(size), (1 - config.margin) * torch.tensor(size)
        keep = ((mapped > low) & (mapped < high)).all(dim=-1)
        count = int(keep.sum(dim=1).max())
        if count < MIN_PIXELS:
            return None
        order = keep.double().argsort(dim=1, descending=True, stable=True)[:, :count]  # kept pixels first
        mask = keep.gather(1, order).double()[..., None]
        values = torch.stack(
            [torch.from_numpy(area_resize(_array(c), *size)).double().reshape(-1, query.shape[-1]) for c in candidates]
        )
        compared = values.gather(1, order[..., None].expand(-1, -1, values.shape[-1]))
        spread = _moments(compared, mask)[1].amax(dim=(1, 2))
        textured = spread >= MIN_CONTRAST * float(blurred_query.std()) + 1e-6
        pixels = grid.gather(1, order[..., None].expand(-1, -1, 2))
        return cls(blurred_query, pixels, mask, _standardise(compared, mask), textured, size, base, warp, config)

    def sample(self, theta: Tensor) -> Tuple[Tensor, Tensor]:
        """The blurred query at every compared pixel's image under ``theta`` (rotation tangent, log
        zoom[, log focal scale]), and the share of compared pixels landing inside the query."""
        batch, count = self.pixels.shape[:2]
        rotated = self.base @ torch.linalg.matrix_exp(_skew(theta[:, :3]))
        log_focal = theta[:, 4] if self.config.free_focal else torch.zeros_like(theta[:, 3])
        where = self.warp(rotated, theta[:, 3], self.pixels, log_focal) / torch.tensor(self.size) * 2 - 1
        sampled = torch.nn.functional.grid_sample(
            self.blurred_query, where.reshape(1, 1, -1, 2), mode="bilinear", padding_mode="border", align_corners=False
        )
        inside = ((where.abs() <= 1).all(dim=-1, keepdim=True).double() * self.mask).sum(1) / self.mask.sum(1).clamp(
            min=1
        )
        return sampled[0, :, 0].T.reshape(batch, count, -1), inside[:, 0]

    def image_residual(self, theta: Tensor) -> Tensor:
        """(B, P·C) standardised differences; their mean square is 2 (1 − NCC)."""
        return ((_standardise(self.sample(theta)[0], self.mask) - self.target) * self.mask).reshape(len(theta), -1)

    def residual(self, theta: Tensor) -> Tensor:
        """(B, P·C [+ 1] [+ 1]) residuals: the image part, the log focal scale's prior
        N(0, ``focal_prior``²) with ``free_focal``, the zoom's dial prior where given."""
        parts = [self.image_residual(theta)]
        if self.config.free_focal:
            parts.append(theta[:, 4:] / self.config.focal_prior)
        if self.dial is not None:
            centre, weight = self.dial
            parts.append(((theta[:, 3] - centre) * weight)[:, None])
        return torch.cat(parts, dim=1)

    def with_dial_prior(self, log_dial_zoom: Float[Tensor, " B"], theta: Float[Tensor, "B K"]) -> "_Problem":
        """This problem with the dial prior N(``log_dial_zoom``, ``dial_spread``²) on each fit's log
        zoom, weighed against that fit's residual noise at ``theta``: the image part's variance per
        compared pixel (its channels counted as one sample: they see one texture)."""
        compared = self.mask.sum(dim=(1, 2)).clamp(min=1)
        noise = (self.image_residual(theta).pow(2).sum(dim=1) / compared).sqrt().clamp(min=1e-3)
        return replace(self, dial=(log_dial_zoom, noise / self.config.dial_spread))

    @torch.no_grad()
    def score(self, theta: Tensor) -> Float[Tensor, " B"]:
        """Per-channel NCC at ``theta``; −1 where it is not finite, the window left the query or too
        few pixels were compared."""
        sampled, inside = self.sample(theta)
        compared = self.mask.sum(dim=(1, 2))
        score = (_standardise(sampled, self.mask) * self.target * self.mask).sum(dim=(1, 2)) / (
            (compared - 1) * self.target.shape[-1]
        )
        valid = torch.isfinite(score) & (inside >= self.config.min_inside) & (compared >= MIN_PIXELS) & self.textured
        return torch.where(valid, score, torch.full_like(score, -1.0))


def _levenberg_marquardt(
    residual, theta: Float[Tensor, "B K"], iterations: int, step: float = 1e-6, tolerance: float = 1e-4
) -> Float[Tensor, "B K"]:
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
    return torch.stack([zero, -v[:, 2], v[:, 1], v[:, 2], zero, -v[:, 0], -v[:, 1], v[:, 0], zero], dim=-1).view(
        -1, 3, 3
    )


def _moments(values: Float[Tensor, "B P C"], mask: Float[Tensor, "B P 1"]) -> Tuple[Tensor, Tensor]:
    """Mean and standard deviation of the masked values per fit and channel, each (B, 1, C)."""
    count = mask.sum(dim=1, keepdim=True).clamp(min=2)
    mean = (values * mask).sum(dim=1, keepdim=True) / count
    return mean, ((((values - mean) * mask) ** 2).sum(dim=1, keepdim=True) / (count - 1)).sqrt()


def _standardise(values: Float[Tensor, "B P C"], mask: Float[Tensor, "B P 1"]) -> Float[Tensor, "B P C"]:
    mean, std = _moments(values, mask)
    return (values - mean) / std.clamp(min=1e-8)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma) if sigma > 0.3 else image
    return blurred.reshape(image.shape)


def _array(image: Float[Tensor, "H W C"]) -> Float[np.ndarray, "H W C"]:
    return image.detach().cpu().numpy().astype(np.float32)


def _refocus(
    rotation: Float[Tensor, "B 3 3"],
    scale: Float[Tensor, " B"],
    fx: Float[Tensor, " B"],
    aspect: float,
    principal: Float[Tensor, "B 2"],
) -> Float[Tensor, "B 3 3"]:
    """A rotation fitted with focal ``scale`` × ``fx``, re-expressed for ``fx``: the same window
    centre pixel and the same roll about the axis."""
    centre = axis_pixel(rotation, fx * scale, aspect, principal)
    roll = window_rotation(centre, principal, fx * scale, fx * scale * aspect).transpose(1, 2) @ rotation
    return window_rotation(centre, principal, fx, fx * aspect) @ roll


def axis_pixel(
    rotation: Float[Tensor, "Q 3 3"], fx: Float[Tensor, " Q"], aspect: float, principal: Float[Tensor, "Q 2"]
) -> Float[Tensor, "Q 2"]:
    """Where each rotated camera's optical axis meets the source image (pixels): the window centre."""
    axis = -rotation[:, :, 2]
    depth = (-axis[:, 2]).clamp(min=1e-6)
    return torch.stack(
        [principal[:, 0] + fx * axis[:, 0] / depth, principal[:, 1] - fx * aspect * axis[:, 1] / depth], -1
    )


def window_rotation(
    centre: Float[Tensor, "Q 2"], principal: Float[Tensor, "Q 2"], fx: Float[Tensor, " Q"], fy: Float[Tensor, " Q"]
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
