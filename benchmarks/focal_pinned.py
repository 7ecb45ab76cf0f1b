"""Do a scene's wide views pin the focal, and what does a given focal do where they do not?

For each scene: COLMAP on the training wide views with no focal given (the focal it finds, and
``focal_rise``: how much its mean reprojection error rises, on average, when the focal is held 10%
off either way and the model adjusted again), then with the true focal given, and with it given
5% long: whether the run would hold it (``focal_given_held``), the focal it ends at, the pairwise
rotation error and the views' median error in their own pixels (true surface points through the
solved and the true cameras, after the similarity between them). Scenes from the scene maker
(relief, a plane; any size), or folders given with ``--scenes`` (any scene with ``gt_focal``,
``gt_transform_matrix`` and ``gt_points``, e.g. ``real_photos.py``'s).

    python benchmarks/focal_pinned.py --seeds 32 33 34 35 --output /tmp/fp
    python benchmarks/focal_pinned.py --scenes bench/real/scene_0 bench/real/scene_1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from mzen_ns.evaluation.alignment import pairwise_rotation_error
from mzen_ns.evaluation.reprojection import own_pixel_errors
from mzen_ns.geometry.sfm import FOCAL_PINNED_RISE, solve_sfm
from mzen_ns.geometry.similarity import sim3_alignment

FAMILIES: Dict[str, Dict[str, float]] = {"relief": {}, "plane": {"relief": 0.0}}
"""Scene-maker families: the scene maker's arguments beyond the seed."""


def training_wides(scene: Path):
    """Paths, true camera-to-world (3×4), true focal, principal point and surface points of a scene's
    training wide views."""
    manifest = json.loads((scene / "transforms.json").read_text())
    frames = [f for f in manifest["frames"] if f.get("split", "train") == "train" and f.get("zoom", 1.0) == 1.0]
    true = np.array([f["gt_transform_matrix"] for f in frames])[:, :3]
    centre = (manifest["w"] / 2.0, manifest["h"] / 2.0)
    points = [np.asarray(f["gt_points"]) if f.get("gt_points") else None for f in frames]
    return [scene / f["file_path"] for f in frames], true, float(manifest["gt_focal"]), centre, points


def errors(solution, true, focal: float, centre, points) -> str:
    """Pairwise rotation error and the median own-pixel error of the views, after the similarity
    taking the solution's cameras onto the true ones."""
    count = len(true)
    own = own_pixel_errors(
        solution.c2w,
        np.full(count, solution.focal),
        true,
        np.full(count, focal),
        np.tile(centre, (count, 1)),
        1.0,
        points,
        sim3_alignment(solution.c2w, true),
    )
    pooled = np.concatenate([e for e in own if len(e)]) if any(len(e) for e in own) else np.full(1, np.nan)
    return f"{pairwise_rotation_error(solution.c2w, true):.3f}°, {np.median(pooled):.2f} px"


def measure(name: str, scene: Path) -> str:
    """One table row for ``scene``."""
    paths, true, focal, centre, points = training_wides(scene)
    free = solve_sfm(paths)
    if free.c2w is None:
        return f"| {name} | {free.failure} | | | | |"
    cells = [name, f"{100 * free.evidence['focal_rise']:.2f}%", f"{100 * (free.focal / focal - 1):+.1f}%"]
    cells.append(errors(free, true, focal, centre, points))
    for given in (focal, 1.05 * focal):
        solution = solve_sfm(paths, given, centre)
        if solution.c2w is None:
            cells.append(str(solution.failure))
            continue
        held = "held" if solution.evidence["focal_given_held"] else "not used"
        cells.append(
            f"{held}, {100 * (solution.focal / focal - 1):+.1f}%, {errors(solution, true, focal, centre, points)}"
        )
    return "| " + " | ".join(cells) + " |"


def made_scenes(seeds: Sequence[int], output: Path, width: int, height: int) -> List[tuple]:
    """(name, folder) of each family's scene per seed, made under ``output``."""
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    scenes = []
    for family, extra in FAMILIES.items():
        for seed in seeds:
            folder = output / f"{family}_{width}x{height}_{seed}"
            if not (folder / "transforms.json").is_file():
                make_scene(
                    SceneMakerConfig(
                        output=folder, zooms=(1.0,), n_zoom=0, n_test=0, seed=seed, width=width, height=height, **extra
                    )
                )
            scenes.append((f"{family} {width}×{height}, seed {seed}", folder))
    return scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--output", type=Path, default=Path("bench/focal_pinned"))
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--scenes", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    scenes = made_scenes(args.seeds, args.output, args.width, args.height) + [(str(s), s) for s in args.scenes]
    print(f"focal pinned where the rise is ≥ {100 * FOCAL_PINNED_RISE:.0f}%")
    print("| scene | focal rise | COLMAP's focal | pairwise, own px | true focal given | given 5% long |")
    print("|---|---|---|---|---|---|")
    for name, folder in scenes:
        print(measure(name, folder), flush=True)


if __name__ == "__main__":
    main()
