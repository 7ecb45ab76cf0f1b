"""What a nerfstudio user would run instead of mzen: COLMAP on every image (training and held-out,
one camera per image so each zoom can have its own focal), then stock nerfacto on COLMAP's cameras
of the training images, scored on the held-out views COLMAP registered, per zoom level.

COLMAP is ``ns-process-data``'s recipe through pycolmap (SIFT, exhaustive matching, incremental
mapping, the ``OPENCV`` camera model) except that every image gets its own camera
(``ns-process-data`` shares one, which cannot change focal between zooms); ``colmap_to_json`` turns
the largest model into nerfstudio's ``transforms.json`` with per-frame intrinsics and the scene's
train / held-out split. nerfacto trains at mzen's CPU budget and field size (``--budget mzen-cpu``:
1800 steps of 1024 rays, 12 hash levels of 2^17 entries up to 1024, 24 field samples; its own two
proposal networks at 64 + 32 samples) or at its own defaults (``--budget nerfacto``, a GPU's work).
A held-out view COLMAP left out cannot be rendered: its level's count says how many were scored.

    python benchmarks/colmap_nerfacto.py --scenes s81 s82 s83 --output runs

Prints, per scene, the images COLMAP registered per level (training / held-out) and held-out PSNR
per level (mean ± standard error over the scored views); writes ``SCENE_colmap-nerfacto.json`` into
``--output`` (``--cameras single``: one camera for every image, as ``ns-process-data`` makes it).
One training at a time (on 2 cores two slow each other several times over).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pycolmap
import torch

from mzen_dataparsers.ffmzn_dataparser import FFMZNDataParserConfig
from mzen_dataparsers.manifest import assign_splits, level_index, read_scene, zoom_levels
from mzen_ns.patches import allow_checkpoint_types, lpips_only_if_cached

BUDGETS: Dict[str, List[str]] = {
    "mzen-cpu": [
        "--max-num-iterations",
        "1800",
        "--mixed-precision",
        "False",
        "--machine.device-type",
        "cpu",
        "--pipeline.datamanager.train-num-rays-per-batch",
        "1024",
        "--pipeline.model.num-levels",
        "12",
        "--pipeline.model.log2-hashmap-size",
        "17",
        "--pipeline.model.max-res",
        "1024",
        "--pipeline.model.num-proposal-samples-per-ray",
        "64",
        "32",
        "--pipeline.model.num-nerf-samples-per-ray",
        "24",
        "--pipeline.model.eval-num-rays-per-chunk",
        "4096",
    ],
    "nerfacto": [],
}
"""``ns-train nerfacto`` arguments per budget: mzen's CPU preset's steps, rays and field, or nerfacto's own."""
QUIET = ["--vis", "tensorboard", "--steps-per-eval-batch", "100000", "--steps-per-eval-image", "100000"]
"""No viewer and no evaluation during training (the held-out views are scored once, at the end)."""
NS_TRAIN = (
    "import sys\n"
    "from mzen_ns.patches import lpips_only_if_cached\n"
    "from nerfstudio.scripts.train import entrypoint\n"
    "sys.argv = ['ns-train'] + sys.argv[1:]\n"
    "with lpips_only_if_cached():\n"
    "    entrypoint()\n"
)
"""``ns-train`` with LPIPS (an evaluation metric that downloads AlexNet at set-up) left out where its
weights are not cached; training is stock."""


def frames_and_splits(scene: Path) -> List[Tuple[Path, float, str]]:
    """(image path, level, ``train`` / ``test``) of every frame of an FF-MZN scene, split as the
    dataparser splits it (the scene's own split where it gives one)."""
    record = read_scene(scene)
    splits = assign_splits(record.frames, FFMZNDataParserConfig.test_every)
    levels = zoom_levels([frame.dial for frame in record.frames])
    return [
        (record.root / frame.file_path, levels[level_index(frame.dial, levels)], split)
        for frame, split in zip(record.frames, splits)
    ]


def image_name(index: int, path: Path) -> str:
    """The name frame ``index`` (at ``path``) has in COLMAP's and nerfstudio's image folder."""
    return f"{index:05d}{path.suffix.lower()}"


def colmap_cameras(frames: Sequence[Tuple[Path, float, str]], work: Path, per_image: bool = True) -> Path:
    """COLMAP on every frame, one ``OPENCV`` camera per image (``per_image``) or one for all, as
    ``ns-process-data``; the folder of nerfstudio data (``transforms.json`` of the registered frames,
    train / val / test file lists, ``images/``)."""
    from nerfstudio.process_data.colmap_utils import colmap_to_json

    images = work / "images"
    images.mkdir(parents=True)
    for index, (path, _, _) in enumerate(frames):
        os.symlink(path.resolve(), images / image_name(index, path))
    database = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "OPENCV"
    mode = pycolmap.CameraMode.PER_IMAGE if per_image else pycolmap.CameraMode.SINGLE
    pycolmap.extract_features(database, images, camera_mode=mode, reader_options=reader)
    pycolmap.match_exhaustive(database)
    sparse = work / "sparse"
    sparse.mkdir()
    models = pycolmap.incremental_mapping(database, images, sparse)
    if not models:
        raise RuntimeError(f"COLMAP built no model from the {len(frames)} images of {work}")
    best = max(models, key=lambda key: models[key].num_reg_images())
    models[best].write(sparse / str(best))
    colmap_to_json(sparse / str(best), work, use_single_camera_mode=not per_image)
    manifest = json.loads((work / "transforms.json").read_text())
    registered = {Path(frame["file_path"]).name for frame in manifest["frames"]}
    names = {
        split: [f"images/{image_name(i, p)}" for i, (p, _, s) in enumerate(frames) if s == split]
        for split in ("train", "test")
    }
    for split, key in (("train", "train_filenames"), ("test", "val_filenames"), ("test", "test_filenames")):
        manifest[key] = [name for name in names[split] if Path(name).name in registered]
    (work / "transforms.json").write_text(json.dumps(manifest, indent=2))
    return work


