"""Multi-zoom scenes made from real photographs: a static scene filmed by a moving camera.

The frames of the sequence (default: ViSP's ``cube`` sequence, 80 grey 384×288 frames of posters and
a cube, from the Debian package ``visp-images-data``) are first undistorted with the single radial
term COLMAP fits on all of them, so a pinhole camera describes them exactly. The reference is COLMAP
(pinhole, one camera) on every undistorted frame at full size: its poses, focal and 3D points are the
ground truth (``gt_transform_matrix``, ``gt_focal``, ``gt_points`` — each frame's points are the
reference points it observes, inside its crop), scaled so the median point depth is 1.

Each scene (one per ``--seeds`` value) draws its frames from the sequence: ``--wides`` wide frames
spread evenly over it (the seed shifts them), shrunk ``--shrink`` times (384×288 → 96×72); zoom-ins
from other frames, as the paper made BLEFF: a central crop 1/``dial`` of the frame, shrunk to the
wide size, so a ``--shrink``× zoom-in is at native detail. Per level ``--zoom-ins`` train and
``--held-out`` are held out (``split: test``), and ``--held-out-wides`` wide frames. No focal is given.

    apt-get download visp-images-data && dpkg-deb -x visp-images-data_*.deb /tmp/visp
    python benchmarks/real_photos.py --frames /tmp/visp/usr/share/visp-images-data/ViSP-images/cube \\
        --output bench/real --seeds 0 1 2
    ns-train mzen --data bench/real/scene_0 ...; ns-eval --load-config RUN/config.yml --output-path RUN/eval.json
    python benchmarks/real_photos.py --output bench/real --table RUN_0/eval.json RUN_1/eval.json ...
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import tyro

# COLMAP's camera frame looks down +z with y down; nerfstudio's (OpenGL) down -z with y up.
_OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


@dataclass
class RealPhotoScenes:
    """Multi-zoom scenes from a real image sequence, with COLMAP's full-size reconstruction as truth."""

    frames: Path = Path("/usr/share/visp-images-data/ViSP-images/cube")
    """Folder of the sequence's frames (one static scene, one camera, any format OpenCV reads)."""
    output: Path = Path("bench/real")
    """Reference reconstruction and scenes (``scene_<seed>``)."""
    seeds: Tuple[int, ...] = (0, 1, 2)
    """One scene per seed."""
    wides: int = 9
    """Training wide frames per scene."""
    shrink: int = 4
    """Wide frames are shrunk this many times; the deepest zoom-in should equal it (native detail)."""
    dials: Tuple[int, ...] = (2, 4)
    """Zoom-in levels: central crops 1/dial of the frame."""
    zoom_ins: int = 4
    """Training zoom-ins per level."""
    held_out: int = 2
    """Held-out zoom-ins per level."""
    held_out_wides: int = 1
    """Held-out wide frames: one among the evenly spread wides, the others drawn from the rest."""
    table: List[Path] = field(default_factory=list)
    """Instead of making scenes: ``ns-eval`` JSON files of runs on them, summarised as one table."""


def _frame_paths(folder: Path) -> List[Path]:
    paths = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".pgm", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
    )
    if len(paths) < 20:
        raise SystemExit(f"{folder}: {len(paths)} frames; a sequence of at least 20 is needed")
    return paths


def _colmap(images: Path, work: Path, model: str):
    """The largest model COLMAP's incremental mapping builds from every image in ``images``, one camera."""
    import pycolmap

    work.mkdir(parents=True)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = model
    pycolmap.extract_features(
        work / "database.db",
        images,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        device=pycolmap.Device.cpu,
    )
    pycolmap.match_exhaustive(work / "database.db", device=pycolmap.Device.cpu)
    options = pycolmap.IncrementalPipelineOptions()
    options.random_seed = 0
    (work / "sparse").mkdir()
    models = pycolmap.incremental_mapping(work / "database.db", images, work / "sparse", options)
    if not models:
        raise SystemExit(f"{images}: COLMAP built no model")
    return max(models.values(), key=lambda m: m.num_reg_images())


