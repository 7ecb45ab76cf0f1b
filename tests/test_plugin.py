"""Plugin registration, cheap imports, and a stock nerfstudio method training on FF-MZN scenes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene
from tests.helpers import run_stock_ns_train


def test_dataparser_entry_point_registered():
    from nerfstudio.plugins.registry_dataparser import DataParserSpecification, discover_dataparsers

    (entry,) = [e for e in entry_points(group="nerfstudio.dataparser_configs") if e.name == "ffmzn-data"]
    spec = entry.load()
    assert isinstance(spec, DataParserSpecification)
    configs, descriptions = discover_dataparsers()
    assert type(configs["ffmzn-data"]).__name__ == "FFMZNDataParserConfig"
    assert "multi-zoom" in descriptions["ffmzn-data"]


def test_scene_maker_console_script_registered():
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "mzen-make-scene"]
    assert entry.value == "mzen_ns.scripts.make_scene:entrypoint"


@pytest.mark.slow
def test_import_is_cheap_and_needs_no_cuda():
    script = textwrap.dedent(
        """
        import sys, time
        start = time.perf_counter()
        import mzen_ns, mzen_dataparsers.registry
        print(f"{time.perf_counter() - start:.2f}")
        assert "tinycudann" not in sys.modules, "importing the plugin pulled in tinycudann"
        import mzen_ns.method_configs
        assert "pycolmap" not in sys.modules, "loading mzen's methods pulled in pycolmap"
        import torch
        assert not torch.cuda.is_initialized(), "importing the plugin initialised CUDA"
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) < 30.0


@pytest.mark.slow
def test_ns_train_help_lists_parser():
    result = subprocess.run(
        ["ns-train", "nerfacto", "ffmzn-data", "--help"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--test-every INT" in result.stdout  # the subcommand's own options: the parser's config fields


@pytest.mark.parametrize("layout", ["manifest", "folders"])
@pytest.mark.slow
def test_stock_nerfacto_trains_on_ff_mzn_scene(tmp_path: Path, layout: str):
    scene = tmp_path / "scene"
    make_scene(SceneMakerConfig(output=scene, width=32, height=24, zooms=(1.0, 4.0), n_wide=3, n_zoom=2, n_test=0))
    if layout == "folders":  # the same images, zoom from <Z>x/ folder names, no manifest
        (scene / "transforms.json").unlink()
        scene = scene / "images"
    quick = [
        "--experiment-name",
        "x",
        "--max-num-iterations",
        "3",
        "--steps-per-save",
        "2",
        "--viewer.quit-on-train-completion",
        "True",
        "--pipeline.model.eval-num-rays-per-chunk",
        "256",
    ]
    result = run_stock_ns_train("nerfacto", scene, tmp_path / "runs", "ffmzn-data", 128, 600, *quick)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checkpoints = list((tmp_path / "runs").rglob("*.ckpt"))
    assert checkpoints, "training left no checkpoint"
    config_text = next((tmp_path / "runs").rglob("config.yml")).read_text()
    assert "FFMZNDataParserConfig" in config_text


@pytest.mark.slow
def test_ns_train_reports_bad_scene_clearly(tmp_path: Path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "transforms.json").write_text('{"w": 4, "h": 3, "frames": []}')
    result = run_stock_ns_train("nerfacto", tmp_path / "bad", tmp_path / "runs", "ffmzn-data", 128, 300)
    assert result.returncode != 0
    assert "transforms.json: no frames" in result.stderr
