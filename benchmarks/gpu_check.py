"""A GPU check for a bare machine: one that has CUDA PyTorch but not nerfstudio, and no network.

Here, where pip reaches a package index, fetch the wheels the machine lacks (Python 3.12,
manylinux x86-64; about 60 MB, git-ignored in ``.whl/``):

    python benchmarks/gpu_check.py fetch

There, from the repository root with ``.whl/`` carried along:

    python3 benchmarks/gpu_check.py run --steps 5000

installs the wheels and mzen itself (no dependencies, nothing fetched) into ``/tmp/site``, trains
``mzen-full`` on the demo scene (made on first use), scores it with ``ns-eval`` and prints seconds per
step and held-out PSNR per level. ``--skip-install`` uses the environment as it is (a machine where
mzen is installed: how the tests run this script on a CPU with ``--method mzen-cpu``). Only the
standard library is imported before the wheels are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

WHEELS = (
    "nerfstudio==1.1.5",
    "gsplat==1.4.0",
    "pycolmap==4.2.1",
    "viser==0.2.7",
    "tyro==1.0.17",
    "nerfacc==0.5.2",
    "fpsample==0.3.3",
    "rawpy==0.28.0",
    "msgspec==0.23.0",
    "splines==0.3.0",
    "tensorly==0.10.0",
    "pathos==0.3.5",
    "pyquaternion==0.9.9",
    "pytorch-msssim==1.0.0",
    "appdirs==1.4.4",
    "docstring-parser==0.18.0",
    "websockets==17.4",
    "dill==0.4.1",
    "multiprocess==0.70.19",
    "ppft==1.7.8",
    "pysocks==1.7.1",
    "defusedxml==0.7.1",
    "typeguard==4.6.1",
    "torch-fidelity==0.4.0",
)
"""What a training run and ``ns-eval`` import that the GPU machine's image does not hold."""

ON_THE_MACHINE = frozenset(
    """absl-py attrs certifi charset-normalizer contourpy cuda-bindings cuda-pathfinder cycler filelock fonttools
    fsspec idna imageio jaxtyping jinja2 kiwisolver lazy-loader lightning-utilities markupsafe matplotlib mpmath
    networkx ninja numpy
    nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
    nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13
    nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx opencv-python-headless packaging pillow protobuf psutil
    pyparsing python-dateutil pyyaml requests rich scikit-image scipy setuptools simplejson six sympy
    tensorboard tensorboard-data-server threadpoolctl tifffile torch torchmetrics torchvision tqdm triton
    typing-extensions urllib3 werkzeug""".split()
)
"""Distributions of the GPU machine's image that mzen's runs use (its package list)."""

SITE = Path("/tmp/site")
WHEEL_FOLDER = Path(".whl")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def normalised(name: str) -> str:
    """A distribution name as pip compares them (lower case, runs of ``-_.`` as one ``-``)."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)


def fetch(folder: Path) -> None:
    """Download :data:`WHEELS` for the GPU machine's Python into ``folder``."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version"]
    command += ["3.12", "--implementation", "cp", *platforms, "-d", str(folder), *WHEELS]
    subprocess.run(command, check=True)


def install(folder: Path) -> Dict[str, str]:
    """Install the wheels in ``folder`` and mzen (this checkout) into :data:`SITE`, offline and without
    dependencies; the environment that finds them."""
    wheels = sorted(str(path) for path in folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {folder}/: run 'python benchmarks/gpu_check.py fetch' where pip works")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-cache-dir", "--upgrade"]
    subprocess.run([*pip, "--no-compile", "--target", str(SITE), *wheels], check=True)
    subprocess.run([*pip, "--no-build-isolation", "--target", str(SITE), "."], check=True)
    found = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": found, "PATH": f"{SITE / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def level_table(results: Dict[str, float], seconds_per_step: Optional[float], method: str, steps: int) -> List[str]:
    """The check's report: seconds per step, then held-out PSNR per level (mean ± sample deviation)."""
    dials = sorted(float(key[5:-1]) for key in results if key.startswith("psnr_") and key.endswith("x"))
    lines = [f"{method}, {steps} steps: {seconds_per_step:.4f} s/step" if seconds_per_step else f"{method}: no summary"]
    lines += ["| level | held-out PSNR (dB) | views |", "|---|---|---|"]
    for dial in dials:
        key = f"psnr_{dial:g}x"
        views = int(results.get(f"views_{dial:g}x", 0))
        lines.append(f"| {dial:g}× | {results[key]:.2f} ± {results.get(key + '_std', 0.0):.2f} | {views} |")
    return lines


def run(method: str, steps: int, output: Path, skip_install: bool) -> List[str]:
    """Train ``method`` on the demo scene for ``steps`` steps, score it; the report's lines."""
    env = dict(os.environ)
    if not skip_install:
        env.update(install(WHEEL_FOLDER))
    env["PYTHONUNBUFFERED"] = "1"
    started = time.perf_counter()
    train = ["ns-train", method, "--max-num-iterations", str(steps), "--output-dir", str(output)]
    subprocess.run([*train, "--vis", "tensorboard", "--steps-per-save", str(steps)], check=True, env=env)
    config = sorted(output.glob("*/*/*/config.yml"))[-1]
    scores = output / "eval.json"
    subprocess.run(["ns-eval", "--load-config", str(config), "--output-path", str(scores)], check=True, env=env)
    summary = json.loads((config.parent / "mzen_run_summary.json").read_text())
    lines = level_table(json.loads(scores.read_text())["results"], summary.get("seconds_per_step"), method, steps)
    return lines + [f"whole check: {time.perf_counter() - started:.0f} s"]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download the wheels the GPU machine lacks into .whl/")
    check = commands.add_parser("run", help="install, train on the demo scene, score, report")
    check.add_argument("--method", default="mzen-full", help="registered method to train (default: mzen-full)")
    check.add_argument("--steps", type=int, default=5000, help="training steps (default: 5000)")
    check.add_argument("--output", type=Path, default=Path("/tmp/gpu_check"), help="run folder")
    check.add_argument("--skip-install", action="store_true", help="use the environment as it is")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        fetch(WHEEL_FOLDER)
        return
    print("\n".join(run(args.method, args.steps, args.output, args.skip_install)))


if __name__ == "__main__":
    main()
