"""Structure from motion on the wide views: COLMAP (through pycolmap) at the images' native size.

SIFT features, exhaustive matching and incremental mapping with one shared ``SIMPLE_PINHOLE``
camera, on the CPU, single-threaded mapping with a fixed seed so a scene gives the same answer
every run. pycolmap is imported here, when a solver runs, so importing the plugin stays cheap.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .solution import WideSolution, cv_pose_to_gl


def solve_sfm(
    paths: Sequence[Path],
    focal_prior: Optional[float] = None,
    principal_point: Optional[Tuple[float, float]] = None,
    threads: int = 2,
) -> WideSolution:
    """Poses of the images ``paths`` (in order) and their shared focal by COLMAP; views COLMAP
    leaves out have NaN poses. ``focal_prior`` (pixels) starts the shared camera when known."""
    started = time.perf_counter()
    try:
        import pycolmap

        with tempfile.TemporaryDirectory(prefix="mzen-sfm-") as folder:
            work = Path(folder)
            names = _link_images(paths, work / "images")
            reconstruction = _reconstruct(pycolmap, work, names, focal_prior, principal_point, threads)
            solution = _solution(reconstruction, names) if reconstruction is not None else None
    except (RuntimeError, ValueError, OSError) as error:
        return WideSolution("sfm", None, math.nan, failure=f"COLMAP failed: {error}")
    if solution is None:
        solution = WideSolution("sfm", None, math.nan, failure="COLMAP built no model (too few matches)")
    solution.seconds = time.perf_counter() - started
    return solution


def _link_images(paths: Sequence[Path], folder: Path) -> List[str]:
    """Link every image into ``folder`` under a unique name that keeps its suffix (COLMAP reads by suffix)."""
    folder.mkdir(parents=True)
    names = []
    for index, path in enumerate(paths):
        name = f"{index:05d}{Path(path).suffix.lower()}"
        os.symlink(Path(path).resolve(), folder / name)
        names.append(name)
    return names


def _reconstruct(pycolmap, work: Path, names, focal_prior, principal_point, threads: int):
    """The largest model COLMAP builds, or ``None``."""
    database = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_PINHOLE"
    if focal_prior is not None and principal_point is not None:
        reader.camera_params = f"{focal_prior},{principal_point[0]},{principal_point[1]}"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    extraction.use_gpu = False
    pycolmap.logging.minloglevel = 2  # warnings and errors only
    pycolmap.extract_features(
        database,
        work / "images",
        names,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    matching.use_gpu = False
    pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = 1
    mapping.random_seed = 0
    (work / "sparse").mkdir()
    models = pycolmap.incremental_mapping(database, work / "images", work / "sparse", mapping)
    if not models:
        return None
    return max(models.values(), key=lambda model: model.num_reg_images())


def _solution(reconstruction, names: List[str]) -> WideSolution:
    c2w = np.full((len(names), 3, 4), np.nan)
    centres: Dict[int, np.ndarray] = {}
    for image_id, image in reconstruction.images.items():
        if not image.has_pose:
            continue
        world_from_cam = image.cam_from_world().inverse().matrix()
        c2w[names.index(image.name)] = cv_pose_to_gl(world_from_cam)
        centres[image_id] = world_from_cam[:, 3]
    camera = next(iter(reconstruction.cameras.values()))
    points = np.array([point.xyz for point in reconstruction.points3D.values()]).reshape(-1, 3)
    evidence = {
        "registered": float(len(centres)),
        "views": float(len(names)),
        "reprojection_px": float(reconstruction.compute_mean_reprojection_error()),
        "points": float(len(points)),
        "triangulation_deg": _median_triangulation_angle(reconstruction, centres),
    }
    return WideSolution("sfm", c2w, float(camera.focal_length), points=points, evidence=evidence)


def _median_triangulation_angle(reconstruction, centres: Dict[int, np.ndarray]) -> float:
    """Median over points of the widest angle between two rays that observe it (degrees)."""
    angles = []
    for point in reconstruction.points3D.values():
        rays = np.array([centres[e.image_id] - point.xyz for e in point.track.elements if e.image_id in centres])
        if len(rays) < 2:
            continue
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        angles.append(math.degrees(math.acos(float(np.clip((rays @ rays.T).min(), -1.0, 1.0)))))
    return float(np.median(angles)) if angles else 0.0
