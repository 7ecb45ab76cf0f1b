"""Structure from motion on the wide views: COLMAP (through pycolmap) at the images' native size.

SIFT features, exhaustive matching and incremental mapping with one shared ``SIMPLE_PINHOLE``
camera, on the CPU. A scene gives the same answer every run: extraction, matching and mapping run
on one thread and every random choice is seeded (:data:`RANSAC_SEED`); with two extraction or
matching threads the same scene's model differed between runs. Above :data:`EXHAUSTIVE_UP_TO` wide
views every pair is no longer matched at full size (the pairs grow with the square of the views):
a coarse pass on shrunken images, matched exhaustively, picks each view's most overlapping
partners, and only those pairs are matched at full size — retrieval as COLMAP's vocabulary tree
does it, without a tree file to download.
pycolmap is imported with this module, which every caller imports only when a solver runs, so
loading the plugin stays cheap.

Whether the wide views pin the shared focal is measured, not assumed (:func:`focal_rise`): the
model is adjusted again with the focal held a step off on either side, and the rise of its mean
reprojection error says how much the images care. Views of a plane, or of little depth, are
explained about equally well by a range of focals (each with its own poses); there COLMAP's focal is
one of many. There a focal the scene gives (``fl_x``, a field of view, EXIF) is held: the model is
adjusted with it fixed, and kept if it explains the views as well. Mapping always starts from COLMAP's
own focal guess: started from a given focal, a plane let it drift far from that value.

Zoom-ins, when given, are registered against that model afterwards, never as free-focal cameras:
each gets its own camera fixed at the wide focal × its dial, COLMAP continues the mapping with the
wide views and intrinsics held (absolute pose from 2D–3D matches; points seen only by zoom-ins are
triangulated, so a deep zoom-in registers through shallower ones). A zoom-in that pass leaves out
is tried again in a second pass as copies shrunk to look like each shallower level (a 16× shrunk 4×
looks like a 4× frame), where a copy keeps at least :data:`COPY_MIN_PX` pixels on its longest side,
contrast stretched: a deep zoom-in of faint detail has few features at its own scale, and its coarse
structure is what the shallower views saw. Copies join only in that second pass: registered beside
every zoom-in they change which points COLMAP triangulates, and fewer 16× zoom-ins register.
Each registered zoom-in's focal is then fitted to the 2D–3D matches of its registered copies, in
its own pixels (a copy's residuals weighted down by its shrink), with its centre held at the
nearest wide view's (the dial only says the zoom to a few per cent; the zoom-in was taken from
about that centre), and its pose refitted freely at that focal.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycolmap

from .solution import PlacedViews, WideSolution, cv_pose_to_gl

MAX_ZOOM_IN_RMS_PX = 2.0
"""A zoom-in whose 2D–3D matches fit worse than this (RMS, pixels) after refitting is not registered."""
ZOOM_RANGE = (0.5, 2.0)
"""A fitted zoom outside this multiple of the dial is not registered."""
EXHAUSTIVE_UP_TO = 30
"""Wide views up to which every pair is matched at full size (435 pairs); above, pairs are retrieved."""
COARSE_IMAGE_SIZE = 400
"""Longest side (pixels) of the images of the coarse pass that retrieves pairs."""
COARSE_FEATURES = 1024
"""Features per image in the coarse pass."""
RANSAC_SEED = 0
"""Seed of every random choice COLMAP makes (two-view verification, mapping), so a scene gives one answer."""
NEIGHBOURS = 12
"""Partners kept per view: those with the most verified coarse matches (a pair kept by either view is matched)."""
COPY_MIN_PX = 96
"""Fewest pixels on a shrunk copy's longest side (a copy of a zoom-in made to look like a shallower level)."""
FOCAL_PROBE = 0.1
"""How far (a fraction of the focal) the focal is moved to ask whether the wide views pin it."""
FOCAL_PINNED_RISE = 0.03
"""The views pin the focal when moving it :data:`FOCAL_PROBE` either way raises the mean reprojection
error of the re-adjusted model by at least this fraction on average."""
SHRUNK_MIN_INLIERS = 15
"""2D–3D inliers a shrunk copy is registered with (COLMAP's 30 asks more than a small copy has; the
refit's residual and zoom checks still apply)."""


