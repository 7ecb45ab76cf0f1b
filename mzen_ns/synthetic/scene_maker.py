"""Render a forward-facing multi-zoom scene with ground truth and write it as FF-MZN (``mzen-make-scene``).

Variants:
- ``default``: every frame is rendered from its own camera. Zoom-ins are genuine narrower-FoV
  renders from (nearly) their wide view's optical centre (small drift), aimed near its centre
  (or off-axis, ``--off-axis``); their true zoom differs from the recorded dial by up to
  ``--dial-error``. Wide views are anti-aliased (supersampling + mip-mapped texture).
- ``bleff``: the paper's BLEFF protocol: a master render at ``max zoom ×`` resolution per wide
  view; the 1× image is its area downsampling, a zoom-in is a centre crop resized (bicubic) to
  the native size, with the wide view's extrinsics exactly.
- ``sem``: like ``default`` but SEM-like: grayscale, brightness rising with the angle between
  surface normal and viewing direction, and shot (Poisson) noise.

Ground truth is written in the ``gt_*`` fields (``docs/format.md``); ``gt_parent`` names the wide view a
zoom-in was taken from, ``gt_points`` the surface points each frame sees at a grid of its pixels.

Zoom-ins look near the middle of their wide view by default, so a deep zoom-in usually lies inside a
shallower one. ``--apart`` aims each deeper zoom-in where no shallower training zoom-in looks, anywhere
in its wide view's central part; ``--off-axis`` pushes aims towards the edges; ``--detail-contrast``
sets how much texture a zoom-in sees of its own; ``--relief 0`` makes the surface a plane;
``--baseline 0.001 --variant sem`` is SEM stage drift (views turning about nearly one centre).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from jaxtyping import Float
from torch import Tensor
from typing_extensions import Annotated, assert_never

from mzen_ns.synthetic.raycast import (
    DETAIL_CONTRAST,
    PinholeCamera,
    Shading,
    Surface,
    look_at,
    make_surface,
    render,
    surface_points,
)

Variant = Literal["default", "bleff", "sem"]


@dataclass
class SceneMakerConfig:
    """Render a synthetic multi-zoom scene with ground truth, in FF-MZN format."""

    output: Annotated[Path, tyro.conf.Positional]
    """Scene folder to write (created; an existing manifest there is overwritten)."""
    variant: Variant = "default"
    """``default``: a render per frame; ``bleff``: master render + crops (the paper's protocol); ``sem``: SEM-like."""
    zooms: Tuple[float, ...] = (1.0, 4.0, 16.0)
    """Zoom levels (the smallest is the wide level)."""
    n_wide: int = 9
    """Training frames at the wide level."""
    n_zoom: int = 4
    """Training frames per zoom-in level."""
    n_test: int = 1
    """Held-out frames per level (manifest ``split: test``)."""
    width: int = 128
    """Image width in pixels."""
    height: int = 96
    """Image height in pixels."""
    seed: int = 0
    """Random seed: relief crop, texture layers, cameras, dial errors, noise."""
    fov_deg: float = 45.0
    """True horizontal field of view of the wide level (the base focal follows from it)."""
    dial_error: float = 0.03
    """Zoom-ins: true zoom = dial × (1 + u), u uniform in ±dial_error (recorded zoom = dial)."""
    baseline: float = 0.12
    """Half-size of the square (world units; the surface is ~1 away) the wide cameras spread over."""
    look_jitter: float = 0.08
    """Wide cameras aim at a point within ±this of the scene centre (world units)."""
    roll_deg: float = 2.0
    """Wide cameras roll by up to ±this many degrees."""
    drift: float = 0.004
    """Zoom-in optical centre drift from its wide view's (standard deviation, world units)."""
    off_axis: float = 0.0
    """Zoom-ins aim up to this fraction of the half field of view off their wide view's axis (0: centred)."""
    nested: bool = False
    """Aim each deeper zoom-in inside one of the previous level's zoom-ins, as an operator zooms in by steps."""
    apart: bool = False
    """Aim each deeper training zoom-in at a spot no shallower training zoom-in sees, anywhere in its wide view."""
    detail_contrast: float = DETAIL_CONTRAST
    """Strength of the texture finer than the wide views resolve (low: zoom-ins with few features of their own)."""
    test_zoom_target: Literal["trained", "own"] = "trained"
    """Held-out zoom-ins: on a training zoom-in's spot from a held-out wide view's place, or aimed on their own."""
    relief: float = 0.15
    """Height range of the surface (world units; the surface is at distance 1)."""
    supersample: int = 2
    """Rays per pixel along each axis for default and sem renders."""
    bit_depth: Literal[8, 16] = 8
    """Bits per channel of the written PNGs."""
    sem_dose: float = 200.0
    """sem: mean electrons per pixel at full brightness (lower = noisier)."""
    image_format: Literal["png", "sem-tiff"] = "png"
    """``sem-tiff``: grayscale TIFFs with FEI metadata giving the magnification, and no ``zoom`` in the manifest."""
    sem_field_width: float = 4e-4
    """sem-tiff: horizontal field width (metres) recorded for the widest level."""
    data_bar_rows: int = 0
    """Rows of an instrument data bar appended below every image (the manifest's ``h`` includes them)."""
    write_pose_prior: bool = False
    """Also write the true poses as ``transform_matrix`` (pose priors, e.g. for an oracle run)."""
    fov_guess_deg: Optional[float] = None
    """Write this horizontal FoV guess as ``fov_x_deg`` (default: none; the parser then guesses)."""

    def base_focal(self) -> float:
        """True focal length (pixels) of the wide level."""
        return 0.5 * self.width / math.tan(math.radians(self.fov_deg) / 2.0)


@dataclass
class Shot:
    """One frame to write: its camera and where it came from."""

    name: str
    """Relative file path in the scene."""
    dial: float
    """Recorded zoom (the level)."""
    true_zoom: float
    """Actual zoom relative to the wide level."""
    c2w: Float[Tensor, "4 4"]
    """True camera-to-world pose."""
    split: str
    """``train`` or ``test``."""
    parent: Optional[str] = None
    """For zoom-ins: the wide frame it was zoomed from."""
    image: Optional[Float[Tensor, "H W 3"]] = field(default=None, repr=False)
    """The rendered image, once rendered."""
    points: Optional[Float[Tensor, "P 3"]] = field(default=None, repr=False)
    """Surface points the frame sees at :data:`POINT_GRID` pixels, once computed."""


DEPTH = 1.0
"""Distance of the mean surface from the cameras."""
POINT_GRID = (8, 6)
"""Columns and rows of the pixel grid whose surface points each frame records (``gt_points``)."""
APART_REACH = 0.8
"""``--apart``: zoom-ins aim within this fraction of their wide view's half field of view."""
APART_TRIES = 200
"""``--apart``: aims drawn per zoom-in before the scene is refused."""


def make_scene(config: SceneMakerConfig) -> Path:
    """Render and write the scene; returns the manifest's path."""
    _check(config)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    zooms = sorted(config.zooms)
    surface = scene_surface(config)
    wides = _wide_shots(config, zooms[0], rng)
    zoom_ins = _zoom_shots(config, zooms, wides, rng)
    if config.variant == "bleff":
        _render_bleff(config, surface, wides, zoom_ins, zooms)
    elif config.variant in ("default", "sem"):
        shading: Shading = "sem" if config.variant == "sem" else "lambert"
        for shot in wides + zoom_ins:
            shot.image = render(surface, _true_camera(config, shot), config.supersample, shading)
        if config.variant == "sem":
            for shot in wides + zoom_ins:
                shot.image = _shot_noise(shot.image, config.sem_dose, generator)
    else:
        assert_never(config.variant)
    for shot in wides + zoom_ins:
        shot.points = surface_points(surface, _true_camera(config, shot), grid_pixels(config.width, config.height))
    return _write(config, wides + zoom_ins)


def _true_camera(config: SceneMakerConfig, shot: Shot) -> PinholeCamera:
    return PinholeCamera(shot.c2w, config.base_focal() * shot.true_zoom, config.width, config.height)


def grid_pixels(width: int, height: int) -> Float[Tensor, "P 2"]:
    """Pixel positions (x, y) of the :data:`POINT_GRID` cell centres of a ``width`` × ``height`` image."""
    columns, rows = POINT_GRID
    ys, xs = torch.meshgrid(
        (torch.arange(rows) + 0.5) * height / rows, (torch.arange(columns) + 0.5) * width / columns, indexing="ij"
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def scene_surface(config: SceneMakerConfig) -> Surface:
    """The geometry and texture a config renders (deterministic in the seed)."""
    density = config.base_focal() * max(config.zooms) / min(config.zooms) / (DEPTH - config.relief)
    half_view = DEPTH * math.tan(math.radians(config.fov_deg) / 2.0) + config.baseline + config.look_jitter
    extent = 1.5 * half_view + config.relief
    return make_surface(config.seed, DEPTH, config.relief, extent, 2.0 * half_view, density, config.detail_contrast)


def _check(config: SceneMakerConfig) -> None:
    if config.output.exists() and not config.output.is_dir():
        raise ValueError(f"{config.output} exists and is not a folder; give a folder for the scene")
    if len(config.zooms) < 1 or min(config.zooms) <= 0:
        raise ValueError(f"--zooms must be positive numbers, got {config.zooms}")
    if config.n_wide < 2:
        raise ValueError("--n-wide must be at least 2 (the bootstrap needs two wide views)")
    if config.width < 8 or config.height < 8:
        raise ValueError("--width and --height must be at least 8 pixels")
    if not 0.0 <= config.off_axis <= 0.9:
        raise ValueError("--off-axis must lie in [0, 0.9]")
    if config.apart and (config.nested or config.variant == "bleff"):
        raise ValueError("--apart aims zoom-ins away from shallower ones: it cannot go with --nested or bleff crops")
    if not 0.0 <= config.detail_contrast <= 1.0:
        raise ValueError("--detail-contrast must lie in [0, 1]")


def _level_name(zoom: float) -> str:
    return f"{zoom:g}x"


def _wide_shots(config: SceneMakerConfig, wide_zoom: float, rng: np.random.Generator) -> List[Shot]:
    count = config.n_wide + config.n_test
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cells = rng.permutation(rows * columns)[:count]
    shots = []
    for index, cell in enumerate(cells):
        row, column = divmod(int(cell), columns)
        cell_size = 2 * config.baseline / np.array([columns, rows])
        centre = -config.baseline + (np.array([column, row]) + rng.uniform(0.2, 0.8, 2)) * cell_size
        eye = torch.tensor([centre[0], centre[1], rng.uniform(-0.02, 0.02)], dtype=torch.float32)
        aim = rng.uniform(-config.look_jitter, config.look_jitter, 2)
        target = torch.tensor([aim[0], aim[1], -DEPTH], dtype=torch.float32)
        split = "train" if index < config.n_wide else "test"
        name = f"images/{_level_name(wide_zoom)}/{split}_{index:03d}.png"
        roll = rng.uniform(-config.roll_deg, config.roll_deg)
        shots.append(Shot(name, wide_zoom, 1.0, look_at(eye, target, roll), split))
    return shots


def _zoom_shots(
    config: SceneMakerConfig, zooms: List[float], wides: List[Shot], rng: np.random.Generator
) -> List[Shot]:
    train_wides = [shot for shot in wides if shot.split == "train"]
    test_wides = [shot for shot in wides if shot.split == "test"] or train_wides
    tan_x = math.tan(math.radians(config.fov_deg) / 2.0)
    tan_y = tan_x * config.height / config.width
    shots: List[Shot] = []
    previous: List[Shot] = []
    shallower: List[Shot] = []
    by_name = {shot.name: shot for shot in wides}
    for level in zooms[1:]:
        dial = level / zooms[0]
        nest = config.nested and bool(previous) and config.variant != "bleff"
        train_aims = [s for s in previous if s.split == "train"] if nest else train_wides
        test_aims = ([s for s in previous if s.split == "test"] or train_aims) if nest else test_wides
        order = list(rng.permutation(len(train_aims)))
        level_shots = []
        for index in range(config.n_zoom + config.n_test):
            split = "train" if index < config.n_zoom else "test"
            if split == "train":
                aim_from = train_aims[int(order[index % len(order)])]
            else:
                aim_from = test_aims[(index - config.n_zoom) % len(test_aims)]
            parent = by_name[aim_from.parent] if aim_from.parent is not None else aim_from
            true_zoom = dial * (1.0 + rng.uniform(-config.dial_error, config.dial_error))
            if config.variant == "bleff":
                c2w = parent.c2w.clone()
            elif config.apart and split == "train":
                c2w = _apart_pose(config, parent, true_zoom, shallower, rng)
            else:
                scale = 1.0 / aim_from.true_zoom  # the aiming view's half field of view, in wide tangents
                c2w = _zoom_pose(config, aim_from.c2w, tan_x * scale, tan_y * scale, rng)
                c2w[:3, 3] = parent.c2w[:3, 3] + (c2w[:3, 3] - aim_from.c2w[:3, 3])  # drift from the wide centre
            # the pose above is still drawn for such a view, so the main random stream (and every
            # later frame) is the same whichever target held-out zoom-ins take
            if split == "test" and config.test_zoom_target == "trained" and config.variant != "bleff":
                trained = level_shots[(index - config.n_zoom) % config.n_zoom]
                parent, c2w = _seen_spot_pose(config, trained, test_wides, (config.seed, len(shots), index))
            name = f"images/{_level_name(level)}/{split}_{index:03d}.png"
            level_shots.append(Shot(name, level, true_zoom, c2w, split, parent=parent.name))
        shots += level_shots
        previous = level_shots
        shallower += [shot for shot in level_shots if shot.split == "train"]
    return shots


def _footprint(config: SceneMakerConfig, c2w: Float[Tensor, "4 4"], zoom: float) -> Tuple[float, float, float, float]:
    """(x, y, half width, half height) of the rectangle a camera at ``zoom`` sees on the mean surface plane."""
    hit = _axis_hit(c2w)
    distance = float(c2w[2, 3]) + DEPTH
    half_w = distance * math.tan(math.radians(config.fov_deg) / 2.0) / zoom
    return float(hit[0]), float(hit[1]), half_w, half_w * config.height / config.width


def _overlap(a: Tuple[float, float, float, float], b: Tuple[float, float, float, float]) -> bool:
    return abs(a[0] - b[0]) < a[2] + b[2] and abs(a[1] - b[1]) < a[3] + b[3]


def _apart_pose(
    config: SceneMakerConfig, parent: Shot, true_zoom: float, shallower: List[Shot], rng: np.random.Generator
) -> Float[Tensor, "4 4"]:
    """A zoom-in's pose from near ``parent``'s centre, aimed anywhere within :data:`APART_REACH` of its
    half field of view, where its footprint overlaps no ``shallower`` zoom-in's."""
    tan_x = math.tan(math.radians(config.fov_deg) / 2.0)
    tan_y = tan_x * config.height / config.width
    taken = [_footprint(config, shot.c2w, shot.true_zoom) for shot in shallower]
    for _ in range(APART_TRIES):
        c2w = _aimed(config, parent.c2w, rng.uniform(-APART_REACH, APART_REACH, 2) * np.array([tan_x, tan_y]), rng)
        footprint = _footprint(config, c2w, true_zoom)
        if not any(_overlap(footprint, other) for other in taken):
            return c2w
    raise ValueError(
        f"--apart: no spot in {parent.name} that no shallower zoom-in sees after {APART_TRIES} tries; "
        "use fewer zoom-ins per level or larger zooms"
    )


def _axis_hit(c2w: Float[Tensor, "4 4"]) -> Float[Tensor, "3"]:
    """Where a camera's optical axis meets the plane at the surface's depth."""
    centre, forward = c2w[:3, 3], -c2w[:3, 2]
    return centre + forward * (-DEPTH - centre[2]) / forward[2]


def _seen_spot_pose(
    config: SceneMakerConfig, trained: Shot, wides: List[Shot], seed: Tuple[int, ...]
) -> Tuple[Shot, Float[Tensor, "4 4"]]:
    """(parent wide view, pose) of a held-out zoom-in on ``trained``'s spot: aimed within a quarter
    of that zoom-in's half field of its axis, from the place of the wide view in ``wides`` whose axis
    meets the surface nearest the spot (its own random stream, so the scene's other frames stay)."""
    rng = np.random.default_rng(list(seed))
    spot = _axis_hit(trained.c2w)
    parent = min(wides, key=lambda wide: float(torch.linalg.norm(_axis_hit(wide.c2w)[:2] - spot[:2])))
    half_field = DEPTH * math.tan(math.radians(config.fov_deg) / 2.0) / trained.true_zoom
    target = spot + torch.tensor([*rng.uniform(-0.25, 0.25, 2) * half_field, 0.0], dtype=torch.float32)
    eye = parent.c2w[:3, 3] + torch.tensor(rng.normal(0.0, config.drift, 3), dtype=torch.float32)
    return parent, look_at(eye, target, rng.uniform(-config.roll_deg, config.roll_deg))


def _zoom_pose(
    config: SceneMakerConfig, parent: Float[Tensor, "4 4"], tan_x: float, tan_y: float, rng: np.random.Generator
) -> Float[Tensor, "4 4"]:
    """Parent's pose, re-aimed within its field of view and with its optical centre drifted."""
    reach = max(config.off_axis, 0.03)
    offset = rng.uniform(-reach, reach, 2)
    if config.off_axis > 0:  # aim between half the requested offset and the full offset
        offset = np.sign(offset + 1e-12) * rng.uniform(0.5 * config.off_axis, config.off_axis, 2)
    return _aimed(config, parent, offset * np.array([tan_x, tan_y]), rng)


def _aimed(
    config: SceneMakerConfig, parent: Float[Tensor, "4 4"], tangent: np.ndarray, rng: np.random.Generator
) -> Float[Tensor, "4 4"]:
    """Parent's pose turned to look along ``tangent`` (x, y over depth in the parent's frame), rolled
    up to 1°, its optical centre drifted."""
    local_target = torch.tensor([tangent[0], tangent[1], -1.0], dtype=torch.float32)
    c2w = parent @ look_at(torch.zeros(3), local_target, rng.uniform(-1.0, 1.0))
    c2w[:3, 3] = parent[:3, 3] + torch.tensor(rng.normal(0.0, config.drift, 3), dtype=torch.float32)
    return c2w


def _render_bleff(
    config: SceneMakerConfig, surface: Surface, wides: List[Shot], zoom_ins: List[Shot], zooms: List[float]
) -> None:
    """Master render per wide view at (max zoom)× size; 1× by area downsampling, zoom-ins by crop."""
    factor = max(1, round(zooms[-1] / zooms[0]))
    masters: Dict[str, Tensor] = {}
    for shot in wides:
        camera = PinholeCamera(shot.c2w, config.base_focal() * factor, config.width * factor, config.height * factor)
        master = render(surface, camera, 1, "lambert").permute(2, 0, 1)[None]
        masters[shot.name] = master
        shot.image = F.avg_pool2d(master, factor)[0].permute(1, 2, 0)
    for shot in zoom_ins:
        master = masters[shot.parent or ""]
        crop_w = min(config.width * factor, max(1, round(config.width * factor / shot.true_zoom)))
        crop_h = min(config.height * factor, max(1, round(config.height * factor / shot.true_zoom)))
        top = (config.height * factor - crop_h) // 2
        left = (config.width * factor - crop_w) // 2
        crop = master[:, :, top : top + crop_h, left : left + crop_w]
        resized = F.interpolate(
            crop, size=(config.height, config.width), mode="bicubic", antialias=True, align_corners=False
        )
        shot.image = resized.clamp(0.0, 1.0)[0].permute(1, 2, 0)
        shot.true_zoom = config.width * factor / crop_w  # exact zoom of the rounded crop
        # the crop's centre is the image centre only when both margins are even; shift is below one master pixel


def _shot_noise(image: Float[Tensor, "H W 3"], dose: float, generator: torch.Generator) -> Float[Tensor, "H W 3"]:
    electrons = torch.poisson(image[..., :1] * dose, generator=generator)
    return (electrons / dose).clamp(0.0, 1.0).expand_as(image)


def _write(config: SceneMakerConfig, shots: List[Shot]) -> Path:
    from PIL import Image

    config.output.mkdir(parents=True, exist_ok=True)
    frames = []
    for shot in shots:
        assert shot.image is not None
        path = config.output / shot.name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = shot.image.clamp(0.0, 1.0).numpy()
        if config.variant == "sem" or config.image_format == "sem-tiff":
            pixels = pixels.mean(axis=-1)
        pixels = _with_data_bar(pixels, config.data_bar_rows, config.seed)
        scale, dtype = (255.0, np.uint8) if config.bit_depth == 8 else (65535.0, np.uint16)
        pixels = np.round(pixels * scale).astype(dtype)
        name = shot.name
        if config.image_format == "sem-tiff":
            name = str(Path(shot.name).with_suffix(".tif"))
            _write_sem_tiff(config.output / name, pixels, config.sem_field_width / shot.dial, 1000.0 * shot.dial)
        elif config.image_format == "png":
            Image.fromarray(pixels).save(path)
        else:
            assert_never(config.image_format)
        frame = {"file_path": name}
        if config.image_format == "png":
            frame["zoom"] = shot.dial
        frame.update(
            {
                "split": shot.split,
                "gt_transform_matrix": shot.c2w.tolist(),
                # in the units of the frame's reading (normalised like the dial); a TIFF's
                # reading is its magnification 1 / field width
                "gt_zoom": shot.true_zoom / config.sem_field_width
                if config.image_format == "sem-tiff"
                else shot.true_zoom,
            }
        )
        if shot.parent is not None:
            frame["gt_parent"] = shot.parent
        if shot.points is not None:
            frame["gt_points"] = [[round(float(v), 7) for v in point] for point in shot.points]
        if config.write_pose_prior:
            frame["transform_matrix"] = shot.c2w.tolist()
        frames.append(frame)
    manifest = {"w": config.width, "h": config.height + config.data_bar_rows, "gt_focal": config.base_focal()}
    if config.fov_guess_deg is not None:
        manifest["fov_x_deg"] = config.fov_guess_deg
    manifest["mzen_scene"] = {"variant": config.variant, "seed": config.seed, "zooms": list(config.zooms)}
    manifest["frames"] = frames
    path = config.output / "transforms.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


def _with_data_bar(pixels: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """``pixels`` with an instrument-style data bar (dark, with bright text-like blocks) below."""
    if rows <= 0:
        return pixels
    bar = np.full((rows,) + pixels.shape[1:], 0.1, dtype=pixels.dtype)
    rng = np.random.default_rng(seed)
    for start in range(2, pixels.shape[1] - 6, 8):  # "characters"
        top, height = 1 + int(rng.integers(0, max(1, rows // 3))), max(1, rows // 2)
        bar[top : top + height, start : start + int(rng.integers(3, 7))] = 0.9
    return np.concatenate([pixels, bar], axis=0)


def _write_sem_tiff(path: Path, pixels: np.ndarray, field_width: float, magnification: float) -> None:
    """A TIFF with Thermo Fisher/FEI metadata (tag 34682) recording field width and magnification."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = f"[User]\nUserText=mzen scene maker\n[Beam]\nHFW={field_width!r}\n[EScan]\nMag={magnification!r}\n"
    tifffile.imwrite(path, pixels, extratags=[(34682, "s", 0, metadata, True)])
