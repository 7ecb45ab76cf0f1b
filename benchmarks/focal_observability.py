"""How well do a scene's wide views determine the focal at all?

Independent of any NeRF: take a scene-maker scene's true wide cameras and true surface, project
surface points into the wide views with the true focal, then fix the focal at ``s × true`` and
let a bundle adjustment move every camera (6 DoF) and every 3D point freely to re-explain those
projections. The residual left over (RMS, pixels) is how much evidence against a wrong focal the
wide views carry, even with perfect correspondences; a photometric method sees less (noise,
texture, blur). Also reports the rotation error of the cameras that best explain a wrong focal.

    python benchmarks/focal_observability.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List

import torch
from nerfstudio.cameras.lie_groups import exp_map_SO3xR3

from mzen_ns.evaluation.alignment import camera_errors, sim3_alignment
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, scene_surface


def wide_truth(scene: Path) -> tuple:
    """True c2w (OpenGL, N×3×4) of the wide training views, focal, width, height."""
    manifest = json.loads((scene / "transforms.json").read_text())
    frames = [f for f in manifest["frames"] if f.get("gt_zoom", 1.0) == 1.0 and f.get("split", "train") == "train"]
    c2w = torch.tensor([f["gt_transform_matrix"] for f in frames], dtype=torch.float64)[:, :3, :]
    return c2w, float(manifest["gt_focal"]), int(manifest["w"]), int(manifest["h"])


def project(c2w: torch.Tensor, points: torch.Tensor, focal: float, width: int, height: int) -> torch.Tensor:
    """Pixel coordinates (N_cam × P × 2) of world points; OpenGL cameras look down −z."""
    rotation, centre = c2w[:, :, :3], c2w[:, :, 3]
    local = torch.einsum("cji,cpj->cpi", rotation, points[None] - centre[:, None])  # Rᵀ (X − C)
    depth = -local[..., 2]
    return torch.stack([width / 2 + focal * local[..., 0] / depth, height / 2 - focal * local[..., 1] / depth], -1)


def refit(
    c2w: torch.Tensor,
    points: torch.Tensor,
    observed: torch.Tensor,
    visible: torch.Tensor,
    focal: float,
    width: int,
    height: int,
    iterations: int,
) -> tuple:
    """Bundle adjustment at a fixed focal; (RMS residual px, refitted c2w)."""
    delta = torch.zeros(c2w.shape[0], 6, dtype=torch.float64, requires_grad=True)
    moved = points.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [delta, moved],
        lr=1.0,
        max_iter=iterations,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def cameras() -> torch.Tensor:
        d = exp_map_SO3xR3(delta)
        return torch.cat([c2w[:, :, :3] @ d[:, :, :3], c2w[:, :, 3:] + c2w[:, :, :3] @ d[:, :, 3:]], dim=-1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        residual = (project(cameras(), moved, focal, width, height) - observed)[visible]
        loss = residual.square().mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        residual = (project(cameras(), moved, focal, width, height) - observed)[visible]
        return float(residual.square().sum(-1).mean().sqrt()), cameras().detach()


def study(seed: int, scales: List[float], n_points: int, iterations: int, out: Path) -> List[Dict[str, float]]:
    config = SceneMakerConfig(output=out / f"seed{seed}", seed=seed)
    if not (config.output / "transforms.json").is_file():
        from mzen_ns.synthetic.scene_maker import make_scene

        make_scene(config)
    c2w, focal, width, height = wide_truth(config.output)
    surface = scene_surface(config)
    generator = torch.Generator().manual_seed(seed)
    half = math.tan(math.radians(config.fov_deg) / 2) * 0.9
    xy = (torch.rand(n_points, 2, generator=generator) * 2 - 1) * torch.tensor([half, half * height / width])
    points = torch.cat([xy, surface.surface_z(xy.float())[:, None].double()], dim=-1).double()
    observed = project(c2w, points, focal, width, height)
    visible = (
        (observed[..., 0] >= 0) & (observed[..., 0] < width) & (observed[..., 1] >= 0) & (observed[..., 1] < height)
    )
    rows = []
    for scale in scales:
        rms, fitted = refit(c2w, points, observed, visible, focal * scale, width, height, iterations)
        rot, _ = camera_errors(fitted.numpy(), c2w.numpy(), sim3_alignment(fitted.numpy(), c2w.numpy()))
        rows.append({"seed": seed, "focal_scale": scale, "rms_px": rms, "rot_err_deg": rot})
        print(f"seed {seed} focal × {scale:.3f}: RMS {rms:.4f} px, rotation error of the refit {rot:.3f}°", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.828, 0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1])
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("bench/hashgrid/scenes"))
    args = parser.parse_args()
    rows = [row for seed in args.seeds for row in study(seed, args.scales, args.points, args.iterations, args.out)]
    print("| focal / true | " + " | ".join(f"seed {s} RMS px (rot °)" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for scale in args.scales:
        cells = [
            next(
                f"{r['rms_px']:.3f} ({r['rot_err_deg']:.2f})"
                for r in rows
                if r["seed"] == s and r["focal_scale"] == scale
            )
            for s in args.seeds
        ]
        print(f"| {scale:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