Inspect = Callable[[Any, List[str], List[str]], None]
"""(COLMAP reconstruction, wide views' image names, zoom-ins' image names at their own size) → None."""


@dataclass(frozen=True)
class _Copy:
    """A zoom-in as COLMAP sees it: itself or a shrunk copy."""

    zoom_in: int
    """Which zoom-in (index into the zoom-ins given)."""
    name: str
    """Its image name in COLMAP's image folder."""
    dial: float
    """The dial it looks like (relative to the wide views): the zoom-in's dial over its shrink."""
    shrink: Tuple[float, float]
    """Native pixels per copy pixel along x and y ((1, 1): the zoom-in itself)."""


def solve_sfm(
    paths: Sequence[Path],
    focal_prior: Optional[float] = None,
    principal_point: Optional[Tuple[float, float]] = None,
    zoom_ins: Sequence[Tuple[Path, float]] = (),
    shrunk_copies: bool = True,
    exhaustive_up_to: int = EXHAUSTIVE_UP_TO,
    inspect: Optional[Inspect] = None,
) -> WideSolution:
    """Poses of the wide images ``paths`` (in order) and their shared focal by COLMAP; views COLMAP
    leaves out have NaN poses. COLMAP maps from its own focal guess; ``focal_prior`` (pixels), the
    scene's focal when known, is held where the views do not pin one and explain it as well (evidence
    ``focal_rise``; ``focal_given_held`` 1 where held).
    ``zoom_ins`` (image, dial relative to the wide views) are then registered against the model
    (:attr:`WideSolution.zoom_ins`), those left out tried again as shrunk copies unless
    ``shrunk_copies`` is False. Up to ``exhaustive_up_to`` wide views every pair is matched; above,
    pairs are retrieved. ``inspect``, where given, sees the joint model the zoom-ins are placed from
    (tools that study the matches: ``benchmarks/zoom_in_pose.py``)."""
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="mzen-sfm-") as folder:
            work = Path(folder)
            names = _link_images(list(paths) + [path for path, _ in zoom_ins], work / "images")
            wide_names, zoom_names = names[: len(paths)], names[len(paths) :]
            built = _reconstruct(work, wide_names, exhaustive_up_to)
            solution = None
            if built is not None:
                built, rise, held = _settle_focal(built, focal_prior, principal_point)
                solution = _solution(built[1], wide_names)
                solution.evidence.update(focal_rise=rise, focal_given_held=float(held))
            if solution is not None and zoom_ins:
                solution.zoom_ins = _place_zoom_ins(
                    work, built, wide_names, zoom_names, zoom_ins, shrunk_copies, inspect
                )
    except (RuntimeError, ValueError, OSError) as error:
        return WideSolution("sfm", None, math.nan, failure=f"COLMAP failed: {error}")
    if solution is None:
        solution = WideSolution("sfm", None, math.nan, failure="COLMAP built no model (too few matches)")
    solution.seconds = time.perf_counter() - started
    return solution


def _place_zoom_ins(
    work: Path,
    built,
    wide_names: List[str],
    names: List[str],
    zoom_ins: Sequence[Tuple[Path, float]],
    shrunk_copies: bool,
    inspect: Optional[Inspect] = None,
) -> PlacedViews:
    """The zoom-ins (image ``names`` in COLMAP's folder; path and dial) registered against the wide
    model ``built``: at their own size, then (``shrunk_copies``) the ones left out as shrunk copies,
    in a second pass."""
    dials = [dial for _, dial in zoom_ins]
    copies = [_Copy(k, name, dial, (1.0, 1.0)) for k, (name, dial) in enumerate(zip(names, dials))]
    joint = _register_zoom_ins(work, built, wide_names, copies, copies, "joint")
    missed = [k for k, name in enumerate(names) if name not in _posed_names(joint[1])]
    shrunk = _shrunk_copies(zoom_ins, missed, names, work / "images") if shrunk_copies else []
    if shrunk:
        joint = _register_zoom_ins(work, joint, wide_names, shrunk, copies + shrunk, "shrunk")
    if inspect is not None:
        inspect(joint[1], wide_names, names)
    return _zoom_in_poses(joint[1], wide_names, copies + shrunk, dials)


