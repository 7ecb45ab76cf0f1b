"""How well a right placement can match: the window NCC the two images' noise allows.

A zoom-in's window NCC is never 1 on real frames: both the zoom-in, shrunk to its footprint, and the
source view carry pixel noise, and NCC falls with it. A fixed floor on the score would either flag
right placements in noisy frames (SEM) or pass wrong ones in clean frames. Measured against what the
noise allows, a right placement scores near 1 in both, and a zoom-in matched where it does not lie
scores well below.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from jaxtyping import Float
from torch import Tensor

# Difference of two discrete Laplacians: it cancels smooth structure (up to second order) and keeps
# pixel noise, whose standard deviation is the kernel's mean absolute response × sqrt(pi/2) / 6.
_LAPLACE_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def _grey(image: Float[Tensor, "H W 3"]) -> Float[np.ndarray, "H W"]:
    return image.detach().float().mean(-1).cpu().numpy()


def noise_sigma(image: Float[Tensor, "H W 3"]) -> float:
    """Standard deviation of the image's pixel noise (grey, in the image's units), by Immerkær's
    estimator ("Fast noise variance estimation", 1996): the mean absolute response to a kernel that
    cancels smooth structure. Fine texture counts as noise too, which only lowers the NCC the
    image is said to allow (the check then errs towards passing a placement)."""
    grey = _grey(image)
    height, width = grey.shape
    if height < 3 or width < 3:
        return 0.0
    response = cv2.filter2D(grey, -1, _LAPLACE_DIFFERENCE, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) * np.abs(response).mean() / 6)


def attainable_ncc(query: Float[Tensor, "H W 3"], source: Float[Tensor, "H W 3"], relative_zoom: float) -> float:
    """The NCC of ``query`` against its window in ``source`` (``relative_zoom``× wider) were the
    placement exact and the two differed by their noise alone: the zoom-in shrunk to its footprint
    (its noise shrinks by the zoom) has signal variance v; each image's noise variance n lowers the
    NCC by sqrt(v / (v + n))."""
    height, width = query.shape[:2]
    zoom = max(float(relative_zoom), 1.0)
    footprint = (max(2, round(width / zoom)), max(2, round(height / zoom)))
    shrunk = cv2.resize(_grey(query), footprint, interpolation=cv2.INTER_AREA)
    query_noise = noise_sigma(query) / zoom
    signal = float(shrunk.var()) - query_noise**2
    if signal <= 0:
        return 0.0
    source_noise = noise_sigma(source)
    return math.sqrt(signal / (signal + source_noise**2)) * math.sqrt(signal / (signal + query_noise**2))
