"""Every change mzen makes to other libraries' behaviour, in one place.

1. :func:`allow_checkpoint_types` (applied when :mod:`mzen_ns.trainer` is imported, which loading
   any mzen run does): allow-lists in ``torch.serialization`` the few NumPy types nerfstudio
   checkpoints hold, so resume, ``ns-eval`` and ``ns-viewer`` keep torch's safe
   ``weights_only=True`` loading (torch ≥ 2.6) instead of failing on them.
2. :func:`lpips_only_if_cached` (while the model is built, then undone): torchmetrics' LPIPS is
   swapped for :class:`UnavailableLPIPS` unless torchvision's AlexNet weights are cached, so
   building a model never downloads anything.
3. :func:`protect_run_loading` (when nerfstudio loads its method list, which imports mzen's
   presets, and in every mzen command): nerfstudio reads a run's ``config.yml`` with PyYAML's full
   loader, which calls any Python function the file names. The ``yaml`` that
   ``nerfstudio.utils.eval_utils`` (``ns-eval``, ``ns-viewer``, ``ns-render``, ``ns-export``) and
   ``nerfstudio.scripts.train`` (``ns-train --load-config``) use is replaced by one whose ``load``
   is mzen's restricted loader (:class:`mzen_ns.run_files.ConfigLoader`), and ``eval_utils``'s
   checkpoint loading by :func:`mzen_ns.run_files.newest_readable_checkpoint` (damaged checkpoints
   named, the newest readable one used). Errors about files print one line naming the file
   (:func:`mzen_dataparsers.errors.install_clean_error_report`, which the FF-MZN parser also
   installs when it runs).
4. :func:`keep_freed_memory` (when a CPU run's trainer is set up): glibc's allocator hands every
   block over its mmap threshold back to the system when torch frees it, so each step's large
   tensors (hash-table gradients, sample batches) are mapped and faulted in afresh. It is told to
   keep them in the heap instead (``mallopt``; the same as the ``MALLOC_*`` variables read at start).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.abc
import importlib.machinery
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from mzen_dataparsers.errors import install_clean_error_report
from mzen_ns import run_files

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


RUN_LOADING_MODULES = ("nerfstudio.utils.eval_utils", "nerfstudio.scripts.train")
"""nerfstudio modules that read a run's config.yml with ``yaml.load(..., Loader=yaml.Loader)``."""


class _SafeYaml:
    """Stands in for the ``yaml`` module inside nerfstudio's run-loading modules: ``load`` builds
    run configs with :class:`mzen_ns.run_files.ConfigLoader`; everything else is PyYAML's."""

    def __getattr__(self, name: str) -> Any:
        return getattr(yaml, name)

    def load(self, stream: Any, Loader: Any = None) -> Any:  # noqa: N803 - PyYAML's signature
        _replace_checkpoint_loading()  # nerfstudio's module is fully imported by the time it loads a config
        text = stream if isinstance(stream, str) else stream.read()
        return run_files.parse_config(text, run_files.caller_config_path() or "the run's config.yml")


def protect_run_loading() -> None:
    """Point nerfstudio's run-loading modules at mzen's safe loaders: those imported so far now,
    the others as soon as they are imported (idempotent)."""
    install_clean_error_report()
    for name in RUN_LOADING_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "yaml", None) is yaml:
            module.yaml = _SafeYaml()
    _replace_checkpoint_loading()
    if not any(isinstance(finder, _ProtectOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ProtectOnImport())


class _ProtectOnImport(importlib.abc.MetaPathFinder):
    """Runs :func:`protect_run_loading` right after a run-loading module of nerfstudio is imported."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in RUN_LOADING_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        execute = spec.loader.exec_module

        def exec_then_protect(module: Any) -> None:
            execute(module)
            protect_run_loading()

        spec.loader.exec_module = exec_then_protect  # type: ignore[method-assign]
        return spec


def _replace_checkpoint_loading() -> None:
    module = sys.modules.get("nerfstudio.utils.eval_utils")
    if module is not None and hasattr(module, "eval_load_checkpoint"):
        module.eval_load_checkpoint = eval_load_checkpoint


def eval_load_checkpoint(config: Any, pipeline: Any) -> Tuple[Path, int]:
    """nerfstudio's ``eval_load_checkpoint``: the newest readable checkpoint of the run (or
    ``load_step``'s), skipped ones and a checkpoint that does not fit named."""
    from nerfstudio.utils.rich_utils import CONSOLE

    path, state, skipped = run_files.newest_readable_checkpoint(config.load_dir, config.load_step)
    for problem in skipped:
        CONSOLE.print(f"[bold yellow]Skipped a checkpoint that does not read:[/] {problem}")
    run_files.load_pipeline_state(pipeline, state, path)
    CONSOLE.print(f":white_check_mark: Done loading checkpoint from {path}")
    return path, int(state["step"])


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
"""glibc's ``mallopt`` parameters."""
KEPT_ALLOCATOR = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 256 << 20}
"""Blocks up to glibc's largest mmap threshold come from the heap, and up to 1 GiB of freed heap is kept."""


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to serve and keep large blocks in the heap (:data:`KEPT_ALLOCATOR`);
    False where the C library is not glibc or refuses a setting."""
    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in KEPT_ALLOCATOR.items())