def _link_images(paths: Sequence[Path], folder: Path) -> List[str]:
    """Link every image into ``folder`` under a unique name that keeps its suffix (COLMAP reads by suffix)."""
    folder.mkdir(parents=True)
    names = []
    for index, path in enumerate(paths):
        name = f"{index:05d}{Path(path).suffix.lower()}"
        os.symlink(Path(path).resolve(), folder / name)
        names.append(name)
    return names


def _reconstruct(work: Path, names, exhaustive_up_to: int = EXHAUSTIVE_UP_TO):
    """(folder, model) of the largest model COLMAP builds from its own camera guess, or ``None``.
    Given a camera, COLMAP trusts its focal while choosing and triangulating the first pair: on a
    plane the focal then drifted far from the given one and views were left out."""
    database = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_PINHOLE"
    pycolmap.logging.minloglevel = 2  # warnings and errors only
    _extract(database, work / "images", names, reader, pycolmap.CameraMode.SINGLE)
    if len(names) <= exhaustive_up_to:
        _match(database)
    else:
        _match_pairs(database, _overlapping_pairs(work, names, reader))
    return _map(work, work / "sparse", _mapping_options())


def focal_pinned(evidence: Dict[str, float]) -> bool:
    """Whether a structure-from-motion answer's focal is pinned by its views (:func:`focal_rise`)."""
    return evidence.get("focal_rise", math.inf) >= FOCAL_PINNED_RISE


def focal_rise(model) -> float:
    """How much the views pin the shared focal of ``model`` (one camera): the mean reprojection error
    of the model adjusted again with the focal held :data:`FOCAL_PROBE` below and above its value,
    averaged, over the model's own, minus one. Near 0: a range of focals explains the views."""
    base = model.compute_mean_reprojection_error()
    if not base > 0:  # nothing the views could fit better: no evidence for any focal
        return 0.0
    params = model.cameras[_only_camera(model)].params
    factors = (1 - FOCAL_PROBE, 1 + FOCAL_PROBE)
    probes = [_held_at(model, [factor * params[0], *params[1:]]) for factor in factors]
    return float(np.mean([probe.compute_mean_reprojection_error() for probe in probes]) / base - 1.0)


def _held_at(model, params: Sequence[float]):
    """A copy of ``model`` with its camera's ``params`` (``SIMPLE_PINHOLE``: f, cx, cy), bundle-adjusted
    with them held."""
    adjusted = pycolmap.Reconstruction(model)
    adjusted.cameras[_only_camera(adjusted)].params = np.asarray(params, dtype=np.float64)
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = False
    options.refine_principal_point = False
    options.refine_extra_params = False
    pycolmap.bundle_adjustment(adjusted, options)
    return adjusted


def _settle_focal(built, focal_prior: Optional[float], principal_point: Optional[Tuple[float, float]]):
    """``(built, rise, held)``: COLMAP's model and how much its views pin the focal (:func:`focal_rise`);
    where they do not, and the scene gives ``focal_prior``, the model adjusted with that focal (and
    ``principal_point``, when given) held — kept, and written over the original, if it explains the
    views as well, within the same margin."""
    folder, model = built
    rise = focal_rise(model)
    if focal_prior is None or rise >= FOCAL_PINNED_RISE:
        return built, rise, False
    params = model.cameras[_only_camera(model)].params
    centre = principal_point if principal_point is not None else params[1:]
    held = _held_at(model, [focal_prior, *centre])
    if held.compute_mean_reprojection_error() > (1 + FOCAL_PINNED_RISE) * model.compute_mean_reprojection_error():
        return built, rise, False
    held.write(folder)
    return (folder, held), rise, True


def _only_camera(model) -> int:
    (camera_id,) = model.cameras.keys()
    return camera_id


def _extract(database: Path, images: Path, names, reader, mode, coarse: bool = False) -> None:
    """SIFT features of ``names`` into ``database`` (``coarse``: shrunken images, fewer features;
    COLMAP scales their keypoints back to the full image)."""
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = 1
    extraction.use_gpu = False
    if coarse:
        extraction.max_image_size = COARSE_IMAGE_SIZE
        extraction.sift.max_num_features = COARSE_FEATURES
    pycolmap.extract_features(
        database,
        images,
        names,
        camera_mode=mode,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )


