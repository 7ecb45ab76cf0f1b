"""Scene parameterisations for forward-facing, identity-initialised cameras.

nerfacto maps sample positions into ``[-2, 2]^3`` with a spatial distortion before its hash grids
(and drops samples that land outside). mzen's cameras start at the identity, looking down ``-z``
from the origin, so the world frame *is* the reference camera's frame. Two choices:

- ``contraction``: nerfacto's L∞ scene contraction of ``x / radius``; the linear (best-resolved)
  region reaches ``radius`` scene units from the origin. nerfacto's default is radius 1, which
  puts a surface at distance 1 exactly on the boundary where the grid starts to compress.
- ``ndc``: normalised device coordinates of the reference camera, as NeRF--/BARF use for
  forward-facing scenes: ``x/(d·tan_x)``, ``y/(d·tan_y)`` and ``2 − 4·near/d`` for depth
  ``d = −z``, so the frustum from ``near`` to infinity fills the grid's cube, with room for twice
  the field of view sideways; the grid's depth resolution is uniform in disparity.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Union

import torch
from jaxtyping import Float
from nerfstudio.field_components.spatial_distortions import SceneContraction, SpatialDistortion
from nerfstudio.utils.math import Gaussians
from torch import Tensor, nn
from typing_extensions import assert_never

from mzen_ns.geometry.solution import CONTENT_FILL

Parameterisation = Literal["contraction", "ndc"]

MAX_FINEST_RESOLUTION = 1 << 16
"""The finest grid resolution chosen automatically never exceeds this (a hash grid's coordinates stay exact)."""


class ScaledContraction(SceneContraction):
    """nerfacto's L∞ contraction of ``positions / radius``."""

    def __init__(self, radius: float) -> None:
        super().__init__(order=float("inf"))
        if radius <= 0:
            raise ValueError(f"contraction radius must be positive, got {radius}")
        self.radius = radius

    def forward(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
        if isinstance(positions, Gaussians):
            raise NotImplementedError("ScaledContraction takes sample positions, not Gaussians")
        return super().forward(positions / self.radius)

    def local_scale(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs"]:
        """``|det J|^(1/3)`` of the map at ``positions``, in closed form: ``1 / radius`` inside the
        unit cube of ``x / radius``; outside, at L∞ norm ``r``, the map scales by ``1/r²`` along
        the ray from the origin and ``(2 − 1/r) / r`` across it, so ``(2r − 1)^(2/3) / r²`` over
        ``radius``."""
        r = (positions / self.radius).abs().amax(dim=-1).clamp_min(1.0)
        return (2.0 * r - 1.0) ** (2.0 / 3.0) / r.square() / self.radius


class ForwardFacingNDC(SpatialDistortion):
    """The reference camera's (origin, looking down ``-z``) NDC, scaled to nerfacto's ``[-2, 2]^3``."""

    def __init__(self, near: float, tan_half_fov_x: float, tan_half_fov_y: float) -> None:
        super().__init__()
        if near <= 0 or tan_half_fov_x <= 0 or tan_half_fov_y <= 0:
            raise ValueError(
                f"NDC needs near > 0 and a positive field of view, got near={near}, "
                f"tan={tan_half_fov_x}, {tan_half_fov_y}"
            )
        self.near = near
        self.register_buffer("tan_half_fov", torch.tensor([tan_half_fov_x, tan_half_fov_y]), persistent=False)

    def forward(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
        if isinstance(positions, Gaussians):
            raise NotImplementedError("ForwardFacingNDC takes sample positions, not Gaussians")
        # Samples behind the camera plane land far below -2 in depth and are dropped by the field.
        depth = (-positions[..., 2:3]).clamp_min(1e-3 * self.near)
        xy = positions[..., :2] / (depth * self.tan_half_fov)
        return torch.cat([xy, 2.0 - 4.0 * self.near / depth], dim=-1)

    def local_scale(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs"]:
        """``|det J|^(1/3)`` of the map at ``positions``, in closed form: at depth ``d`` the sideways
        scales are ``1 / (d · tan)`` and the depth scale ``4 · near / d²``."""
        depth = (-positions[..., 2]).clamp_min(1e-3 * self.near)
        det = 4.0 * self.near / (self.tan_half_fov[0] * self.tan_half_fov[1] * depth.pow(4))
        return det ** (1.0 / 3.0)


def local_scale(space: nn.Module, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs"]:
    """The isotropic local scale ``|det J|^(1/3)`` of ``space`` at ``positions``: its own closed form
    (``space.local_scale``, as mzen's parameterisations have), else central finite differences."""
    closed_form = getattr(space, "local_scale", None)
    if closed_form is not None:
        return closed_form(positions)
    with torch.no_grad():
        step = 1e-4 * (1.0 + positions.abs().amax(dim=-1, keepdim=True))
        columns = [
            (space(positions + step * axis) - space(positions - step * axis)) / (2.0 * step)
            for axis in torch.eye(3).to(positions)
        ]
        return torch.linalg.det(torch.stack(columns, dim=-1)).abs().clamp_min(1e-30) ** (1.0 / 3.0)


def make_scene_space(
    parameterisation: Parameterisation,
    *,
    contraction_radius: float,
    ndc_near: float,
    tan_half_fov: Optional[tuple] = None,
) -> Union[ScaledContraction, ForwardFacingNDC]:
    """The spatial distortion for ``parameterisation``."""
    if parameterisation == "contraction":
        return ScaledContraction(contraction_radius)
    if parameterisation == "ndc":
        if tan_half_fov is None:
            raise ValueError("NDC needs the reference camera's field of view")
        return ForwardFacingNDC(ndc_near, *tan_half_fov)
    assert_never(parameterisation)


def use_scene_space(model: nn.Module, space: SpatialDistortion) -> int:
    """Give every nerfacto field in ``model`` (radiance field, proposal networks) ``space``; the
    number of fields changed."""
    changed = 0
    for module in model.modules():
        if module is not space and hasattr(module, "spatial_distortion"):
            module.spatial_distortion = space
            changed += 1
    return changed


def wide_view_share(parameterisation: Parameterisation) -> float:
    """The fraction of the hash grid's side that a wide view's content spans, taking the content to
    fill the wide view: the grid's unit cube is the parameterisation's ``[-2, 2]`` box. Contraction:
    the content frame puts the content within :data:`~mzen_ns.geometry.solution.CONTENT_FILL` of the
    radius on each side of the origin; NDC: the reference view's field of view is ``[-1, 1]``."""
    if parameterisation == "contraction":
        return 2.0 * CONTENT_FILL / 4.0
    if parameterisation == "ndc":
        return 2.0 / 4.0
    assert_never(parameterisation)


def finest_resolution(parameterisation: Parameterisation, width: int, deepest_zoom: float, base_res: int) -> int:
    """The finest hash-grid resolution at which one cell spans one pixel of the deepest zoom-in at
    the content: a ``width``-pixel wide view magnified ``deepest_zoom`` times resolves
    ``width · deepest_zoom`` pixels across the content, which spans :func:`wide_view_share` of the
    grid. Never below twice ``base_res`` (the coarsest level), never above :data:`MAX_FINEST_RESOLUTION`."""
    if width < 1 or not deepest_zoom >= 1.0:
        raise ValueError(f"finest_resolution needs a width ≥ 1 and a deepest zoom ≥ 1, got {width} and {deepest_zoom}")
    cells = math.ceil(width * deepest_zoom / wide_view_share(parameterisation))
    return int(min(max(cells, 2 * base_res), MAX_FINEST_RESOLUTION))
