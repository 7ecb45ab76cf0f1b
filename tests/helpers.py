"""Helpers shared by the tests: tiny scenes, tiny trainers, textures, and stock ns-train offline."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

W, H = 16, 12
"""Size of the hand-written test scenes."""


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_rgb(seed: int, width: int = W, height: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def zoom_cameras(dials, focal_guess: float, width: int, height: int, cx=None, cy=None):
    """A camera model for ``dials`` (the dial-1 images wide), principal point at the image centre
    unless ``cx``/``cy`` are given."""
    from mzen_ns.cameras import ZoomCameras, ZoomCamerasConfig

    dials = torch.as_tensor(dials, dtype=torch.float32)
    count = dials.numel()
    return ZoomCameras(
        ZoomCamerasConfig(),
        dials=dials,
        is_wide=dials == 1.0,
        focal_guess=focal_guess,
        aspect=1.0,
        cx=torch.full((count,), width / 2 if cx is None else cx),
        cy=torch.full((count,), height / 2 if cy is None else cy),
        width=width,
        height=height,
    )


def tiny_scene(root: Path, seed: int = 0, n_test: int = 0) -> Path:
    """A 32x24 scene-maker scene: 3 wide + 2 zoom-ins at 4x for training (and ``n_test`` held out per level)."""
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    if not (root / "transforms.json").is_file():
        make_scene(
            SceneMakerConfig(
                output=root, width=32, height=24, zooms=(1.0, 4.0), n_wide=3, n_zoom=2, n_test=n_test, seed=seed
            )
        )
    return root


def tiny_trainer_config(scene: Path, output_dir: Path, steps: int, boundaries=(0.4, 0.7), **overrides):
    """mzen's smoke preset (the CPU preset shrunk to milliseconds per step), for behaviour tests."""
    from mzen_ns.method_configs import smoke_config

    base = smoke_config()
    model = replace(base.pipeline.model, phases=replace(base.pipeline.model.phases, boundaries=boundaries))
    datamanager = replace(base.pipeline.datamanager, data=scene)
    fields = dict(
        output_dir=output_dir,
        experiment_name="tiny",
        timestamp="run",
        max_num_iterations=steps,
        steps_per_save=1000,
        vis="tensorboard",
        pipeline=replace(base.pipeline, model=model, datamanager=datamanager),
    )
    fields.update(overrides)
    return replace(base, **fields)


def add_callback(trainer, where, func) -> None:
    """Run ``func(step=…)`` at ``where`` (a ``TrainingCallbackLocation``) of every training step."""
    from nerfstudio.engine.callbacks import TrainingCallback

    trainer.callbacks.append(TrainingCallback([where], func))


def build(config):
    """The trainer of ``config``, set up (pipeline, optimizers, callbacks), not trained."""
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def train(config):
    """The trainer of ``config`` after training."""
    trainer = build(config)
    trainer.train()
    return trainer


def texture(seed: int, height: int = 96, width: int = 128) -> torch.Tensor:
    """A smooth random RGB texture (H, W, 3) with fine detail, for matching tests."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    fine = torch.rand(1, 3, height, width, generator=generator)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False) * 0.7 + 0.3 * fine
    return image[0].permute(1, 2, 0)


def zoom_in(image: torch.Tensor, centre, zoom: float) -> torch.Tensor:
    """The view of ``image`` ``zoom``× narrower, centred on pixel ``centre`` (x, y)."""
    height, width = image.shape[:2]
    theta = torch.tensor([[[1 / zoom, 0, 2 * centre[0] / width - 1], [0, 1 / zoom, 2 * centre[1] / height - 1]]])
    grid = F.affine_grid(theta, [1, 3, height, width], align_corners=False)
    return F.grid_sample(image.permute(2, 0, 1)[None], grid, align_corners=False)[0].permute(1, 2, 0)


# Stock nerfacto builds torchmetrics' LPIPS, which downloads AlexNet weights: offline that crashes
# ns-train before training. These runs replace it by a stub in the training process only (LPIPS is
# an evaluation metric and plays no part in training); everything else is stock.
_NS_TRAIN = textwrap.dedent(
    """
    import sys, torch
    import torchmetrics.image.lpip as lpip

    class NoLPIPS(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
        def forward(self, a, b):
            return torch.tensor(float("nan"))

    lpip.LearnedPerceptualImagePatchSimilarity = NoLPIPS
    from nerfstudio.scripts.train import entrypoint
    sys.argv = ["ns-train"] + sys.argv[1:]
    entrypoint()
    """
)


def run_stock_ns_train(
    method: str, data: Path, output_dir: Path, parser: str, rays: int = 128, timeout: int = 600, *extra: str
) -> subprocess.CompletedProcess:
    """A few CPU steps of ``ns-train METHOD --data DATA ... PARSER`` for a stock method, offline
    (LPIPS stubbed in that process), ``rays`` per batch, no periodic evaluation."""
    args = [
        method,
        "--data",
        str(data),
        "--output-dir",
        str(output_dir),
        "--machine.device-type",
        "cpu",
        "--vis",
        "tensorboard",
        "--pipeline.datamanager.train-num-rays-per-batch",
        str(rays),
        "--pipeline.datamanager.eval-num-rays-per-batch",
        str(rays),
        "--steps-per-eval-image",
        "1000",
        "--steps-per-eval-batch",
        "1000",
        "--steps-per-eval-all-images",
        "1000",
        *extra,
        parser,
    ]
    return subprocess.run([sys.executable, "-c", _NS_TRAIN, *args], capture_output=True, text=True, timeout=timeout)


def turn(axis, degrees: float) -> torch.Tensor:
    """The rotation by ``degrees`` about ``axis``."""
    vector = torch.tensor(axis, dtype=torch.float64)
    x, y, z = (vector / vector.norm() * math.radians(degrees)).tolist()
    return torch.linalg.matrix_exp(torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=torch.float64)).float()


def turned_view(image: torch.Tensor, rotation: torch.Tensor, zoom: float, focal: float) -> torch.Tensor:
    """What a camera at ``image``'s optical centre (focal ``focal``, principal point at the centre)
    turned by ``rotation`` and ``zoom``× longer sees."""
    height, width = image.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    rays = torch.stack(
        [(xs - width / 2) / (focal * zoom), -(ys - height / 2) / (focal * zoom), -torch.ones_like(xs)], -1
    )
    local = rays @ rotation.T
    u = width / 2 + focal * local[..., 0] / -local[..., 2]
    v = height / 2 - focal * local[..., 1] / -local[..., 2]
    grid = torch.stack([u / width * 2 - 1, v / height * 2 - 1], -1)[None]
    return F.grid_sample(image.permute(2, 0, 1)[None], grid, mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
