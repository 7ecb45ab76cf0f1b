"""What a wide-view solver returns, and the one conversion from OpenCV/COLMAP camera axes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Literal, Optional

import numpy as np
from jaxtyping import Bool, Float, Int
from typing_extensions import assert_never

Frame = Literal["content", "camera"]
"""The world frame a run trains in: the content's (centred for the contraction) or the reference camera's (NDC)."""

CONTENT_FILL = 0.5
"""The content frame puts 95% of the sparse points within this fraction of the contraction radius."""

Rung = Literal["sfm", "rotation"]
"""A geometric solver of the ladder (``identity`` is the photometric fallback, not a solver)."""

Init = Literal["auto", "sfm", "rotation", "identity"]
"""The initialiser asked for: a solver, the photometric ``identity`` start, or ``auto`` (best by evidence)."""
Start = Literal["sfm", "rotation", "identity"]
"""Where wide cameras started."""
IDENTITY_ASKED = "asked for (pose-free photometric start)"
"""Why the cameras start at identity when ``init`` is ``identity``."""
GIVEN = {"start": "given", "reason": "poses given (pose priors or the oracle's ground truth)"}
"""The start record of cameras whose poses the run was given."""
GIVEN_BY_CHECKPOINT = {"start": "given", "reason": "loaded from a checkpoint that records no start"}
"""The start record of trained cameras from a checkpoint that kept none (never solved again)."""
GEOMETRIC = ("sfm", "rotation")
"""The starts that come from image geometry."""

CV_TO_GL = np.diag([1.0, -1.0, -1.0])
"""OpenCV/COLMAP camera axes (``y`` down, looking down ``+z``) to nerfstudio's (``y`` up, ``-z``)."""


@dataclass
class PlacedViews:
    """Views placed against a model of the wide views: pose, zoom, nearest wide view, support."""

    c2w: Float[np.ndarray, "Z 3 4"]
    """Camera-to-world per view (nerfstudio axes); NaN rows: not placed."""
    zoom: Float[np.ndarray, " Z"]
    """Focal over the wide views' shared focal (1 for a wide view); NaN where not placed."""
    source: Int[np.ndarray, " Z"]
    """The wide view whose optical centre is nearest (an index into the solver's wide images); −1 where not placed."""
    inliers: Int[np.ndarray, " Z"]
    """2D–3D correspondences a zoom-in's pose rests on (0 for wide views and views not placed)."""

    @classmethod
    def unplaced(cls, count: int) -> "PlacedViews":
        """``count`` views, none placed."""
        return cls(np.full((count, 3, 4), np.nan), np.full(count, np.nan), np.full(count, -1), np.zeros(count, int))

    @property
    def found(self) -> Bool[np.ndarray, " Z"]:
        """Which views were placed."""
        return np.isfinite(self.c2w).all(axis=(1, 2))


@dataclass
class WideSolution:
    """One solver's answer for the wide views, with the evidence to judge it by."""

    rung: Rung
    """The solver that produced it."""
    c2w: Optional[Float[np.ndarray, "K 3 4"]]
    """Camera-to-world per wide view, nerfstudio axes; ``None`` when the solver failed outright."""
    focal: float
    """Shared focal length in pixels of the native images; NaN when failed."""
    points: Float[np.ndarray, "P 3"] = field(default_factory=lambda: np.zeros((0, 3)))
    """Sparse 3D points in the solution's frame (none for the rotation-only model)."""
    evidence: Dict[str, float] = field(default_factory=dict)
    """Numbers the choice reads: registered views, residuals, point count, triangulation angle."""
    failure: Optional[str] = None
    """Why the solver produced nothing (an exception's message), else ``None``."""
    seconds: float = 0.0
    """Wall time of the solver."""
    zoom_ins: Optional[PlacedViews] = None
    """Zoom-ins registered against the model, when the solver was given any (structure from motion only)."""


def cv_pose_to_gl(c2w_cv: Float[np.ndarray, "*b 3 4"]) -> Float[np.ndarray, "*b 3 4"]:
    """A camera-to-world pose with OpenCV camera axes, in nerfstudio's camera axes."""
    out = np.array(c2w_cv, dtype=np.float64, copy=True)
    out[..., :3, :3] = out[..., :3, :3] @ CV_TO_GL
    return out


@dataclass(frozen=True)
class WorldFrame:
    """A similarity into the world frame mzen trains in: axes turned by ``rotation`` about the
    reference camera's centre ``centre``, then shifted by ``-origin`` and scaled by ``scale``."""

    rotation: Float[np.ndarray, "3 3"]
    centre: Float[np.ndarray, "3"]
    origin: Float[np.ndarray, "3"]
    scale: float

    def points(self, points: Float[np.ndarray, "P 3"]) -> Float[np.ndarray, "P 3"]:
        """``points`` in this frame."""
        return ((points - self.centre) @ self.rotation.T - self.origin) * self.scale

    def cameras(self, c2w: Float[np.ndarray, "K 3 4"]) -> Float[np.ndarray, "K 3 4"]:
        """Camera-to-world poses ``c2w`` in this frame."""
        moved = np.einsum("ij,kjl->kil", self.rotation, c2w[:, :3, :])
        moved[:, :, 3] = self.points(c2w[:, :3, 3])
        return moved


def choose_world_frame(
    reference: Float[np.ndarray, "3 4"], points: Float[np.ndarray, "P 3"], frame: Frame, contraction_radius: float
) -> WorldFrame:
    """The world frame for cameras whose first view is ``reference`` and that see ``points``.

    Axes are always the reference view's. ``camera``: that view at the origin and the median point
    depth at 1 (what NDC needs). ``content``: the origin at the points' median and 95% of them within
    :data:`CONTENT_FILL` of ``contraction_radius`` (L∞, as nerfacto contracts). Without points the
    reference view's centre is the origin, unscaled, in either frame.
    """
    rotation = reference[:, :3].T  # world axes := the reference view's
    turned = WorldFrame(rotation, reference[:, 3], np.zeros(3), 1.0)
    if len(points) == 0:
        return turned
    seen = turned.points(points)
    if frame == "camera":
        return WorldFrame(rotation, reference[:, 3], np.zeros(3), 1.0 / float(np.median(-seen[:, 2])))
    if frame == "content":
        origin = np.median(seen, axis=0)
        spread = float(np.percentile(np.abs(seen - origin).max(axis=1), 95))
        return WorldFrame(rotation, reference[:, 3], origin, CONTENT_FILL * contraction_radius / spread)
    assert_never(frame)
