"""A forward-facing synthetic scene for multi-zoom tests: relief from a real elevation model,
nested photographic texture, rendered by exact ray casting with mip-mapped texture lookups.

World frame: cameras near the origin look down −z (nerfstudio / OpenGL convention) at a
height field ``z = −depth + relief · (h(x, y) − ½)`` built from matplotlib's Jacksboro fault
elevation model. Albedo is a product of photographic layers from scikit-image's shipped data:
layer 0 spans the whole surface, and each next layer repeats 4× finer, so a zoom-in sees detail
that a wide view only sees averaged (its mip level). Enough layers are used that a region seen
at the largest zoom has at least W texels across it. Nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.resources import files
from typing import List, Literal, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from typing_extensions import assert_never

BASE_PHOTOS: Tuple[str, ...] = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "ihc.png",
)
"""Bright, colourful photographs shipped in scikit-image's wheel (``skimage/data``): layer 0."""
DETAIL_PHOTOS: Tuple[str, ...] = BASE_PHOTOS + ("brick.png", "gravel.png", "grass.png", "camera.png", "moon.png")
"""Photographs for the finer layers (only their contrast around the mean is used)."""
TEXTURE_SIZE = 512
"""Texels across one tile of every layer."""
LAYER_RATIO = 4
"""Each texture layer's tiles are this many times smaller than the previous layer's."""
DETAIL_CONTRAST = 0.35
"""Default strength of the multiplicative modulation each finer layer adds."""
Shading = Literal["lambert", "sem"]


