"""Do shrunk copies register more zoom-ins by 2D–3D matches? Each scene's training zoom-ins are
registered against COLMAP's model of its wide views (as a run's geometric start places them) at
their own size only, and then also as copies shrunk to look like shallower levels
(:func:`~mzen_ns.geometry.sfm.solve_sfm`'s ``shrunk_copies``). Per scene family and level, summed
over the seeds: zoom-ins placed each way, and for the ones placed with copies their error in their
own pixels (median of each zoom-in's median, worst) after the similarity fitted to the wide views,
their zoom error (mean) and the solver's seconds (both levels).

    python benchmarks/zoom_in_scales.py --seeds 5 6 7
    python benchmarks/zoom_in_scales.py --seeds 5 --families faint apart
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import tyro

from mzen_ns.evaluation.reprojection import own_pixel_errors
from mzen_ns.geometry.sfm import solve_sfm
from mzen_ns.geometry.similarity import sim3_alignment
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

FAMILIES: Dict[str, Dict[str, object]] = {
    "default": {},
    "faint": {"detail_contrast": 0.05},
    "faint-nested": {"detail_contrast": 0.05, "nested": True},
    "apart": {"apart": True},
    "off-axis": {"off_axis": 0.5},
}
"""Scene-maker settings of each family, at 512×384 with 9 wide views and 4 zoom-ins per level."""


@dataclass
class ZoomInScales:
    """Zoom-ins placed by 2D–3D matches at their own size, and with shrunk copies."""

    seeds: Tuple[int, ...] = (5, 6, 7)
    """Scene-maker seeds."""
    families: Tuple[str, ...] = tuple(FAMILIES)
    """Scene families (see FAMILIES)."""
    width: int = 512
    """Image width (height is three quarters)."""


Placed = Dict[float, List[Tuple[float, float]]]
"""Per level: (own-pixel median, zoom error %) of each placed zoom-in."""


def placements(scene: Path, shrunk_copies: bool) -> Tuple[Placed, Dict[float, int], float]:
    """Per level: (own-pixel median, zoom error %) of each placed zoom-in; zoom-ins per level; seconds."""
    manifest = json.loads((scene / "transforms.json").read_text())
    frames = [f for f in manifest["frames"] if f.get("split", "train") == "train"]
    wides = [f for f in frames if f["zoom"] == 1.0]
    zoom_ins = [f for f in frames if f["zoom"] != 1.0]
    started = time.perf_counter()
    solution = solve_sfm(
        [scene / f["file_path"] for f in wides],
        zoom_ins=[(scene / f["file_path"], f["zoom"]) for f in zoom_ins],
        shrunk_copies=shrunk_copies,
    )
    seconds = time.perf_counter() - started
    counts: Dict[float, int] = {}
    for f in zoom_ins:
        counts[f["zoom"]] = counts.get(f["zoom"], 0) + 1
    rows: Placed = {level: [] for level in counts}
    if solution.c2w is None or solution.zoom_ins is None:
        return rows, counts, seconds
    placed = solution.zoom_ins
    found = np.flatnonzero(placed.found)
    alignment = sim3_alignment(solution.c2w, np.array([f["gt_transform_matrix"] for f in wides])[:, :3])
    errors = own_pixel_errors(
        placed.c2w[found],
        placed.zoom[found] * solution.focal,
        np.array([zoom_ins[k]["gt_transform_matrix"] for k in found]).reshape(-1, 4, 4),
        np.array([zoom_ins[k]["gt_zoom"] * manifest["gt_focal"] for k in found]),
        np.tile([[manifest["w"] / 2.0, manifest["h"] / 2.0]], (len(found), 1)),
        1.0,
        [np.array(zoom_ins[k]["gt_points"]) for k in found],
        alignment,
    )
    for k, error in zip(found, errors):
        zoom_error = 100.0 * abs(placed.zoom[k] / zoom_ins[k]["gt_zoom"] - 1.0)
        rows[zoom_ins[k]["zoom"]].append((float(np.median(error)), zoom_error))
    return rows, counts, seconds


def main(config: ZoomInScales) -> None:
    print("| scene | level | placed, own size | placed, with copies | own px (worst) | zoom err | s (own / copies) |")
    print("|---|---|---|---|---|---|---|")
    base = SceneMakerConfig(output=Path(), width=config.width, height=config.width * 3 // 4)
    with tempfile.TemporaryDirectory() as folder:
        for family in config.families:
            pooled: Dict[bool, Placed] = {False: {}, True: {}}
            totals: Dict[float, int] = {}
            seconds = {False: 0.0, True: 0.0}
            for seed in config.seeds:
                scene = Path(folder) / f"{family}-{seed}"
                make_scene(replace(base, output=scene, seed=seed, **FAMILIES[family]))
                for copies in (False, True):
                    rows, counts, spent = placements(scene, copies)
                    seconds[copies] += spent
                    for level, placed in rows.items():
                        pooled[copies].setdefault(level, []).extend(placed)
                        if copies:
                            totals[level] = totals.get(level, 0) + counts[level]
            for level in sorted(totals):
                own, withc = pooled[False][level], pooled[True][level]
                px = [p for p, _ in withc]
                cell = f"{np.median(px):.2f} ({max(px):.2f})" if px else "—"
                zoom = f"{np.mean([z for _, z in withc]):.2f}%" if withc else "—"
                print(
                    f"| {family} | {level:g}× | {len(own)}/{totals[level]} | {len(withc)}/{totals[level]} | {cell} | "
                    f"{zoom} | {seconds[False]:.0f} / {seconds[True]:.0f} |",
                    flush=True,
                )


def entrypoint() -> None:
    main(tyro.cli(ZoomInScales))


if __name__ == "__main__":
    entrypoint()
