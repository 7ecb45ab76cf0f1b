"""Where one training step of a preset goes on this machine, and its rays per second.

Sets up ``ns-train``'s trainer for ``--method`` (``mzen`` on the CPU preset by default, or
``nerfacto`` as a nerfstudio user runs it, on the same images at their true cameras, as the
anchor) and times ``--steps`` training steps after
``--warmup`` ones, split into the stages of a step: ray batch (pixel sampling and camera rays),
forward (proposal sampling with the proposal networks, the field, rendering, losses), backward and
optimizer. The forward is split further by module (hooks time each proposal network and the
field's hash-grid encoding, MLPs and rendering as they run), and each module's backward is timed
by replaying it on the inputs it saw in the last step. Prints one markdown table per method.

    python benchmarks/step_profile.py --data SCENE --method mzen nerfacto --grid torch fused --steps 20

Run it alone: another torch process on the same cores changes every figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from mzen_ns.patches import lpips_only_if_cached


class Timer:
    """Wall-clock sums per stage name (CPU: operations run synchronously)."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time the block takes to ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started


def modules_to_time(model: nn.Module) -> Dict[str, nn.Module]:
    """The parts of a nerfacto-style model whose forward is timed: the proposal sampler (its
    proposal networks included), every hash-grid encoding and MLP by its name in the model, the
    field's direction encoding, and the renderers (the field's own ``forward`` is called directly,
    so only its parts can be timed)."""
    from nerfstudio.field_components.encodings import HashEncoding, SHEncoding
    from nerfstudio.field_components.mlp import MLP

    parts: Dict[str, nn.Module] = {}
    if hasattr(model, "proposal_sampler"):
        parts["proposal sampler (proposal networks included)"] = model.proposal_sampler
    for name, module in model.named_modules():
        if isinstance(module, HashEncoding):
            parts[f"hash grid {name}"] = module
        elif isinstance(module, MLP):
            parts[f"MLP {name}"] = module
        elif isinstance(module, SHEncoding):
            parts[f"direction encoding {name}"] = module
    for name in ("renderer_rgb", "renderer_accumulation", "renderer_depth", "renderer_expected_depth"):
        if hasattr(model, name):
            parts[name] = getattr(model, name)
    return parts


def hook_forward(parts: Dict[str, nn.Module], timer: Timer, seen: Dict[str, Tuple]) -> List[Callable]:
    """Time each part's forward into ``timer`` and keep its last inputs in ``seen``; returns the
    hook handles' removers."""
    removers = []
    for name, module in parts.items():
        started: List[float] = []

        def before(_module, inputs, name=name, started=started):
            started.append(time.perf_counter())
            seen[name] = tuple(x.detach() if isinstance(x, torch.Tensor) else x for x in inputs)

        def after(_module, _inputs, _output, name=name, started=started):
            timer.seconds[f"forward: {name}"] += time.perf_counter() - started.pop()

        removers.append(module.register_forward_pre_hook(before).remove)
        removers.append(module.register_forward_hook(after).remove)
    return removers


def replay_backward(module: nn.Module, inputs: Tuple, repeats: int) -> float:
    """Seconds of one backward pass of ``module`` on ``inputs`` (inputs that are float tensors get
    gradients too, as they do inside the model), the mean over ``repeats``."""
    total = 0.0
    for _ in range(repeats):
        args = tuple(
            x.clone().requires_grad_(True) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
            for x in inputs
        )
        output = module(*args)
        outputs = output if isinstance(output, (tuple, list)) else [output]
        if isinstance(output, dict):
            outputs = list(output.values())
        tensors = [o for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad]
        if not tensors:
            return float("nan")
        started = time.perf_counter()
        torch.autograd.backward(tensors, [torch.ones_like(t) for t in tensors])
        total += time.perf_counter() - started
        module.zero_grad(set_to_none=True)
    return total / repeats


def posed_copy(scene: Path, folder: Path) -> Path:
    """``scene`` (mzen's format, with the scene maker's ground truth) as a nerfstudio scene: every
    frame with its true pose and its own focal (true focal × true zoom), images linked."""
    manifest = json.loads((scene / "transforms.json").read_text())
    focal = float(manifest["gt_focal"])
    frames = []
    for frame in manifest["frames"]:
        zoom = float(frame.get("gt_zoom", 1.0))
        frames.append(
            {
                "file_path": str((scene / frame["file_path"]).resolve()),
                "transform_matrix": frame["gt_transform_matrix"],
                "fl_x": focal * zoom,
                "fl_y": focal * zoom,
            }
        )
    width, height = int(manifest["w"]), int(manifest["h"])
    posed = {"w": width, "h": height, "cx": width / 2, "cy": height / 2, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(posed))
    return folder


