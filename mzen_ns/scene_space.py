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

from typing import Literal, Optional, Union

import torch
from jaxtyping import Float
from nerfstudio.field_components.spatial_distortions import SceneContraction, SpatialDistortion
from nerfstudio.utils.math import Gaussians
from torch import Tensor, nn
from typing_extensions import assert_never

Parameterisation = Literal["contraction", "ndc"]


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