@dataclass
class Surface:
    """Height field and layered texture of the synthetic scene (all tensors on the CPU)."""

    height: Float[Tensor, "1 1 Hd Wd"]
    """Relief in [0, 1], mapped over [−extent, extent]² in x and y."""
    depth: float
    """Distance of the mean surface plane from the origin along −z."""
    relief: float
    """Height range of the surface (world units)."""
    extent: float
    """Half-width of the square the elevation model spans."""
    base_period: float
    """Size of one tile of texture layer 0 (world units; about the wide views' footprint)."""
    layers: List[List[Float[Tensor, "1 3 S S"]]]
    """Per texture layer, its mip pyramid (finest first)."""
    detail_contrast: float = DETAIL_CONTRAST
    """Strength of the modulation each finer layer adds (low: zoom-ins see little texture of their own)."""

    def surface_z(self, xy: Float[Tensor, "N 2"]) -> Float[Tensor, " N"]:
        """World z of the surface above each (x, y)."""
        grid = (xy / self.extent).view(1, -1, 1, 2)
        h = F.grid_sample(self.height, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        return -self.depth + self.relief * (h.view(-1) - 0.5)

    def normal(self, xy: Float[Tensor, "N 2"]) -> Float[Tensor, "N 3"]:
        """Unit surface normal (pointing towards the cameras, +z) by central differences."""
        eps = self.extent / self.height.shape[-1]
        dx = torch.tensor([eps, 0.0])
        dy = torch.tensor([0.0, eps])
        gx = (self.surface_z(xy + dx) - self.surface_z(xy - dx)) / (2 * eps)
        gy = (self.surface_z(xy + dy) - self.surface_z(xy - dy)) / (2 * eps)
        return F.normalize(torch.stack([-gx, -gy, torch.ones_like(gx)], dim=-1), dim=-1)

    def albedo(self, xy: Float[Tensor, "N 2"], footprint: Float[Tensor, " N"]) -> Float[Tensor, "N 3"]:
        """Layered texture at (x, y), filtered for a sample covering ``footprint`` world units."""
        colour = torch.ones(xy.shape[0], 3)
        for index, pyramid in enumerate(self.layers):
            period = self.base_period / LAYER_RATIO**index
            texel_footprint = footprint * TEXTURE_SIZE / period
            sample = _mip_lookup(pyramid, xy / period + 0.5, texel_footprint, salt=index)
            if index == 0:
                colour = colour * sample
            else:
                colour = colour * (1.0 + 2.0 * self.detail_contrast * (sample - 0.5))
        return colour.clamp(0.0, 1.0)


def make_surface(
    seed: int,
    depth: float,
    relief: float,
    extent: float,
    base_period: float,
    max_texel_density: float,
    detail_contrast: float = DETAIL_CONTRAST,
) -> Surface:
    """Build the scene: relief crop and texture layers chosen by ``seed``.

    Args:
        max_texel_density: texels per world unit the finest view needs (focal × zoom / depth);
            layers are added until the finest one reaches it.
        detail_contrast: strength of the finer layers' modulation.
    """
    rng = np.random.default_rng(seed)
    n_layers = 1
    while TEXTURE_SIZE * LAYER_RATIO ** (n_layers - 1) / base_period < max_texel_density:
        n_layers += 1
    base = BASE_PHOTOS[int(rng.integers(len(BASE_PHOTOS)))]
    details = [name for name in rng.permutation(DETAIL_PHOTOS) if name != base]
    names = [base] + [str(details[i % len(details)]) for i in range(n_layers - 1)]
    layers = [_pyramid(_photo(name, detail=i > 0, flip=bool(rng.integers(2)))) for i, name in enumerate(names)]
    return Surface(_relief(rng), depth, relief, extent, base_period, layers, detail_contrast)


def _photo(name: str, detail: bool, flip: bool) -> Float[Tensor, "1 3 S S"]:
    from PIL import Image

    with Image.open(files("skimage") / "data" / name) as image:
        rgb = np.asarray(image.convert("RGB").resize((TEXTURE_SIZE, TEXTURE_SIZE), Image.Resampling.LANCZOS))
    tensor = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    if flip:
        tensor = tensor.flip(-1)
    if detail:  # a finer layer only modulates: mean 0.5 per channel, so its average is neutral
        tensor = (tensor - tensor.mean(dim=(2, 3), keepdim=True) + 0.5).clamp(0.0, 1.0)
    return tensor


def _pyramid(texture: Float[Tensor, "1 3 S S"]) -> List[Float[Tensor, "1 3 s s"]]:
    levels = [texture]
    while levels[-1].shape[-1] > 1:
        levels.append(F.avg_pool2d(levels[-1], 2))
    return levels


def _mip_lookup(
    pyramid: Sequence[Tensor], uv: Float[Tensor, "N 2"], texel_footprint: Float[Tensor, " N"], salt: int
) -> Float[Tensor, "N 3"]:
    """Trilinear (mip-mapped) lookup; ``uv`` in tiles. Every tile shows the photograph shifted
    and flipped by a hash of its cell (the centre tile of layer 0 unshifted), so the texture
    never repeats visibly; lookups mirror-repeat inside the photograph."""
    cell = uv.floor()
    local = uv - cell
    key = cell.long()
    shift = torch.stack([_hash(key[:, 0], key[:, 1], 2 * salt), _hash(key[:, 0], key[:, 1], 2 * salt + 1)], -1)
    centre = (key == 0).all(dim=-1, keepdim=True) & (salt == 0)
    flip = torch.where(shift > 0.5, -1.0, 1.0)
    coords = torch.where(centre, local, flip * local + shift * 2.0)
    mirrored = 1.0 - ((coords % 2.0) - 1.0).abs()
    grid = (2.0 * mirrored - 1.0).view(1, -1, 1, 2)
    level = texel_footprint.clamp(min=1.0).log2().clamp(max=len(pyramid) - 1)
    out = torch.zeros(uv.shape[0], 3)
    for index in range(int(level.min().floor()), int(level.max().ceil()) + 1):
        weight = (1.0 - (level - index).abs()).clamp(min=0.0)
        if not bool((weight > 0).any()):
            continue
        sample = F.grid_sample(pyramid[index], grid, mode="bilinear", padding_mode="border", align_corners=False)
        out += weight[:, None] * sample.view(3, -1).T
    return out


def _hash(i: Tensor, j: Tensor, salt: int) -> Float[Tensor, " N"]:
    """Deterministic pseudo-random value in [0, 1) per integer cell."""
    h = (i * 73856093) ^ (j * 19349663) ^ ((salt + 1) * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFFFF).float() / float(1 << 24)


def _relief(rng: np.random.Generator) -> Float[Tensor, "1 1 Hd Wd"]:
    import matplotlib.cbook as cbook

    elevation = np.asarray(cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"], dtype=np.float32)
    size = 256
    top = int(rng.integers(0, elevation.shape[0] - size + 1))
    left = int(rng.integers(0, elevation.shape[1] - size + 1))
    crop = torch.from_numpy(elevation[top : top + size, left : left + size].copy())[None, None]
    crop = F.avg_pool2d(F.pad(crop, (2, 2, 2, 2), mode="replicate"), 5, stride=1)  # smooth steps of the DEM
    if rng.integers(2):
        crop = crop.flip(-1)
    return (crop - crop.min()) / (crop.max() - crop.min()).clamp(min=1e-6)


# ----------------------------------------------------------------------------- cameras and rays


@dataclass
class PinholeCamera:
    """A camera of the synthetic scene: OpenGL camera-to-world pose and pixel intrinsics."""

    c2w: Float[Tensor, "4 4"]
    """Camera-to-world; the camera looks down its −z axis, +y up."""
    focal: float
    """Focal length in pixels (base focal × zoom)."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""

    def project(self, points: Float[Tensor, "N 3"]) -> Tuple[Float[Tensor, "N 2"], Float[Tensor, " N"]]:
        """Continuous pixel coordinates (x right, y down; pixel i covers [i, i+1)) and depth."""
        rotation, centre = self.c2w[:3, :3], self.c2w[:3, 3]
        local = (points - centre) @ rotation
        depth = -local[:, 2]
        u = self.focal * local[:, 0] / depth + self.width / 2.0
        v = -self.focal * local[:, 1] / depth + self.height / 2.0
        return torch.stack([u, v], dim=-1), depth


def look_at(eye: Float[Tensor, "3"], target: Float[Tensor, "3"], roll_deg: float = 0.0) -> Float[Tensor, "4 4"]:
    """OpenGL camera-to-world looking from ``eye`` at ``target`` (world +y up), rolled."""
    back = F.normalize(eye - target, dim=0)
    right = F.normalize(torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), back), dim=0)
    up = torch.linalg.cross(back, right)
    roll = math.radians(roll_deg)
    right, up = math.cos(roll) * right + math.sin(roll) * up, -math.sin(roll) * right + math.cos(roll) * up
    c2w = torch.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w


def render(surface: Surface, camera: PinholeCamera, supersample: int, shading: Shading) -> Float[Tensor, "H W 3"]:
    """Render ``camera``'s image: ``supersample``² rays per pixel, box-filtered, mip-mapped texture."""
    s = supersample
    offsets = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    xs = (torch.arange(camera.width, dtype=torch.float32)[:, None] + offsets[None]).reshape(-1)
    ys = (torch.arange(camera.height, dtype=torch.float32)[:, None] + offsets[None]).reshape(-1)
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    directions = torch.stack(
        [(px - camera.width / 2.0) / camera.focal, -(py - camera.height / 2.0) / camera.focal, -torch.ones_like(px)],
        dim=-1,
    ).reshape(-1, 3)
    colours = []
    for chunk in directions.split(1 << 18):
        colours.append(_shade_rays(surface, camera, chunk, s, shading))
    image = torch.cat(colours).view(camera.height * s, camera.width * s, 3)
    return F.avg_pool2d(image.permute(2, 0, 1)[None], s)[0].permute(1, 2, 0)


def surface_points(surface: Surface, camera: PinholeCamera, pixels: Float[Tensor, "P 2"]) -> Float[Tensor, "P 3"]:
    """World points of the surface seen at continuous pixel positions ``pixels`` (x, y) of ``camera``."""
    local = torch.stack(
        [
            (pixels[:, 0] - camera.width / 2.0) / camera.focal,
            -(pixels[:, 1] - camera.height / 2.0) / camera.focal,
            -torch.ones(len(pixels)),
        ],
        dim=-1,
    )
    directions = F.normalize(local, dim=-1) @ camera.c2w[:3, :3].T
    origin = camera.c2w[:3, 3]
    return origin + intersect(surface, origin, directions)[:, None] * directions


def _shade_rays(
    surface: Surface, camera: PinholeCamera, local_dirs: Float[Tensor, "N 3"], supersample: int, shading: Shading
) -> Float[Tensor, "N 3"]:
    rotation, origin = camera.c2w[:3, :3], camera.c2w[:3, 3]
    ray_length = local_dirs.norm(dim=-1)
    directions = (local_dirs / ray_length[:, None]) @ rotation.T
    t = intersect(surface, origin, directions)
    points = origin + t[:, None] * directions
    normals = surface.normal(points[:, :2])
    cos_view = (-(directions * normals).sum(-1)).clamp(min=0.05)
    footprint = t * ray_length / (camera.focal * supersample) / cos_view.clamp(min=0.3)
    albedo = surface.albedo(points[:, :2], footprint)
    if shading == "lambert":
        light = F.normalize(torch.tensor([0.3, 0.5, 1.0]), dim=0)
        return albedo * (0.7 + 0.3 * (normals @ light).clamp(min=0.0))[:, None]
    if shading == "sem":  # secondary-electron yield grows as the surface tilts away from the beam
        gray = albedo @ torch.tensor([0.299, 0.587, 0.114])
        yield_ = (1.0 / cos_view).clamp(max=4.0) ** 0.8
        return (0.75 * gray * yield_).clamp(0.0, 1.0)[:, None].expand(-1, 3)
    assert_never(shading)


def intersect(
    surface: Surface, origin: Float[Tensor, "3"], directions: Float[Tensor, "N 3"], steps: int = 32, refine: int = 10
) -> Float[Tensor, " N"]:
    """Distance along each unit ray to its first hit with the height field (march, then bisect)."""
    top = -surface.depth + surface.relief * 0.5
    bottom = -surface.depth - surface.relief * 0.5
    down = (-directions[:, 2]).clamp(min=1e-6)
    t_near = ((origin[2] - top) / down).clamp(min=0.0)
    t_far = (origin[2] - bottom) / down
    ts = t_near[:, None] + torch.linspace(0.0, 1.0, steps + 1)[None] * (t_far - t_near)[:, None]
    xy = origin[:2] + ts[..., None] * directions[:, None, :2]
    z = origin[2] + ts * directions[:, None, 2]
    below = z <= surface.surface_z(xy.reshape(-1, 2)).view(z.shape)
    below[:, -1] = True
    first = below.to(torch.uint8).argmax(dim=1)
    lo = ts.gather(1, (first - 1).clamp(min=0)[:, None])[:, 0]
    hi = ts.gather(1, first[:, None])[:, 0]
    for _ in range(refine):
        mid = 0.5 * (lo + hi)
        p = origin + mid[:, None] * directions
        is_below = p[:, 2] <= surface.surface_z(p[:, :2])
        hi = torch.where(is_below, mid, hi)
        lo = torch.where(is_below, lo, mid)
    return 0.5 * (lo + hi)
