"""Fixtures: an isolated cache, and tiny FF-MZN scenes written on the fly (helpers in ``tests/helpers.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from tests.helpers import H, W, random_rgb, write_png

SceneWriter = Callable[..., Path]


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted images and demo scenes go to a temporary folder, not the user's cache."""
    os.environ["MZEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("mzen-cache"))


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
