"""The fused CPU hash grid gives the torch hash grid's values and gradients."""

from __future__ import annotations

import warnings

import pytest
import torch
from nerfstudio.field_components.encodings import HashEncoding

from mzen_ns.encoding import SmoothGradientHashEncoding
from mzen_ns.kernels import hash_grid as fused_kernel


@pytest.fixture(scope="module")
def built():
    module = fused_kernel.kernel()
    if module is None:
        pytest.fail("the fused CPU hash grid did not build on this machine (a C++ compiler and ninja are needed)")
    return module


def grids(lam: float, mode: str, levels: int = 5, features: int = 2):
    """The same hash grid on the torch path and on the fused kernel (one shared table)."""
    torch.manual_seed(0)
    plain = HashEncoding(
        num_levels=levels,
        min_res=4,
        max_res=64,
        log2_hashmap_size=9,
        features_per_level=features,
        implementation="torch",
    )
    with torch.no_grad():
        plain.hash_table.uniform_(-1.0, 1.0)
    reference = SmoothGradientHashEncoding.from_encoding(plain, lam, mode, fused=False)
    fused = SmoothGradientHashEncoding.from_encoding(plain, lam, mode, fused=True)
    return reference, fused


def sample_points():
    torch.manual_seed(1)
    points = torch.rand(2, 300, 3) * 1.2 - 0.1  # a few outside the unit cube, as contracted samples can be
    points[0, :4] = torch.tensor([0.25, 0.5, 0.75])  # on cell faces of every level (floor == ceil)
    points[0, 4:8] = torch.tensor([0.0, 1.0, -0.125])
    return points


@pytest.mark.parametrize("lam, mode", [(0.0, "paper"), (1.0, "paper"), (1.0, "smooth"), (0.5, "smooth")])
def test_fused_values_and_gradients_equal_the_torch_path(built, lam, mode):
    reference, fused = grids(lam, mode)
    points = sample_points()
    upstream = torch.randn(2, 300, reference.get_out_dim())
    results = []
    for grid in (reference, fused):
        x = points.clone().requires_grad_(True)
        out = grid(x)
        grid.hash_table.grad = None
        (out * upstream).sum().backward()
        results.append((out.detach(), x.grad.clone(), grid.hash_table.grad.clone()))
    (ref_out, ref_x, ref_table), (out, x_grad, table_grad) = results
    assert out.shape == ref_out.shape == (2, 300, 10)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    # Point gradients sum levels scaled by their resolution (up to 64 here): equal to 1e-5 of their scale
    # (float32 sums in another order differ by a few ulps of the largest term).
    torch.testing.assert_close(x_grad, ref_x, rtol=0, atol=1e-5 * float(ref_x.abs().max()))
    torch.testing.assert_close(table_grad, ref_table, rtol=1e-5, atol=1e-5)
    assert float(x_grad.abs().sum()) > 0 and float(table_grad.abs().sum()) > 0


def test_fused_footprint_weights_and_more_features_equal_the_torch_path(built):
    reference, fused = grids(1.0, "paper", levels=3, features=4)
    points = sample_points()
    footprint = torch.rand(2, 300) * 0.05
    outs = []
    for grid in (reference, fused):
        grid.footprint = footprint
        outs.append(grid(points))
        grid.footprint = None
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_a_table_without_gradient_still_gives_point_gradients(built):
    reference, fused = grids(1.0, "smooth")
    reference.hash_table.requires_grad_(False)
    x = sample_points().requires_grad_(True)
    (grad,) = torch.autograd.grad(fused(x).sum(), x)
    y = sample_points().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference(y).sum(), y)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


def test_without_a_build_the_torch_path_runs_after_one_warning(monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'mzen_hash_grid'\nc++: command not found")

    monkeypatch.setattr("torch.utils.cpp_extension.load", no_compiler)
    monkeypatch.setattr(fused_kernel, "_loaded", {})
    reference, fused = grids(1.0, "paper")
    points = sample_points()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = fused(points), fused(points)
    messages = [str(w.message) for w in caught if "fused CPU hash grid" in str(w.message)]
    assert messages == ["fused CPU hash grid unavailable (c++: command not found); using the torch hash grid"]
    assert torch.equal(first, reference(points)) and torch.equal(second, first)
    with pytest.raises(RuntimeError, match="not built"):
        fused_kernel.hash_grid(points.reshape(-1, 3), reference.hash_table, reference.scalings, 512, 1.0, "paper")


def test_bad_input_is_refused_with_the_argument_named(built):
    with pytest.raises(RuntimeError, match="points must be float32"):
        built.forward(torch.zeros(4, 3, dtype=torch.float64), torch.ones(2), torch.zeros(2 * 8, 2), 8)
    with pytest.raises(RuntimeError, match="table must have levels \\* size rows"):
        built.forward(torch.zeros(4, 3), torch.ones(2), torch.zeros(8, 2), 8)


def test_a_table_size_that_is_not_a_power_of_two_wraps_as_torch_does(built):
    reference, fused = grids(1.0, "paper")
    size = 500
    with torch.no_grad():
        table = torch.nn.Parameter(torch.rand(reference.num_levels * size, reference.features_per_level) * 2 - 1)
    for grid in (reference, fused):
        grid.hash_table_size = size
        grid.hash_offset = torch.arange(grid.num_levels) * size
        grid.hash_table = table
    points = sample_points()
    torch.testing.assert_close(fused(points), reference(points), rtol=1e-5, atol=1e-5)
