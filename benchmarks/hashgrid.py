"""Ablation of phase A's hash-grid fixes: plain grid / smooth-gradient STE / STE +
level curriculum, on scene-maker scenes, with the CPU preset by default.

For each seed and variant it trains ``--configuration`` (default ``phase-a``: the bootstrap these
fixes are for; ``mzen`` for the full method) in-process and reports, over the wide training views:
rotation error (deg) and translation error after a Sim(3) alignment to the truth, the gauge-free
pairwise rotation error, focal relative error, and PSNR of the wide views rendered at their
learned cameras; then mean and worst over seeds per variant.

    python benchmarks/hashgrid.py --seeds 0 1 2 --out bench/hashgrid
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from mzen_ns.encoding import LevelCurriculumConfig
from mzen_ns.evaluation.alignment import camera_errors, pairwise_rotation_error, sim3_alignment
from mzen_ns.evaluation.evaluate import render_view
from mzen_ns.evaluation.metrics import psnr
from mzen_ns.method_configs import configuration_config
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

TOKENS: Dict[str, Dict] = {
    "plain": dict(hash_ste_lambda=0.0),
    "ste": dict(hash_ste_lambda=1.0, hash_ste_mode="paper"),
    "ste-smooth": dict(hash_ste_lambda=1.0, hash_ste_mode="smooth"),
    "curriculum": dict(hash_curriculum=LevelCurriculumConfig(enabled=True)),
    "curriculum-early": dict(hash_curriculum=LevelCurriculumConfig(enabled=True, interval=(0.0, 0.5))),
    "ndc": dict(parameterisation="ndc", ndc_near=0.5, near_plane=0.5),
    "contract2": dict(parameterisation="contraction", contraction_radius=2.0),
    "decoder128": dict(hidden_dim=128, hidden_dim_color=128),
    "footprint": dict(footprint="downweight"),
    "gt-start": dict(),
}
"""Variant names join these with ``+`` (e.g. ``ste+curriculum+ndc``); unnamed choices are the plain
grid without curriculum, nerfacto's contraction and decoder, point samples (``footprint``: hash
levels weighed by each sample's pixel footprint). ``gt-start`` is a diagnostic: the cameras
start at the ground truth (poses, focal, zooms) instead of the identity and are learned as usual, so
what they drift to shows what the objective itself prefers."""

BASE = dict(
    hash_ste_lambda=0.0,
    hash_curriculum=LevelCurriculumConfig(enabled=False),
    footprint="point",
    parameterisation="contraction",
    contraction_radius=1.0,
)


def variant_overrides(variant: str) -> Dict:
    """Model-config overrides of a ``+``-joined variant name."""
    overrides = dict(BASE)
    for token in variant.split("+"):
        if token not in TOKENS:
            raise SystemExit(f"unknown variant token {token!r} in {variant!r}; known: {', '.join(TOKENS)}")
        overrides.update(TOKENS[token])
    return overrides


def run(seed: int, variant: str, args: argparse.Namespace) -> Dict[str, float]:
    scene = args.out / "scenes" / f"seed{seed}"
    if not (scene / "transforms.json").is_file():
        make_scene(SceneMakerConfig(output=scene, seed=seed))
    base = configuration_config(args.configuration, args.preset)
    model = replace(base.pipeline.model, **variant_overrides(variant))
    datamanager = replace(base.pipeline.datamanager, data=scene)
    config = replace(
        base,
        output_dir=args.out / "runs",
        experiment_name=f"seed{seed}-{variant}",
        timestamp=args.configuration,
        vis="tensorboard",
        max_num_iterations=args.steps or base.max_num_iterations,
        pipeline=replace(base.pipeline, model=model, datamanager=datamanager),
    )
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    cameras = trainer.pipeline.mzen_model.cameras
    dataset = trainer.pipeline.datamanager.train_dataset
    truth = dataset.metadata["mzen_ground_truth"]
    if "gt-start" in variant.split("+"):
        start_at_truth(cameras, truth)
    initial = wide_camera_errors(cameras, truth)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    pipeline = trainer.pipeline
    wide = torch.nonzero(cameras.is_wide).squeeze(-1).tolist()
    pipeline.mzen_model.eval()
    wide_psnr = [
        float(psnr(dataset.get_image_float32(i)[..., :3], render_view(pipeline.mzen_model, cameras, i).cpu())[0])
        for i in wide
    ]
    return {
        "seed": seed,
        "variant": variant,
        **wide_camera_errors(cameras, truth),
        "wide_psnr": float(np.mean(wide_psnr)),
        "train_s": seconds,
        **{f"initial_{key}": value for key, value in initial.items()},
        "learned_focal": float(cameras.focal),
        "true_focal": float(truth["focal"]),
    }


def wide_camera_errors(cameras, truth: Dict) -> Dict[str, float]:
    """Wide views' rotation/translation error after Sim(3) alignment, pairwise rotation error,
    focal relative error, and the Sim(3) scale (learned spread relative to the true one)."""
    wide = torch.nonzero(cameras.is_wide).squeeze(-1).tolist()
    learned = cameras.c2w().detach().cpu().numpy()[wide]
    true = truth["c2w"].numpy()[wide, :3, :]
    alignment = sim3_alignment(learned, true)
    rot, trans = camera_errors(learned, true, alignment)
    spread = lambda c2w: float(np.linalg.norm(c2w[:, :, 3] - c2w[:, :, 3].mean(0), axis=1).mean())  # noqa: E731
    return {
        "wide_rot_err_deg": rot,
        "wide_trans_err": trans,
        "wide_pair_rot_err_deg": pairwise_rotation_error(learned, true),
        "focal_rel_err": abs(float(cameras.focal) - truth["focal"]) / truth["focal"],
        "centre_spread_ratio": spread(learned) / max(spread(true), 1e-12),
    }


@torch.no_grad()
def start_at_truth(cameras, truth: Dict) -> None:
    """Diagnostic start: every camera at its ground truth (pose, zoom, focal), still learnable."""
    cameras.base_c2w.copy_(truth["c2w"][:, :3, :].float())
    cameras.log_focal.fill_(float(np.log(truth["focal"])))
    cameras.log_zoom.copy_(truth["zoom"].float().log())


def table(rows: List[Dict]) -> str:
    """Per-run rows, then mean / worst over seeds per variant (worst: largest error, lowest PSNR)."""
    keys = [
        "wide_rot_err_deg",
        "wide_trans_err",
        "wide_pair_rot_err_deg",
        "focal_rel_err",
        "centre_spread_ratio",
        "wide_psnr",
        "train_s",
    ]
    worst = {"wide_psnr": np.nanmin, "centre_spread_ratio": np.nanmin}
    lines = ["| variant | seed | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['seed']} | " + " | ".join(f"{row.get(k, np.nan):.4g}" for k in keys) + " |"
        )
    for variant in dict.fromkeys(r["variant"] for r in rows):
        subset = [r for r in rows if r["variant"] == variant]
        values = {k: [r.get(k, np.nan) for r in subset] for k in keys}
        cells = [
            f"{np.nanmean(values[k]):.4g} / {worst.get(k, np.nanmax)(values[k]):.4g}"
            if np.isfinite(values[k]).any()
            else "–"
            for k in keys
        ]
        lines.append(f"| **{variant}** | mean / worst ({len(subset)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["plain", "ste", "ste+curriculum"],
        help="names joining " + ", ".join(TOKENS) + " with +",
    )
    parser.add_argument("--configuration", choices=["phase-a", "mzen"], default="phase-a")
    parser.add_argument("--preset", choices=["cpu", "full", "smoke"], default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's budget")
    parser.add_argument("--out", type=Path, default=Path("bench/hashgrid"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / f"results-{args.configuration}.json"
    rows = json.loads(results.read_text()) if results.is_file() else []
    for variant in args.variants:
        for seed in args.seeds:
            if any(r["seed"] == seed and r["variant"] == variant for r in rows):
                continue  # resumable: finished runs are kept
            rows.append(run(seed, variant, args))
            results.write_text(json.dumps(rows, indent=2))
    rows = [r for r in rows if r["variant"] in args.variants and r["seed"] in args.seeds]
    text = table(rows)
    (args.out / f"results-{args.configuration}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
