"""Reading FF-MZN frames: PNG / JPEG / TIFF, 8- or 16-bit or float, grayscale or RGB(A).

nerfstudio's ``InputDataset`` reads images with PIL as 8-bit and only handles 8-bit ``L``, ``RGB``
and ``RGBA``. So that the parser works with *any* method, frames nerfstudio reads correctly are
passed through untouched, and every other frame (16-bit, float, grayscale+alpha, palette,
RGBA) is decoded here, normalised to [0, 1], made RGB, and written once as an 8-bit RGB PNG in a
cache folder, which is what the dataset then reads. The original path stays in the metadata.

Conventions (documented in README):
- integer images are scaled by their type's maximum (65535 for 16-bit), floats must lie in [0, 1];
- grayscale is replicated to three channels;
- alpha is composited over a background colour (white by default) or dropped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np
from jaxtyping import Float
from typing_extensions import assert_never

from .errors import SceneFormatError

AlphaHandling = Literal["white", "black", "drop"]
"""How an alpha channel becomes RGB: composited over white or black, or dropped."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_PASS_THROUGH_MODES = ("RGB", "L")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class FrameImage:
    """What the parser learns from reading one frame."""

    source: Path
    """The file named by the scene."""
    readable_path: Path
    """The file nerfstudio's dataset should read: ``source`` itself or its normalised 8-bit copy."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""


def default_cache_dir() -> Path:
    """Where converted frames go: ``$MZEN_CACHE_DIR`` or ``~/.cache/mzen``, plus ``images``."""
    root = os.environ.get("MZEN_CACHE_DIR") or Path.home() / ".cache" / "mzen"
    return Path(root) / "images"


def read_float_image(path: Path, float_range: Optional[Tuple[float, float]] = None) -> Float[np.ndarray, "H W C"]:
    """Decode any supported frame to float32 in [0, 1], keeping its channels (1 to 4); float
    pixels are mapped from ``float_range`` (low, high) to [0, 1] when given, else must lie in [0, 1].

    Raises:
        SceneFormatError: the file is missing, cannot be decoded, or has an unsupported layout.
    """
    if not path.is_file():
        raise SceneFormatError(path, "image file not found")
    raw = _decode(path)
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.ndim != 3 or raw.shape[2] not in (1, 2, 3, 4):
        raise SceneFormatError(path, f"unsupported image layout with shape {raw.shape}")
    return _to_unit_range(path, raw, float_range)


def _decode(path: Path) -> np.ndarray:
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            return np.asarray(tifffile.imread(path, key=0))
        except Exception as error:  # tifffile raises many types for corrupt files
            raise SceneFormatError(path, f"cannot read TIFF image ({error})") from error
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise SceneFormatError(path, "cannot read image (corrupt or unsupported file)")
    if raw.ndim == 3 and raw.shape[2] >= 3:  # OpenCV stores BGR(A)
        raw = np.concatenate([raw[:, :, 2::-1], raw[:, :, 3:]], axis=2)
    return raw


def _to_unit_range(
    path: Path, raw: np.ndarray, float_range: Optional[Tuple[float, float]] = None
) -> Float[np.ndarray, "H W C"]:
    if raw.dtype == np.bool_:
        return raw.astype(np.float32)
    if np.issubdtype(raw.dtype, np.integer):
        return raw.astype(np.float32) / float(np.iinfo(raw.dtype).max)
    if np.issubdtype(raw.dtype, np.floating):
        image = raw.astype(np.float32)
        if not np.all(np.isfinite(image)):
            raise SceneFormatError(path, "float image contains NaN or infinite values")
        if float_range is not None:
            return np.clip((image - float_range[0]) / (float_range[1] - float_range[0]), 0.0, 1.0)
        low, high = float(image.min()), float(image.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise SceneFormatError(
                path,
                f"float image values must lie in [0, 1], found [{low:g}, {high:g}]; "
                "set the parser's float-range LOW HIGH to map them",
            )
        return np.clip(image, 0.0, 1.0)
    raise SceneFormatError(path, f"unsupported pixel type {raw.dtype}")


def to_rgb(image: Float[np.ndarray, "H W C"], alpha: AlphaHandling) -> Float[np.ndarray, "H W 3"]:
    """Grayscale → three channels; an alpha channel composited or dropped as ``alpha`` says."""
    channels = image.shape[2]
    colour = image[:, :, :1].repeat(3, axis=2) if channels <= 2 else image[:, :, :3]
    if channels in (1, 3):
        return colour
    opacity = image[:, :, -1:]
    if alpha == "drop":
        return colour
    if alpha == "white":
        return colour * opacity + (1.0 - opacity)
    if alpha == "black":
        return colour * opacity
    assert_never(alpha)


def load_frame(
    path: Path,
    alpha: AlphaHandling,
    cache_dir: Path,
    crop_bottom: int = 0,
    float_range: Optional[Tuple[float, float]] = None,
) -> FrameImage:
    """Check one frame is readable and return the path nerfstudio's dataset can read correctly;
    ``crop_bottom`` rows (an instrument's data bar) are cut off the bottom first; float pixels are
    mapped from ``float_range`` (see :func:`read_float_image`)."""
    width, height, passes_through = _probe(path, float_range)
    if passes_through and crop_bottom == 0:
        return FrameImage(path, path, width, height)
    if crop_bottom < 0 or crop_bottom >= height:
        raise SceneFormatError(path, f"cannot crop {crop_bottom} rows from an image {height} rows high")
    rgb = to_rgb(read_float_image(path, float_range), alpha)[: height - crop_bottom]
    height, width = rgb.shape[:2]
    recipe = f"{alpha}|crop{crop_bottom}|float{float_range}"
    return FrameImage(path, _write_cached_png(path, rgb, recipe, cache_dir), width, height)


def _probe(path: Path, float_range: Optional[Tuple[float, float]] = None) -> Tuple[int, int, bool]:
    """Size of the image and whether nerfstudio's PIL-based loader reads it as it is."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SceneFormatError(path, "image file not found")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise SceneFormatError(path, f"unsupported image type {path.suffix!r}; use PNG, JPEG or TIFF")
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
            if mode in _PASS_THROUGH_MODES:
                image.load()  # decodes fully: a truncated file fails here, not mid-training
                return size[0], size[1], True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        pass  # PIL cannot read it: the full decoder below decides whether anything can
    image = read_float_image(path, float_range)
    return image.shape[1], image.shape[0], False


def _write_cached_png(source: Path, rgb: Float[np.ndarray, "H W 3"], recipe: str, cache_dir: Path) -> Path:
    from PIL import Image

    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{recipe}".encode()
    target = cache_dir / f"{hashlib.sha1(key).hexdigest()}.png"
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        pixels = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
        partial = target.with_suffix(f".{os.getpid()}.tmp.png")
        Image.fromarray(pixels, mode="RGB").save(partial)
        partial.replace(target)
    return target
