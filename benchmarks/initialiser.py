"""The wide-camera initialiser against the scene maker's ground truth: which rung ``auto`` picks,
and how far each rung's cameras are from the truth, before any photometric training.

Scenes: the default scene at 512×384 and 128×96, and a stage-drift variant (tiny baseline, SEM
look, 256×192), each over several seeds, plus any extra scene-maker arguments. Columns: rung
chosen by ``auto``, wide pairwise rotation error, rotation error after a Sim(3) alignment, focal
error and the solver's seconds, for ``auto`` and each rung forced (``—`` where a rung refused,
with its reason below the table). A second table: the training zoom-ins placed by geometry after
an ``sfm`` start (registered against the wide model, as a run places them), per level — how many,
their rotation relative to the wide view they were taken from (mean and worst), how many got that
view as their source, and the zoom error; after a ``rotation`` start zoom-ins are left to the
window search (``—``).

    python benchmarks/initialiser.py --seeds 0 1 2
    python benchmarks/initialiser.py --seeds 0 --cost 100 --cost-size 1024 768   # time for 100 wides
    python benchmarks/initialiser.py --variants --cost 40 --cost-size 512 384 --exhaustive-up-to 40

The cost run reports the ladder's seconds and how far its answer is from the truth; with more wide
views than ``--exhaustive-up-to`` (default: the solver's own threshold) pairs are retrieved rather
than all matched, so the same scene can be timed both ways (``--cost-scene`` reuses a made scene).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from mzen_ns.evaluation.alignment import (
    camera_errors,
    pairwise_rotation_error,
    relative_rotation_error,
    sim3_alignment,
)
from mzen_ns.geometry import sfm
from mzen_ns.geometry.initialiser import choose, judge
from mzen_ns.geometry.rotation import solve_rotation
from mzen_ns.geometry.sfm import solve_sfm
from mzen_ns.synthetic.truth import FAMILIES, make, wide_truth, zoom_in_truth


def zoom_in_rows(scene: Path, start: str) -> List[Dict[str, object]]:
    """Per level: the training zoom-ins placed by geometry after an ``sfm`` start, against the truth."""
    if start != "sfm":
        return []
    paths, wide_true, _, _ = wide_truth(scene)
    queries, true, true_zoom, parent = zoom_in_truth(scene)
    solution = solve_sfm(paths, zoom_ins=queries)
    if solution.c2w is None or solution.zoom_ins is None:
        return []
    poses, count = solution.zoom_ins, len(paths)
    learned, truth = np.concatenate([solution.c2w, poses.c2w]), np.concatenate([wide_true, true])
    rows = []
    for level in sorted({dial for _, dial in queries}):
        index = [k for k, (_, dial) in enumerate(queries) if dial == level]
        placed = [k for k in index if poses.found[k] and parent[k] >= 0]
        angles = [relative_rotation_error(learned, truth, [(int(parent[k]), count + k)]) for k in placed]
        zoom = [100.0 * abs(poses.zoom[k] / true_zoom[k] - 1.0) for k in placed]
        rows.append(
            {
                "level": level,
                "placed": f"{int(poses.found[index].sum())}/{len(index)}",
                "rotation": float(np.mean(angles)) if angles else float("nan"),
                "worst": float(np.max(angles)) if angles else float("nan"),
                "source": f"{sum(int(poses.source[k] == parent[k]) for k in placed)}/{len(placed)}",
                "zoom": float(np.mean(zoom)) if zoom else float("nan"),
                "seconds": solution.seconds,
            }
        )
    return rows


def errors(c2w: Optional[np.ndarray], focal: float, true: np.ndarray, true_focal: float) -> Dict[str, float]:
    if c2w is None or np.isnan(c2w).any():
        return {}
    alignment = sim3_alignment(c2w, true)
    return {
        "pairwise": pairwise_rotation_error(c2w, true),
        "sim3": camera_errors(c2w, true, alignment)[0],
        "focal": 100.0 * abs(focal / true_focal - 1.0),
    }


def row(scene: Path) -> Dict[str, object]:
    paths, true, true_focal, width = wide_truth(scene)
    decision = choose("auto", paths, width)
    out: Dict[str, object] = {"auto": decision.start, "reason": decision.reason}
    solution = decision.solution
    out["auto_errors"] = {} if solution is None else errors(solution.c2w, solution.focal, true, true_focal)
    out["auto_seconds"] = sum(s.seconds for s, _ in decision.verdicts)
    for name, solver in (("sfm", lambda: solve_sfm(paths)), ("rotation", lambda: solve_rotation(paths))):
        forced = solver()
        out[name] = errors(forced.c2w, forced.focal, true, true_focal)
        out[name + "_refused"] = judge(forced, width)
        out[name + "_seconds"] = forced.seconds
    out["zoom_ins"] = zoom_in_rows(scene, decision.start)
    return out


def fmt(values: Dict[str, float], key: str) -> str:
    return f"{values[key]:.3f}" if key in values else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--cost", type=int, default=0, help="also time the ladder on this many wide views")
    parser.add_argument("--cost-size", type=int, nargs=2, default=[1024, 768])
    parser.add_argument("--cost-scene", type=Path, default=None, help="time on this scene instead of making one")
    parser.add_argument("--exhaustive-up-to", type=int, default=sfm.EXHAUSTIVE_UP_TO)
    args = parser.parse_args()
    header = (
        "| scene | seed | auto | auto pairwise ° | auto Sim3 ° | auto focal % | auto s | SfM pairwise ° | SfM focal % "
        "| SfM s | rotation pairwise ° | rotation focal % | rotation s |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    notes = []
    zoom_table = [
        "| scene | seed | level | placed | rotation to source ° | worst ° | right source | zoom error % | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for variant in args.variants:
            for seed in args.seeds:
                scene = make(Path(folder) / f"{variant}-{seed}", FAMILIES[variant], seed)
                r = row(scene)
                a, s, t = r["auto_errors"], r["sfm"], r["rotation"]
                print(
                    f"| {variant} | {seed} | {r['auto']} | {fmt(a, 'pairwise')} | {fmt(a, 'sim3')} "
                    f"| {fmt(a, 'focal')} | "
                    f"{r['auto_seconds']:.1f} | {fmt(s, 'pairwise')} | {fmt(s, 'focal')} | {r['sfm_seconds']:.1f} | "
                    f"{fmt(t, 'pairwise')} | {fmt(t, 'focal')} | {r['rotation_seconds']:.1f} |",
                    flush=True,
                )
                notes.append(f"{variant} seed {seed}: {r['reason']}")
                zoom_table += [
                    f"| {variant} | {seed} | {z['level']:g}× | {z['placed']} | {z['rotation']:.3f} | {z['worst']:.3f} "
                    f"| {z['source']} | {z['zoom']:.2f} | {z['seconds']:.1f} |"
                    for z in r["zoom_ins"]
                ] or [f"| {variant} | {seed} | — | — (window search after a {r['auto']} start) | | | | | |"]
        if args.cost:
            w, h = args.cost_size
            scene = args.cost_scene or make(
                Path(folder) / "cost",
                ["--width", str(w), "--height", str(h), "--n-wide", str(args.cost), "--zooms", "1"],
                0,
            )
            paths, true, true_focal, width = wide_truth(scene)
            verdicts = [solve_sfm(paths, exhaustive_up_to=args.exhaustive_up_to)]  # auto's first rung
            if judge(verdicts[0], width) is not None:
                verdicts.append(solve_rotation(paths))
            solution = next((s for s in verdicts if judge(s, width) is None), None)
            found = errors(solution.c2w, solution.focal, true, true_focal) if solution is not None else {}
            registered = solution.evidence.get("registered", "—") if solution is not None else "—"
            start = solution.rung if solution is not None else "identity"
            print(
                f"\ncost: {len(paths)} wide views at {width} px wide (exhaustive up to {args.exhaustive_up_to}): "
                + "; ".join(f"{s.rung} {s.seconds:.1f} s" for s in verdicts)
                + f"; {start}: {registered} registered, pairwise {fmt(found, 'pairwise')}°, "
                f"focal {fmt(found, 'focal')}%"
            )
    print("\nZoom-ins placed by geometry (training zoom-ins, after the start auto chose):\n" + "\n".join(zoom_table))
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
