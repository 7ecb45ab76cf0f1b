"""The one naming rule of per-level result keys: ``psnr`` at dial 16 is ``psnr_16x``."""

from __future__ import annotations

from typing import Iterable, List


def level_key(name: str, dial: float) -> str:
    """``psnr`` at dial 16 → ``psnr_16x`` (the normalised dial formatted with ``%g``)."""
    return f"{name}_{dial:g}x"


def level_dials(keys: Iterable[str], name: str = "psnr") -> List[float]:
    """The zoom levels present among result ``keys`` (from their ``<name>_<z>x`` keys), ascending."""
    prefix = f"{name}_"
    return sorted(float(key[len(prefix) : -1]) for key in keys if key.startswith(prefix) and key.endswith("x"))
