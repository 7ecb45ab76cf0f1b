"""Small image helpers shared by the position search and the verification."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float


def area_resize(image: Float[np.ndarray, "H W *C"], width: int, height: int) -> Float[np.ndarray, "h w *C"]:
    """``image`` resized to ``width`` × ``height`` by area averaging (OpenCV ``INTER_AREA``), keeping
    a channel axis when it has one, even a single channel."""
    import cv2

    width, height = max(1, width), max(1, height)
    if (width, height) == (image.shape[1], image.shape[0]):
        return image
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return resized.reshape((height, width) + image.shape[2:])


def gray(image: Float[np.ndarray, "H W *C"]) -> Float[np.ndarray, "H W"]:
    """The channel mean as float32 (the image itself when it has no channel axis)."""
    return image.mean(axis=-1).astype(np.float32) if image.ndim == 3 else image.astype(np.float32)


def image_ncc(first: Float[np.ndarray, "H W C"], second: Float[np.ndarray, "H W C"]) -> float:
    """Normalised cross-correlation of two same-sized images per channel, averaged; −1 where a
    channel of either is flat (nothing to compare)."""
    a = first.reshape(-1, first.shape[-1]).astype(np.float64)
    b = second.reshape(-1, second.shape[-1]).astype(np.float64)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    norms = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    if a.shape[0] < 2 or bool((norms < 1e-12).any()):
        return -1.0
    return float(((a * b).sum(axis=0) / norms).mean())
