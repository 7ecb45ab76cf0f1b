"""Which training option keeps more of what the zoom-ins show? Trains each method on each scene once
per variant (a name and the ``ns-train`` arguments it adds), scores the held-out views with
``ns-eval``, and prints held-out PSNR per level (mean ± standard error over the level's held-out
views), the own-pixel error of the training zoom-ins, seconds per step and the training rays per
pixel of each level; then per method and variant the mean over scenes, each variant's paired
difference from the first and each method's from the first method (mean ± standard error over
scenes). The levels are the ones the scenes have (``psnr_<z>x`` in the ``ns-eval`` results).

Scenes from ``mzen-make-scene SCENE --n-test 4`` (at least four held-out views per level); one run at
a time (on 2 cores two trainings slow each other several times over). Runs already in ``--output``
are scored again only where their ``ns-eval`` JSON is missing, never retrained:

    python benchmarks/held_out_variants.py --scenes s81 s82 s83 --methods mzen mzen-oracle \\
        --variants 1024="--pipeline.model.max-res 1024" auto="--pipeline.model.max-res None" --output runs
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import tyro

from mzen_ns.evaluation.keys import level_dials, level_key


@dataclass
class HeldOutVariants:
    """Held-out PSNR per level for each method, scene and variant of the training options."""

    scenes: List[Path]
    """Scene folders (``mzen-make-scene``, with held-out views)."""
    variants: List[str] = field(default_factory=lambda: ["default="])
    """``NAME=ARGS``: a variant's name and the ``ns-train`` arguments it adds (the first is the reference)."""
    output: Path = Path("held_out_variant_runs")
    """Folder of the runs (``SCENE_METHOD_NAME``) and their ``ns-eval`` JSON."""
    methods: List[str] = field(default_factory=lambda: ["mzen"])
    """Registered methods to train (``mzen``, ``mzen-oracle``, ``mzen-baseline-wide``, …)."""
    report_only: bool = False
    """Print the tables from the runs already in ``output``; train nothing."""


def parse_variant(text: str) -> Tuple[str, List[str]]:
    """``NAME=ARGS`` → the name and the arguments (shell words); the name must be a plain word."""
    name, separator, arguments = text.partition("=")
    if not separator or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"a variant is NAME=ARGS with a plain NAME (letters, digits, - _ .), got {text!r}")
    return name, shlex.split(arguments)


def run_name(scene: Path, method: str, variant: str) -> str:
    return f"{scene.name}_{method}_{variant}"


def train_and_score(scene: Path, method: str, variant: str, arguments: Sequence[str], output: Path) -> Path:
    """Train (unless the run exists) and score one run; its ``ns-eval`` JSON."""
    name = run_name(scene, method, variant)
    scores = output / f"{name}.eval.json"
    if scores.is_file():
        return scores
    runs = output / name
    if not list(runs.glob("*/*/*/config.yml")):
        subprocess.run(
            ["ns-train", method, "--data", str(scene), *arguments]
            + ["--viewer.quit-on-train-completion", "True", "--output-dir", str(runs)],
            check=True,
        )
    config = sorted(runs.glob("*/*/*/config.yml"))[-1]
    subprocess.run(["ns-eval", "--load-config", str(config), "--output-path", str(scores)], check=True)
    return scores


def read(output: Path, scene: Path, method: str, variant: str) -> Optional[Tuple[Dict, Dict]]:
    """The run's ``ns-eval`` results and run summary, or None where it has not been scored."""
    name = run_name(scene, method, variant)
    scores = output / f"{name}.eval.json"
    if not scores.is_file():
        return None
    summaries = sorted((output / name).glob("*/*/*/mzen_run_summary.json"))
    summary = json.loads(summaries[-1].read_text()) if summaries else {}
    return json.loads(scores.read_text())["results"], summary


def mean_and_error(values: Sequence[float]) -> str:
    """Mean ± standard error (the error only from two values on)."""
    if not values:
        return "–"
    spread = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return f"{statistics.mean(values):+.2f} ± {spread:.2f}"


def level_cell(results: Dict, level: float) -> str:
    """Mean ± standard error over the level's held-out views."""
    mean = results.get(level_key("psnr", level))
    if mean is None:
        return "–"
    views = results.get(level_key("views", level)) or 1
    spread = results.get(level_key("psnr", level) + "_std", 0.0) / math.sqrt(max(views, 1))
    return f"{mean:.2f} ± {spread:.2f}"


def psnr(results: Dict, level: float) -> Optional[float]:
    return results.get(level_key("psnr", level))


def run_row(method: str, variant: str, scene: Path, results: Dict, summary: Dict, levels: Sequence[float]) -> str:
    """One run's table row."""
    own = " / ".join(f"{results.get(level_key('reproj_px', z), math.nan):.2f}" for z in levels[1:])
    rays = summary.get("rays_per_pixel") or {}
    per_level = " / ".join(f"{value:.0f}" for value in rays.values())
    step = summary.get("seconds_per_step")
    cells = " | ".join(level_cell(results, level) for level in levels)
    return (
        f"| {method} | {variant} | {scene.name} | {cells} | {own} | "
        f"{'–' if step is None else f'{step:.3f}'} | {per_level} |"
    )


