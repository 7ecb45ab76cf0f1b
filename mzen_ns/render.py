"""``mzen-render --load-config CONFIG --view NAME --magnification M --output FILE``: one view of an
mzen run rendered at its pose and zoom, magnified about its principal point.

A training view is rendered at its learned camera; a held-out view is first registered against
the frozen field exactly as ``ns-eval`` does (crop-and-match priming, then pose/zoom optimisation,
``pipeline.registration``). ``--magnification 16`` renders the central 1/16 of that view's field
at full resolution — the detail a 16× zoom-in would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
import tyro
from jaxtyping import Float
from rich.console import Console
from torch import Tensor

CONSOLE = Console()


def find_view(names: List[str], view: str) -> Optional[int]:
    """Index of ``view`` among ``names``: exact path, else a unique file name or stem."""
    if view in names:
        return names.index(view)
    matches = [i for i, name in enumerate(names) if Path(name).name == view or Path(name).stem == view]
    if len(matches) > 1:
        raise ValueError(f"view {view!r} is ambiguous: {', '.join(names[i] for i in matches)}; give its path")
    return matches[0] if matches else None


def view_camera(pipeline: Any, view: str) -> Tuple[Any, int, str]:
    """(cameras, index, split) of ``view``: the learned training camera, or a held-out view
    registered as ``ns-eval`` registers it."""
    from mzen_ns.datamanager import stack_images
    from mzen_ns.registration import prime_views, register

    train = pipeline.datamanager.train_dataset
    index = find_view([str(p) for p in train.metadata["mzen_file_paths"]], view)
    if index is not None:
        return pipeline.mzen_model.cameras, index, "train"
    test = pipeline.datamanager.eval_dataset
    names = [str(p) for p in test.metadata["mzen_file_paths"]] if test is not None else []
    index = find_view(names, view)
    if index is None:
        known = [str(p) for p in train.metadata["mzen_file_paths"]] + names
        raise ValueError(f"no view {view!r} in this run; its views are: {', '.join(known)}")
    image = stack_images(test)[index : index + 1]
    dial = test.metadata["mzen_dial"][index : index + 1].float()
    config = pipeline.config.registration
    cameras, _ = prime_views(pipeline.mzen_model, stack_images(train), image, dial, pipeline.priming_config)
    register(pipeline.mzen_model, cameras, image, config)
    return cameras, 0, "test"


@torch.no_grad()
def render_magnified(model: Any, cameras: Any, index: int, magnification: float) -> Float[Tensor, "H W 3"]:
    """Render camera ``index`` of ``cameras`` with its focal multiplied by ``magnification``."""
    from mzen_ns.evaluation import render_view

    if not magnification > 0:
        raise ValueError(f"magnification must be positive, got {magnification}")
    was_training = model.training
    model.eval()
    try:
        return render_view(model, cameras, index, magnification)
    finally:
        model.train(was_training)


@dataclass
class RenderView:
    """Render one training or held-out view of an mzen run at any magnification."""

    load_config: Path
    """The run's config.yml."""
    view: str
    """The view: its path as in the scene (e.g. ``images/4x/train_002.png``), file name or stem."""
    output: Path = Path("render.png")
    """PNG to write."""
    magnification: float = 1.0
    """Focal multiplier about the principal point (16: the central 1/16 of the field)."""

    def main(self) -> Path:
        """Load the run, render, write the PNG; its path."""
        from nerfstudio.utils.eval_utils import eval_setup
        from PIL import Image

        _, pipeline, _, step = eval_setup(self.load_config, test_mode="test")
        cameras, index, split = view_camera(pipeline, self.view)
        rgb = render_magnified(pipeline.mzen_model, cameras, index, self.magnification)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb.cpu().numpy() * 255.0).round().astype(np.uint8)).save(self.output)
        zoom = float(cameras.zoom()[index]) * self.magnification
        CONSOLE.print(f"[bold green]Wrote[/] {self.output}: {split} view {self.view!r} (step {step}), "
                      f"zoom {zoom:.3f} relative to the wide focal {float(pipeline.mzen_model.cameras.focal):.2f} px")
        return self.output


def entrypoint() -> None:
    """Console script."""
    tyro.cli(RenderView).main()


if __name__ == "__main__":
    entrypoint()