def trainer_for(method: str, data: Path, output: Path, grid: str = "fused", model: Optional[Dict] = None):
    """nerfstudio's trainer for ``method`` (an ``ns-train`` method name) on ``data``, set up, mzen's
    hash grids on the fused CPU kernel or the torch ops (``grid``), the model config's fields in
    ``model`` replaced (lists as tuples); nerfstudio's own methods read a posed copy of the scene and
    sample in this process."""
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    config = all_methods[method]
    if method.startswith("mzen"):
        config.pipeline.model.fused_cpu_grid = grid == "fused"
    for name, value in (model or {}).items():
        if not hasattr(config.pipeline.model, name):
            raise SystemExit(f"--model: {method}'s model config has no field {name!r}")
        setattr(config.pipeline.model, name, tuple(value) if isinstance(value, list) else value)
    if not method.startswith("mzen"):
        data = posed_copy(data, Path(tempfile.mkdtemp(dir=output)))
        old = config.pipeline.datamanager
        config.pipeline.datamanager = VanillaDataManagerConfig(
            dataparser=old.dataparser,
            train_num_rays_per_batch=old.train_num_rays_per_batch,
            eval_num_rays_per_batch=old.eval_num_rays_per_batch,
        )
    config.data = data
    config.pipeline.datamanager.data = data
    config.output_dir = output
    config.vis = "tensorboard"
    config.machine.device_type = "cpu"
    config.mixed_precision = False
    config.pipeline.datamanager.images_on_gpu = False
    if hasattr(config.pipeline.datamanager, "masks_on_gpu"):
        config.pipeline.datamanager.masks_on_gpu = False
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    with lpips_only_if_cached():  # nerfacto builds LPIPS at set-up, which downloads AlexNet otherwise
        trainer.setup()
    return trainer


def profile(
    method: str, data: Path, steps: int, warmup: int, grid: str = "fused", model: Optional[Dict] = None
) -> Tuple[Dict[str, float], int]:
    """Seconds per step by stage for ``method`` (its model config's fields in ``model`` replaced),
    and its rays per batch."""
    with tempfile.TemporaryDirectory() as folder:
        trainer = trainer_for(method, data, Path(folder), grid, model)
        pipeline, model = trainer.pipeline, trainer.pipeline.model
        rays = trainer.config.pipeline.datamanager.train_num_rays_per_batch
        for step in range(warmup):
            trainer.train_iteration(step)
        timer, seen = Timer(), {}
        parts = modules_to_time(model)
        removers = hook_forward(parts, timer, seen)
        for step in range(warmup, warmup + steps):
            with timer.stage("step"):
                trainer.optimizers.zero_grad_all()
                with timer.stage("ray batch"):
                    ray_bundle, batch = pipeline.datamanager.next_train(step)
                with timer.stage("forward"):
                    outputs = model(ray_bundle)
                    metrics = model.get_metrics_dict(outputs, batch)
                    losses = model.get_loss_dict(outputs, batch, metrics)
                    loss = sum(losses.values())
                with timer.stage("backward"):
                    loss.backward()
                with timer.stage("optimizer"):
                    trainer.optimizers.optimizer_step_all()
                    trainer.optimizers.scheduler_step_all(step)
        for remove in removers:
            remove()
        per_step = {name: seconds / steps for name, seconds in timer.seconds.items()}
        for name, module in parts.items():
            if (
                name in seen
                and name.startswith(("hash grid", "MLP"))
                and any(p.requires_grad for p in module.parameters())
            ):
                per_step[f"backward: {name} (replayed)"] = replay_backward(module, seen[name], repeats=3)
        return per_step, rays


def table(method: str, per_step: Dict[str, float], rays: int) -> str:
    """One markdown table: stage, ms per step, share of the step."""
    total = per_step["step"]
    lines = [
        f"### {method}: {total:.3f} s/step, {rays / total:.0f} rays/s",
        "",
        "| stage | ms/step | share |",
        "|---|---|---|",
    ]
    order = ["ray batch", "forward", "backward", "optimizer"]
    names = order + sorted(n for n in per_step if n not in order and n != "step")
    for name in names:
        if name in per_step:
            lines.append(f"| {name} | {1000 * per_step[name]:.1f} | {100 * per_step[name] / total:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="scene folder (transforms.json)")
    parser.add_argument("--method", nargs="+", default=["mzen"], help="ns-train method names")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing")
    parser.add_argument(
        "--grid",
        nargs="+",
        choices=["fused", "torch"],
        default=["fused"],
        help="mzen's hash grids: the fused CPU kernel, the torch ops, or both in turn",
    )
    parser.add_argument(
        "--model",
        type=json.loads,
        default=None,
        help='JSON of model config fields to replace, e.g. \'{"footprint": "point", "num_proposal_iterations": 2, '
        '"num_proposal_samples_per_ray": [64, 32]}\'',
    )
    args = parser.parse_args()
    for method in args.method:
        for grid in args.grid if method.startswith("mzen") else ["torch"]:
            per_step, rays = profile(method, args.data, args.steps, args.warmup, grid, args.model)
            label = f"{method} ({grid} hash grid)" if method.startswith("mzen") else method
            label += f" {json.dumps(args.model)}" if args.model else ""
            print(table(label, per_step, rays) + "\n", flush=True)


if __name__ == "__main__":
    main()
