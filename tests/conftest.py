"""Shared helpers: tiny FF-MZN scenes written on the fly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest
from PIL import Image



@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted images and demo scenes go to a temporary folder, not the user's cache."""
    os.environ["MZEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("mzen-cache"))

W, H = 16, 12


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_rgb(seed: int, width: int = W, height: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


SceneWriter = Callable[..., Path]


@pytest.fixture
def make_manifest_scene(tmp_path: Path) -> SceneWriter:
    """Write a scene with a manifest; ``frames`` entries may override any frame key."""

    def write(
        zooms: Optional[List[Any]] = None,
        frames: Optional[List[Dict[str, Any]]] = None,
        top: Optional[Dict[str, Any]] = None,
        images: bool = True,
    ) -> Path:
        root = tmp_path / "scene"
        zooms = zooms if zooms is not None else [1, 1, 1, 4, 4, 16]
        entries = frames if frames is not None else [{} for _ in zooms]
        manifest_frames = []
        for index, (zoom, extra) in enumerate(zip(zooms, entries)):
            frame = {"file_path": f"images/f{index:02d}.png", "zoom": zoom}
            frame.update(extra)
            if images and isinstance(frame.get("file_path"), str):
                image_path = root / frame["file_path"]
                if not image_path.exists():
                    write_png(image_path, random_rgb(index))
            manifest_frames.append(frame)
        manifest: Dict[str, Any] = {"w": W, "h": H, "frames": manifest_frames}
        manifest.update(top or {})
        root.mkdir(parents=True, exist_ok=True)
        (root / "transforms.json").write_text(json.dumps(manifest))
        return root

    return write


@pytest.fixture
def make_folder_scene(tmp_path: Path) -> SceneWriter:
    """Write a manifest-free scene: ``{"1x": 3, "4x": 2}`` → folders with that many PNGs."""

    def write(counts: Dict[str, int]) -> Path:
        root = tmp_path / "folder_scene"
        seed = 0
        for folder, count in counts.items():
            for index in range(count):
                write_png(root / folder / f"img{index:02d}.png", random_rgb(seed))
                seed += 1
        return root

    return write


def tiny_scene(root: Path, seed: int = 0) -> Path:
    """A 32x24 scene-maker scene: 3 wide + 2 zoom-ins at 4x (train only)."""
    from mzen_ns.scene_maker import SceneMakerConfig, make_scene

    if not (root / "transforms.json").is_file():
        make_scene(SceneMakerConfig(output=root, width=32, height=24, zooms=(1.0, 4.0), n_wide=3, n_zoom=2, n_test=0, seed=seed))
    return root


def tiny_trainer_config(scene: Path, output_dir: Path, steps: int, boundaries=(0.4, 0.7), **overrides):
    """mzen's smoke preset (the CPU preset shrunk to milliseconds per step), for behaviour tests."""
    from dataclasses import replace

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
