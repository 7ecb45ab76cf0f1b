"""nerfstudio dataparser for FF-MZN multi-zoom scenes (``docs/format.md``); usable by any method.

Cameras start at identity (pose-free) unless ``use_pose_prior`` is set, with intrinsics
``fx = focal_guess * dial``: a zoom-in of dial 4 sees a field of view four times narrower.
Per-frame zoom level and ground truth travel in ``DataparserOutputs.metadata`` (keys below) for
evaluation only; they are not put on the cameras, so they never reach a ray bundle.

Metadata keys (tensors indexed like the split's images):
- ``mzen_dial`` (N,): normalised dial (widest = 1); ``mzen_level`` (N,): level index (0 = wide);
  ``mzen_levels``: the scene's distinct dials, ascending; ``mzen_frame_index`` (N,): position in
  the manifest; ``mzen_file_paths``: the manifest's relative paths; ``mzen_source_filenames``:
  the original image files (``image_filenames`` may point at normalised 8-bit copies);
  ``mzen_focal_guess`` (fx, fy) at the widest level; ``mzen_focal_known`` (the guess came from the data);
  ``mzen_image_size`` (w, h);
  ``mzen_principal_point`` (cx, cy); ``mzen_pose_prior`` (N, 4, 4) in the normalised frame, or ``None``;
  ``mzen_scene_train_counts`` (wide, all): the scene's training frames, whatever ``train_levels`` keeps.
- ``mzen_ground_truth`` (evaluation only): ``c2w`` (N, 4, 4), ``zoom`` (N,) — NaN where the
  scene gives none — ``focal`` (float or ``None``) and ``points``: per frame the (P, 3) surface
  points it sees (``gt_points``), or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from torch import Tensor
from typing_extensions import assert_never

from .errors import SceneFormatError, install_clean_error_report
from .images import AlphaHandling, FrameImage, default_cache_dir, load_frame
from .manifest import FrameRecord, SceneRecord, assign_splits, level_index, read_scene, zoom_levels


@dataclass
class FFMZNDataParserConfig(DataParserConfig):
    """FF-MZN multi-zoom scene: ``transforms.json`` manifest or ``<Z>x/`` folders."""

    _target: Type = field(default_factory=lambda: FFMZNDataParser)
    """Class this config instantiates."""

    data: Path = Path()
    """Scene folder (holding ``transforms.json``, or ``1x/``, ``4x/``, ... folders)."""
    test_every: int = 8
    """Frames without a manifest split: hold out max(1, n // test_every) per level of n >= 3 frames (0: none)."""
    use_pose_prior: bool = False
    """Start cameras at the manifest's ``transform_matrix`` instead of identity (every frame needs one)."""
    pose_prior_normalisation: Literal["centre-and-scale", "none"] = "centre-and-scale"
    """With pose priors: centre the cameras and scale the farthest to 1 from the centre, or keep them as given."""
    train_levels: Literal["all", "widest", "zoom-ins"] = "all"
    """Training frames to load: every level, the widest only, or all but the widest (held-out frames all stay)."""
    alpha: AlphaHandling = "white"
    """Frames with an alpha channel: composite over white or black, or drop the channel."""
    crop_bottom_rows: int = 0
    """Rows cut off the bottom of every frame before training (an instrument's data bar)."""
    float_range: Optional[Tuple[float, float]] = None
    """Float images: map LOW HIGH to [0, 1], the same for every frame (default: floats must lie in [0, 1])."""
    scene_scale: float = 1.0
    """Half-size of the axis-aligned scene box around the origin."""
    cache_dir: Optional[Path] = None
    """Where normalised 8-bit copies of other image types go (default ``$MZEN_CACHE_DIR/images``)."""


class FFMZNDataParser(DataParser):
    """Reads an FF-MZN scene; every malformed scene raises :class:`SceneFormatError`."""

    config: FFMZNDataParserConfig

    def __init__(self, config: FFMZNDataParserConfig) -> None:
        super().__init__(config=config)
        self._scene: Optional[SceneRecord] = None
        self._images: Optional[List[FrameImage]] = None
        self._splits: Optional[List[str]] = None

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        install_clean_error_report()
        scene, images, splits = self._load_scene()
        wanted = _split_name(split)
        train = [i for i, frame_split in enumerate(splits) if frame_split == "train"]
        indices = [i for i, frame_split in enumerate(splits) if frame_split == wanted] or train
        # (no held-out frames: evaluate on the training frames, like eval_mode "all")
        if split == "train":
            indices = self._kept_levels(scene, indices)
        outputs = self._outputs(scene, images, indices)
        levels = zoom_levels([frame.dial for frame in scene.frames])
        n_wide = sum(1 for i in train if level_index(scene.frames[i].dial, levels) == 0)
        outputs.metadata["mzen_scene_train_counts"] = (n_wide, len(train))
        return outputs

    def _kept_levels(self, scene: SceneRecord, indices: List[int]) -> List[int]:
        if self.config.train_levels == "all":
            return indices
        levels = zoom_levels([frame.dial for frame in scene.frames])
        wide = [i for i in indices if level_index(scene.frames[i].dial, levels) == 0]
        if self.config.train_levels == "widest":
            return wide
        if self.config.train_levels == "zoom-ins":
            return [i for i in indices if i not in wide]
        assert_never(self.config.train_levels)

    def _load_scene(self) -> Tuple[SceneRecord, List[FrameImage], List[str]]:
        """Read and validate the whole scene once (both splits come from the same reading)."""
        if self._scene is None or self._images is None or self._splits is None:
            scene = read_scene(self.config.data)
            _report_readings(scene)
            cache_dir = self.config.cache_dir if self.config.cache_dir is not None else default_cache_dir()
            crop = self.config.crop_bottom_rows
            float_range = self.config.float_range
            if float_range is not None and not float_range[1] > float_range[0]:
                raise SceneFormatError(scene.root, f"float_range must be LOW HIGH with HIGH > LOW, got {float_range}")
            images = [
                load_frame(scene.root / frame.file_path, self.config.alpha, cache_dir, crop, float_range)
                for frame in scene.frames
            ]
            _check_sizes(scene, images, crop)
            self._scene, self._images = scene, images
            self._splits = assign_splits(scene.frames, self.config.test_every)
        return self._scene, self._images, self._splits

    def _outputs(self, scene: SceneRecord, images: List[FrameImage], indices: List[int]) -> DataparserOutputs:
        frames = [scene.frames[i] for i in indices]
        width, height = images[0].width, images[0].height
        fx, fy = scene.focal_guess(width, height)
        dial = torch.tensor([frame.dial for frame in frames], dtype=torch.float32)
        priors, transform, scale = self._pose_priors(scene, indices)
        c2w = priors[:, :3, :] if self.config.use_pose_prior else torch.eye(4)[:3].expand(len(frames), 3, 4).clone()
        cameras = Cameras(
            camera_to_worlds=c2w,
            fx=(fx * dial)[:, None],
            fy=(fy * dial)[:, None],
            cx=scene.cx if scene.cx is not None else width / 2.0,
            cy=scene.cy if scene.cy is not None else height / 2.0,
            width=width,
            height=height,
            camera_type=CameraType.PERSPECTIVE,
        )
        levels = zoom_levels([frame.dial for frame in scene.frames])
        metadata = {
            "mzen_dial": dial,
            "mzen_level": torch.tensor([level_index(frame.dial, levels) for frame in frames], dtype=torch.long),
            "mzen_levels": levels,
            "mzen_frame_index": torch.tensor(indices, dtype=torch.long),
            "mzen_file_paths": [frame.file_path for frame in frames],
            "mzen_source_filenames": [images[i].source for i in indices],
            "mzen_focal_guess": (fx, fy),
            "mzen_focal_known": scene.focal_is_known(),
            "mzen_image_size": (width, height),
            "mzen_principal_point": (float(cameras.cx[0, 0]), float(cameras.cy[0, 0])),
            "mzen_pose_prior": priors if _all_have_priors(scene.frames) else None,
            "mzen_ground_truth": _ground_truth(scene, frames),
        }
        s = self.config.scene_scale
        return DataparserOutputs(
            image_filenames=[images[i].readable_path for i in indices],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-s, -s, -s], [s, s, s]], dtype=torch.float32)),
            metadata=metadata,
            dataparser_transform=transform,
            dataparser_scale=scale,
        )

    def _pose_priors(
        self, scene: SceneRecord, indices: Sequence[int]
    ) -> Tuple[Float[Tensor, "N 4 4"], Float[Tensor, "3 4"], float]:
        """The split's prior poses in the normalised frame, and that normalisation (whole scene)."""
        identity = torch.eye(4)[:3, :]
        if not _all_have_priors(scene.frames):
            if self.config.use_pose_prior:
                missing = next(frame for frame in scene.frames if frame.pose_prior is None)
                raise SceneFormatError(missing.where, "'transform_matrix' is missing but use_pose_prior is set")
            return torch.eye(4).expand(len(indices), 4, 4).clone(), identity, 1.0
        poses = torch.tensor(np.stack([frame.pose_prior for frame in scene.frames]), dtype=torch.float32)
        transform, scale = _normalisation(poses, self.config.pose_prior_normalisation)
        normalised = poses[list(indices)].clone()
        normalised[:, :3, 3] = (normalised[:, :3, 3] + transform[:, 3]) * scale
        return normalised, transform, scale


