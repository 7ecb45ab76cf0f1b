"""Reading and validating an FF-MZN scene (``docs/format.md``) into plain records; no nerfstudio needed.

Two layouts: a ``transforms.json`` manifest, or (without one) ``<Z>x/`` folders whose name gives
the zoom. Every check names the file or frame at fault through :class:`SceneFormatError`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from jaxtyping import Float

from .errors import SceneFormatError
from .images import IMAGE_SUFFIXES, TIFF_SUFFIXES, image_info

MANIFEST_NAME = "transforms.json"
DEFAULT_FOV_X_DEG = 2.0 * math.degrees(math.atan(0.5))
"""Default horizontal field of view guess when a scene gives no focal: focal = image width
(about 53.1°, NeRF--'s initialisation). The focal is learned either way."""
WIDE_RTOL = 1e-6
"""Readings within this relative tolerance of each other are the same zoom level."""
MAX_ZOOM_RATIO = 1e4
"""Largest ratio of a frame's reading to the smallest (an SEM's 100× to 1 000 000×)."""
FOV_RANGE_DEG = (0.01, 175.0)
"""Horizontal fields of view a focal guess may give (a focal in pixels is checked through it)."""
MAX_IMAGE_SIDE = 100_000
"""Largest ``w`` or ``h``."""
MAX_POSE_VALUE = 1e8
"""Largest magnitude of a pose matrix entry (beyond it float32 arithmetic is meaningless)."""
MAX_GT_POINTS = 100_000
"""Most ``gt_points`` one frame may list."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of a manifest (a scene needs 4)."""
_ZOOM_FOLDER = re.compile(r"^(?P<zoom>\d+(?:\.\d+)?)x$", re.IGNORECASE)


@dataclass
class FrameRecord:
    """One frame as the scene describes it; ``dial`` is normalised so the widest reads 1."""

    file_path: str
    """Path relative to the scene folder, as written in the manifest."""
    where: str
    """How errors name this frame (manifest entry and file)."""
    reading: float
    """The dial reading as recorded (any unit; only ratios matter)."""
    dial: float = 1.0
    """``reading`` divided by the smallest reading in the scene."""
    split: Optional[str] = None
    """``"train"`` / ``"test"`` when the manifest says so, else chosen by the parser."""
    pose_prior: Optional[Float[np.ndarray, "4 4"]] = None
    """``transform_matrix``: an initial camera-to-world pose, used only when asked for."""
    gt_c2w: Optional[Float[np.ndarray, "4 4"]] = None
    """``gt_transform_matrix``: ground truth for evaluation only."""
    gt_zoom: Optional[float] = None
    """``gt_zoom`` normalised like the dial: ground truth for evaluation only."""
    gt_points: Optional[Float[np.ndarray, "P 3"]] = None
    """``gt_points``: world points of the true surface the frame sees, for evaluation only."""
    zoom_source: str = "manifest"
    """Where the reading came from: ``manifest``, ``folder name``, or the file's metadata entry."""


@dataclass
class SceneRecord:
    """A whole scene: image size, intrinsics guess and frames (manifest order)."""

    root: Path
    """The scene folder."""
    width: Optional[int]
    """Native width from the manifest (``None`` for the folder layout: taken from the images)."""
    height: Optional[int]
    """Native height from the manifest (``None`` for the folder layout)."""
    fl_x: Optional[float] = None
    """Focal guess in pixels at the widest level, if the scene gives one."""
    fl_y: Optional[float] = None
    """Vertical focal guess in pixels, if the scene gives one."""
    fov_x_deg: Optional[float] = None
    """Horizontal field-of-view guess, used when no focal is given."""
    cx: Optional[float] = None
    """Principal point x (default: image centre)."""
    cy: Optional[float] = None
    """Principal point y (default: image centre)."""
    gt_focal: Optional[float] = None
    """True base focal in pixels, evaluation only."""
    frames: List[FrameRecord] = field(default_factory=list)
    """The frames, in manifest (or sorted folder) order."""
    focal_35mm: Optional[float] = None
    """A widest frame's EXIF 35 mm-equivalent focal length (mm), used when no focal is given."""

    def focal_is_known(self) -> bool:
        """Whether the scene says its focal (manifest focal or FoV, or EXIF), rather than the default FoV."""
        return any(value is not None for value in (self.fl_x, self.fl_y, self.fov_x_deg, self.focal_35mm))

    def focal_guess(self, width: int, height: int) -> Tuple[float, float]:
        """(fx, fy) guess at the widest level: manifest focal, else its FoV, else the EXIF 35 mm
        equivalent (over the image diagonal, as CIPA defines it), else the default FoV."""
        if self.fl_x is not None or self.fl_y is not None:
            fx = self.fl_x if self.fl_x is not None else self.fl_y
            fy = self.fl_y if self.fl_y is not None else self.fl_x
            return float(fx), float(fy)  # type: ignore[arg-type]
        if self.fov_x_deg is None and self.focal_35mm is not None:
            focal = self.focal_35mm * math.hypot(width, height) / math.hypot(36.0, 24.0)
            return focal, focal
        fov = self.fov_x_deg if self.fov_x_deg is not None else DEFAULT_FOV_X_DEG
        focal = 0.5 * width / math.tan(math.radians(fov) / 2.0)
        return focal, focal


def read_scene(root: Path) -> SceneRecord:
    """Read a scene folder in either layout, with dials normalised (widest = 1)."""
    root = Path(root)
    if not root.is_dir():
        raise SceneFormatError(root, "scene folder not found")
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        scene = _read_manifest(manifest)
    elif _zoom_folders(root):
        scene = _read_folder_layout(root)
    else:
        raise SceneFormatError(
            manifest, "manifest missing (and no <Z>x/ zoom folders such as 1x/, 4x/ for the folder layout)"
        )
    _check_unique_paths(scene.frames)
    scene = _normalise_dials(scene)
    if scene.fl_x is None and scene.fl_y is None and scene.fov_x_deg is None:
        scene.focal_35mm = next(
            (
                f35
                for frame in scene.frames
                if frame.dial == 1.0
                for f35 in [image_info(root / frame.file_path).focal_length_35mm]
                if f35
            ),
            None,
        )
    return scene


# ----------------------------------------------------------------------------- manifest layout


def _read_manifest(manifest: Path) -> SceneRecord:
    try:
        data = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SceneFormatError(manifest, f"not valid JSON ({error})") from error
    except RecursionError:
        raise SceneFormatError(manifest, "nested too deeply to be a manifest") from None
    if not isinstance(data, dict):
        raise SceneFormatError(manifest, "top level must be a JSON object")
    if _depth(data) > MAX_JSON_DEPTH:
        raise SceneFormatError(manifest, f"nested more than {MAX_JSON_DEPTH} levels deep; a manifest needs four")
    name = manifest.name
    width, height = _size(data, "w", name), _size(data, "h", name)
    scene = SceneRecord(
        root=manifest.parent,
        width=width,
        height=height,
        fl_x=_optional_focal(data, "fl_x", width, name),
        fl_y=_optional_focal(data, "fl_y", height, name),
        fov_x_deg=_optional_in_range(data, "fov_x_deg", FOV_RANGE_DEG, name),
        cx=_optional_in_range(data, "cx", (-width, 2.0 * width), name),
        cy=_optional_in_range(data, "cy", (-height, 2.0 * height), name),
        gt_focal=_optional_focal(data, "gt_focal", width, name),
    )
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SceneFormatError(manifest, "no frames (the 'frames' list is missing or empty)")
    scene.frames = [_read_frame(manifest, entry, index) for index, entry in enumerate(frames)]
    return scene


def _read_frame(manifest: Path, entry: Any, index: int) -> FrameRecord:
    root = manifest.parent
    where = f"{manifest} frame {index}"
    if not isinstance(entry, dict):
        raise SceneFormatError(where, "each frame must be a JSON object")
    file_path = entry.get("file_path")
    if not isinstance(file_path, str) or not file_path:
        raise SceneFormatError(where, "'file_path' is missing or not a string")
    where = f"{where} ({file_path})"
    if (
        PurePosixPath(file_path).is_absolute()
        or PureWindowsPath(file_path).is_absolute()
        or ".." in Path(file_path).parts
    ):
        raise SceneFormatError(where, "'file_path' must be relative to the scene folder and stay inside it")
    if "zoom" in entry:
        reading, source = _zoom_value(entry["zoom"], where), "manifest"
    else:
        reading, source = _zoom_from_file(root / file_path, where)
    split = entry.get("split")
    if split is not None and split not in ("train", "test"):
        raise SceneFormatError(where, f'\'split\' must be "train" or "test", got {split!r}')
    gt_zoom = entry.get("gt_zoom")
    return FrameRecord(
        file_path=file_path,
        where=where,
        reading=reading,
        zoom_source=source,
        split=split,
        pose_prior=_optional_matrix(entry, "transform_matrix", where),
        gt_c2w=_optional_matrix(entry, "gt_transform_matrix", where),
        gt_zoom=None if gt_zoom is None else _zoom_value(gt_zoom, where, key="gt_zoom"),
        gt_points=_optional_points(entry, "gt_points", where),
    )


def _zoom_value(value: Any, where: str, key: str = "zoom") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SceneFormatError(where, f"'{key}' is not a number: {value!r}")
    if not math.isfinite(value):
        raise SceneFormatError(where, f"'{key}' must be finite, got {value}")
    if value <= 0:
        raise SceneFormatError(where, f"'{key}' must be > 0, got {value}")
    return float(value)


def _zoom_from_file(path: Path, where: str) -> Tuple[float, str]:
    """A frame's reading from its file: SEM TIFF metadata, else its EXIF focal length; and the source."""
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        from .tiff_metadata import tiff_magnification

        reading = tiff_magnification(path)
        if reading is not None:
            source = reading.source
            if reading.disagreements:
                source += f" (disagrees with {'; '.join(reading.disagreements)})"
            return reading.value, source
    focal = image_info(path).focal_length if path.is_file() else None
    if focal is not None:
        return focal, f"EXIF FocalLength = {focal:g} mm"
    raise SceneFormatError(where, "'zoom' is missing (and the image file records no magnification or focal length)")


def _depth(value: Any, limit: int = MAX_JSON_DEPTH + 1) -> int:
    """Nesting depth of a JSON value, counted up to ``limit``."""
    if limit <= 0 or not isinstance(value, (dict, list)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(child, limit - 1) for child in children), default=0)


