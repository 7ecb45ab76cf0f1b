"""Is a zoom-in's error its own, or its wide view's? A finished run's training zoom-ins, each scored in
its own pixels, beside the error its root wide view (the wide view priming placed it from) makes at
the same true surface points, in wide pixels, times the zoom-in's true zoom relative to that view.

A ratio near 1 says the zoom-in sits exactly where its wide view puts that part of the scene: its
error is the wide view's, magnified by the zoom, and no placement of the zoom-in alone could remove
it. A zoom-in placed on the wrong part of the scene has a ratio far from 1. Beside them, the zoom's
error and the error of the camera's distance to the surface it sees (after the same alignment): a
view a few degrees wide barely tells a closer camera from a longer zoom, so the two move together.

Needs a scene with ground truth and ``gt_points`` (``mzen-make-scene``). Run from the folder the run's
``output_dir`` is relative to:

    python benchmarks/inherited_error.py outputs/SCENE/mzen/TIMESTAMP/config.yml
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from nerfstudio.utils.eval_utils import eval_setup

from mzen_ns.evaluation.reprojection import WRONG_FRACTION, own_pixel_errors
from mzen_ns.geometry.similarity import apply_similarity, sim3_alignment


@dataclass
class InheritedError:
    """Each training zoom-in's own-pixel error against its root wide view's, magnified by the zoom."""

    config: tyro.conf.Positional[Path]
    """The run's ``config.yml``."""


def main() -> None:
    args = tyro.cli(InheritedError)
    _, pipeline, _, _ = eval_setup(args.config, test_mode="test")
    cameras = pipeline.mzen_model.cameras
    truth = pipeline.datamanager.train_dataset.metadata["mzen_ground_truth"]
    if not truth.get("focal") or truth.get("points") is None:
        raise SystemExit(f"{args.config}: the scene has no gt_focal or gt_points to score against")
    wide = cameras.is_wide.cpu().numpy()
    c2w, fx = cameras.c2w().detach().cpu().numpy(), cameras.fx().detach().cpu().numpy()
    true_c2w = truth["c2w"].numpy()
    true_fx = truth["focal"] * truth["zoom"].numpy()
    principal = cameras.principal_points().cpu().numpy()
    alignment = sim3_alignment(c2w[wide], true_c2w[wide, :3])
    aligned = apply_similarity(alignment, c2w)
    zooms = cameras.zoom(cameras.zoom_index).detach().cpu().numpy()

    def errors(image: int, seen: np.ndarray) -> np.ndarray:
        pick = [image]
        return own_pixel_errors(
            c2w[pick],
            fx[pick],
            true_c2w[pick],
            true_fx[pick],
            principal[pick],
            float(cameras.aspect),
            [seen],
            alignment,
        )[0]

    print(
        "| image | dial | root wide view | own px (median) | root's error there, wide px | × zoom | inherited px "
        "| own / inherited | wrong | zoom err % | distance err % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k, image in enumerate(cameras.zoom_index.cpu().tolist()):
        seen = truth["points"][image]
        if seen is None or len(seen) == 0:
            continue
        seen = seen.numpy()
        root = int(cameras.match.root[image])
        if root < 0:  # never placed from a wide view
            continue
        own = float(np.median(errors(image, seen)))
        at_root = float(np.median(errors(root, seen)))
        zoom = float(true_fx[image] / true_fx[root])
        inherited = at_root * zoom
        ratio = own / inherited if inherited > 0 else float("inf")
        is_wrong = own > WRONG_FRACTION * cameras.width
        zoom_err = 100 * (zooms[k] / float(truth["zoom"][image]) - 1)
        centre = seen.mean(axis=0)
        distance = np.linalg.norm(aligned[image][:3, 3] - centre) / np.linalg.norm(true_c2w[image][:3, 3] - centre)
        print(
            f"| {image} | {float(cameras.dials[image]):g} | {root} | {own:.2f} | {at_root:.3f} | {zoom:.2f} | "
            f"{inherited:.2f} | {ratio:.2f} | {'yes' if is_wrong else 'no'} | {zoom_err:+.2f} | "
            f"{100 * (distance - 1):+.2f} |"
        )


if __name__ == "__main__":
    main()
