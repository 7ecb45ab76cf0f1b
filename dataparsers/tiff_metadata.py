"""Magnification recorded inside SEM TIFF files, for frames whose manifest entry has no ``zoom``.

Supported (verified with files constructed in the tests): Thermo Fisher / FEI metadata (TIFF tags
34680 / 34682, parsed by ``tifffile`` into ``fei_metadata``). The horizontal field width
(``[Scan] HorFieldsize``, ``[EScan] HorFieldsize`` or ``[Beam] HFW``, in metres) is preferred,
giving magnification ``1 / width``; otherwise a ``Mag`` entry is used as it is. Only ratios
between frames matter, so the unit is irrelevant as long as a scene is consistent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .errors import SceneFormatError

_FIELD_WIDTH_KEYS: Tuple[Tuple[str, str], ...] = (("Scan", "HorFieldsize"), ("EScan", "HorFieldsize"), ("Beam", "HFW"))
_MAGNIFICATION_KEYS: Tuple[Tuple[str, str], ...] = (("EScan", "Mag"), ("Image", "Mag"), ("Scan", "Mag"))


def tiff_magnification(path: Path) -> Optional[float]:
    """Magnification recorded in ``path``'s SEM metadata, or ``None`` if it records none.

    Raises:
        SceneFormatError: the file is not a readable TIFF, or its metadata value is malformed.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            metadata = tiff.fei_metadata if tiff.is_fei else None
    except Exception as error:  # tifffile raises many types for corrupt files
        raise SceneFormatError(path, f"cannot read TIFF metadata ({error})") from error
    if not metadata:
        return None
    width = _lookup(metadata, _FIELD_WIDTH_KEYS, path)
    if width is not None:
        return 1.0 / width
    return _lookup(metadata, _MAGNIFICATION_KEYS, path)


def _lookup(metadata: Dict[str, Any], keys: Tuple[Tuple[str, str], ...], path: Path) -> Optional[float]:
    for section, key in keys:
        value = metadata.get(section, {}).get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SceneFormatError(path, f"SEM metadata [{section}] {key} is not a positive number: {value!r}")
        return float(value)
    return None