Pairing = Tuple[Tuple[str, str], Tuple[str, str]]
"""((method, variant), (reference method, reference variant)) of one paired row."""


def paired_cells(runs: Dict[str, Dict], base: Dict[str, Dict], levels: Sequence[float]) -> Tuple[int, List[str]]:
    """The scenes both sets of runs have, and per level the mean ± standard error of the difference."""
    paired = sorted(set(base) & set(runs))
    cells = []
    for level in levels:
        pairs = [(psnr(runs[s], level), psnr(base[s], level)) for s in paired]
        cells.append(mean_and_error([a - b for a, b in pairs if a is not None and b is not None]))
    return len(paired), cells


def paired_table(
    header: str, pairings: Sequence[Pairing], psnrs: Dict[Tuple[str, str], Dict[str, Dict]], levels: Sequence[float]
) -> List[str]:
    """A table of paired differences: ``header`` names the first two columns, one row per pairing."""
    lines = ["", f"| {header} | scenes | " + " | ".join(f"PSNR {level:g}×, paired" for level in levels) + " |"]
    lines.append("|---|---|---|" + "---|" * len(levels))
    for (method, variant), reference in pairings:
        count, cells = paired_cells(psnrs.get((method, variant), {}), psnrs.get(reference, {}), levels)
        lines.append(f"| {method} | {variant} | {count} | " + " | ".join(cells) + " |")
    return lines


def runs_table(
    found: Dict[Tuple[str, str], Dict[str, Tuple[Dict, Dict]]], scenes: Sequence[Path], levels: Sequence[float]
) -> List[str]:
    """One row per run: held-out PSNR per level, own-pixel errors, seconds per step, rays per pixel."""
    zooms = " / ".join(f"{level:g}×" for level in levels[1:])
    header = " | ".join(f"PSNR {level:g}×" for level in levels)
    lines = [f"| method | variant | scene | {header} | own px {zooms} | s/step | rays/px |"]
    lines.append("|---|---|---|" + "---|" * (len(levels) + 3))
    for (method, variant), runs in found.items():
        lines += [run_row(method, variant, scene, *runs[scene.name], levels) for scene in scenes if scene.name in runs]
    return lines


def means_table(psnrs: Dict[Tuple[str, str], Dict[str, Dict]], levels: Sequence[float]) -> List[str]:
    """One row per method and variant: held-out PSNR per level, mean ± standard error over scenes."""
    header = " | ".join(f"PSNR {level:g}×, mean ± SE over scenes" for level in levels)
    lines = ["", f"| method | variant | scenes | {header} |", "|---|---|---|" + "---|" * len(levels)]
    for (method, variant), runs in psnrs.items():
        values = [[v for v in (psnr(r, level) for r in runs.values()) if v is not None] for level in levels]
        cells = " | ".join(mean_and_error(level_values).lstrip("+") for level_values in values)
        lines.append(f"| {method} | {variant} | {len(runs)} | {cells} |")
    return lines


def report(
    found: Dict[Tuple[str, str], Dict[str, Tuple[Dict, Dict]]],
    methods: Sequence[str],
    variants: Sequence[str],
    scenes: Sequence[Path],
) -> List[str]:
    """The tables: one row per run, the mean over scenes per method and variant, each variant paired
    with the first (per method), each method paired with the first (per variant). The levels are
    those the runs' results hold."""
    levels = sorted({dial for runs in found.values() for results, _ in runs.values() for dial in level_dials(results)})
    psnrs = {key: {scene: results for scene, (results, _) in runs.items()} for key, runs in found.items()}
    lines = runs_table(found, scenes, levels) + means_table(psnrs, levels)
    if len(variants) > 1:
        pairings = [((m, v), (m, variants[0])) for m in methods for v in variants[1:]]
        lines += paired_table(f"method | variant − {variants[0]}", pairings, psnrs, levels)
    if len(methods) > 1:
        pairings = [((m, v), (methods[0], v)) for v in variants for m in methods[1:]]
        lines += paired_table(f"method − {methods[0]} | variant", pairings, psnrs, levels)
    return lines


def main() -> None:
    args = tyro.cli(HeldOutVariants)
    variants = [parse_variant(text) for text in args.variants]
    args.output.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for scene in args.scenes:
            for method in args.methods:
                for variant, arguments in variants:
                    train_and_score(scene, method, variant, arguments, args.output)
    found: Dict[Tuple[str, str], Dict[str, Tuple[Dict, Dict]]] = {}
    for method in args.methods:
        for variant, _ in variants:
            for scene in args.scenes:
                run = read(args.output, scene, method, variant)
                if run is not None:
                    found.setdefault((method, variant), {})[scene.name] = run
    print("\n".join(report(found, args.methods, [name for name, _ in variants], args.scenes)))


if __name__ == "__main__":
    main()
