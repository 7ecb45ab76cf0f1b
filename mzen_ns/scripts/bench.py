"""``mzen-bench``: train and evaluate every configuration of the comparison on a list of scenes,
then write a markdown report and PNG plots (``docs/tools.md``).

Each (scene, configuration) run is an ``ns-train`` process on a config this script writes (the
registered method's config on the chosen preset), followed by ``ns-eval``. Everything lands in
``OUTPUT/runs/<scene>/mzen-<configuration>/bench/`` (``bench-<footprint>/`` for a footprint other
than the model's default), the held-out views' ground truth | render PNGs in ``renders/``; a run whose
``eval.json`` exists is not redone, a run with a checkpoint but no summary resumes from it, so an interrupted benchmark
continues where it stopped. ``OUTPUT/report.md``, ``OUTPUT/results.json`` and the plots are
rewritten from all finished runs at the end of every invocation: per zoom level the mean over
every scene's held-out views with its standard error and worst view, the footprint's effect per
scene, camera errors and cost, and a picture per level (``detail_<z>x.png``) of one held-out view.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tyro
import yaml
from rich.console import Console

from mzen_ns.encoding import Footprint
from mzen_ns.evaluation.evaluate import LOWER_IS_BETTER
from mzen_ns.evaluation.keys import level_dials, level_key
from mzen_ns.method_configs import CONFIGURATIONS, ORACLES, Configuration, Preset, configuration_config
from mzen_ns.model import MZENModelConfig
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, Variant, make_scene

DEFAULT_FOOTPRINT: Footprint = MZENModelConfig.footprint
"""The model's default footprint: a run with it carries no ``+<footprint>`` in its name."""

CONSOLE = Console()
RUN_TIMESTAMP = "bench"
"""Every run's timestamp folder (fixed, so a run's place is known before it starts)."""
IMAGE_METRICS = ("psnr", "ssim", "gss", "lss", "lpips")
POSE_KEYS = (
    "rot_err_deg",
    "trans_err",
    "wide_pair_rot_err_deg",
    "zoom_source_rot_err_deg",
    "zoom_err_rel",
    "focal_err_rel",
    "test_rot_err_deg",
    "test_zoom_err_rel",
)


@dataclass
class BenchConfig:
    """Benchmark the comparison's configurations on scene folders and/or scene-maker scenes."""

    output: Path = Path("bench/report")
    """Folder for generated scenes, runs, ``report.md``, ``results.json`` and the plots."""
    scenes: Tuple[Path, ...] = ()
    """FF-MZN scene folders to benchmark (besides the scene-maker scenes)."""
    seeds: Tuple[int, ...] = (0, 1, 2)
    """Scene-maker seeds: one scene per seed and variant (none: ``--seeds`` with no value)."""
    variants: Tuple[Variant, ...] = ("default",)
    """Scene-maker variants."""
    test_views: int = 1
    """Held-out frames per zoom level in the generated scenes (the scene maker's ``n_test``)."""
    configurations: Tuple[Configuration, ...] = CONFIGURATIONS
    """Configurations to run (the oracles are skipped on scenes without ground truth)."""
    footprints: Tuple[Footprint, ...] = (DEFAULT_FOOTPRINT,)
    """Field footprints to run every configuration with (one not the model's default: ``<config>+<footprint>``)."""
    preset: Preset = "auto"
    """Preset of every run: ``cpu``, ``full`` (CUDA), ``auto`` (this machine's) or ``smoke`` (set-up check only)."""
    steps: Optional[int] = None
    """Override the preset's step budget (the configurations' equal-budget shares are kept)."""
    registration_steps: Optional[int] = None
    """Override the held-out registration steps of ``ns-eval``."""
    report_only: bool = False
    """Rewrite the report from the finished runs without training or evaluating anything."""
    anchor: bool = True
    """Also an ``sfm-anchor`` row per scene with ground truth: COLMAP's wide cameras alone (zoom-ins unregistered)."""