def _undistorted(paths: List[Path], folder: Path, work: Path) -> Tuple[float, float]:
    """Write the frames undistorted by COLMAP's one-term radial fit into ``folder``; (focal, k1)."""
    originals = work / "original"
    originals.mkdir(parents=True)
    for path in paths:
        (originals / path.name).symlink_to(path.resolve())
    camera = next(iter(_colmap(originals, work / "radial", "SIMPLE_RADIAL").cameras.values()))
    focal, cx, cy, k1 = camera.params
    matrix = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]])
    folder.mkdir(parents=True)
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(folder / f"{path.stem}.png"), cv2.undistort(image, matrix, np.array([k1, 0, 0, 0])))
    return float(focal), float(k1)


def _reference(frames: Path, output: Path) -> Dict:
    """COLMAP's pinhole reconstruction of the undistorted frames (cached in ``output/reference``)."""
    cache = output / "reference" / "reference.json"
    if cache.exists():
        return json.loads(cache.read_text())
    work = output / "reference"
    shutil.rmtree(work, ignore_errors=True)
    radial_focal, k1 = _undistorted(_frame_paths(frames), work / "undistorted", work)
    model = _colmap(work / "undistorted", work / "pinhole", "SIMPLE_PINHOLE")
    camera = next(iter(model.cameras.values()))
    views = {}
    for image in model.images.values():
        if not image.has_pose:
            continue
        cam_from_world = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        rotation = cam_from_world.rotation.matrix()
        centre = -rotation.T @ cam_from_world.translation
        c2w = np.eye(4)
        c2w[:3, :3] = rotation.T @ _OPENCV_TO_OPENGL
        c2w[:3, 3] = centre
        observed = [p.point3D_id for p in image.points2D if p.has_point3D()]
        points = np.array([model.points3D[i].xyz for i in observed]).reshape(-1, 3)
        views[image.name] = {"c2w": c2w.tolist(), "points": points.tolist()}
    reference = {
        "size": [camera.width, camera.height],
        "focal": float(camera.params[0]),
        "radial_focal": radial_focal,
        "k1": k1,
        "views": views,
        "reprojection_px": float(model.compute_mean_reprojection_error()),
    }
    cache.write_text(json.dumps(reference))
    return reference


def _inside_crop(points: np.ndarray, c2w: np.ndarray, focal: float, size: Tuple[int, int], dial: int) -> np.ndarray:
    """The points whose pinhole projection lies in the central 1/dial crop of the frame."""
    if len(points) == 0:
        return points
    rotation, centre = c2w[:3, :3] @ _OPENCV_TO_OPENGL, c2w[:3, 3]
    local = (points - centre) @ rotation
    uv = focal * local[:, :2] / local[:, 2:3]
    half = np.array(size) / (2.0 * dial)
    keep = (local[:, 2] > 0) & np.all(np.abs(uv) < half, axis=1)
    return points[keep]


def _shot(image: np.ndarray, dial: int, size: Tuple[int, int]) -> np.ndarray:
    """The central 1/dial crop of ``image`` shrunk to ``size`` (area averaging)."""
    height, width = image.shape[:2]
    crop_w, crop_h = width // dial, height // dial
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return cv2.resize(image[top : top + crop_h, left : left + crop_w], size, interpolation=cv2.INTER_AREA)