def _matching_options():
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = 1
    matching.use_gpu = False
    return matching


def _verification_options():
    """Two-view verification with a fixed RANSAC seed (COLMAP's default draws one per run, and the
    inlier sets differ between runs of the same images)."""
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = RANSAC_SEED
    return verification


def _match(database: Path) -> None:
    """Exhaustive matching of every pair not matched yet."""
    pycolmap.match_exhaustive(
        database,
        matching_options=_matching_options(),
        verification_options=_verification_options(),
        device=pycolmap.Device.cpu,
    )


def _match_pairs(database: Path, pairs: Sequence[Tuple[str, str]]) -> None:
    """Matching of the image pairs ``pairs`` (names) not matched yet."""
    pair_list = database.parent / f"{database.stem}-pairs.txt"
    pair_list.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    pycolmap.match_image_pairs(
        database,
        matching_options=_matching_options(),
        pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pair_list)),
        verification_options=_verification_options(),
        device=pycolmap.Device.cpu,
    )


def _overlapping_pairs(work: Path, names: Sequence[str], reader) -> List[Tuple[str, str]]:
    """The pairs worth matching at full size: each view with its :data:`NEIGHBOURS` partners of most
    verified matches in a coarse exhaustive pass (its own database)."""
    coarse = work / "coarse.db"
    _extract(coarse, work / "images", names, reader, pycolmap.CameraMode.SINGLE, coarse=True)
    _match(coarse)
    database = pycolmap.Database.open(coarse)
    try:
        image_names = {image.image_id: image.name for image in database.read_all_images()}
        pair_ids, inliers = database.read_two_view_geometry_num_inliers()
    finally:
        database.close()
    scored = [
        (image_names[a], image_names[b], count)
        for (a, b), count in zip(map(pycolmap.pair_id_to_image_pair, pair_ids), inliers)
    ]
    return retrieve_pairs(names, scored, NEIGHBOURS)


def retrieve_pairs(
    views: Sequence[str], scored: Sequence[Tuple[str, str, int]], neighbours: int
) -> List[Tuple[str, str]]:
    """From ``(view, view, verified matches)`` rows, each view's ``neighbours`` best partners, as
    sorted unique pairs. A view the coarse pass verified with no partner is paired with every view
    (full size may find what the coarse pass could not)."""
    partners: Dict[str, List[Tuple[int, str]]] = {view: [] for view in views}
    for a, b, count in scored:
        if count > 0:
            partners[a].append((count, b))
            partners[b].append((count, a))
    chosen = set()
    for view, found in partners.items():
        best = [other for _, other in sorted(found, key=lambda row: (-row[0], row[1]))[:neighbours]]
        others = best if found else [other for other in views if other != view]
        chosen.update((min(view, other), max(view, other)) for other in others)
    return sorted(chosen)


def _mapping_options():
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = 1
    mapping.random_seed = RANSAC_SEED
    return mapping


def _map(work: Path, output: Path, mapping, input_path: Optional[Path] = None):
    """(folder, model) of the largest model incremental mapping builds, or ``None``."""
    output.mkdir()
    extra = {"input_path": input_path} if input_path is not None else {}
    models = pycolmap.incremental_mapping(work / "database.db", work / "images", output, mapping, **extra)
    if not models:
        return None
    key = max(models, key=lambda k: models[k].num_reg_images())
    folder = output / str(key)
    folder.mkdir(exist_ok=True)
    models[key].write(folder)  # a continued mapping may leave it unwritten; a later pass reads it
    return folder, models[key]


def _shrunk_copies(
    zoom_ins: Sequence[Tuple[Path, float]], indices: Sequence[int], names: List[str], folder: Path
) -> List[_Copy]:
    """Copies of the zoom-ins ``indices`` (into ``zoom_ins`` and their image ``names``) shrunk to look
    like each shallower level (the dials given and the wide level) where a copy keeps
    :data:`COPY_MIN_PX` pixels, contrast stretched (:func:`_stretched`), written into ``folder``;
    none of a zoom-in OpenCV cannot read."""
    import cv2

    levels = sorted({1.0, *(dial for _, dial in zoom_ins)})
    copies = []
    for k in indices:
        path, dial = zoom_ins[k]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            continue
        height, width = image.shape[:2]
        for level in (level for level in levels if level < dial / 1.5):
            size = (round(width * level / dial), round(height * level / dial))
            if max(size) >= COPY_MIN_PX:
                copy = f"{Path(names[k]).stem}-x{level:g}.png"
                cv2.imwrite(str(folder / copy), cv2.resize(_stretched(image), size, interpolation=cv2.INTER_AREA))
                copies.append(_Copy(k, copy, level, (width / size[0], height / size[1])))
    return copies


