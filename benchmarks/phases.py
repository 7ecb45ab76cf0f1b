"""Benchmark of the three-phase pipeline on scene-maker scenes.

For each seed: make the default 128x96 scene, train the CPU preset (or ``--preset full``),
and report
- crop-and-match: share of zoom-ins matched to the wide view with the nearest true optical centre;
- learned zooms: mean relative error |z - z_gt| / z_gt over zoom-ins;
- zoom-in PSNR rendered at the primed cameras right after priming (before phase B) and at the
  learned cameras after phase C;
- wide views: mean pairwise relative-rotation error (deg, gauge-free) and focal relative error;
- seconds per phase and in total.

    python benchmarks/phases.py --seeds 0 1 2 --out bench/phases
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
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

from mzen_ns.evaluation.alignment import pairwise_rotation_error
from mzen_ns.evaluation.evaluate import render_view
from mzen_ns.evaluation.metrics import psnr
from mzen_ns.method_configs import cpu_config, full_config
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene


def render_psnr(pipeline, indices: List[int]) -> List[float]:
    """PSNR of training images rendered at the model's current cameras."""
    model = pipeline.mzen_model
    dataset = pipeline.datamanager.train_dataset
    was_training = model.training
    model.eval()
    values = []
    for index in indices:
        rgb = render_view(model, model.cameras, index).cpu()
        values.append(float(psnr(dataset.get_image_float32(index)[..., :3], rgb)[0]))
    model.train(was_training)
    return values


def run_seed(seed: int, out: Path, preset: str, steps: int | None) -> Dict[str, float]:
    scene = out / f"scene-{seed}"
    if not (scene / "transforms.json").is_file():
        make_scene(SceneMakerConfig(output=scene, seed=seed))
    base = cpu_config() if preset == "cpu" else full_config()
    datamanager = replace(base.pipeline.datamanager, data=scene)
    config = replace(
        base,
        output_dir=out / "runs",
        experiment_name=f"seed-{seed}",
        timestamp=preset,
        vis="tensorboard",
        max_num_iterations=steps or base.max_num_iterations,
        pipeline=replace(base.pipeline, datamanager=datamanager),
    )
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    pipeline = trainer.pipeline
    cameras = pipeline.mzen_model.cameras
    zoom_idx = torch.nonzero(~cameras.is_wide).squeeze(-1).tolist()
    marks: Dict[str, float] = {"start": time.perf_counter()}
    before: List[float] = []

    def at_phase_start(step: int) -> None:
        if step == pipeline.phase_schedule.b_start and not before:
            marks["b"] = time.perf_counter()
            before.extend(render_psnr(pipeline, zoom_idx))
            marks["b_eval"] = time.perf_counter() - marks["b"]
        if step == pipeline.phase_schedule.c_start:
            marks["c"] = time.perf_counter()

    trainer.callbacks.append(
        TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], lambda step: at_phase_start(step + 1))
    )
    trainer.train()
    marks["end"] = time.perf_counter()
    after = render_psnr(pipeline, zoom_idx)

    manifest = json.loads((scene / "transforms.json").read_text())
    frames = {f["file_path"]: f for f in manifest["frames"]}
    names = pipeline.datamanager.train_dataset.metadata["mzen_file_paths"]
    wide_idx = torch.nonzero(cameras.is_wide).squeeze(-1).tolist()
    wide_centres = {i: np.array(frames[names[i]]["gt_transform_matrix"])[:3, 3] for i in wide_idx}
    correct, zoom_errors = 0, []
    learned_zoom = cameras.zoom().detach()
    for index in zoom_idx:
        truth = frames[names[index]]
        centre = np.array(truth["gt_transform_matrix"])[:3, 3]
        nearest = min(wide_idx, key=lambda i: np.linalg.norm(wide_centres[i] - centre))
        correct += int(int(cameras.match.root[index]) == nearest)
        zoom_errors.append(abs(float(learned_zoom[index]) - truth["gt_zoom"]) / truth["gt_zoom"])
    learned_r = cameras.c2w().detach()[wide_idx, :, :3].numpy()
    true_r = np.stack([np.array(frames[names[i]]["gt_transform_matrix"])[:3, :3] for i in wide_idx])
    b_eval = marks.get("b_eval", 0.0)
    return {
        "seed": seed,
        "match_correct": correct / max(len(zoom_idx), 1),
        "zoom_rel_err": float(np.mean(zoom_errors)),
        "psnr_zoom_before_B": float(np.mean(before)) if before else float("nan"),
        "psnr_zoom_after_C": float(np.mean(after)),
        "wide_pair_rot_err_deg": pairwise_rotation_error(learned_r, true_r),
        "focal_rel_err": abs(float(cameras.focal) - manifest["gt_focal"]) / manifest["gt_focal"],
        "s_phase_A": marks.get("b", marks["end"]) - marks["start"],
        "s_phase_B": marks.get("c", marks["end"]) - marks.get("b", marks["end"]) - b_eval,
        "s_phase_C": marks["end"] - marks.get("c", marks["end"]),
        "s_total": marks["end"] - marks["start"] - b_eval,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/phases"))
    parser.add_argument("--preset", choices=["cpu", "full"], default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    args = parser.parse_args()
    rows = [run_seed(seed, args.out, args.preset, args.steps) for seed in args.seeds]
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append(
            "| " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |"
        )
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys if k != "seed"}
    lines.append("| mean | " + " | ".join(f"{mean[k]:.4g}" for k in keys if k != "seed") + " |")
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table)


if __name__ == "__main__":
    main()
