"""The similarity between two sets of cameras of the same views, applying one, and the angle between rotations."""

from __future__ import annotations

from typing import Tuple

import numpy as np
from jaxtyping import Float

Similarity = Tuple[float, np.ndarray, np.ndarray]
"""(scale s, rotation R, translation t): x ↦ s R x + t."""


def sim3_alignment(
    learned_c2w: Float[np.ndarray, "N 3 4"], true_c2w: Float[np.ndarray, "N 3 4"]
) -> Tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) taking learned cameras onto true ones: R is the rotation closest to the
    mean of R_true_i · R_learned_iᵀ (chordal L2 mean, projected onto SO(3) by SVD), then s and t
    minimise Σ ||s R c_learned_i + t − c_true_i||² over camera centres for that R.

    Aligning the centres alone (Umeyama) is ill-conditioned for forward-facing rigs, whose centres
    are nearly coplanar and close together: their rotation is fixed by the orientations instead."""
    accumulated = sum(true[:3, :3] @ learned[:3, :3].T for learned, true in zip(learned_c2w, true_c2w))
    u, _, vt = np.linalg.svd(accumulated)
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    source, target = learned_c2w[:, :3, 3] @ rotation.T, true_c2w[:, :3, 3]
    xs, xt = source - source.mean(0), target - target.mean(0)
    spread = float((xs**2).sum())
    scale = max(float((xs * xt).sum()) / spread, 0.0) if spread > 1e-12 else 1.0  # coincident centres: no scale
    return scale, rotation, target.mean(0) - scale * source.mean(0)


def apply_similarity(alignment: Similarity, c2w: Float[np.ndarray, "*b 3 4"]) -> Float[np.ndarray, "*b 3 4"]:
    """Cameras ``c2w`` moved by the similarity (orientations turned, centres mapped)."""
    scale, rotation, shift = alignment
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[..., :3, :3] = rotation @ out[..., :3, :3]
    out[..., :3, 3] = scale * out[..., :3, 3] @ rotation.T + shift
    return out


def rotation_angles_deg(a: Float[np.ndarray, "N 3 3"], b: Float[np.ndarray, "N 3 3"]) -> Float[np.ndarray, " N"]:
    """Angle (deg) of the rotation between each a_i and b_i, from a_i^T b_i in double precision.

    Taken from the rotation's quaternion, not the arc-cosine of its trace: near zero the trace is
    3 - angle², so the rounding of single-precision cameras (the trained ones are float32) swamps
    angles under a few hundredths of a degree that way (0.01° read as 0.002°).
    """
    from scipy.spatial.transform import Rotation

    relative = np.einsum("nji,njk->nik", np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.degrees(Rotation.from_matrix(relative).magnitude())