def registered_per_level(frames: Sequence[Tuple[Path, float, str]], data: Path) -> Dict[float, Dict[str, str]]:
    """Per level, ``registered / all`` of its training and of its held-out frames."""
    manifest = json.loads((data / "transforms.json").read_text())
    registered = {Path(frame["file_path"]).name for frame in manifest["frames"]}
    counts: Dict[float, Dict[str, str]] = {}
    for level in zoom_levels([dial for _, dial, _ in frames]):
        for split in ("train", "test"):
            names = [image_name(i, p) for i, (p, d, s) in enumerate(frames) if s == split and d == level]
            counts.setdefault(level, {})[split] = f"{sum(n in registered for n in names)}/{len(names)}"
    return counts


def train(data: Path, output: Path, budget: str) -> Path:
    """Stock ``ns-train nerfacto`` on ``data``; the run's ``config.yml``."""
    arguments = ["nerfacto", "--data", str(data), "--output-dir", str(output), *BUDGETS[budget], *QUIET]
    arguments += ["--viewer.quit-on-train-completion", "True", "nerfstudio-data"]
    subprocess.run([sys.executable, "-c", NS_TRAIN, *arguments], check=True)
    return sorted(output.glob("*/*/*/config.yml"))[-1]


@torch.no_grad()
def held_out_psnr(config: Path, dials: Dict[str, float]) -> Dict[float, List[float]]:
    """PSNR of each held-out view nerfacto renders through COLMAP's camera, per level; ``dials``
    maps an image's file name to its level."""
    from nerfstudio.utils.eval_utils import eval_setup

    allow_checkpoint_types()
    with lpips_only_if_cached():
        _, pipeline, _, _ = eval_setup(config, test_mode="test")
    dataset = pipeline.datamanager.eval_dataset
    scores: Dict[float, List[float]] = {}
    for index in range(len(dataset)):
        camera = dataset.cameras[index : index + 1].to(pipeline.device)
        rendered = pipeline.model.get_outputs_for_camera(camera)["rgb"].clamp(0, 1).cpu()
        truth = dataset.get_image_float32(index)[..., :3]
        error = float(((rendered - truth) ** 2).mean())
        level = dials[Path(dataset.image_filenames[index]).name]
        scores.setdefault(level, []).append(-10.0 * math.log10(max(error, 1e-10)))
    return scores


def cell(values: Sequence[float], held_out: int) -> str:
    """Mean ± standard error over the scored views, and how many of the level's held-out views."""
    if not values:
        return f"– (0/{held_out})"
    spread = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return f"{statistics.mean(values):.2f} ± {spread:.2f} ({len(values)}/{held_out})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=Path, nargs="+", required=True, help="FF-MZN scene folders")
    parser.add_argument("--output", type=Path, default=Path("colmap_nerfacto_runs"), help="runs and results")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="mzen-cpu", help="nerfacto's training budget")
    parser.add_argument(
        "--cameras",
        choices=["per-image", "single"],
        default="per-image",
        help="COLMAP cameras (single: ns-process-data's)",
    )
    args = parser.parse_args()
    print("| scene | COLMAP registered, training / held-out per level | held-out PSNR per level (views scored) |")
    print("|---|---|---|")
    for scene in args.scenes:
        name = f"{scene.name}_colmap-nerfacto" + ("" if args.cameras == "per-image" else "-single")
        result_file = args.output / f"{name}.json"
        frames = frames_and_splits(scene)
        if not result_file.is_file():
            work = args.output / name
            per_image = args.cameras == "per-image"
            data = work / "data" if (work / "data").is_dir() else colmap_cameras(frames, work / "data", per_image)
            configs = sorted((work / "runs").glob("*/*/*/config.yml"))
            config = configs[-1] if configs else train(data, work / "runs", args.budget)
            dials = {image_name(i, p): d for i, (p, d, _) in enumerate(frames)}
            result = {
                "registered": {f"{k:g}x": v for k, v in registered_per_level(frames, data).items()},
                "psnr": {f"{k:g}x": v for k, v in held_out_psnr(config, dials).items()},
                "held_out": {
                    f"{level:g}x": sum(1 for _, d, s in frames if s == "test" and d == level)
                    for level in zoom_levels([d for _, d, _ in frames])
                },
                "budget": args.budget,
                "cameras": args.cameras,
            }
            result_file.write_text(json.dumps(result, indent=2))
        result = json.loads(result_file.read_text())
        registered = " · ".join(f"{k} {v['train']} / {v['test']}" for k, v in result["registered"].items())
        scores = " · ".join(f"{k} {cell(result['psnr'].get(k, []), n)}" for k, n in result["held_out"].items())
        print(f"| {scene.name} | {registered} | {scores} |")


if __name__ == "__main__":
    main()