def _size(data: Dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_IMAGE_SIDE:
        raise SceneFormatError(
            f"{where}: '{key}'", f"must be a positive integer up to {MAX_IMAGE_SIDE} (image size), got {value!r}"
        )
    return value


def _optional_in_range(data: Dict[str, Any], key: str, bounds: Tuple[float, float], where: str) -> Optional[float]:
    value = _optional_number(data, key, where)
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise SceneFormatError(f"{where}: '{key}'", f"must lie in [{bounds[0]:g}, {bounds[1]:g}], got {value:g}")
    return value


def _optional_focal(data: Dict[str, Any], key: str, size: int, where: str) -> Optional[float]:
    """A focal in pixels whose field of view over ``size`` pixels lies in :data:`FOV_RANGE_DEG`."""
    value = _optional_positive(data, key, where)
    if value is not None:
        fov = math.degrees(2.0 * math.atan(0.5 * size / value))
        if not FOV_RANGE_DEG[0] <= fov <= FOV_RANGE_DEG[1]:
            raise SceneFormatError(
                f"{where}: '{key}'",
                f"{value:g} px gives a {fov:.3g}° field of view over {size} px; expected "
                f"{FOV_RANGE_DEG[0]:g}° to {FOV_RANGE_DEG[1]:g}°",
            )
    return value


def _optional_number(data: Dict[str, Any], key: str, where: str) -> Optional[float]:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SceneFormatError(f"{where}: '{key}'", f"must be a finite number, got {value!r}")
    return float(value)


def _optional_positive(data: Dict[str, Any], key: str, where: str) -> Optional[float]:
    value = _optional_number(data, key, where)
    if value is not None and value <= 0:
        raise SceneFormatError(f"{where}: '{key}'", f"must be > 0, got {value}")
    return value


def _optional_points(entry: Dict[str, Any], key: str, where: str) -> Optional[Float[np.ndarray, "P 3"]]:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_GT_POINTS:
        raise SceneFormatError(where, f"'{key}' must be a list of at most {MAX_GT_POINTS} [x, y, z] points")
    try:
        points = np.asarray(value, dtype=np.float64).reshape(len(value), -1)
    except (TypeError, ValueError) as error:
        raise SceneFormatError(where, f"'{key}' must be a list of [x, y, z] points of numbers") from error
    if points.shape[1:] != (3,) or not np.all(np.isfinite(points)):
        raise SceneFormatError(where, f"'{key}' must be a list of finite [x, y, z] points")
    return points


def _optional_matrix(entry: Dict[str, Any], key: str, where: str) -> Optional[Float[np.ndarray, "4 4"]]:
    value = entry.get(key)
    if value is None:
        return None
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SceneFormatError(where, f"'{key}' must be a 4x4 matrix of numbers") from error
    if matrix.shape == (3, 4):
        matrix = np.concatenate([matrix, [[0.0, 0.0, 0.0, 1.0]]], axis=0)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise SceneFormatError(where, f"'{key}' must be a finite 4x4 matrix, got shape {matrix.shape}")
    if np.abs(matrix).max() > MAX_POSE_VALUE:
        raise SceneFormatError(where, f"'{key}' has entries beyond ±{MAX_POSE_VALUE:g}")
    return matrix


# ----------------------------------------------------------------------------- folder layout


def _zoom_folders(root: Path) -> List[Tuple[float, Path]]:
    found = []
    for child in sorted(root.iterdir()):
        match = _ZOOM_FOLDER.match(child.name)
        if match and child.is_dir():
            found.append((float(match.group("zoom")), child))
    return found


def _check_no_stray_images(root: Path) -> None:
    """Images the folder layout would not read: in the scene folder itself, or in a folder whose
    name is not a zoom level."""
    zoom_folders = {folder for _, folder in _zoom_folders(root)}
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or child in zoom_folders:
            continue
        if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
            raise SceneFormatError(child, "an image outside the <Z>x/ zoom folders; move it into one (e.g. 1x/)")
        if child.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in child.iterdir() if p.is_file()):
            raise SceneFormatError(
                child,
                "holds images but its name is not a zoom level such as 1x/, 4x/ or 2.5x/; rename it or move it out",
            )