def _report_readings(scene: SceneRecord) -> None:
    """Say which frames took their zoom reading (and the focal guess) from their files."""
    from nerfstudio.utils.rich_utils import CONSOLE

    from_files = [frame for frame in scene.frames if frame.zoom_source not in ("manifest", "folder name")]
    for frame in from_files[:20]:
        CONSOLE.print(f"zoom reading of {frame.file_path}: {frame.reading:g} from {frame.zoom_source}")
    if len(from_files) > 20:
        CONSOLE.print(f"… and {len(from_files) - 20} more frames read their zoom from their files")
    for frame in from_files:
        if "disagrees" in frame.zoom_source:
            CONSOLE.print(
                f"[bold yellow]SEM metadata of {frame.file_path} disagrees with itself:[/] {frame.zoom_source}"
            )
    if scene.focal_35mm is not None:
        CONSOLE.print(f"focal guess from the EXIF 35 mm-equivalent focal length {scene.focal_35mm:g} mm")


def _split_name(split: str) -> str:
    if split in ("test", "val"):
        return "test"
    if split == "train":
        return "train"
    raise ValueError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")


def _check_sizes(scene: SceneRecord, images: Sequence[FrameImage], crop_bottom: int = 0) -> None:
    """Every frame has the scene's size (``w`` x ``h`` less the cropped rows)."""
    width = scene.width if scene.width is not None else images[0].width
    height = scene.height - crop_bottom if scene.height is not None else images[0].height
    cropped = f" less {crop_bottom} cropped rows" if crop_bottom else ""
    for frame, image in zip(scene.frames, images):
        if (image.width, image.height) != (width, height):
            raise SceneFormatError(
                frame.where,
                f"image is {image.width}x{image.height} but the scene's size is {width}x{height} (w x h{cropped})",
            )