@dataclass
class RunRecord:
    """One finished (scene, configuration) run."""

    scene: str
    """Scene name (its folder's name)."""
    configuration: str
    """Configuration of the comparison, ``+<footprint>`` appended when not point-sampled."""
    results: Dict[str, float]
    """``ns-eval``'s results."""
    summary: Dict[str, Any]
    """The run's ``mzen_run_summary.json`` (steps, seconds, memory)."""
    eval_seconds: float
    """Wall time of ``ns-eval``."""
    dials: List[float] = field(default_factory=list)
    """Zoom levels present in the results."""
    run_dir: Optional[Path] = None
    """The run's folder (its ``renders/`` hold the held-out pictures)."""


# ---------------------------------------------------------------------------------------- runs


def scene_list(config: BenchConfig) -> List[Tuple[str, Path]]:
    """(name, folder) of every scene, making scene-maker scenes that do not exist yet."""
    scenes = [(folder.resolve().name, folder.resolve()) for folder in config.scenes]
    for variant in config.variants:
        for seed in config.seeds:
            suffix = "" if config.test_views == 1 else f"-test{config.test_views}"
            folder = (config.output / "scenes" / f"{variant}-seed{seed}{suffix}").resolve()
            if not (folder / "transforms.json").is_file():
                make_scene(SceneMakerConfig(output=folder, variant=variant, seed=seed, n_test=config.test_views))
            scenes.append((folder.name, folder))
    names = [name for name, _ in scenes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"scene folder names must be unique (they name the runs): {duplicates}")
    return scenes


def has_ground_truth(scene: Path) -> bool:
    """Whether every frame of a manifest scene carries ground-truth pose and zoom."""
    manifest = scene / "transforms.json"
    if not manifest.is_file():
        return False
    frames = json.loads(manifest.read_text()).get("frames", [])
    return bool(frames) and all("gt_transform_matrix" in f and "gt_zoom" in f for f in frames)


def run_label(configuration: Configuration, footprint: Footprint) -> str:
    """A run's name in the report: the configuration, ``+<footprint>`` unless the model's default footprint."""
    return configuration if footprint == DEFAULT_FOOTPRINT else f"{configuration}+{footprint}"


def label_order(label: str) -> Tuple[int, str]:
    """Sort key of run labels: the comparison's order, the default footprint first; other rows last."""
    configuration, _, footprint = label.partition("+")
    rank = CONFIGURATIONS.index(configuration) if configuration in CONFIGURATIONS else len(CONFIGURATIONS)
    return rank, footprint


def run_config(
    config: BenchConfig,
    configuration: Configuration,
    scene: Path,
    scene_name: str,
    footprint: Footprint = DEFAULT_FOOTPRINT,
):
    """The trainer config of one run (the registered method's, on the chosen preset)."""
    trainer = configuration_config(configuration, config.preset)
    pipeline = trainer.pipeline
    pipeline = replace(pipeline, model=replace(pipeline.model, footprint=footprint))
    datamanager = replace(pipeline.datamanager, data=scene)
    if config.registration_steps is not None:
        pipeline = replace(pipeline, registration=replace(pipeline.registration, steps=config.registration_steps))
    fields: Dict[str, Any] = dict(
        output_dir=(config.output / "runs").resolve(),
        experiment_name=scene_name,
        timestamp=RUN_TIMESTAMP if footprint == DEFAULT_FOOTPRINT else f"{RUN_TIMESTAMP}-{footprint}",
        vis="tensorboard",
        pipeline=replace(pipeline, datamanager=datamanager),
    )
    if config.steps is not None:
        fields["max_num_iterations"] = config.steps
    return replace(trainer, **fields)


def run_one(
    config: BenchConfig,
    configuration: Configuration,
    scene: Path,
    scene_name: str,
    footprint: Footprint = DEFAULT_FOOTPRINT,
) -> Optional[RunRecord]:
    """Train (or resume) and evaluate one run unless it is finished; None if it failed (or, with
    ``report_only``, is not finished)."""
    trainer = run_config(config, configuration, scene, scene_name, footprint)
    run_dir = trainer.get_base_dir()
    eval_path = run_dir / "eval.json"
    label = f"{scene_name} / {trainer.method_name}"
    if config.report_only and not eval_path.is_file():
        return None
    if not eval_path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / "mzen_run_summary.json").is_file():
            checkpoints = run_dir / "nerfstudio_models"
            if checkpoints.is_dir() and any(checkpoints.glob("step-*.ckpt")):
                trainer = replace(trainer, load_dir=checkpoints)
                CONSOLE.print(f"{label}: resuming from {checkpoints}")
            config_path = run_dir / "bench_config.yml"
            config_path.write_text(yaml.dump(trainer), "utf8")
            CONSOLE.print(f"{label}: training …")
            if not _run([_script("ns-train"), "mzen", "--load-config", str(config_path)], run_dir / "train.log", label):
                return None
        CONSOLE.print(f"{label}: evaluating …")
        started = time.perf_counter()
        command = [_script("ns-eval"), "--load-config", str(run_dir / "config.yml"), "--output-path", str(eval_path)]
        command += ["--render-output-path", str(run_dir / RENDERS)]
        if not _run(command, run_dir / "eval.log", label):
            return None
        (run_dir / "eval_seconds.txt").write_text(f"{time.perf_counter() - started:.2f}\n")
    return load_record(run_dir, scene_name, run_label(configuration, footprint))


