"""Benchmark of priming off-axis zoom-ins: centred crop-and-match vs position search vs
position search + hierarchical matching.

Priming (``--stage prime``, no training): scene-maker scenes with zoom-ins aimed off-axis; every
wide view and the focal are set to the truth, so priming alone is measured. Per method, level and
off-axis setting: share of zoom-ins primed from their true wide view (``gt_parent``), share
flagged, zoom-ins placed wrong (median error over a quarter of the width) without and with a flag,
the primed cameras' error in their own pixels (median and 90th percentile over the level's surface
points), rotation error of the primed pose (deg, against the zoom-in's true pose; no alignment
needed) and zoom error, mean over seeds. ``--no-nested --apart`` aims zoom-ins anywhere with no
16× inside a 4×; ``--detail-contrast``, ``--relief``, ``--width``/``--height`` and ``--baseline 0.001
--variant sem`` (stage drift) vary texture, shape, size and rig; ``--noise-floor 0`` primes without the
flag from the images' noise.

Training (``--stage train``): ``ns-train mzen-cpu --pipeline.priming.method M`` + ``ns-eval`` on the
same scenes; per-level rotation errors of the training zoom-ins after phase C (Sim(3)-aligned).

Cost (``--stage cost``): the position search over 100 zoom-ins × 100 wide views at 800×600.

    python benchmarks/priming.py --stage prime --seeds 0 1 2 --off-axis 0 0.25 0.5
    python benchmarks/priming.py --stage prime --no-nested --apart --off-axis 0 --n-zoom 6 --width 512 --height 384
    python benchmarks/priming.py --stage train --seeds 0 1 2 --off-axis 0.5 --steps 1000
    python benchmarks/priming.py --stage cost
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Literal, Optional, Tuple

import numpy as np
import torch
import tyro
from PIL import Image

from mzen_ns.cameras import ZoomCameras, ZoomCamerasConfig
from mzen_ns.evaluation.reprojection import own_pixel_errors, wrong
from mzen_ns.geometry.similarity import rotation_angles_deg
from mzen_ns.priming.plan import PrimingConfig, PrimingMethod, Views, apply_plan, plan_priming
from mzen_ns.synthetic.raycast import DETAIL_CONTRAST
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

METHODS: Tuple[PrimingMethod, ...] = ("centred", "position", "hierarchical")


@dataclass
class PrimingBenchmark:
    """Priming off-axis zoom-ins: centred vs position search vs hierarchical."""

    stage: Literal["prime", "train", "cost"] = "prime"
    """prime: priming alone (true wide views); train: full mzen-cpu runs + ns-eval; cost: timing."""
    output: Path = Path("bench/priming")
    """Scenes, runs and results."""
    seeds: Tuple[int, ...] = (0, 1, 2)
    """Scene-maker seeds."""
    off_axis: Tuple[float, ...] = (0.0, 0.25, 0.5)
    """Zoom-ins aim up to this fraction of the half field of view off-axis (scene maker)."""
    n_zoom: int = 20
    """Training zoom-ins per level."""
    nested: bool = True
    """Scene maker: 16× zoom-ins aimed inside a 4× zoom-in (zooming in by steps)."""
    apart: bool = False
    """Scene maker: zoom-ins aimed anywhere, none inside a shallower one (needs ``--no-nested``)."""
    detail_contrast: float = DETAIL_CONTRAST
    """Scene maker: strength of the texture only zoom-ins resolve."""
    relief: float = 0.15
    """Scene maker: height range of the surface (0: a plane)."""
    baseline: float = 0.12
    """Scene maker: half-size of the square the wide cameras spread over (0.001: stage drift)."""
    variant: Literal["default", "sem"] = "default"
    """Scene maker: ``sem`` renders grey, noisy SEM-like frames."""
    width: int = 128
    """Scene maker: image width."""
    height: int = 96
    """Scene maker: image height."""
    methods: Tuple[PrimingMethod, ...] = METHODS
    """Priming methods compared."""
    steps: Optional[int] = None
    """train: step budget (default: the mzen-cpu preset's)."""
    fit_candidates: Optional[int] = None
    """Placements refined per zoom-in (``--pipeline.priming.fit.candidates``; default: the
    method's); results are kept apart as ``METHOD-fitN``."""
    noise_floor: Optional[float] = None
    """Flag under this share of the NCC the noise allows (``--pipeline.priming.noise-floor``; default:
    the method's); results are kept apart as ``METHOD-floorF``."""


def method_key(config: PrimingBenchmark, method: PrimingMethod) -> str:
    """Name of a method's results (with the refinement and flag settings that are not the default)."""
    fit = "" if config.fit_candidates is None else f"-fit{config.fit_candidates}"
    floor = "" if config.noise_floor is None else f"-floor{config.noise_floor:g}"
    return f"{method}{fit}{floor}"


def priming_config(config: PrimingBenchmark, method: PrimingMethod) -> PrimingConfig:
    """The priming a method runs with in this benchmark."""
    priming = PrimingConfig(method=method)
    if config.fit_candidates is not None:
        priming.fit.candidates = config.fit_candidates
    if config.noise_floor is not None:
        priming.noise_floor = config.noise_floor
    return priming


def scene_name(config: PrimingBenchmark, seed: int, off_axis: float) -> str:
    """Folder name of the scene for a seed and off-axis setting."""
    size = "" if (config.width, config.height) == (128, 96) else f"-{config.width}x{config.height}"
    texture = "" if config.detail_contrast == DETAIL_CONTRAST else f"-detail{config.detail_contrast:g}"
    aims = ("-nested" if config.nested else "") + ("-apart" if config.apart else "")
    shape = "" if config.relief == 0.15 else f"-relief{config.relief:g}"
    rig = ("" if config.baseline == 0.12 else f"-baseline{config.baseline:g}") + (
        "" if config.variant == "default" else f"-{config.variant}"
    )
    return f"seed{seed}-off{off_axis:g}{aims}{size}{texture}{shape}{rig}"


def scene(config: PrimingBenchmark, seed: int, off_axis: float) -> Path:
    """The scene for a seed and off-axis setting (made once)."""
    folder = config.output / "scenes" / scene_name(config, seed, off_axis)
    if not (folder / "transforms.json").is_file():
        make_scene(
            SceneMakerConfig(
                folder,
                seed=seed,
                n_zoom=config.n_zoom,
                off_axis=off_axis,
                nested=config.nested,
                apart=config.apart,
                detail_contrast=config.detail_contrast,
                relief=config.relief,
                baseline=config.baseline,
                variant=config.variant,
                width=config.width,
                height=config.height,
            )
        )
    return folder


def load_training_frames(folder: Path):
    """Images, dials, true poses/zooms, parents and surface points of the training frames of a scene."""
    manifest = json.loads((folder / "transforms.json").read_text())
    frames = [f for f in manifest["frames"] if f.get("split", "train") == "train"]
    images = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(folder / f["file_path"]).convert("RGB"))).float() / 255 for f in frames]
    )
    dials = torch.tensor([float(f["zoom"]) for f in frames])
    c2w = torch.tensor([f["gt_transform_matrix"] for f in frames])[:, :3]
    zoom = torch.tensor([float(f["gt_zoom"]) for f in frames])
    names = [f["file_path"] for f in frames]
    parents = [f.get("gt_parent") for f in frames]
    points = [np.array(f["gt_points"]) if "gt_points" in f else None for f in frames]
    return images, dials / dials.min(), c2w, zoom, names, parents, float(manifest["gt_focal"]), points


