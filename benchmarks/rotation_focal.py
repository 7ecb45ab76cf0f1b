"""What limits the rotation-only model on stage drift: the focal, or the model itself?

On stage-drift scenes (``mzen-make-scene --baseline 0.001 --variant sem``) the rotation rung's
focal can be a few per cent off. This benchmark takes the rung's matches and OpenCV's first
estimate, then adjusts the rotations (view 0 fixed, Huber loss) with the shared focal held at
OpenCV's value, at the true focal, and at the true focal ±2 %, and reports each answer's pairwise
rotation error against the truth and the matches' RMS residual. If the rotations at the true focal
are far better while the residual barely moves, the focal limits the rotations and the residual
cannot tell a right focal from a wrong one; what is left at the true focal is the model's own error
(the stage's small drift and axial motion, which a rotation about one centre cannot explain).

    python benchmarks/rotation_focal.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from mzen_ns.evaluation.alignment import pairwise_rotation_error
from mzen_ns.geometry import rotation as rotation_model
from mzen_ns.synthetic.truth import FAMILIES, make, wide_truth

FOCAL_SCALES = {"OpenCV's": None, "true": 1.0, "true +2%": 1.02, "true −2%": 0.98}
"""Focal each adjustment holds: OpenCV's median (``None``, what the rung uses) or a multiple of the truth."""


def adjust(rotations: np.ndarray, focal: float, centre: np.ndarray, pairs) -> tuple:
    """Rotations (OpenCV camera-to-world) minimising the rotation-only transfer error at ``focal``."""

    def unpack(x: np.ndarray) -> np.ndarray:
        return np.concatenate([rotations[:1], Rotation.from_rotvec(x.reshape(-1, 3)).as_matrix()])

    def residuals(x: np.ndarray) -> np.ndarray:
        return rotation_model.transfer_residuals(unpack(x), focal, centre, pairs)

    fit = least_squares(residuals, Rotation.from_matrix(rotations[1:]).as_rotvec().reshape(-1), loss="huber")
    return unpack(fit.x), float(np.sqrt(np.mean(fit.fun**2)))


def rows(scene: Path) -> List[Dict[str, float]]:
    """One row per held focal: focal error, pairwise rotation error, residual."""
    paths, true, true_focal, _ = wide_truth(scene)
    start = rotation_model.opencv_start(paths)  # the rung's own matches and OpenCV's estimate
    if isinstance(start, str):
        return []
    rotations, opencv_focal, centre, pairs = start.rotations, start.focal, start.centre, start.pairs
    out = []
    for label, scale in FOCAL_SCALES.items():
        focal = opencv_focal if scale is None else scale * true_focal
        adjusted, rms = adjust(rotations, focal, centre, pairs)
        out.append(
            {
                "focal": label,
                "focal_err": 100.0 * abs(focal / true_focal - 1.0),
                "pairwise": pairwise_rotation_error(rotation_model.rotation_poses(adjusted), true),
                "rms": rms,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print("| seed | focal held | focal err % | pairwise ° | residual px RMS |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            scene = make(Path(tmp) / f"drift-{seed}", FAMILIES["drift-256x192"], seed)
            for row in rows(scene):
                print(
                    f"| {seed} | {row['focal']} | {row['focal_err']:.2f} | {row['pairwise']:.4f} | {row['rms']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
