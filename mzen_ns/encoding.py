"""Hash-grid encoding for pose refinement (Heo et al., ICML 2023; ``docs/method.md``).

:class:`SmoothGradientHashEncoding` is nerfstudio's torch ``HashEncoding`` whose d-linear
interpolation weights go through a straight-through estimator: the forward value is the plain
weight ``w`` (the output is bit-identical to the plain encoding), the backward pass adds the
gradient of ``δ(w) = (1 − cos πw) / 2``, weighted by ``λ``:

- ``paper`` (Heo et al., Eq. 13): ``ŵ = w + λ δ(w) − λ sg(δ(w))`` — gradient ``1 + λ δ'(w)``;
- ``smooth``: ``ŵ = sg(w) + λ δ(w) − λ sg(δ(w))`` — gradient ``λ δ'(w)`` only, which vanishes at
  the cell faces, so the gradient w.r.t. positions is continuous across cell boundaries.

tinycudann's fused hash grid exposes no hook on its interpolation weights, so the estimator needs
the torch encoding (:func:`use_smooth_gradient_encodings` swaps every torch ``HashEncoding`` of a
module in place, sharing its hash table).

The same encoding can weigh each level's features by how well a sample's pixel footprint resolves
that level (Zip-NeRF's down-weighting, :func:`footprint_weights`): a wide pixel covers what z² pixels
of a z× zoom-in resolve, so levels finer than its footprint are turned down for it and left to the
zoom-ins. The footprint of each sample is handed in by :class:`FootprintHook`, which wraps the
field's density pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import HashEncoding
from torch import Tensor, nn
from typing_extensions import assert_never

from mzen_ns.kernels import hash_grid as fused_kernel
from mzen_ns.scene_space import local_scale

STEMode = Literal["paper", "smooth"]
Footprint = Literal["point", "downweight"]
"""How samples meet the hash grid: as points (nerfacto), or with each level weighed by the sample's
pixel footprint (:func:`footprint_weights`)."""


def smooth_step_weights(w: Float[Tensor, "*bs"], lam: float, mode: STEMode) -> Float[Tensor, "*bs"]:
    """Interpolation weights with the value of ``w`` and the smooth-gradient backward pass."""
    delta = (1.0 - torch.cos(math.pi * w)) / 2.0
    smooth = lam * (delta - delta.detach())  # zero forward, λ δ'(w) backward
    if mode == "paper":
        return w + smooth
    if mode == "smooth":
        return w.detach() + smooth
    assert_never(mode)


def footprint_weights(sigma: Float[Tensor, "*bs"], resolutions: Float[Tensor, " L"]) -> Float[Tensor, "*bs L"]:
    """Zip-NeRF's per-level feature weights ``erf(1 / √(8 σ² n_l²))`` for a footprint of standard
    deviation ``sigma`` (in the grid's unit cube) and level resolutions ``n_l``: 1 where a level's
    cells are much larger than the footprint, towards 0 where they are much smaller, and a function
    of ``σ n_l`` alone (a footprint z times smaller sees a level z times finer alike)."""
    scaled = sigma[..., None].abs() * resolutions.to(sigma)
    return torch.erf(torch.rsqrt((8.0 * scaled**2).clamp_min(1e-30)))


class SmoothGradientHashEncoding(HashEncoding):
    """Torch hash encoding with the smooth-gradient straight-through estimator on its weights, and
    per-level footprint weights while a footprint is set (:attr:`footprint`)."""

    footprint: Optional[Tensor] = None
    """Footprint standard deviation per input point (the grid's unit cube), or ``None``: point samples."""
    fused: bool = False
    """Encode CPU inputs with the fused C++ kernel (:mod:`mzen_ns.kernels.hash_grid`) where it builds."""

    def __init__(
        self, *args, ste_lambda: float = 1.0, ste_mode: STEMode = "paper", fused: bool = False, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.tcnn_encoding is not None:
            raise ValueError("the smooth-gradient estimator needs the torch hash encoding (implementation='torch')")
        self.ste_lambda = ste_lambda
        self.ste_mode = ste_mode
        self.fused = fused
        self.footprint = None

    @classmethod
    def from_encoding(
        cls, plain: HashEncoding, ste_lambda: float, ste_mode: STEMode, fused: bool = False
    ) -> "SmoothGradientHashEncoding":
        """The same grid as ``plain`` (same hash table parameter) with the estimator."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.__dict__.update(
            {k: v for k, v in plain.__dict__.items() if k not in ("_parameters", "_modules", "_buffers")}
        )
        new._parameters, new._modules, new._buffers = (
            dict(plain._parameters),
            dict(plain._modules),
            dict(plain._buffers),
        )
        new.ste_lambda, new.ste_mode, new.fused = ste_lambda, ste_mode, fused
        new.footprint = None
        return new

    def pytorch_fwd(self, in_tensor: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs output_dim"]:
        """Each level's features (from the fused kernel on the CPU where it is on and built, else
        :meth:`level_features`), weighed by the footprint while one is set."""
        if self.fused and in_tensor.device.type == "cpu" and fused_kernel.kernel() is not None:
            estimator: fused_kernel.Estimator = self.ste_mode if self.ste_lambda else "plain"
            flat = fused_kernel.hash_grid(
                in_tensor.reshape(-1, 3),
                self.hash_table,
                self.scalings,
                self.hash_table_size,
                self.ste_lambda,
                estimator,
            )
            features = flat.view(*in_tensor.shape[:-1], self.num_levels, self.features_per_level)
        else:
            features = self.level_features(in_tensor)
        if self.footprint is not None:
            features = features * self._level_weights(in_tensor)[..., None]
        return torch.flatten(features, start_dim=-2, end_dim=-1)

    def level_features(self, in_tensor: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs L F"]:
        """The torch path: nested d-linear interpolation (x, then y, then z; ``hi·w + lo·(1 − w)``,
        the order of nerfstudio's torch encoding, hence bit-identical values) with estimator weights."""
        scaled = in_tensor[..., None, :] * self.scalings.view(-1, 1).to(in_tensor.device)  # [..., L, 3]
        floor = torch.floor(scaled)
        weights = scaled - floor
        if self.ste_lambda:
            weights = smooth_step_weights(weights, self.ste_lambda, self.ste_mode)
        # The hash is x·1 ⊕ y·p1 ⊕ z·p2 per corner: hash each axis's lower/upper index once, then
        # combine the 8 corners by broadcasting into [..., L, z, y, x].
        corners = torch.stack([floor, torch.ceil(scaled)], dim=-1).int() * self.primes.view(3, 1).to(in_tensor.device)
        hx, hy, hz = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]  # [..., L, 2]
        hashed = (hx[..., None, None, :] ^ hy[..., None, :, None]) ^ hz[..., :, None, None]
        hashed = hashed % self.hash_table_size + self.hash_offset.to(in_tensor.device).view(-1, 1, 1, 1)
        features = self.hash_table[hashed]  # [..., L, z, y, x, F]
        for axis in (0, 1, 2):  # x, then y, then z
            w = weights[..., axis].reshape(weights.shape[:-1] + (1,) * (3 - axis))
            features = features.select(-2, 1) * w + features.select(-2, 0) * (1 - w)
        return features

    def _level_weights(self, in_tensor: Tensor) -> Tensor:
        footprint = self.footprint
        assert footprint is not None
        if footprint.shape != in_tensor.shape[:-1]:
            raise ValueError(
                f"footprint of shape {tuple(footprint.shape)} for {tuple(in_tensor.shape[:-1])} points: "
                "set it for the samples this encoding is called on"
            )
        return footprint_weights(footprint.to(in_tensor), self.scalings.to(in_tensor.device))

    @property
    def primes(self) -> Tensor:
        """Instant-NGP's per-axis hash primes (nerfstudio's ``hash_fn``)."""
        return torch.tensor([1, 2654435761, 805459861])


def use_smooth_gradient_encodings(module: nn.Module, ste_lambda: float, ste_mode: STEMode, fused: bool = False) -> int:
    """Replace every torch ``HashEncoding`` inside ``module`` by the estimator version, on the fused
    CPU kernel if ``fused`` (shared instances stay shared; hash tables are reused). Returns how many
    encodings were replaced."""
    replaced: Dict[int, SmoothGradientHashEncoding] = {}
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if type(child) is HashEncoding and child.tcnn_encoding is None:
                if id(child) not in replaced:
                    replaced[id(child)] = SmoothGradientHashEncoding.from_encoding(child, ste_lambda, ste_mode, fused)
                setattr(parent, name, replaced[id(child)])
    return len(replaced)


# ------------------------------------------------------------------------------ level curriculum


def level_rates(alpha: float, num_levels: int) -> Float[Tensor, " L"]:
    """Heo et al.'s Eq. 15: ``r_l = 0`` if ``α < l``, ``(1 − cos((α − l)π)) / 2`` if ``0 ≤ α − l < 1``,
    else 1, for levels ``l = 0 … L−1``."""
    excess = alpha - torch.arange(num_levels, dtype=torch.float64)
    ramp = (1.0 - torch.cos(excess.clamp(0.0, 1.0) * math.pi)) / 2.0
    return torch.where(excess < 0, torch.zeros_like(ramp), torch.where(excess < 1, ramp, torch.ones_like(ramp))).float()


@dataclass
class LevelCurriculumConfig:
    """Level-wise learning-rate curriculum of the hash tables (Heo et al., Sec. 3.4)."""

    enabled: bool = False
    """Apply Heo et al.'s level-wise curriculum (off by default: worse in ``docs/results.md``)."""
    interval: Tuple[float, float] = (0.1, 0.5)
    """[t_s, t_e] as fractions of each pose-learning phase over which the levels are switched on in turn."""


class LevelCurriculum:
    """Applies ``r_l(t)`` to the hash tables' *updates*: Adam normalises gradient scale away, so the
    rows of level ``l`` are set to ``old + r_l (new − old)`` right after each optimizer step."""

    def __init__(self, config: LevelCurriculumConfig, encodings: Sequence[HashEncoding], phase_window) -> None:
        """``phase_window(step)`` gives the (start, end) steps of the pose-learning phase holding
        ``step``, or None where poses are not learned (the curriculum then leaves updates alone)."""
        self.config = config
        self.encodings = [e for e in encodings if e.tcnn_encoding is None]
        self.phase_window = phase_window
        self.step = 0
        self._before: List[Tensor] = []

    def progress(self, step: int) -> Optional[float]:
        """``(t − t_s) / (t_e − t_s)`` (so ``α = L ×`` this), or None outside the curriculum's
        phases (or with it off)."""
        window = self.phase_window(step)
        if not self.config.enabled or window is None:
            return None
        start, end = window
        t_s = start + self.config.interval[0] * (end - start)
        t_e = start + self.config.interval[1] * (end - start)
        return float("inf") if t_e <= t_s else (step - t_s) / (t_e - t_s)

    def before_step(self) -> None:
        """Remember the tables (called before the optimizer step)."""
        self._before = (
            [e.hash_table.detach().clone() for e in self.encodings] if self.progress(self.step) is not None else []
        )

    @torch.no_grad()
    def after_step(self) -> None:
        """Scale each level's update by its rate (called after the optimizer step)."""
        progress = self.progress(self.step)
        if progress is None or not self._before:
            return
        for encoding, before in zip(self.encodings, self._before):
            rates = level_rates(encoding.num_levels * progress, encoding.num_levels).to(before.device)
            table = encoding.hash_table.view(encoding.num_levels, -1, encoding.features_per_level)
            old = before.view_as(table)
            table.copy_(old + rates[:, None, None] * (table - old))
        self._before = []

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Run around every ``step()`` of ``optimizer`` (the group holding the tables)."""
        optimizer.register_step_pre_hook(lambda *_: self.before_step())
        optimizer.register_step_post_hook(lambda *_: self.after_step())


# ------------------------------------------------------------------------------ footprint hook


def sample_footprint(
    positions: Float[Tensor, "*bs 3"],
    distances: Float[Tensor, "*bs 1"],
    pixel_area: Float[Tensor, "*bs 1"],
    space: nn.Module,
) -> Float[Tensor, "*bs"]:
    """Standard deviation of each sample's pixel footprint in the hash grid's unit cube: the pixel's
    width at the sample's distance along a unit-length ray (``√pixel_area · t``) over √12 (a uniform
    box's standard deviation), times the spatial distortion's isotropic local scale
    (:func:`~mzen_ns.scene_space.local_scale`), over 4 (nerfacto maps ``[-2, 2]³`` onto the cube)."""
    world = (pixel_area.clamp_min(0.0).sqrt() * distances.abs())[..., 0] / math.sqrt(12.0)
    with torch.no_grad():
        scale = local_scale(space, positions)
    return world * scale / 4.0


class FootprintHook:
    """Wraps a nerfacto field's ``get_density`` so the field's hash encoding has the footprint of
    every sample while it runs (nerfacto calls ``field.forward`` directly, past module hooks; every
    path to the grid, ``forward`` and ``density_fn`` alike, goes through ``get_density``)."""

    def __init__(self, field: nn.Module) -> None:
        encodings = [m for m in field.mlp_base.modules() if isinstance(m, SmoothGradientHashEncoding)]
        if len(encodings) != 1:
            raise ValueError("footprint weighting needs the field's torch hash grid (implementation 'torch')")
        self.encoding = encodings[0]
        self.space = field.spatial_distortion
        self.get_density = field.get_density
        field.get_density = self

    def __call__(self, ray_samples, *args, **kwargs):
        frustums = ray_samples.frustums
        distances = (frustums.starts + frustums.ends) / 2.0
        footprint = sample_footprint(frustums.get_positions(), distances, frustums.pixel_area, self.space)
        self.encoding.footprint = footprint.detach().reshape(-1)  # a property of the sample, not a path to the cameras
        try:
            return self.get_density(ray_samples, *args, **kwargs)
        finally:
            self.encoding.footprint = None
