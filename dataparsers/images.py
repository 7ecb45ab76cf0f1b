"""Reading FF-MZN frames: PNG / JPEG / TIFF, 8- or 16-bit or float, grayscale or RGB(A).

nerfstudio's ``InputDataset`` reads images with PIL as 8-bit and only handles 8-bit ``L``, ``RGB``
and ``RGBA``. So that the parser works with *any* method, frames nerfstudio reads correctly are
passed through untouched, and every other frame (16-bit, float, grayscale+alpha, palette,
RGBA) is decoded here, normalised to [0, 1], made RGB, and written once as an 8-bit RGB PNG in a
cache folder, which is what the dataset then reads. The original path stays in the metadata.

Conventions (``docs/format.md``):
- integer images are scaled by their type's maximum (65535 for 16-bit), floats must lie in [0, 1];
- grayscale is replicated to three channels;
- alpha is composited over a background colour (white by default) or dropped;
- an EXIF orientation is applied (the image as a viewer shows it), so such frames are converted;
- an image declaring more pixels than Pillow's decompression-bomb limit is refused before decoding.
"""

from __future__ import annotations

import hashlib
import os
import warnings
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
ORIENTATION = 0x0112
"""EXIF tag: how the stored pixels must be turned to show the image upright (1: as stored)."""
EXIF_IFD = 0x8769
"""EXIF sub-directory holding the camera settings."""
FOCAL_LENGTH, FOCAL_LENGTH_35MM = 0x920A, 0xA405
"""EXIF tags: lens focal length (mm) and its 35 mm film equivalent (mm)."""


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
    raw = upright(raw, image_info(path).orientation)
    if raw.ndim != 3 or raw.shape[2] not in (1, 2, 3, 4):
        raise SceneFormatError(path, f"unsupported image layout with shape {raw.shape}")
    return _to_unit_range(path, raw, float_range)


def _decode(path: Path) -> np.ndarray:
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile
        from PIL import Image

        try:
            with tifffile.TiffFile(path) as tiff:
                shape = tiff.pages.first.shape
                if int(np.prod(shape[:2])) > (Image.MAX_IMAGE_PIXELS or np.inf):
                    raise SceneFormatError(path, f"image declares {shape[1]}x{shape[0]} pixels, more than mzen reads")
                return np.asarray(tiff.asarray(key=0))
        except SceneFormatError:
            raise
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


@dataclass(frozen=True)
class ImageInfo:
    """What a frame's header says, read without decoding its pixels."""

    mode: Optional[str] = None
    """Pillow's pixel mode (None when Pillow cannot read the file)."""
    orientation: int = 1
    """EXIF orientation (1: upright as stored)."""
    focal_length: Optional[float] = None
    """EXIF focal length in mm."""
    focal_length_35mm: Optional[float] = None
    """EXIF 35 mm-equivalent focal length in mm."""


def image_info(path: Path) -> ImageInfo:
    """The frame's Pillow mode and EXIF orientation and focal lengths, from its header.

    Raises:
        SceneFormatError: the header declares more pixels than Pillow's decompression-bomb limit.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                exif = image.getexif()
                camera = exif.get_ifd(EXIF_IFD)
                return ImageInfo(
                    image.mode,
                    _orientation(exif.get(ORIENTATION)),
                    _positive_number(camera.get(FOCAL_LENGTH)),
                    _positive_number(camera.get(FOCAL_LENGTH_35MM)),
                )
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SceneFormatError(path, f"image is too large to read safely ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, KeyError):
        return ImageInfo()  # Pillow cannot read it (or its EXIF): the full decoder decides


def _orientation(value: object) -> int:
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _positive_number(value: object) -> Optional[float]:
    try:
        number = float(value)  # type: ignore[arg-type]  # EXIF rationals convert
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` (H, W, ...) turned as its EXIF ``orientation`` says (Pillow's ``exif_transpose``)."""
    if orientation == 1:
        return image
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }[orientation](image)
    return np.ascontiguousarray(turned)


def _probe(path: Path, float_range: Optional[Tuple[float, float]] = None) -> Tuple[int, int, bool]:
    """Size of the image (upright) and whether nerfstudio's PIL-based loader reads it as it is."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SceneFormatError(path, "image file not found")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise SceneFormatError(path, f"unsupported image type {path.suffix!r}; use PNG, JPEG or TIFF")
    info = image_info(path)
    if info.mode in _PASS_THROUGH_MODES and info.orientation == 1:
        try:
            with Image.open(path) as image:
                image.load()  # decodes fully: a truncated file fails here, not mid-training
                return image.size[0], image.size[1], True
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
