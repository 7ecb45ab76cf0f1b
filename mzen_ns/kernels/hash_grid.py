"""The fused CPU hash-grid encoding: nerfstudio's torch hash grid (with mzen's smooth-gradient
estimator) in one C++ pass forward and one backward, the same values and gradients.

On 2 CPU cores the torch hash grids are three quarters of a training step (``docs/results.md``,
"Where a CPU step goes"): each level builds corner, hash, gather and blend tensors the size of the
batch. The kernel (``hash_grid.cpp``) does each point's corners in registers. It is compiled by
``torch.utils.cpp_extension`` with the machine's C++ compiler on first use (cached under
``~/.cache/torch_extensions``); where that fails, :func:`kernel` says why once and returns None,
and the torch path runs.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor
from typing_extensions import assert_never

SOURCE = Path(__file__).with_name("hash_grid.cpp")
_loaded: dict = {}

Estimator = Literal["plain", "paper", "smooth"]
"""The interpolation weights' backward: plain, Heo et al.'s Eq. 13 (1 + λδ'), or smooth (λδ')."""


def kernel() -> Optional[Any]:
    """The compiled kernel module, building it on first call; None (with one warning) where it cannot be built."""
    if "module" not in _loaded:
        _loaded["module"] = _build()
    return _loaded["module"]


def _build() -> Optional[Any]:
    quiet = logging.getLogger("torch.utils.cpp_extension")  # its CUDA_HOME notice concerns CUDA builds only
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load

        return load(
            name="mzen_hash_grid",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as error:  # no compiler, no ninja, no headers: the torch path still runs
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        warnings.warn(f"fused CPU hash grid unavailable ({reason}); using the torch hash grid", RuntimeWarning)
        return None
    finally:
        quiet.setLevel(level)


def _mode(estimator: Estimator) -> int:
    if estimator == "plain":
        return 0
    if estimator == "paper":
        return 1
    if estimator == "smooth":
        return 2
    assert_never(estimator)


class _HashGrid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, table, scalings, size, lam, mode, module):  # noqa: D102
        ctx.save_for_backward(points, table, scalings)
        ctx.size, ctx.lam, ctx.mode, ctx.module = size, lam, mode, module
        return module.forward(points, scalings, table, size)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        points, table, scalings = ctx.saved_tensors
        grad_points, grad_table = ctx.module.backward(
            grad_out.contiguous(), points, scalings, table, ctx.size, ctx.lam, ctx.mode, ctx.needs_input_grad[0]
        )
        return (grad_points if ctx.needs_input_grad[0] else None), grad_table, None, None, None, None, None


def hash_grid(
    points: Float[Tensor, "N 3"],
    table: Float[Tensor, "LT F"],
    scalings: Float[Tensor, " L"],
    table_size: int,
    lam: float,
    estimator: Estimator,
) -> Float[Tensor, "N LF"]:
    """Per point, each level's features blended from its cell's 8 hashed corners (levels of
    ``table_size`` rows each, stacked in ``table``), with gradients to ``points`` (through the
    estimator's weights) and ``table``. Needs :func:`kernel` to have built."""
    module = kernel()
    if module is None:
        raise RuntimeError("the fused CPU hash grid is not built on this machine")
    return _HashGrid.apply(
        points.float().contiguous(),
        table,
        scalings.float().contiguous(),
        int(table_size),
        float(lam),
        _mode(estimator),
        module,
    )