def prime_once(folder: Path, priming: PrimingConfig) -> Dict[str, Dict[str, float]]:
    """Prime a scene's training zoom-ins from its true wide views; per level: share correct,
    share flagged, rotation and zoom error, seconds."""
    images, dials, true_c2w, true_zoom, names, parents, focal, points = load_training_frames(folder)
    height, width = images.shape[1:3]
    count = dials.numel()
    is_wide = dials == 1.0
    cameras = ZoomCameras(
        ZoomCamerasConfig(ground_truth=True),
        dials,
        is_wide,
        focal,
        1.0,
        torch.full((count,), width / 2),
        torch.full((count,), height / 2),
        width,
        height,
        initial_c2w=true_c2w,
        initial_zoom=torch.where(is_wide, dials, true_zoom),
    )
    principal = torch.tensor([[width / 2, height / 2]]).expand(count, 2)
    start = time.perf_counter()
    views = Views(images, dials, principal, torch.full((count,), focal), 1.0, true_c2w[:, :3, :3].float())
    plan = plan_priming(views, is_wide, torch.arange(count), priming)  # orientations of the posed views, as a run
    seconds = time.perf_counter() - start
    apply_plan(plan, dials, lookup=lambda i: (cameras.c2w(i), cameras.zoom(i)), assign=cameras.prime_from)
    primed = cameras.c2w(plan.query).detach()
    rot = torch.from_numpy(rotation_angles_deg(primed[:, :3, :3].numpy(), true_c2w[plan.query][:, :3, :3].numpy()))
    zoom_err = (cameras.zoom(plan.query).detach() - true_zoom[plan.query]).abs() / true_zoom[plan.query]
    correct = torch.tensor([names[int(r)] == parents[int(q)] for q, r in zip(plan.query, plan.root)])
    errors = own_pixel_errors(  # the wide views are the truth: no alignment
        primed.numpy(),
        (focal * cameras.zoom(plan.query).detach()).numpy(),
        true_c2w[plan.query].numpy(),
        (focal * true_zoom[plan.query]).numpy(),
        principal[plan.query].numpy(),
        1.0,
        [points[int(q)] for q in plan.query],
        (1.0, np.eye(3), np.zeros(3)),
    )
    misplaced = torch.from_numpy(wrong(errors, width))
    results: Dict[str, Dict[str, float]] = {}
    for dial in torch.unique(dials[plan.query]):
        rows = dials[plan.query] == dial
        pooled = np.concatenate([errors[i] for i in torch.nonzero(rows).squeeze(-1).tolist()])
        results[f"{float(dial):g}x"] = {
            "correct": float(correct[rows].float().mean()),
            "flagged": float(plan.flagged[rows].float().mean()),
            "wrong_unflagged": int((misplaced & ~plan.flagged)[rows].sum()),
            "wrong_flagged": int((misplaced & plan.flagged)[rows].sum()),
            "reproj_px": float(np.median(pooled)),
            "reproj_px_p90": float(np.percentile(pooled, 90)),
            "rot_err_deg": float(rot[rows].mean()),
            "rot_err_deg_median": float(rot[rows].median()),
            "zoom_err_rel": float(zoom_err[rows].mean()),
            "count": int(rows.sum()),
            "seconds": seconds,
        }
    return results


