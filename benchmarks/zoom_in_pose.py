"""What limits the rotation of zoom-ins placed by structure from motion: the zoom, the camera's
position, or the 3D points?

A run places each training zoom-in against COLMAP's model of the wide views (its pose from 2D–3D
matches, the zoom fitted with the centre at the nearest wide view's, then the pose refitted; see
:mod:`mzen_ns.geometry.sfm`). This benchmark takes the same matches and refits each zoom-in's pose
four ways, reporting the rotation relative to the wide view it was taken from against the truth,
per level (mean and worst):

- ``placed``: what a run starts from;
- ``true zoom``: pose refitted freely with the focal at the true zoom — if this is no better, the
  zoom error does not limit the rotation;
- ``centre held``: orientation and zoom fitted with the optical centre held at the wide view's
  (the assumption the window search makes) — what the zoom-in's small drift from that centre costs;
- ``wide points``: pose at the placed zoom from only the 3D points that two or more wide views
  triangulated (zoom-ins the wide views resolve too little for are skipped) — whether the points
  the zoom-ins triangulated themselves pull the pose.

With ``--focal-prior S`` the scene's focal is given as S × the true focal (as the ladder gives a
manifest's focal): held where the wide views do not pin one, else unused.

    python benchmarks/zoom_in_pose.py --seeds 0 1 2 [--focal-prior 1.0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from mzen_ns.evaluation.alignment import relative_rotation_error
from mzen_ns.geometry import sfm
from mzen_ns.geometry.solution import cv_pose_to_gl
from mzen_ns.synthetic.truth import FAMILIES, make, wide_truth, zoom_in_truth

WAYS = ("placed", "true zoom", "centre held", "wide points")
MIN_POINTS = 12
"""Fewest wide-triangulated points a ``wide points`` refit is made from."""


class KeptModel(dict):
    """The joint model the solver places the zoom-ins from, kept by :func:`sfm.solve_sfm`'s ``inspect``."""

    def __call__(self, reconstruction, wide_names: List[str], names: List[str]) -> None:
        self.update(model=reconstruction, wide_names=wide_names, names=names)


def gl_c2w(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """nerfstudio camera-to-world of an OpenCV camera-from-world rotation and an optical centre."""
    return cv_pose_to_gl(np.column_stack([rotation.T, centre]))


def refits(model, image, wide_names: List[str], placed_zoom: float, true_zoom: float, parent_centre) -> Dict:
    """(rotation, centre) of the zoom-in ``image`` per refit that can be made (all but ``placed``)."""
    pixels, points = sfm.correspondences(model, image)
    unit = np.ones(len(points))  # matches found at the zoom-in's own size
    camera = model.cameras[image.camera_id]
    principal = np.array([camera.principal_point_x, camera.principal_point_y])
    start = image.cam_from_world().matrix()
    wide_focal = model.cameras[sfm.wide_camera(model, wide_names)].focal_length
    out = {}
    out["true zoom"], _ = sfm.refit_pose(pixels, points, unit, start, wide_focal * true_zoom, principal)
    _, turned = sfm.focal_from_centre(pixels, points, unit, parent_centre, start[:, :3], camera.focal_length, principal)
    out["centre held"] = np.column_stack([turned, -turned @ parent_centre])
    wide_ids = {i.image_id for i in model.images.values() if i.name in wide_names}
    seen = [
        k
        for k, p in enumerate(p for p in image.points2D if p.has_point3D())
        if sum(e.image_id in wide_ids for e in model.points3D[p.point3D_id].track.elements) >= 2
    ]
    if len(seen) >= MIN_POINTS:
        out["wide points"], _ = sfm.refit_pose(
            pixels[seen], points[seen], unit[seen], start, wide_focal * placed_zoom, principal
        )
    return {way: (pose[:, :3], -pose[:, :3].T @ pose[:, 3]) for way, pose in out.items()}


def scene_rows(scene: Path, focal_prior: Optional[float] = None) -> List[Tuple[float, Dict[str, List[float]]]]:
    """Per level: each way's rotation errors over the training zoom-ins the run placed; ``focal_prior``
    × the true focal given as the scene's focal when given."""
    paths, wide_true, true_focal, _ = wide_truth(scene)
    queries, true, true_zoom, parent = zoom_in_truth(scene)
    prior = {}
    if focal_prior is not None:
        height, width = cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE).shape
        prior = {"focal_prior": focal_prior * true_focal, "principal_point": (width / 2.0, height / 2.0)}
    kept = KeptModel()
    solution = sfm.solve_sfm(paths, zoom_ins=queries, inspect=kept, **prior)
    if solution.c2w is None or "model" not in kept:
        return []
    model, wide_names, names, placed = kept["model"], kept["wide_names"], kept["names"], solution.zoom_ins
    centres = {wide_names.index(i.name): i.projection_center() for i in model.images.values() if i.name in wide_names}
    by_level: Dict[float, Dict[str, List[float]]] = {}
    for image in model.images.values():
        k = names.index(image.name) if image.name in names else -1
        if k < 0 or not placed.found[k] or parent[k] not in centres:  # placed by the run, parent known
            continue
        poses = {"placed": placed.c2w[k]}
        fitted = refits(model, image, wide_names, placed.zoom[k], true_zoom[k], centres[parent[k]])
        poses.update({way: gl_c2w(rotation, centre) for way, (rotation, centre) in fitted.items()})
        angles = by_level.setdefault(queries[k][1], {way: [] for way in WAYS})
        for way, c2w in poses.items():
            learned, truth = np.stack([solution.c2w[parent[k]], c2w]), np.stack([wide_true[parent[k]], true[k]])
            angles[way].append(relative_rotation_error(learned, truth, [(0, 1)]))
    return sorted(by_level.items())


def cell(values: List[float]) -> str:
    return f"{np.mean(values):.3f} ({np.max(values):.3f}), {len(values)}" if values else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variant", default="512x384", choices=list(FAMILIES))
    parser.add_argument("--focal-prior", type=float, default=None, help="start COLMAP from this × the true focal")
    args = parser.parse_args()
    prior = "" if args.focal_prior is None else f", focal prior {args.focal_prior:g} × the true focal"
    print(f"Zoom-in rotation relative to its wide view, degrees: mean (worst), zoom-ins — {args.variant}{prior}")
    print("| seed | level | " + " | ".join(WAYS) + " |")
    print("|" + "---|" * (len(WAYS) + 2))
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            scene = make(Path(folder) / f"{args.variant}-{seed}", FAMILIES[args.variant], seed)
            for level, angles in scene_rows(scene, args.focal_prior):
                print(f"| {seed} | {level:g}× | " + " | ".join(cell(angles[way]) for way in WAYS) + " |", flush=True)


if __name__ == "__main__":
    main()
