"""The learned cameras as a nerfstudio ``transforms.json`` (per-frame intrinsics), so any
nerfstudio method can train on them.

Per frame: ``file_path`` (relative to the file's folder), ``transform_matrix`` (learned
camera-to-world, OpenGL), ``fl_x``/``fl_y`` (learned zoom × focal), ``cx``, ``cy``, ``w``, ``h``,
``zoom`` (learned), ``dial`` (recorded, normalised) and, for zoom-ins, ``matched_wide`` (the wide
view's ``file_path``) and ``mzen_match`` (how it was primed). Top level: ``focal`` (learned base
focal), ``camera_model`` and ``mzen_initialiser`` (where the wide cameras started, and why); frames
the run never trained on (e.g. the zoom-ins of ``mzen-phase-a``) are left out and listed in
``unsolved_frames``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mzen_ns.cameras import ZoomCameras
from mzen_ns.priming.plan import PrimingMethod, score_kind
from mzen_ns.priming.report import GEOMETRIC_SCORE_KIND, match_entry


def cameras_manifest(
    cameras: ZoomCameras,
    image_paths: Sequence[Path],
    priming: PrimingMethod,
    output_dir: Path,
    flagged_left_out: bool = True,
) -> Dict[str, Any]:
    """The ``transforms.json`` content for ``cameras`` (images at ``image_paths``, primed by
    ``priming``; flagged zoom-ins left out of the field when ``flagged_left_out``), with paths
    relative to ``output_dir``."""
    learned = cameras.to_cameras()
    zooms = cameras.zoom().detach().cpu()
    paths = [_relative(path, output_dir) for path in image_paths]
    frames: List[Dict[str, Any]] = []
    for i, path in enumerate(paths):
        if not bool(cameras.record.trained_on[i]):
            continue
        frame: Dict[str, Any] = {
            "file_path": path,
            "transform_matrix": learned.camera_to_worlds[i].cpu().tolist() + [[0.0, 0.0, 0.0, 1.0]],
            "fl_x": float(learned.fx[i]),
            "fl_y": float(learned.fy[i]),
            "cx": float(learned.cx[i]),
            "cy": float(learned.cy[i]),
            "w": int(learned.width[i]),
            "h": int(learned.height[i]),
            "zoom": float(zooms[i]),
            "dial": float(cameras.dials[i]),
        }
        matched = int(cameras.match.root[i])
        if not bool(cameras.is_wide[i]) and matched >= 0:
            frame["matched_wide"] = paths[matched]
            match = _match(cameras, i, paths, score_kind(priming), flagged_left_out)
            if match is not None:
                frame["mzen_match"] = match
        frames.append(frame)
    manifest: Dict[str, Any] = {"camera_model": "OPENCV", "focal": float(cameras.focal), "frames": frames}
    if cameras.record.start is not None:
        manifest["mzen_initialiser"] = cameras.record.start.as_dict()
    unsolved = [path for path, trained in zip(paths, cameras.record.trained_on.tolist()) if not trained]
    if unsolved:
        manifest["unsolved_frames"] = unsolved
    return manifest


def _match(
    cameras: ZoomCameras, index: int, paths: Sequence[str], kind: str, flagged_left_out: bool
) -> Optional[Dict[str, object]]:
    """The ``mzen_match`` entry of image ``index`` (None when its priming was not recorded)."""
    record = cameras.match
    if not record.primed(index):
        return None
    runner_up = float(record.runner_up[index]) if bool(record.has_runner_up[index]) else None
    return match_entry(
        paths[int(record.source[index])],
        paths[int(record.root[index])],
        record.centre[index].tolist(),
        float(record.relative_zoom[index]),
        float(record.score[index]),
        runner_up,
        GEOMETRIC_SCORE_KIND if bool(record.geometric[index]) else kind,
        bool(record.flagged[index]),
        not (flagged_left_out and bool(record.flagged[index])),
    )


def _relative(path: Path, output_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), output_dir.resolve())).as_posix()
