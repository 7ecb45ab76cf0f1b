"""Do registered zoom-ins pin the wide cameras? COLMAP's model of the wide views (what a run starts
from) against the joint model — the wide views and every zoom-in copy COLMAP registered against
them — bundle-adjusted again with every pose free, the wide views' shared focal free, and each
zoom-in's focal free (as COLMAP frees it) or held at the wide focal × its dial at registration.
Wide pairwise rotation error and focal error against the truth; no training.

    python benchmarks/joint_adjustment.py SCENE [SCENE ...]      # folders with gt_* fields
    python benchmarks/joint_adjustment.py --family 128x96 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np

from mzen_ns.evaluation.alignment import pairwise_rotation_error
from mzen_ns.geometry import sfm
from mzen_ns.geometry.solution import cv_pose_to_gl
from mzen_ns.synthetic.truth import FAMILIES, make, wide_truth, zoom_in_truth

WAYS = ("wide views", "joint, zoom-in focal free", "joint, zoom-in focal held")


class KeptModel(dict):
    """A copy of the joint model the solver places the zoom-ins from (:func:`sfm.solve_sfm`'s ``inspect``)."""

    def __call__(self, reconstruction, wide_names: List[str], names: List[str]) -> None:
        import pycolmap

        self.update(model=pycolmap.Reconstruction(reconstruction), wide_names=wide_names)


def wide_cameras(reconstruction, wide_names: List[str]):
    """(camera-to-world per wide view, NaN where not posed; the wide views' focal) of a model."""
    c2w = np.full((len(wide_names), 3, 4), np.nan)
    for image in reconstruction.images.values():
        if image.has_pose and image.name in wide_names:
            c2w[wide_names.index(image.name)] = cv_pose_to_gl(image.cam_from_world().inverse().matrix())
    return c2w, reconstruction.cameras[sfm.wide_camera(reconstruction, wide_names)].focal_length


def adjusted(reconstruction, wide_names: List[str], zoom_in_focal_free: bool):
    """A copy of ``reconstruction`` bundle-adjusted with every registered image's pose free, the
    wide camera's focal free and the zoom-in cameras' focal free or held."""
    import pycolmap

    copy = pycolmap.Reconstruction(reconstruction)
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in copy.reg_image_ids():
        config.add_image(image_id)
    wide = sfm.wide_camera(copy, wide_names)
    for camera_id in copy.cameras:
        if camera_id != wide and not zoom_in_focal_free:
            config.set_constant_cam_intrinsics(camera_id)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.THREE_POINTS)
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = True
    options.refine_principal_point = False
    options.refine_extra_params = False
    pycolmap.create_default_bundle_adjuster(options, config, copy).solve()
    return copy


def scene_row(scene: Path) -> Dict[str, object]:
    """Per way: (pairwise rotation error °, focal error %); and how many zoom-in copies registered."""
    paths, true, true_focal, _ = wide_truth(scene)
    queries = zoom_in_truth(scene)[0]
    kept = KeptModel()
    solution = sfm.solve_sfm(paths, zoom_ins=queries, inspect=kept)
    if solution.c2w is None or "model" not in kept:
        return {"registered": 0}
    model, wide_names = kept["model"], kept["wide_names"]
    row: Dict[str, object] = {
        "registered": sum(1 for i in model.images.values() if i.has_pose and i.name not in wide_names),
        "zoom-ins": len(queries),
    }
    answers = {"wide views": (solution.c2w, solution.focal)}
    answers["joint, zoom-in focal free"] = wide_cameras(adjusted(model, wide_names, True), wide_names)
    answers["joint, zoom-in focal held"] = wide_cameras(adjusted(model, wide_names, False), wide_names)
    for way, (c2w, focal) in answers.items():
        posed = np.isfinite(c2w).all(axis=(1, 2))
        row[way] = (pairwise_rotation_error(c2w[posed], true[posed]), 100 * abs(focal - true_focal) / true_focal)
    return row


def print_row(name: str, row: Dict[str, object]) -> None:
    cells = [f"{row[way][0]:.3f} / {row[way][1]:.2f}" if way in row else "—" for way in WAYS]
    print(f"| {name} | {row['registered']} of {row.get('zoom-ins', '?')} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenes", type=Path, nargs="*", help="scene folders (manifests with gt_* fields)")
    parser.add_argument("--family", default=None, choices=list(FAMILIES), help="make scenes of this family instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print("Wide views: pairwise rotation error ° / focal error %")
    print("| scene | zoom-in copies registered | " + " | ".join(WAYS) + " |")
    print("|" + "---|" * (len(WAYS) + 2))
    for scene in args.scenes:
        print_row(scene.name, scene_row(scene))
    if args.family is not None:
        with tempfile.TemporaryDirectory() as folder:
            for seed in args.seeds:
                scene = make(Path(folder) / f"{args.family}-{seed}", FAMILIES[args.family], seed)
                print_row(f"{args.family}, seed {seed}", scene_row(scene))


if __name__ == "__main__":
    main()