RENDERS = "renders"
"""A run's folder of held-out ground truth | render PNGs (``ns-eval --render-output-path``)."""


def _script(name: str) -> str:
    """A console script of this Python environment (even when it is not activated)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


def _run(command: Sequence[str], log: Path, label: str) -> bool:
    with log.open("w") as handle:
        code = subprocess.run(list(command), stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ)).returncode
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        CONSOLE.print(f"[bold red]{label} failed (exit {code}); log: {log}[/]\n{tail}")
    return code == 0


def load_record(run_dir: Path, scene_name: str, configuration: str) -> RunRecord:
    """A finished run's record from its files."""
    evaluated = json.loads((run_dir / "eval.json").read_text())
    summary_path = run_dir / "mzen_run_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    seconds_path = run_dir / "eval_seconds.txt"
    eval_seconds = float(seconds_path.read_text()) if seconds_path.is_file() else float("nan")
    results = {k: float(v) for k, v in evaluated["results"].items() if isinstance(v, (int, float))}
    return RunRecord(scene_name, configuration, results, summary, eval_seconds, level_dials(results), run_dir)


ANCHOR = "sfm-anchor"
"""The configuration name of the SfM-only anchor row."""


def anchor_one(config: BenchConfig, scene: Path, scene_name: str) -> Optional[RunRecord]:
    """The SfM-only anchor of one scene (computed once, then read from its ``eval.json``): COLMAP on
    the training wide views at native size, as the ``sfm`` rung runs it, scored like a run's wide
    cameras; zoom-ins stay unregistered, nothing is rendered. None when not finished (``report_only``)."""
    run_dir = (config.output / "runs" / scene_name / ANCHOR / RUN_TIMESTAMP).resolve()
    if not (run_dir / "eval.json").is_file():
        if config.report_only:
            return None
        CONSOLE.print(f"{scene_name} / {ANCHOR}: COLMAP on the wide views …")
        results, summary = sfm_anchor(scene)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "eval.json").write_text(json.dumps({"results": results}, indent=2))
        (run_dir / "mzen_run_summary.json").write_text(json.dumps(summary, indent=2))
    return load_record(run_dir, scene_name, ANCHOR)


def sfm_anchor(scene: Path) -> Tuple[Dict[str, float], Dict[str, Any]]:
    """(results, summary) of COLMAP alone on a scene's training wide views: ``wide_pair_rot_err_deg``,
    ``rot_err_deg`` and ``trans_err`` after Sim(3), ``focal_err_rel``; the solver's seconds and verdict."""
    from mzen_dataparsers.ffmzn_dataparser import FFMZNDataParserConfig
    from mzen_ns.evaluation.alignment import camera_errors, pairwise_rotation_error, sim3_alignment
    from mzen_ns.geometry.initialiser import describe, judge
    from mzen_ns.geometry.sfm import solve_sfm

    outputs = FFMZNDataParserConfig(data=scene).setup().get_dataparser_outputs("train")
    metadata = outputs.metadata
    wide = (metadata["mzen_dial"] == 1.0).nonzero().squeeze(-1).tolist()
    focal_prior = float(metadata["mzen_focal_guess"][0]) if metadata.get("mzen_focal_known") else None
    principal = metadata["mzen_principal_point"]
    solution = solve_sfm([Path(outputs.image_filenames[i]) for i in wide], focal_prior, principal)
    refusal = judge(solution, int(outputs.cameras.width[0]))
    summary: Dict[str, Any] = {
        "initialiser": {
            "start": "sfm" if refusal is None else "sfm (refused)",
            "reason": refusal or describe(solution),
        },
        "train_seconds": solution.seconds,
    }
    truth = metadata["mzen_ground_truth"]
    true_c2w = truth["c2w"].numpy()[wide][:, :3]
    if solution.c2w is None or np.isnan(solution.c2w).any() or np.isnan(true_c2w).any():
        return {}, summary  # no camera for some wide view (or no truth): nothing to score
    alignment = sim3_alignment(solution.c2w, true_c2w)
    rotation, translation = camera_errors(solution.c2w, true_c2w, alignment)
    results = {
        "wide_pair_rot_err_deg": pairwise_rotation_error(solution.c2w, true_c2w),
        "rot_err_deg": rotation,
        "trans_err": translation,
    }
    if truth.get("focal"):
        results["focal_err_rel"] = abs(solution.focal - truth["focal"]) / truth["focal"]
    return results, summary