def _choose(names: List[str], config: RealPhotoScenes, seed: int) -> List[Tuple[str, int, str]]:
    """(name, dial, split) of the scene's frames: wides spread evenly, zoom-ins drawn from the rest."""
    needed = config.wides + config.held_out_wides + len(config.dials) * (config.zoom_ins + config.held_out)
    if config.held_out_wides < 1 or needed > len(names):
        raise SystemExit(f"--held-out-wides must be ≥ 1 and the scene's {needed} frames at most the {len(names)} there")
    rng = np.random.default_rng(seed)
    count = config.wides + 1
    step = len(names) / count
    offset = rng.uniform(0, step)
    wide = [names[int(offset + i * step)] for i in range(count)]
    held_wide = wide[int(rng.integers(1, count - 1))]
    rest = [name for name in names if name not in wide]
    drawn = rng.choice(rest, size=len(config.dials) * (config.zoom_ins + config.held_out), replace=False)
    shots = [(name, 1, "test" if name == held_wide else "train") for name in wide]
    per_level = config.zoom_ins + config.held_out
    for level, dial in enumerate(config.dials):
        for k, name in enumerate(drawn[level * per_level : (level + 1) * per_level]):
            shots.append((str(name), dial, "train" if k < config.zoom_ins else "test"))
    taken = set(drawn)
    left = [name for name in rest if name not in taken]
    shots += [(str(name), 1, "test") for name in rng.choice(left, size=config.held_out_wides - 1, replace=False)]
    return shots


def _depth_scale(reference: Dict) -> float:
    """The factor that puts the reference's median point depth at 1, the scale of the scene
    maker's surfaces (an oracle run trains in the truth's frame as given, and the field resolves
    best within a unit of the origin)."""
    depths = []
    for view in reference["views"].values():
        c2w, points = np.array(view["c2w"]), np.array(view["points"]).reshape(-1, 3)
        depths.append(-((points - c2w[:3, 3]) @ c2w[:3, :3])[:, 2])
    return 1.0 / float(np.median(np.concatenate(depths)))


def _make_scene(config: RealPhotoScenes, reference: Dict, seed: int) -> Path:
    folder = config.output / f"scene_{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    full = tuple(reference["size"])
    size = (full[0] // config.shrink, full[1] // config.shrink)
    undistorted = config.output / "reference" / "undistorted"
    frames = []
    scale = _depth_scale(reference)
    for name, dial, split in _choose(sorted(reference["views"]), config, seed):
        view = reference["views"][name]
        c2w = np.array(view["c2w"])
        image = cv2.imread(str(undistorted / name), cv2.IMREAD_UNCHANGED)
        file_path = f"images/z{dial}_{Path(name).stem}.png"
        cv2.imwrite(str(folder / file_path), _shot(image, dial, size))
        points = scale * _inside_crop(np.array(view["points"]).reshape(-1, 3), c2w, reference["focal"], full, dial)
        c2w[:3, 3] *= scale
        frames.append(
            {
                "file_path": file_path,
                "zoom": dial,
                "split": split,
                "gt_transform_matrix": c2w.tolist(),
                "gt_zoom": dial,
                "gt_points": [[round(float(v), 6) for v in point] for point in points],
            }
        )
    manifest = {"w": size[0], "h": size[1], "gt_focal": reference["focal"] / config.shrink, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(manifest, indent=1))
    return folder


def _table(paths: List[Path]) -> None:
    """Every numeric key of the ns-eval files, mean ± standard error over runs."""
    results = [json.loads(Path(p).read_text())["results"] for p in paths]
    keys = [
        k for k in results[0] if all(isinstance(r.get(k), (int, float)) for r in results) and not k.endswith("_std")
    ]
    print(f"| key ({len(paths)} runs) | mean | SE | per run |\n|---|---|---|---|")
    for key in keys:
        values = np.array([r[key] for r in results], dtype=float)
        error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
        print(f"| {key} | {values.mean():.4g} | {error:.2g} | {' '.join(f'{v:.4g}' for v in values)} |")


def main(config: RealPhotoScenes) -> None:
    if config.table:
        _table(config.table)
        return
    reference = _reference(config.frames, config.output)
    print(
        f"reference: {len(reference['views'])} views, focal {reference['focal']:.2f} px at {reference['size']} "
        f"(radial fit {reference['radial_focal']:.2f}, k1 {reference['k1']:.4f}), "
        f"reprojection {reference['reprojection_px']:.3f} px"
    )
    for seed in config.seeds:
        print(f"scene {_make_scene(config, reference, seed)}")


if __name__ == "__main__":
    main(tyro.cli(RealPhotoScenes))