def _all_have_priors(frames: Sequence[FrameRecord]) -> bool:
    return all(frame.pose_prior is not None for frame in frames)


def _normalisation(
    poses: Float[Tensor, "N 4 4"], mode: Literal["centre-and-scale", "none"]
) -> Tuple[Float[Tensor, "3 4"], float]:
    """Translation-only transform (rotation kept) and scale; never divides by zero."""
    transform = torch.eye(4)[:3, :]
    if mode == "none":
        return transform, 1.0
    if mode == "centre-and-scale":
        centre = poses[:, :3, 3].mean(dim=0)
        transform[:, 3] = -centre
        radius = float((poses[:, :3, 3] - centre).norm(dim=-1).max())
        return transform, (1.0 / radius if radius > 1e-9 else 1.0)
    assert_never(mode)


def _ground_truth(scene: SceneRecord, frames: Sequence[FrameRecord]) -> Dict[str, object]:
    nan_pose = np.full((4, 4), np.nan)
    c2w = np.stack([frame.gt_c2w if frame.gt_c2w is not None else nan_pose for frame in frames])
    zoom = [frame.gt_zoom if frame.gt_zoom is not None else float("nan") for frame in frames]
    return {
        "c2w": torch.tensor(c2w, dtype=torch.float32),
        "zoom": torch.tensor(zoom, dtype=torch.float32),
        "focal": scene.gt_focal,
        "points": [None if frame.gt_points is None else torch.tensor(frame.gt_points) for frame in frames],
    }