# -------------------------------------------------------------------------------------- report


def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def report(records: Sequence[RunRecord], config: BenchConfig, pictures: Sequence[Path] = ()) -> str:
    """The markdown report: per scene × configuration × level, pose errors and cost, means."""
    lpips = any("lpips" in r.results for r in records)
    budget = f", {config.steps} steps" if config.steps else ", preset budget"
    lines = [
        "# mzen-bench report",
        "",
        f"Preset `{config.preset}`{budget}; {len(records)} finished runs. "
        "Held-out views registered (NeRF-- protocol) before scoring.",
        "" if lpips else "LPIPS: unavailable (AlexNet weights not cached), omitted.",
        "",
    ]
    lines += _quality_section(records, [m for m in IMAGE_METRICS if m != "lpips" or lpips])
    lines += _means_section(records)
    lines += _cameras_section(records)
    lines += _placement_section(records)
    lines += _pictures_section(pictures, config.output)
    return "\n".join(lines)


def _quality_section(records: Sequence[RunRecord], metrics: List[str]) -> List[str]:
    lines = [
        "## Image quality per zoom level (held-out views)",
        "",
        "| scene | config | level | " + " | ".join(m.upper() for m in metrics) + " |",
        "|---|---|---|" + "---|" * len(metrics),
    ]
    for r in records:
        for dial in r.dials:
            values = [_fmt(r.results.get(level_key(m, dial)), 2 if m == "psnr" else 3) for m in metrics]
            lines.append(f"| {r.scene} | {r.configuration} | {dial:g}x | " + " | ".join(values) + " |")
    return lines


def level_spread(records: Sequence[RunRecord], metric: str, dial: float) -> Optional[Tuple[float, float, float, int]]:
    """(mean, standard error, worst view, views) of ``metric`` at one level over the held-out views
    of every record, pooled from each run's per-level mean, standard deviation and view count
    (a run without them counts as one view at its mean); None when no record has the level."""
    key = level_key(metric, dial)
    rows = [r.results for r in records if key in r.results]
    if not rows:
        return None
    counts = np.array([max(row.get(level_key("views", dial), 1.0), 1.0) for row in rows])
    means = np.array([row[key] for row in rows])
    stds = np.array([row.get(f"{key}_std", 0.0) for row in rows])
    worsts = [row.get(f"{key}_worst", row[key]) for row in rows]
    total = float(counts.sum())
    mean = float((counts * means).sum() / total)
    squares = ((counts - 1.0) * stds**2 + counts * (means - mean) ** 2).sum()
    se = math.sqrt(float(squares) / (total - 1.0) / total) if total > 1 else float("nan")
    worst = max(worsts) if metric in LOWER_IS_BETTER else min(worsts)
    return mean, se, float(worst), int(total)


