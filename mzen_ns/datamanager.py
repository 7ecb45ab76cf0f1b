"""Data manager whose pixel sampler obeys the phase, sampling in the main process.

nerfacto's ``ParallelDataManager`` samples in a subprocess that changes made in the main process
do not reach, so mzen uses nerfstudio's ``VanillaDataManager`` (all training images cached) with
a pixel sampler restricted to the images the current phase trains on. Each training ray also
carries its pixel indices so the model can regenerate it from the learned cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Type

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig

from mzen_dataparsers.ffmzn_dataparser import FFMZNDataParserConfig
from mzen_ns.cameras import PIXELS_KEY


@dataclass
class PhasePixelSamplerConfig(PixelSamplerConfig):
    """Pixel sampler that draws only from the images the current phase allows."""

    _target: Type = field(default_factory=lambda: PhasePixelSampler)
    """Class this config instantiates."""


class PhasePixelSampler(PixelSampler):
    """Samples rays only from ``allowed_images`` (a boolean mask over dataset indices)."""

    config: PhasePixelSamplerConfig

    def __init__(self, config: PhasePixelSamplerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.allowed_images: Optional[torch.Tensor] = None

    def collate_image_dataset_batch(self, batch: Dict, num_rays_per_batch: int, keep_full_image: bool = False):
        if self.allowed_images is None:
            return super().collate_image_dataset_batch(batch, num_rays_per_batch, keep_full_image)
        keep = self.allowed_images.to(batch["image_idx"].device)[batch["image_idx"]]
        if not bool(keep.any()):
            raise RuntimeError("the current phase allows no image of this batch; cache all training images")
        count = batch["image_idx"].shape[0]
        subset = {
            key: value[keep] if isinstance(value, torch.Tensor) and value.shape[:1] == (count,) else value
            for key, value in batch.items()
        }
        return super().collate_image_dataset_batch(subset, num_rays_per_batch, keep_full_image)


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

    def set_allowed_images(self, allowed: Optional[torch.Tensor]) -> None:
        """Sample only from images where ``allowed`` is true (None: all images)."""
        assert isinstance(self.train_pixel_sampler, PhasePixelSampler)
        self.train_pixel_sampler.allowed_images = None if allowed is None else allowed.bool().cpu()

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        ray_bundle, batch = super().next_train(step)
        if ray_bundle.metadata is None:
            ray_bundle.metadata = {}
        ray_bundle.metadata[PIXELS_KEY] = batch["indices"][:, 1:].to(ray_bundle.origins.device)
        return ray_bundle, batch
