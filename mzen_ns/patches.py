"""Every change mzen makes to other libraries' behaviour, in one place.

1. :func:`allow_checkpoint_types` (applied when :mod:`mzen_ns.trainer` is imported, which loading
   any mzen run does): allow-lists in ``torch.serialization`` the few NumPy types nerfstudio
   checkpoints hold, so resume, ``ns-eval`` and ``ns-viewer`` keep torch's safe
   ``weights_only=True`` loading (torch ≥ 2.6) instead of failing on them.
2. :func:`lpips_only_if_cached` (while the model is built, then undone): torchmetrics' LPIPS is
   swapped for :class:`UnavailableLPIPS` unless torchvision's AlexNet weights are cached, so
   building a model never downloads anything.

The FF-MZN parser also replaces ``sys.excepthook`` when it runs (not on import), so that a scene
error prints one line naming the file; see :func:`mzen_dataparsers.errors.install_clean_error_report`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
"""The AlexNet weights torchmetrics' LPIPS loads through torchvision."""


def allow_checkpoint_types() -> None:
    """Allow-list the NumPy scalar reconstructor and dtypes that nerfstudio checkpoints contain."""
    scalar_reconstructor = np.float64(0.0).__reduce__()[0]  # numpy.core (NumPy 1) or numpy._core (NumPy 2)
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64")]
    torch.serialization.add_safe_globals([scalar_reconstructor, np.dtype, *dtypes])


def alexnet_weights_path() -> Path:
    """Where torchvision caches the AlexNet weights LPIPS needs."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(ALEXNET_URL).name


class UnavailableLPIPS(nn.Module):
    """Stands in for LPIPS when its AlexNet weights are not cached: never computes a score."""

    available = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, *args, **kwargs) -> Tensor:
        return torch.tensor(float("nan"))


@contextlib.contextmanager
def lpips_only_if_cached() -> Iterator[bool]:
    """Inside the block, LPIPS is :class:`UnavailableLPIPS` unless the weights are cached; yields
    whether LPIPS is available."""
    import torchmetrics.image.lpip as lpip

    if alexnet_weights_path().is_file():
        yield True
        return
    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = UnavailableLPIPS  # type: ignore[misc]
    try:
        yield False
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[misc]