def _stretched(image: np.ndarray) -> np.ndarray:
    """An 8-bit image whose 0.5th and 99.5th intensity percentiles span 0–255. SIFT keeps only
    features above a contrast threshold: a zoom-in of faint detail would otherwise have a handful;
    the descriptors are normalised, so the stretch changes what is detected, not how it matches."""
    values = image.astype(np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    return np.clip((values - low) * (255.0 / max(float(high - low), 1e-6)), 0, 255).astype(np.uint8)


def _register_zoom_ins(work: Path, built, wide_names: List[str], copies: List[_Copy], every: List[_Copy], output: str):
    """(folder, model): the model ``built`` continued with the zoom-ins' ``copies``: each copy's camera
    fixed at the wide focal × the dial it looks like (principal point shrunk with it), every pose
    already in the model and all intrinsics held. Each copy is matched with every wide view and with
    every copy in ``every`` of another zoom-in."""
    folder, model = built
    database = work / "database.db"
    camera = model.cameras[wide_camera(model, wide_names)]
    focal, cx, cy = camera.focal_length, camera.principal_point_x, camera.principal_point_y
    for dial, shrink in sorted({(copy.dial, copy.shrink) for copy in copies}):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "SIMPLE_PINHOLE"
        reader.camera_params = f"{focal * dial},{cx / shrink[0]},{cy / shrink[1]}"
        level = [copy.name for copy in copies if (copy.dial, copy.shrink) == (dial, shrink)]
        _extract(database, work / "images", level, reader, pycolmap.CameraMode.PER_IMAGE)
    pairs = {(min(c.name, w), max(c.name, w)) for c in copies for w in wide_names}
    pairs |= {(min(a.name, b.name), max(a.name, b.name)) for a in copies for b in every if a.zoom_in != b.zoom_in}
    _match_pairs(database, sorted(pairs))  # no new wide pair, no zoom-in with its own copy
    mapping = _mapping_options()
    mapping.fix_existing_frames = True
    mapping.ba_refine_focal_length = False
    mapping.ba_refine_principal_point = False
    mapping.ba_refine_extra_params = False
    mapping.mapper.abs_pose_refine_focal_length = False
    if output == "shrunk":
        mapping.mapper.abs_pose_min_num_inliers = SHRUNK_MIN_INLIERS
    joint = _map(work, work / output, mapping, input_path=folder)
    return joint if joint is not None else built


def _posed_names(reconstruction) -> set:
    return {image.name for image in reconstruction.images.values() if image.has_pose}


def _zoom_in_poses(reconstruction, wide_names: List[str], copies: List[_Copy], dials: List[float]) -> PlacedViews:
    """Each zoom-in with a registered copy, placed by the 2D–3D matches of all its registered copies."""
    poses = PlacedViews.unplaced(len(dials))
    wide_centres = {}
    images = {image.name: image for image in reconstruction.images.values() if image.has_pose}
    for name, image in images.items():
        if name in wide_names:
            wide_centres[wide_names.index(name)] = image.projection_center()
    if not wide_centres:
        return poses
    wide = reconstruction.cameras[wide_camera(reconstruction, wide_names)]
    wide_focal, principal = wide.focal_length, np.array([wide.principal_point_x, wide.principal_point_y])
    for k, dial in enumerate(dials):
        registered = [copy for copy in copies if copy.zoom_in == k and copy.name in images]
        if not registered:
            continue
        pixels, points, scale = _native_correspondences(reconstruction, images, registered)
        first = images[max(registered, key=lambda copy: copy.dial).name]  # the least shrunk
        source = min(wide_centres, key=lambda w: float(np.linalg.norm(wide_centres[w] - first.projection_center())))
        rotation = first.cam_from_world().rotation.matrix()
        start = wide_focal * dial
        focal, _ = focal_from_centre(pixels, points, scale, wide_centres[source], rotation, start, principal)
        pose, rms = refit_pose(pixels, points, scale, first.cam_from_world().matrix(), focal, principal)
        zoom = focal / wide_focal
        if rms > MAX_ZOOM_IN_RMS_PX or not ZOOM_RANGE[0] * dial <= zoom <= ZOOM_RANGE[1] * dial:
            continue
        poses.c2w[k] = cv_pose_to_gl(np.linalg.inv(np.vstack([pose, [0.0, 0.0, 0.0, 1.0]]))[:3])
        poses.zoom[k], poses.source[k], poses.inliers[k] = zoom, source, len(points)
    return poses


def _native_correspondences(reconstruction, images, registered: List[_Copy]):
    """(pixels in the zoom-in's own pixels, 3D points, native pixels per copy pixel) of every
    registered copy's keypoints that belong to a 3D point."""
    pixels, points, scale = [], [], []
    for copy in registered:
        found_pixels, found_points = correspondences(reconstruction, images[copy.name])
        pixels.append(found_pixels * np.array(copy.shrink))
        points.append(found_points)
        scale.append(np.full(len(found_points), max(copy.shrink)))
    return np.concatenate(pixels), np.concatenate(points), np.concatenate(scale)


def wide_camera(reconstruction, wide_names: List[str]) -> int:
    """The camera id the wide views ``wide_names`` share in a COLMAP ``reconstruction``."""
    return next(image.camera_id for image in reconstruction.images.values() if image.name in wide_names)


def correspondences(reconstruction, image) -> Tuple[np.ndarray, np.ndarray]:
    """(pixels, 3D points) of an image's keypoints that belong to a 3D point."""
    pairs = [(p.xy, reconstruction.points3D[p.point3D_id].xyz) for p in image.points2D if p.has_point3D()]
    return np.array([a for a, _ in pairs]).reshape(-1, 2), np.array([b for _, b in pairs]).reshape(-1, 3)


def _project(points, rotation, translation, focal: float, principal) -> np.ndarray:
    seen = points @ rotation.T + translation
    return seen[:, :2] / seen[:, 2:3] * focal + principal


def focal_from_centre(pixels, points, scale, centre, rotation, focal: float, principal) -> Tuple[float, np.ndarray]:
    """The focal and the orientation (camera-from-world, OpenCV axes) that best fit the 2D–3D matches
    seen from ``centre`` (Huber loss on residuals over ``scale``, the native pixels per pixel of the
    copy each match was found in), starting from ``rotation`` and ``focal``."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    def residual(theta):
        turned = Rotation.from_rotvec(theta[:3]).as_matrix() @ rotation
        projected = _project(points, turned, -turned @ centre, focal * math.exp(theta[3]), principal)
        return ((projected - pixels) / scale[:, None]).ravel()

    theta = least_squares(residual, np.zeros(4), loss="huber").x
    return focal * math.exp(float(theta[3])), Rotation.from_rotvec(theta[:3]).as_matrix() @ rotation


def refit_pose(pixels, points, scale, cam_from_world, focal: float, principal) -> Tuple[np.ndarray, float]:
    """Camera-from-world (OpenCV axes) fitted to the 2D–3D matches at ``focal`` (residuals over
    ``scale``, as :func:`focal_from_centre`), and its RMS weighted error (pixels of the copies)."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    rotation, translation = cam_from_world[:, :3], cam_from_world[:, 3]

    def pose(theta):
        return Rotation.from_rotvec(theta[:3]).as_matrix() @ rotation, translation + theta[3:]

    def residual(theta):
        return ((_project(points, *pose(theta), focal, principal) - pixels) / scale[:, None]).ravel()

    fit = least_squares(residual, np.zeros(6), loss="huber", x_scale="jac")
    turned, moved = pose(fit.x)
    return np.column_stack([turned, moved]), float(np.sqrt(np.mean(fit.fun**2)))


def _solution(reconstruction, names: List[str]) -> WideSolution:
    """The wide views' answer from the model (views it left out: NaN)."""
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
