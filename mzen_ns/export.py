"""``mzen-export-cameras --load-config CONFIG --output-path FILE``: the learned cameras as a
nerfstudio ``transforms.json`` (per-frame intrinsics), so any nerfstudio method can train on them.

Per frame: ``file_path`` (relative to FILE's folder), ``transform_matrix`` (learned
camera-to-world, OpenGL), ``fl_x``/``fl_y`` (learned zoom × focal), ``cx``, ``cy``, ``w``, ``h``,
``zoom`` (learned), ``dial`` (recorded, normalised) and, for zoom-ins, ``matched_wide`` (the
surrogate's ``file_path``). Top level: ``focal`` (learned base focal) and ``camera_model``; frames
the run never trained on (e.g. the zoom-ins of ``mzen-phase-a``) are left out and listed in
``unsolved_frames``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import tyro
from rich.console import Console

from mzen_ns.priming import score_kind

CONSOLE = Console()


def cameras_manifest(pipeline: Any, output_dir: Path) -> Dict[str, Any]:
    """The transforms.json content for a loaded mzen pipeline."""
    from mzen_ns.pipeline import MZENPipeline

    if not isinstance(pipeline, MZENPipeline):
        raise ValueError(f"not an mzen run (pipeline is {type(pipeline).__name__})")
    dataset = pipeline.datamanager.train_dataset
    cameras = pipeline.mzen_model.cameras
    learned = cameras.to_cameras()
    zooms = cameras.zoom().detach().cpu()
    paths = [_relative(Path(p), output_dir) for p in dataset.image_filenames]
    frames: List[Dict[str, Any]] = []
    kind = score_kind(pipeline.priming_config.method)
    unsolved = [path for path, solved in zip(paths, cameras.solved.tolist()) if not solved]
    for i, path in enumerate(paths):
        if not bool(cameras.solved[i]):  # never trained on (e.g. zoom-ins of an ``mzen-phase-a`` run)
            continue
        c2w = learned.camera_to_worlds[i].cpu().tolist() + [[0.0, 0.0, 0.0, 1.0]]
        frame: Dict[str, Any] = {
            "file_path": path,
            "transform_matrix": c2w,
            "fl_x": float(learned.fx[i]),
            "fl_y": float(learned.fy[i]),
            "cx": float(learned.cx[i]),
            "cy": float(learned.cy[i]),
            "w": int(learned.width[i]),
            "h": int(learned.height[i]),
            "zoom": float(zooms[i]),
            "dial": float(cameras.dials[i]),
        }
        matched = int(cameras.matched_wide[i])
        if not bool(cameras.is_wide[i]) and matched >= 0:
            frame["matched_wide"] = paths[matched]
            match = cameras.match.frame_entry(i, paths, kind, matched)
            if match is not None:
                frame["mzen_match"] = match
        frames.append(frame)
    manifest: Dict[str, Any] = {"camera_model": "OPENCV", "focal": float(cameras.focal), "frames": frames}
    if unsolved:
        manifest["unsolved_frames"] = unsolved
    return manifest


def _relative(path: Path, output_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), output_dir.resolve())).as_posix()


@dataclass
class ExportCameras:
    """Write the learned cameras of an mzen run as a nerfstudio transforms.json."""

    load_config: Path
    """The run's config.yml."""
    output_path: Path
    """The transforms.json to write (its folder may be anywhere: paths are made relative to it)."""

    def main(self) -> Path:
        """Load the run, write the file, return its path."""
        from nerfstudio.utils.eval_utils import eval_setup

        _, pipeline, _, step = eval_setup(self.load_config, test_mode="inference")
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        manifest = cameras_manifest(pipeline, self.output_path.parent)
        self.output_path.write_text(json.dumps(manifest, indent=2))
        CONSOLE.print(f"[bold green]Wrote[/] {len(manifest['frames'])} learned cameras (step {step}) to {self.output_path}")
        return self.output_path


def entrypoint() -> None:
    """Console script ``mzen-export-cameras``."""
    tyro.cli(ExportCameras).main()


if __name__ == "__main__":
    entrypoint()
