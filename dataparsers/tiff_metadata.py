"""Magnification recorded inside SEM TIFF files, for frames whose manifest entry has no ``zoom``.

Read with ``tifffile`` (verified with files constructed in each vendor's layout in the tests):

- Thermo Fisher / FEI (tags 34680 / 34682, ``fei_metadata``): the horizontal field width in metres
  from, in order of preference, ``[<beam>] HFW`` for the column ``[Beam] Beam`` names (the other
  column's is then ignored), ``[Beam] HFW``, ``[EBeam] HFW`` (electron column), ``[IBeam] HFW`` (ion
  column of a dual-beam FIB),
  ``[Scan] HorFieldsize``, ``[EScan] HorFieldsize``, ``[Scan] PixelWidth`` × image width; else a
  ``Mag`` entry (``[EScan]``, ``[Image]``, ``[Scan]``).
- Zeiss (tag 34118 ``CZ_SEM``, ``sem_metadata``): ``AP_WIDTH`` (the image width with its unit),
  else ``AP_MAG`` (e.g. ``1.00 K X``).

A field width ``w`` gives the reading ``1 / w``; a magnification is used as it is. Only ratios
between frames matter, so the unit is irrelevant as long as a scene is consistent. When two sources
in one file disagree by more than 1%, :func:`tiff_magnification` says so in its result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import SceneFormatError

_MAGNIFICATION_KEYS: Tuple[Tuple[str, str], ...] = (("EScan", "Mag"), ("Image", "Mag"), ("Scan", "Mag"))
_LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "nm": 1e-9, "pm": 1e-12}
_MAG_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6}
AGREEMENT = 0.01
"""Relative difference above which two field widths in one file are reported as disagreeing."""


@dataclass
class Reading:
    """A frame's magnification reading from its file, and where it came from."""

    value: float
    """The reading: 1 / field width (metres), or a magnification."""
    source: str
    """The metadata entry it came from, e.g. ``[EBeam] HFW``."""
    disagreements: List[str] = field(default_factory=list)
    """Other entries of the file giving a different field width (each with its value)."""


def tiff_magnification(path: Path) -> Optional[Reading]:
    """The magnification reading recorded in ``path``'s SEM metadata, or ``None`` if it records none.

    Raises:
        SceneFormatError: the file is not a readable TIFF, or a metadata value is malformed.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            fei = tiff.fei_metadata if tiff.is_fei else None
            zeiss = tiff.sem_metadata if tiff.pages.first.is_sem else None
            width_px = int(tiff.pages.first.imagewidth)
    except Exception as error:  # tifffile raises many types for corrupt files
        raise SceneFormatError(path, f"cannot read TIFF metadata ({error})") from error
    if fei:
        return _fei_reading(fei, width_px, path)
    if zeiss:
        return _zeiss_reading(zeiss, path)
    return None


def _fei_reading(metadata: Dict[str, Any], width_px: int, path: Path) -> Optional[Reading]:
    widths = _fei_field_widths(metadata, width_px, path)
    if widths:
        (source, preferred), others = widths[0], widths[1:]
        disagree = [f"{name} = {value:g} m" for name, value in others if abs(value - preferred) > AGREEMENT * preferred]
        return Reading(1.0 / preferred, f"{source} = {preferred:g} m", disagree)
    for section, key in _MAGNIFICATION_KEYS:
        value = _positive(metadata.get(section, {}).get(key), f"[{section}] {key}", path)
        if value is not None:
            return Reading(value, f"[{section}] {key}")
    return None


def _fei_field_widths(metadata: Dict[str, Any], width_px: int, path: Path) -> List[Tuple[str, float]]:
    """Every field width (metres) the FEI metadata gives, preferred first."""
    beam = metadata.get("Beam", {}).get("Beam")
    columns = [beam] if isinstance(beam, str) and beam else ["EBeam", "IBeam"]  # the named column only
    keys = [(columns[0], "HFW"), ("Beam", "HFW")] + [(column, "HFW") for column in columns[1:]]
    keys += [("Scan", "HorFieldsize"), ("EScan", "HorFieldsize")]
    widths: List[Tuple[str, float]] = []
    for section, key in dict.fromkeys(keys):
        value = _positive(metadata.get(section, {}).get(key), f"[{section}] {key}", path)
        if value is not None:
            widths.append((f"[{section}] {key}", value))
    pixel = _positive(metadata.get("Scan", {}).get("PixelWidth"), "[Scan] PixelWidth", path)
    if pixel is not None:
        widths.append((f"[Scan] PixelWidth × {width_px} px", pixel * width_px))
    return widths


def _zeiss_reading(metadata: Dict[str, Any], path: Path) -> Optional[Reading]:
    width = metadata.get("ap_width")
    if width is not None:
        metres = _zeiss_length(width, path)
        return Reading(1.0 / metres, f"CZ_SEM AP_WIDTH = {metres:g} m")
    mag = metadata.get("ap_mag")
    if mag is not None:
        return Reading(_zeiss_magnification(mag, path), "CZ_SEM AP_MAG")
    return None


def _zeiss_length(entry: Any, path: Path) -> float:
    """A Zeiss ``(name, value, unit)`` length in metres."""
    if isinstance(entry, tuple) and len(entry) == 3 and str(entry[2]) in _LENGTH_UNITS:
        value = _positive(entry[1], "CZ_SEM AP_WIDTH", path)
        if value is not None:
            return value * _LENGTH_UNITS[str(entry[2])]
    raise SceneFormatError(path, f"SEM metadata CZ_SEM AP_WIDTH is not a length with a unit: {entry!r}")


def _zeiss_magnification(entry: Any, path: Path) -> float:
    """A Zeiss magnification such as ``('Mag', '1.00 K X')`` or ``('Mag', 500, 'X')``."""
    value = entry[1] if isinstance(entry, tuple) and len(entry) >= 2 else entry
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = _positive(value, "CZ_SEM AP_MAG", path)
        if number is not None:
            return number
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KM]?)\s*X\s*", str(value), flags=re.IGNORECASE)
    if match:
        number = _positive(float(match.group(1)), "CZ_SEM AP_MAG", path)
        if number is not None:
            return number * _MAG_SUFFIX[match.group(2).upper()]
    raise SceneFormatError(path, f"SEM metadata CZ_SEM AP_MAG is not a magnification: {entry!r}")


def _positive(value: Any, name: str, path: Path) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SceneFormatError(path, f"SEM metadata {name} is not a positive number: {value!r}")
    return float(value)