def each_run(
    config: PrimingBenchmark,
    path: Path,
    run: Callable[[Path, PrimingMethod], Dict],
    report: Callable[[str, Dict], None],
) -> Dict[str, Dict]:
    """``run`` every scene × method not yet in the results file ``path`` (kept after each run, so
    the benchmark resumes), ``report`` each; all results."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    for off_axis in config.off_axis:
        for seed in config.seeds:
            folder = scene(config, seed, off_axis)
            for method in config.methods:
                key = f"{folder.name}/{method_key(config, method)}"
                if key not in results:
                    results[key] = run(folder, method)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(results, indent=2))
                report(key, results[key])
    return results


def stage_prime(config: PrimingBenchmark) -> None:
    results = each_run(
        config,
        config.output / "prime.json",
        lambda folder, method: prime_once(folder, priming_config(config, method)),
        lambda key, result: print(key, json.dumps(result), flush=True),
    )
    print_prime_table(config, results)


def print_prime_table(config: PrimingBenchmark, results: Dict[str, Dict]) -> None:
    print(
        "\n| off-axis | method | level | correct surrogate (mean, worst seed) | flagged | wrong unflagged / flagged "
        "| own px median (p90) | rot. err after priming (°) | zoom err |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for off_axis in config.off_axis:
        for method in config.methods:
            seeds = [results[f"{scene_name(config, s, off_axis)}/{method_key(config, method)}"] for s in config.seeds]
            for level in seeds[0]:
                rows = [r[level] for r in seeds]
                correct = [r["correct"] for r in rows]
                print(
                    f"| {off_axis:.0%} | {method_key(config, method)} | {level} "
                    f"| {np.mean(correct):.0%} ({min(correct):.0%}) | "
                    f"{np.mean([r['flagged'] for r in rows]):.0%} | "
                    f"{sum(r.get('wrong_unflagged', 0) for r in rows)} / "
                    f"{sum(r.get('wrong_flagged', 0) for r in rows)} | "
                    f"{np.mean([r.get('reproj_px', np.nan) for r in rows]):.1f} "
                    f"({np.mean([r.get('reproj_px_p90', np.nan) for r in rows]):.1f}) | "
                    f"{np.mean([r['rot_err_deg'] for r in rows]):.2f} "
                    f"(median {np.mean([r['rot_err_deg_median'] for r in rows]):.2f}) | "
                    f"{np.mean([r['zoom_err_rel'] for r in rows]):.3f} |"
                )


def stage_train(config: PrimingBenchmark) -> None:
    def report(key: str, result: Dict[str, float]) -> None:
        print(
            key,
            {k: round(v, 3) for k, v in result.items() if k.startswith(("rot_err", "psnr_", "test_rot"))},
            flush=True,
        )

    each_run(config, config.output / "train.json", lambda folder, method: train_once(config, folder, method), report)


def train_once(config: PrimingBenchmark, folder: Path, method: PrimingMethod) -> Dict[str, float]:
    """``ns-train mzen-cpu`` with the method, then ``ns-eval``; the eval results."""
    runs = config.output / "runs"
    run = runs / folder.name / "mzen-cpu" / method_key(config, method)
    command = [
        _tool("ns-train"),
        "mzen-cpu",
        "--data",
        str(folder),
        "--output-dir",
        str(runs),
        "--experiment-name",
        folder.name,  # nerfstudio's default, the folder's stem, cuts "seed0-off0.5-…" at the dot
        "--timestamp",
        method_key(config, method),
        "--vis",
        "tensorboard",
        "--pipeline.priming.method",
        method,
    ]
    if config.fit_candidates is not None:
        command += ["--pipeline.priming.fit.candidates", str(config.fit_candidates)]
    if config.steps is not None:
        command += ["--max-num-iterations", str(config.steps)]  # the phases keep their shares
    checkpoints = sorted((run / "nerfstudio_models").glob("*.ckpt"))
    if checkpoints:
        command += ["--load-dir", str(run / "nerfstudio_models")]
    if not (run / "mzen_run_summary.json").is_file():
        subprocess.run(command, check=True, stdout=sys.stdout, stderr=subprocess.STDOUT)
    eval_path = run / "eval.json"
    if not eval_path.is_file():
        subprocess.run(
            [_tool("ns-eval"), "--load-config", str(run / "config.yml"), "--output-path", str(eval_path)], check=True
        )
    return json.loads(eval_path.read_text())["results"]


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


def stage_cost(config: PrimingBenchmark, count: int = 100, width: int = 800, height: int = 600) -> None:
    """Time the position search for ``count`` zoom-ins (4×, off-centre windows) × ``count`` wide views."""
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(count, 3, height // 16, width // 16, generator=generator)
    wides = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    wides = (0.8 * wides + 0.2 * torch.rand(wides.shape, generator=generator)).permute(0, 2, 3, 1).contiguous()
    source = torch.randint(count, (count,), generator=generator)
    offset = torch.rand(count, 2, generator=generator) * 1.2 - 0.6
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 0.25
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta, [count, 3, height, width], align_corners=False)
    zoom_ins = F.grid_sample(wides[source].permute(0, 3, 1, 2), grid, align_corners=False).permute(0, 2, 3, 1)
    images = torch.cat([wides, zoom_ins])
    dials = torch.cat([torch.ones(count), torch.full((count,), 4.0)])
    principal = torch.tensor([[width / 2, height / 2]]).expand(2 * count, 2)
    focal = torch.full((2 * count,), width / (2 * math.tan(math.radians(22.5))))
    del wides, zoom_ins, coarse
    for method in ("position", "centred"):
        start = time.perf_counter()
        views = Views(images, dials, principal, focal, 1.0)
        plan = plan_priming(views, dials == 1.0, torch.arange(2 * count), priming_config(config, method))
        seconds = time.perf_counter() - start
        correct = float((plan.root == source).float().mean())
        print(
            f"{method_key(config, method)}: {count} zoom-ins × {count} wide views at {width}×{height}: "
            f"{seconds:.1f} s on "
            f"{torch.get_num_threads()} threads, {correct:.0%} placed in their source view",
            flush=True,
        )


def main() -> None:
    config = tyro.cli(PrimingBenchmark)
    if config.stage == "prime":
        stage_prime(config)
    elif config.stage == "train":
        stage_train(config)
    else:
        stage_cost(config)


if __name__ == "__main__":
    main()