def _read_folder_layout(root: Path) -> SceneRecord:
    _check_no_stray_images(root)
    frames: List[FrameRecord] = []
    for reading, folder in _zoom_folders(root):
        if reading <= 0:
            raise SceneFormatError(folder, "a zoom folder's reading must be > 0")
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue  # hidden files (.DS_Store, editor swap files) are not frames
            relative = os.path.relpath(path, root)
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                raise SceneFormatError(
                    path, f"not an image; a <Z>x/ folder may hold only {', '.join(IMAGE_SUFFIXES)} files"
                )
            frames.append(FrameRecord(file_path=relative, where=relative, reading=reading, zoom_source="folder name"))
    if not frames:
        raise SceneFormatError(root, "no frames (the zoom folders hold no images)")
    return SceneRecord(root=root, width=None, height=None, frames=frames)


# ----------------------------------------------------------------------------- checks


def _check_unique_paths(frames: Sequence[FrameRecord]) -> None:
    seen: Dict[str, str] = {}
    for frame in frames:
        key = os.path.normpath(frame.file_path)
        if key in seen:
            raise SceneFormatError(frame.where, f"duplicate 'file_path' (also used by {seen[key]})")
        seen[key] = frame.where


def _normalise_dials(scene: SceneRecord) -> SceneRecord:
    smallest = min(scene.frames, key=lambda frame: frame.reading)
    largest = max(scene.frames, key=lambda frame: frame.reading)
    if largest.reading > MAX_ZOOM_RATIO * smallest.reading:
        raise SceneFormatError(
            largest.where,
            f"zoom reading {largest.reading:g} is {largest.reading / smallest.reading:.3g}× the smallest "
            f"({smallest.reading:g}, {smallest.where}); readings may differ by at most {MAX_ZOOM_RATIO:g}×",
        )
    for frame in scene.frames:
        if frame.gt_zoom is not None and not frame.gt_zoom <= MAX_ZOOM_RATIO * smallest.reading:
            raise SceneFormatError(
                frame.where, f"'gt_zoom' {frame.gt_zoom:g} is over {MAX_ZOOM_RATIO:g}× the smallest zoom"
            )
    smallest = smallest.reading
    frames = []
    for frame in scene.frames:
        dial = frame.reading / smallest
        if math.isclose(dial, 1.0, rel_tol=WIDE_RTOL):
            dial = 1.0
        gt_zoom = None if frame.gt_zoom is None else frame.gt_zoom / smallest
        frames.append(replace(frame, dial=dial, gt_zoom=gt_zoom))
    wide = [frame for frame in frames if frame.dial == 1.0]
    if len(wide) < 2:
        raise SceneFormatError(
            wide[0].where,
            f"fewer than two frames at the widest level (zoom reading {smallest:g}); "
            "pose-free bootstrap needs at least two wide views",
        )
    scene.frames = frames
    return scene


