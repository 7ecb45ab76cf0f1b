"""Does a field whose finest grid level follows the deepest zoom-in keep more of what the zoom-ins
show? Trains each method on each scene once per finest resolution (``--pipeline.model.max-res``:
a number, or ``None`` for one cell per pixel of the deepest zoom-in at the content), scores the
held-out views with ``ns-eval``, and prints held-out PSNR per level (mean ± standard error over the
level's held-out views; over scenes in the second table), the own-pixel error of the training
zoom-ins, seconds per step and the training rays per pixel of each level.

Scenes from ``mzen-make-scene SCENE --n-test 4`` (at least four held-out views per level); one run at
a time (on 2 cores two trainings slow each other several times over). Runs already in ``--output``
are scored again, not retrained:

    python benchmarks/finest_resolution.py --scenes s81 s82 s83 --methods mzen mzen-oracle \\
        --max-res 1024 None --output runs
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tyro

from mzen_ns.evaluation.keys import level_key

LEVELS = (1.0, 4.0, 16.0)


@dataclass
class FinestResolution:
    """Held-out PSNR per level for each method, scene and finest grid resolution."""

    scenes: List[Path]
    """Scene folders (``mzen-make-scene``, with held-out views)."""
    output: Path = Path("finest_resolution_runs")
    """Folder of the runs (``SCENE_METHOD_RES``) and their ``ns-eval`` JSON."""
    methods: List[str] = field(default_factory=lambda: ["mzen"])
    """Registered methods to train (``mzen``, ``mzen-oracle``, ``mzen-baseline-wide``, …)."""
    max_res: List[str] = field(default_factory=lambda: ["1024", "None"])
    """Finest resolutions to compare (``None``: from the deepest zoom-in)."""
    report_only: bool = False
    """Print the tables from the runs already in ``output``; train nothing."""


def run_name(scene: Path, method: str, res: str) -> str:
    return f"{scene.name}_{method}_{res}"


def train_and_score(scene: Path, method: str, res: str, output: Path) -> Path:
    """Train (unless the run exists) and score one run; its ``ns-eval`` JSON."""
    name = run_name(scene, method, res)
    scores = output / f"{name}.eval.json"
    if scores.is_file():
        return scores
    runs = output / name
    if not list(runs.glob("*/*/*/config.yml")):
        subprocess.run(
            ["ns-train", method, "--data", str(scene), "--pipeline.model.max-res", res]
            + ["--viewer.quit-on-train-completion", "True", "--output-dir", str(runs)],
            check=True,
        )
    config = sorted(runs.glob("*/*/*/config.yml"))[-1]
    subprocess.run(["ns-eval", "--load-config", str(config), "--output-path", str(scores)], check=True)
    return scores


def read(output: Path, scene: Path, method: str, res: str) -> Optional[Tuple[Dict, Dict]]:
    """The run's ``ns-eval`` results and run summary, or None where it has not been scored."""
    name = run_name(scene, method, res)
    scores = output / f"{name}.eval.json"
    if not scores.is_file():
        return None
    summaries = sorted((output / name).glob("*/*/*/mzen_run_summary.json"))
    summary = json.loads(summaries[-1].read_text()) if summaries else {}
    return json.loads(scores.read_text())["results"], summary


def level_cell(results: Dict, level: float) -> str:
    """Mean ± standard error over the level's held-out views."""
    mean = results.get(level_key("psnr", level))
    if mean is None:
        return "–"
    views = results.get(level_key("views", level)) or 1
    spread = results.get(level_key("psnr", level) + "_std", 0.0) / math.sqrt(max(views, 1))
    return f"{mean:.2f} ± {spread:.2f}"


def main() -> None:
    args = tyro.cli(FinestResolution)
    args.output.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for scene in args.scenes:
            for method in args.methods:
                for res in args.max_res:
                    train_and_score(scene, method, res, args.output)
    names = [f"PSNR {level:g}×" for level in LEVELS]
    print("| method | max res | scene | " + " | ".join(names) + " | own px 4× / 16× | s/step | rays/px |")
    print("|---|---|---|" + "---|" * (len(LEVELS) + 3))
    means: Dict[Tuple[str, str], List[Dict]] = {}
    for method in args.methods:
        for res in args.max_res:
            for scene in args.scenes:
                found = read(args.output, scene, method, res)
                if found is None:
                    continue
                results, summary = found
                means.setdefault((method, res), []).append(results)
                own = " / ".join(f"{results.get(level_key('reproj_px', z), math.nan):.2f}" for z in LEVELS[1:])
                rays = summary.get("rays_per_pixel") or {}
                per_level = " / ".join(f"{value:.0f}" for value in rays.values())
                step = summary.get("seconds_per_step")
                cells = " | ".join(level_cell(results, level) for level in LEVELS)
                print(
                    f"| {method} | {res} | {scene.name} | {cells} | {own} | "
                    f"{'–' if step is None else f'{step:.3f}'} | {per_level} |"
                )
    print()
    print("| method | max res | scenes | " + " | ".join(f"{name}, mean ± SE over scenes" for name in names) + " |")
    print("|---|---|---|" + "---|" * len(LEVELS))
    for (method, res), runs in means.items():
        cells = []
        for level in LEVELS:
            values = [r[level_key("psnr", level)] for r in runs if level_key("psnr", level) in r]
            spread = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}" if values else "–")
        print(f"| {method} | {res} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
