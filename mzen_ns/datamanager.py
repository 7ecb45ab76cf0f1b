"""Data manager whose pixel sampler obeys the phase, sampling in the main process.

nerfacto's ``ParallelDataManager`` samples in a subprocess that changes made in the main process
do not reach, so mzen uses nerfstudio's ``VanillaDataManager`` (all training images cached) with
a pixel sampler restricted to the images the current phase trains on. Each training ray also
carries its pixel indices so the model can regenerate it from the learned cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Tuple, Type, Union

import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from typing_extensions import assert_never

from mzen_dataparsers.ffmzn_dataparser import FFMZNDataParserConfig
from mzen_ns.cameras import PIXELS_KEY

Sampling = Literal["uniform", "error"]
"""How a batch's pixels are drawn within the images: alike, or where the field's error is."""
UNSEEN_ERROR = 1.0
"""Error a pixel counts with until a training ray has measured it: the largest a colour in [0, 1]
can have, so unseen pixels are drawn first."""


@dataclass
class PhasePixelSamplerConfig(PixelSamplerConfig):
    """Pixel sampler that draws only from the images the current phase allows."""

    _target: Type = field(default_factory=lambda: PhasePixelSampler)
    """Class this config instantiates."""
    zoom_in_share: Optional[float] = None
    """Share of each batch drawn from zoom-ins where a phase trains on both kinds (None: every image alike)."""
    sampling: Sampling = "uniform"
    """Pixels within the images: ``uniform``, or ``error`` (in proportion to each pixel's last training error)."""
    uniform_share: float = 0.5
    """With ``error`` sampling, the share of the draws spread evenly over all pixels (every error stays fresh)."""


def image_shares(
    is_wide: Bool[torch.Tensor, " N"], zoom_in_share: Optional[float]
) -> Optional[Float[torch.Tensor, " N"]]:
    """Each image's share of a batch drawn from ``is_wide``'s images: the wide views split
    ``1 − zoom_in_share`` evenly, the zoom-ins ``zoom_in_share``; None (every image alike) without a
    share or where one kind is missing."""
    if zoom_in_share is None:
        return None
    if not 0.0 <= zoom_in_share <= 1.0:
        raise ValueError(f"zoom_in_share must lie in [0, 1], got {zoom_in_share}")
    wide, zoom = int(is_wide.sum()), int((~is_wide).sum())
    if wide == 0 or zoom == 0:
        return None
    return torch.where(is_wide, (1.0 - zoom_in_share) / wide, zoom_in_share / zoom)


def pixel_weights(
    errors: Float[torch.Tensor, "N H W"], shares: Optional[Float[torch.Tensor, " N"]], uniform_share: float
) -> Float[torch.Tensor, "N H W"]:
    """Probability of drawing each pixel: ``uniform_share`` of it spread evenly over every pixel and
    the rest in proportion to ``errors``; each image's total then set to its share where ``shares``
    are given (its pixels keep their proportions)."""
    if not 0.0 <= uniform_share <= 1.0:
        raise ValueError(f"uniform_share must lie in [0, 1], got {uniform_share}")
    even = torch.full_like(errors, 1.0 / errors.numel())
    total = errors.sum()
    by_error = errors / total if bool(total > 0) else even
    weights = uniform_share * even + (1.0 - uniform_share) * by_error
    if shares is not None:
        weights = weights / weights.sum(dim=(1, 2), keepdim=True) * shares.to(weights)[:, None, None]
    return weights


def draw_pixels(weights: Float[torch.Tensor, "N H W"], count: int) -> Int[torch.Tensor, "count 3"]:
    """``count`` (image, row, column) indices drawn with replacement by ``weights`` (any scale;
    a cumulative sum, so no limit on the number of pixels)."""
    cumulative = weights.flatten().double().cumsum(0)
    flat = torch.searchsorted(cumulative, torch.rand(count, dtype=torch.float64) * cumulative[-1], right=True)
    flat = flat.clamp_(max=cumulative.numel() - 1)
    _, height, width = weights.shape
    return torch.stack([flat // (height * width), flat % (height * width) // width, flat % width], dim=-1)


class PhasePixelSampler(PixelSampler):
    """Samples rays only from ``allowed_images`` (a boolean mask over dataset indices), each image's
    share of the batch set by :func:`image_shares` where ``is_wide`` is known; within the images
    uniformly or, with ``sampling`` ``error``, by :func:`pixel_weights` over the errors
    :meth:`record_errors` was given."""

    config: PhasePixelSamplerConfig

    def __init__(self, config: PhasePixelSamplerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.allowed_images: Optional[torch.Tensor] = None
        self.is_wide: Optional[torch.Tensor] = None
        self.errors: Optional[torch.Tensor] = None
        """Each training pixel's squared error when a ray last measured it (:data:`UNSEEN_ERROR` before)."""
        self._shares: Optional[torch.Tensor] = None
        self._errors: Optional[torch.Tensor] = None

    def record_errors(self, indices: Int[torch.Tensor, "R 3"], errors: Float[torch.Tensor, " R"]) -> None:
        """Keep each ray's error at its (image, row, column); the next batches draw by them."""
        if self.errors is None:
            return
        c, y, x = indices.cpu().long().unbind(-1)
        self.errors[c, y, x] = errors.detach().float().cpu()

    def collate_image_dataset_batch(self, batch: Dict, num_rays_per_batch: int, keep_full_image: bool = False):
        subset = batch
        if self.allowed_images is not None:
            keep = self.allowed_images.to(batch["image_idx"].device)[batch["image_idx"]]
            if not bool(keep.any()):
                raise RuntimeError("the current phase allows no image of this batch; cache all training images")
            count = batch["image_idx"].shape[0]
            subset = {
                key: value[keep] if isinstance(value, torch.Tensor) and value.shape[:1] == (count,) else value
                for key, value in batch.items()
            }
        images = subset["image_idx"].cpu()
        if self.is_wide is not None:
            self._shares = image_shares(self.is_wide[images], self.config.zoom_in_share)
        if self.config.sampling == "error":
            if self.errors is None:  # one map over every cached image, indexed by dataset index
                height, width = batch["image"].shape[1:3]
                self.errors = torch.full((int(batch["image_idx"].max()) + 1, height, width), UNSEEN_ERROR)
            self._errors = self.errors[images]
        elif self.config.sampling != "uniform":
            assert_never(self.config.sampling)
        try:
            return super().collate_image_dataset_batch(subset, num_rays_per_batch, keep_full_image)
        finally:
            self._shares = None
            self._errors = None

    def sample_method(
        self,
        batch_size: int,
        num_images: int,
        image_height: int,
        image_width: int,
        mask: Optional[torch.Tensor] = None,
        device: Union[torch.device, str] = "cpu",
    ) -> Int[torch.Tensor, "batch_size 3"]:
        """nerfstudio's uniform pixels, the image of each drawn by its share where shares are set;
        by :func:`pixel_weights` where errors are kept."""
        if self._errors is not None and mask is None:
            weights = pixel_weights(self._errors, self._shares, self.config.uniform_share)
            return draw_pixels(weights, batch_size).to(device)
        indices = super().sample_method(batch_size, num_images, image_height, image_width, mask, device)
        if self._shares is not None and mask is None:
            indices[:, 0] = torch.multinomial(self._shares.to(device), batch_size, replacement=True)
        return indices


@dataclass
class MZENDataManagerConfig(VanillaDataManagerConfig):
    """Vanilla data manager with a sampler that obeys the phase."""

    _target: Type = field(default_factory=lambda: MZENDataManager)
    """Class this config instantiates."""

    dataparser: FFMZNDataParserConfig = field(default_factory=FFMZNDataParserConfig)
    """FF-MZN scene parser."""
    pixel_sampler: PhasePixelSamplerConfig = field(default_factory=PhasePixelSamplerConfig)
    """Pixel sampler that obeys the phase."""
    train_num_images_to_sample_from: int = -1
    """Must stay -1 (all training images cached) so every phase finds its images."""


def stack_images(dataset: InputDataset) -> Float[torch.Tensor, "N H W 3"]:
    """Every image of ``dataset`` as RGB floats in [0, 1] (for crop-and-match and scoring)."""
    return torch.stack([dataset.get_image_float32(i)[..., :3] for i in range(len(dataset))])


class MZENDataManager(VanillaDataManager):
    """Samples in the main process; ``set_allowed_images`` restricts sampling to a phase's images."""

    config: MZENDataManagerConfig

    def __init__(self, config: MZENDataManagerConfig, **kwargs) -> None:
        if config.train_num_images_to_sample_from != -1:
            raise ValueError("mzen needs train_num_images_to_sample_from = -1 (every image cached)")
        super().__init__(config, **kwargs)
        sampler = getattr(self, "train_pixel_sampler", None)  # none in inference mode
        levels = self.train_dataset.metadata.get("mzen_level")
        if isinstance(sampler, PhasePixelSampler) and levels is not None:
            sampler.is_wide = levels.cpu() == 0
        self.rays_drawn = torch.zeros(len(self.train_dataset), dtype=torch.long)
        """Training rays drawn from each image so far in this process."""
        self.last_batch: Dict = {}
        """The batch :meth:`next_train` drew last (its pixels' indices and colours)."""

    def set_allowed_images(self, allowed: Optional[torch.Tensor]) -> None:
        """Sample only from images where ``allowed`` is true (None: all images)."""
        assert isinstance(self.train_pixel_sampler, PhasePixelSampler)
        self.train_pixel_sampler.allowed_images = None if allowed is None else allowed.bool().cpu()

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        ray_bundle, batch = super().next_train(step)
        if ray_bundle.metadata is None:
            ray_bundle.metadata = {}
        ray_bundle.metadata[PIXELS_KEY] = batch["indices"][:, 1:].to(ray_bundle.origins.device)
        self.rays_drawn += torch.bincount(batch["indices"][:, 0].cpu(), minlength=len(self.rays_drawn))
        self.last_batch = batch
        return ray_bundle, batch

    @property
    def samples_by_error(self) -> bool:
        """Whether the training sampler draws pixels by their error (it then needs :meth:`record_errors`)."""
        sampler = getattr(self, "train_pixel_sampler", None)
        return isinstance(sampler, PhasePixelSampler) and sampler.config.sampling == "error"

    def record_errors(self, errors: Float[torch.Tensor, " R"]) -> None:
        """Give the sampler the errors of the rays of the last batch drawn, in its order."""
        assert isinstance(self.train_pixel_sampler, PhasePixelSampler)
        self.train_pixel_sampler.record_errors(self.last_batch["indices"], errors)

    def rays_per_pixel(self) -> Dict[str, float]:
        """Per level (``1x``, ``4x``, …), the training rays drawn from its images per pixel of them."""
        dials = self.train_dataset.metadata["mzen_dial"].cpu()
        pixels = (self.train_dataset.cameras.width * self.train_dataset.cameras.height).view(-1).cpu()
        result: Dict[str, float] = {}
        for dial in sorted(set(dials.tolist())):
            level = dials == dial
            result[f"{dial:g}x"] = float(self.rays_drawn[level].sum()) / float(pixels[level].sum())
        return result