def zoom_levels(dials: Sequence[float]) -> List[float]:
    """The distinct normalised dial readings, ascending (readings closer than WIDE_RTOL merge)."""
    levels: List[float] = []
    for dial in sorted(dials):
        if not levels or not math.isclose(dial, levels[-1], rel_tol=WIDE_RTOL):
            levels.append(dial)
    return levels


def level_index(dial: float, levels: Sequence[float]) -> int:
    """Index of ``dial`` in ``levels`` (0 = wide)."""
    for index, level in enumerate(levels):
        if math.isclose(dial, level, rel_tol=WIDE_RTOL):
            return index
    raise ValueError(f"dial {dial} is not one of the levels {list(levels)}")


def assign_splits(frames: Sequence[FrameRecord], test_every: int) -> List[str]:
    """Train/test per frame: the manifest's ``split`` where given, else a deterministic rule.

    Per zoom level, frames without a ``split`` are sorted by ``file_path``; a level with at least
    three of them holds out ``max(1, n // test_every)`` evenly spaced frames (none if
    ``test_every <= 0``). Held-out wide frames go back to train until at least two wide frames
    train; if the manifest's own splits leave fewer than two, that is an error.
    """
    splits: List[Optional[str]] = [frame.split for frame in frames]
    levels = zoom_levels([frame.dial for frame in frames])
    auto_tests: List[int] = []
    for level in levels:
        unsplit = sorted(
            (i for i, f in enumerate(frames) if f.split is None and math.isclose(f.dial, level, rel_tol=WIDE_RTOL)),
            key=lambda i: frames[i].file_path,
        )
        count = len(unsplit)
        n_test = 0 if test_every <= 0 or count < 3 else max(1, count // test_every)
        held_out = {unsplit[int((k + 0.5) * count / n_test)] for k in range(n_test)} if n_test else set()
        for i in unsplit:
            splits[i] = "test" if i in held_out else "train"
        auto_tests.extend(i for i in unsplit if i in held_out and level == 1.0)
    wide_train = sum(1 for i, f in enumerate(frames) if f.dial == 1.0 and splits[i] == "train")
    while wide_train < 2 and auto_tests:
        splits[auto_tests.pop()] = "train"
        wide_train += 1
    if wide_train < 2:
        raise SceneFormatError(
            f"{MANIFEST_NAME}: 'split'", "fewer than two wide frames are in the train split; the bootstrap needs two"
        )
    return [str(split) for split in splits]
