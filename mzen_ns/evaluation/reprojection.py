"""The camera error that decides whether an image's detail can be sharp: where true surface points
land in the image through its learned camera against its true one, in that image's own pixels.

A zoom-in's narrow field of view trades a turn for a sideways shift, so its rotation error in
degrees says little about how far its content is misplaced; its own pixels do. The learned cameras
are first carried into the ground truth's frame by a similarity fitted to the wide views alone
(:func:`~mzen_ns.geometry.similarity.sim3_alignment`), so a zoom-in's error is its own and not the
alignment's. The points are the scene's ``gt_points`` (surface points each frame sees).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from jaxtyping import Float

from mzen_ns.evaluation.keys import level_key
from mzen_ns.geometry.similarity import Similarity, apply_similarity

MAX_ERROR_PX = 1e6
"""Error given to a point behind the learned camera (finite, so results stay valid JSON)."""
WRONG_FRACTION = 0.25
"""An image whose median error exceeds this fraction of the image width shows another part of the scene."""


def project(
    c2w: Float[np.ndarray, "3 4"], fx: float, fy: float, principal: Sequence[float], points: Float[np.ndarray, "P 3"]
) -> Tuple[Float[np.ndarray, "P 2"], Float[np.ndarray, " P"]]:
    """Pixel positions (x right, y down) and depths of world ``points`` in an OpenGL camera."""
    local = (np.asarray(points, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]
    depth = -local[:, 2]
    safe = np.where(depth > 1e-9, depth, 1.0)
    pixels = np.stack([principal[0] + fx * local[:, 0] / safe, principal[1] - fy * local[:, 1] / safe], axis=-1)
    return pixels, depth


def own_pixel_errors(
    learned_c2w: Float[np.ndarray, "N 3 4"],
    learned_fx: Float[np.ndarray, " N"],
    true_c2w: Float[np.ndarray, "N 4 4"],
    true_fx: Float[np.ndarray, " N"],
    principal: Float[np.ndarray, "N 2"],
    aspect: float,
    points: Sequence[Optional[Float[np.ndarray, "P 3"]]],
    alignment: Similarity,
) -> List[Float[np.ndarray, " P"]]:
    """Per image, each of its true surface ``points``' distance (pixels) between where the true
    camera and the learned camera moved by ``alignment`` see it; empty where the image has no
    points or no truth."""
    learned = apply_similarity(alignment, learned_c2w)
    errors = []
    for i, seen in enumerate(points):
        if seen is None or len(seen) == 0 or not np.isfinite(true_c2w[i]).all() or not np.isfinite(true_fx[i]):
            errors.append(np.zeros(0))
            continue
        truth, _ = project(true_c2w[i], true_fx[i], true_fx[i] * aspect, principal[i], seen)
        guess, depth = project(learned[i], learned_fx[i], learned_fx[i] * aspect, principal[i], seen)
        distance = np.linalg.norm(guess - truth, axis=-1)
        errors.append(np.where(depth > 1e-9, np.minimum(distance, MAX_ERROR_PX), MAX_ERROR_PX))
    return errors


def level_errors(errors: Sequence[np.ndarray], dials: Sequence[float], name: str = "reproj_px") -> Dict[str, float]:
    """Per level ``<name>_<z>x`` (median over every point of the level's images) and
    ``<name>_<z>x_p90`` (90th percentile); levels without points are left out."""
    results: Dict[str, float] = {}
    for dial in sorted(set(float(d) for d in dials)):
        pooled = [e for e, d in zip(errors, dials) if float(d) == dial and len(e)]
        if pooled:
            values = np.concatenate(pooled)
            results[level_key(name, dial)] = float(np.median(values))
            results[f"{level_key(name, dial)}_p90"] = float(np.percentile(values, 90))
    return results


def wrong(errors: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Per image, whether it shows another part of the scene (median error over
    :data:`WRONG_FRACTION` of the width); False where it has no points."""
    return np.array([len(e) > 0 and float(np.median(e)) > WRONG_FRACTION * width for e in errors], dtype=bool)