def _means_section(records: Sequence[RunRecord]) -> List[str]:
    lines = [
        "",
        "## Per level over every scene's held-out views: mean ± standard error (worst view)",
        "",
        "| config | level | views | PSNR | SSIM | GSS | LSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for configuration in _configurations(records):
        subset = [r for r in records if r.configuration == configuration]
        for dial in sorted({d for r in subset for d in r.dials}):
            cells, views = [], 0
            for m in ("psnr", "ssim", "gss", "lss"):
                spread = level_spread(subset, m, dial)
                digits = 2 if m == "psnr" else 3
                if spread is None:
                    cells.append("–")
                    continue
                mean, se, worst, views = spread
                cells.append(f"{_fmt(mean, digits)} ± {_fmt(se, digits)} ({_fmt(worst, digits)})")
            lines.append(f"| {configuration} | {dial:g}x | {views} | " + " | ".join(cells) + " |")
    return lines + _footprint_section(records)


def _footprint_section(records: Sequence[RunRecord]) -> List[str]:
    """Per configuration run with another footprint: its PSNR minus the default-footprint run's on
    the same scene, mean ± standard error over scenes, per level."""
    lines: List[str] = []
    for label in _configurations(records):
        base, _, footprint = label.partition("+")
        if not footprint:
            continue
        default = {r.scene: r for r in records if r.configuration == base}
        pairs = [(r, default[r.scene]) for r in records if r.configuration == label and r.scene in default]
        if not pairs:
            continue
        if not lines:
            lines = [
                "",
                f"## Footprint effect: PSNR of the run minus the {DEFAULT_FOOTPRINT} run on the same scene",
                "",
                "| config | level | scenes | ΔPSNR mean ± s.e. (dB) | worst scene |",
                "|---|---|---|---|---|",
            ]
        for dial in sorted({d for r, _ in pairs for d in r.dials}):
            key = level_key("psnr", dial)
            deltas = np.array(
                [r.results[key] - p.results[key] for r, p in pairs if key in r.results and key in p.results]
            )
            if deltas.size == 0:
                continue
            se = float(deltas.std(ddof=1) / math.sqrt(deltas.size)) if deltas.size > 1 else float("nan")
            lines.append(
                f"| {label} | {dial:g}x | {deltas.size} | {_fmt(float(deltas.mean()))} ± {_fmt(se)} "
                f"| {_fmt(float(deltas.min()))} |"
            )
    return lines


def _cameras_section(records: Sequence[RunRecord]) -> List[str]:
    lines = [
        "",
        "## Cameras and cost",
        "",
        "| scene | config | start | rot. err (°) | trans. err | wide pair rot. err (°) | zoom-in vs source (°) "
        "| zoom err | focal err | test rot. err (°) | test zoom err | steps | s/step | train s | eval s "
        "| peak host MiB | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        s = r.summary
        cells = [(s.get("initialiser") or {}).get("start", "–")]
        cells += [_fmt(r.results.get(k), 3) for k in POSE_KEYS]
        cells += [
            str(s.get("steps", "–")),
            _fmt(s.get("seconds_per_step"), 3),
            _fmt(s.get("train_seconds"), 0),
            _fmt(r.eval_seconds, 0),
            _fmt(s.get("peak_host_memory_mib"), 0),
            _fmt(s.get("peak_gpu_memory_mib"), 0),
        ]
        lines.append(f"| {r.scene} | {r.configuration} | " + " | ".join(cells) + " |")
    return lines + [
        "",
        "Pose errors: training cameras the run trained on, after a Sim(3) alignment to ground truth "
        "(`trans err` in ground-truth units); `wide pair rot. err` and `zoom-in vs source` are gauge-free; "
        "`start`: where the wide cameras started (the initialiser's rung); `test_` = registered held-out views; "
        f"`{ANCHOR}`: COLMAP's wide cameras alone (training wide views only, zoom-ins unregistered, "
        "its `train s` the solver's seconds). "
        "Plots: `psnr_per_zoom.png`, `pose_error.png`.",
        "",
    ]


PLACEMENT_KEYS = ("zoom_ins_placed_2d3d", "zoom_ins_placed_search", "zoom_ins_flagged", "zoom_ins_wrong_unflagged")
"""How the training zoom-ins were placed (``ns-eval``'s counts), in the report's column order."""


def _placement_section(records: Sequence[RunRecord]) -> List[str]:
    """Per run with zoom-ins: how they were placed, and the error in each image's own pixels per
    level (training, then held-out: median (90th percentile))."""
    rows = [r for r in records if "zoom_ins_placed_search" in r.results]
    if not rows:
        return []
    lines = [
        "",
        "## Zoom-in placement and error in each image's own pixels",
        "",
        "| scene | config | by 2D–3D | by search | flagged | wrong, unflagged | placing s | level | own px "
        "| held-out own px |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        counts = [_fmt(r.results.get(k), 0) for k in PLACEMENT_KEYS] + [_fmt(r.summary.get("priming_seconds"), 1)]
        for dial in r.dials:
            cells = [_pixels(r.results, level_key(prefix + "reproj_px", dial)) for prefix in ("", "test_")]
            lines.append(f"| {r.scene} | {r.configuration} | " + " | ".join(counts + [f"{dial:g}x"] + cells) + " |")
    return lines + [
        "",
        "Own px: where true surface points land through the learned camera against the true one, in that "
        "image's pixels, after a similarity fitted to the wide views; median (90th percentile) over the level's "
        "points. Wrong: a median over a quarter of the image width. Placing s: the wall time of placing the "
        "training zoom-ins (2D–3D and window search), from the run summary.",
        "",
    ]


def _pixels(results: Dict[str, float], key: str) -> str:
    if key not in results:
        return "–"
    return f"{_fmt(results[key], 2)} ({_fmt(results.get(key + '_p90'), 2)})"


def _configurations(records: Sequence[RunRecord]) -> List[str]:
    """The run labels present but the anchor's, in the comparison's order."""
    return sorted({r.configuration for r in records if r.configuration != ANCHOR}, key=label_order)


def detail_pictures(records: Sequence[RunRecord], output: Path) -> List[Path]:
    """Per zoom level, ``detail_<z>x.png``: the central half of one held-out view of the first scene
    with renders, ground truth first, then each run's render of it (pixels shown unsmoothed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    with_renders = [r for r in records if r.run_dir is not None and (r.run_dir / RENDERS).is_dir()]
    if not with_renders:
        return []
    scene = sorted(r.scene for r in with_renders)[0]
    runs = sorted((r for r in with_renders if r.scene == scene), key=lambda r: label_order(r.configuration))
    paths = []
    for dial in sorted({d for r in runs for d in r.dials}):
        panels: List[Tuple[str, np.ndarray]] = []
        for r in runs:
            found = sorted((r.run_dir / RENDERS).glob(f"{dial:g}x_*.png"))
            if not found:
                continue
            pair = np.asarray(Image.open(found[0]).convert("RGB"))
            width = pair.shape[1] // 2
            if not panels:
                panels.append((f"ground truth ({found[0].stem.split('_', 1)[1]})", _centre(pair[:, :width])))
            panels.append((r.configuration, _centre(pair[:, width:])))
        if not panels:
            continue
        figure, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.2), squeeze=False)
        for axis, (title, crop) in zip(axes[0], panels):
            axis.imshow(crop, interpolation="nearest")
            axis.set_title(title, fontsize=8)
            axis.axis("off")
        figure.suptitle(f"{scene}, {dial:g}× held-out view, central half", fontsize=9)
        figure.tight_layout()
        paths.append(output / f"detail_{dial:g}x.png")
        figure.savefig(paths[-1], dpi=120)
        plt.close(figure)
    return paths


def _centre(image: np.ndarray) -> np.ndarray:
    """The central half (in each direction) of an image."""
    h, w = image.shape[:2]
    return image[h // 4 : h // 4 + max(h // 2, 1), w // 4 : w // 4 + max(w // 2, 1)]


def _pictures_section(pictures: Sequence[Path], output: Path) -> List[str]:
    if not pictures:
        return []
    lines = ["## Detail per zoom level (held-out view: ground truth, then each run's render)", ""]
    for path in pictures:
        lines += [f"![{path.stem}]({path.relative_to(output)})", ""]
    return lines


def plot(records: Sequence[RunRecord], output: Path) -> List[Path]:
    """Per-zoom PSNR bars and pose-error bars (mean over scenes, min–max whiskers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configurations = _configurations(records)
    dials = sorted({d for r in records for d in r.dials})
    paths = []
    figure, axis = plt.subplots(figsize=(1.6 + 1.4 * len(dials) * max(len(configurations), 1) / 3, 3.6))
    width = 0.8 / max(len(configurations), 1)
    for k, configuration in enumerate(configurations):
        means, lows, highs = [], [], []
        for dial in dials:
            key = level_key("psnr", dial)
            values = [r.results[key] for r in records if r.configuration == configuration and key in r.results]
            mean = float(np.mean(values)) if values else float("nan")
            means.append(mean)
            lows.append(mean - min(values) if values else 0.0)
            highs.append(max(values) - mean if values else 0.0)
        positions = np.arange(len(dials)) + (k - (len(configurations) - 1) / 2) * width
        axis.bar(positions, means, width, yerr=[lows, highs], capsize=2, label=configuration)
    axis.set_xticks(np.arange(len(dials)), [f"{d:g}×" for d in dials])
    axis.set_ylabel("held-out PSNR (dB)")
    axis.set_title("PSNR per zoom level (mean over scenes, min–max)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    paths.append(output / "psnr_per_zoom.png")
    figure.savefig(paths[-1], dpi=120)
    plt.close(figure)

    keys = [
        ("wide_pair_rot_err_deg", "wide pair rot. err (°)"),
        ("rot_err_deg", "rot. err (°)"),
        ("test_rot_err_deg", "test rot. err (°)"),
    ]
    figure, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
    for axis, (key, title) in zip(axes, keys):
        means, spreads = [], [[], []]
        for configuration in configurations:
            values = [r.results[key] for r in records if r.configuration == configuration and key in r.results]
            mean = float(np.mean(values)) if values else float("nan")
            means.append(mean)
            spreads[0].append(mean - min(values) if values else 0.0)
            spreads[1].append(max(values) - mean if values else 0.0)
        axis.bar(np.arange(len(configurations)), means, yerr=spreads, capsize=2)
        axis.set_xticks(np.arange(len(configurations)), configurations, rotation=30, ha="right", fontsize=7)
        axis.set_yscale("log")
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    paths.append(output / "pose_error.png")
    figure.savefig(paths[-1], dpi=120)
    plt.close(figure)
    return paths


# ---------------------------------------------------------------------------------------- main


def _skipped_oracles(config: BenchConfig) -> int:
    oracles = sum(1 for configuration in config.configurations if configuration in ORACLES)
    return oracles * len(config.footprints) * sum(1 for folder in config.scenes if not has_ground_truth(folder))


def run_bench(config: BenchConfig) -> List[RunRecord]:
    """Run every missing (scene, configuration), then write the report, results and plots."""
    config.output.mkdir(parents=True, exist_ok=True)
    records, failed = [], []
    scenes = scene_list(config)
    jobs = [
        (scene, configuration, footprint)
        for scene in scenes
        for configuration in config.configurations
        for footprint in config.footprints
    ]
    jobs.sort(key=lambda job: job[1] in ORACLES)  # the references last: configurations 1–4 come first
    for (scene_name, scene), configuration, footprint in jobs:
        if configuration in ORACLES and not has_ground_truth(scene):
            CONSOLE.print(f"{scene_name}: no ground truth, {configuration} skipped")
            continue
        record = run_one(config, configuration, scene, scene_name, footprint)
        if record is None and config.report_only:
            continue
        if record is None:
            failed.append(f"{scene_name} / {run_label(configuration, footprint)}")
        else:
            records.append(record)
    if config.anchor:
        anchors = [anchor_one(config, scene, name) for name, scene in scenes if has_ground_truth(scene)]
        records += [record for record in anchors if record is not None]
    (config.output / "results.json").write_text(json.dumps([r.__dict__ for r in records], indent=2, default=str))
    pictures = detail_pictures(records, config.output)
    (config.output / "report.md").write_text(report(records, config, pictures))
    if records:
        plot(records, config.output)
    CONSOLE.print(f"[bold green]Report:[/] {config.output / 'report.md'}  ({len(records)} runs)")
    if failed:
        CONSOLE.print(f"[bold red]{len(failed)} runs failed[/] (rerun to retry): {', '.join(failed)}")
    return records


def entrypoint() -> None:
    """Console script ``mzen-bench``."""
    config = tyro.cli(BenchConfig)
    records = run_bench(config)
    if config.report_only:
        sys.exit(0 if records else 1)
    scenes = len(config.scenes) + len(config.seeds) * len(config.variants)
    expected = len(config.configurations) * len(config.footprints) * scenes
    sys.exit(0 if records and len(records) >= expected - _skipped_oracles(config) else 1)


if __name__ == "__main__":
    entrypoint()
