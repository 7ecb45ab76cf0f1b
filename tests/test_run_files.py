"""A run's files from people you do not trust: configs that would run code, damaged checkpoints,
kills during a save, stray files; and the resumed run's folder complete on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from mzen_ns.run_files import (
    RunFileError,
    checkpoint_files,
    load_config,
    newest_readable_checkpoint,
    parse_config,
    read_checkpoint,
)
from tests.helpers import build, tiny_scene, tiny_trainer_config, train

HOSTILE = "!!python/object/apply:os.system ['touch {marker}']\n"
"""A one-line config that runs a shell command under PyYAML's full loader."""


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return tiny_scene(tmp_path_factory.mktemp("run-files") / "scene")


@pytest.fixture(scope="module")
def finished_run(scene, tmp_path_factory):
    """A tiny run trained to the end, its config.yml saved, checkpoints at steps 2, 4 and 5 (all kept)."""
    config = tiny_trainer_config(
        scene, tmp_path_factory.mktemp("runs"), steps=6, steps_per_save=2, save_only_latest_checkpoint=False
    )
    config.save_config()
    return train(config)


def hostile_config(folder: Path) -> tuple:
    marker = folder / "pwned"
    path = folder / "config.yml"
    path.write_text(HOSTILE.format(marker=marker))
    return path, marker


@pytest.mark.slow
def test_the_config_loader_runs_no_code_and_names_the_file(tmp_path):
    path, marker = hostile_config(tmp_path)
    with pytest.raises(RunFileError, match=rf"{path}: not a run configuration.*os\.system"):
        load_config(path)
    assert not marker.exists()
    for text in (
        "!!python/name:os.system ''\n",
        "!!python/object:subprocess.Popen {args: [ls]}\n",
        "!!python/object/apply:nerfstudio.utils.io.load_from_json [/etc/passwd]\n",
        "!!python/object/new:pathlib.Path {state: {x: 1}}\n",
        "!!python/module:os ''\n",
    ):
        with pytest.raises(RunFileError, match="not a run configuration"):
            parse_config(text, "x.yml")
    with pytest.raises(RunFileError, match="config file not found"):
        load_config(tmp_path / "missing.yml")


def test_real_configs_load_as_they_were_saved(scene, tmp_path):
    from nerfstudio.configs.method_configs import all_methods

    ours = tiny_trainer_config(scene, tmp_path, steps=4)
    for config in (ours, *all_methods.values()):  # depth-nerfacto's datamanager is a generic class
        text = yaml.dump(config)
        assert yaml.dump(parse_config(text, "config.yml")) == text


def test_only_a_generic_config_class_may_be_specialised():
    manager = "!!python/name:nerfstudio.data.datamanagers.base_datamanager.VanillaDataManager ''"
    for args in (
        f"[{manager}, 1]",
        f"[{manager}]",
        "[!!python/name:torch.optim.adam.Adam '', !!python/name:torch.optim.adam.Adam '']",
    ):
        with pytest.raises(RunFileError, match="only accepted on a generic config class"):
            parse_config(f"!!python/object/apply:_operator.getitem {args}\n", "x.yml")


def test_a_field_the_class_does_not_have_is_refused(scene, tmp_path):
    text = yaml.dump(tiny_trainer_config(scene, tmp_path, steps=4))
    text = text.replace(
        "\nmax_num_iterations:", "\nsetup: !!python/name:mzen_ns.run_files.load_config ''\nmax_num_iterations:"
    )
    with pytest.raises(RunFileError, match="has no field.*setup"):
        parse_config(text, "config.yml")


PIPELINE_TARGET = "  _target: !!python/name:mzen_ns.pipeline.MZENPipeline ''\n"


def edited_config(scene: Path, folder: Path, old: str, new: str) -> Path:
    """A real mzen run's config.yml with ``old`` (present once) replaced by ``new``."""
    text = yaml.dump(tiny_trainer_config(scene, folder, steps=4))
    assert text.count(old) == 1
    path = folder / "config.yml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.slow
def test_a_function_as_target_is_refused_naming_the_key(scene, tmp_path):
    path = edited_config(
        scene, tmp_path, PIPELINE_TARGET, "  _target: !!python/name:nerfstudio.utils.scripts.run_command ''\n"
    )
    with pytest.raises(
        RunFileError, match=rf"{path}: config.pipeline._target: nerfstudio.utils.scripts.run_command is not a"
    ):
        load_config(path)


def test_a_class_of_another_kind_as_target_is_refused(scene, tmp_path):
    for wrong in ("torch.optim.adam.Adam", "nerfstudio.pipelines.base_pipeline.VanillaPipeline"):
        path = edited_config(scene, tmp_path, PIPELINE_TARGET, f"  _target: !!python/name:{wrong} ''\n")
        with pytest.raises(
            RunFileError, match=rf"config.pipeline._target: {wrong} is not a mzen_ns.pipeline.MZENPipeline class"
        ):
            load_config(path)


def test_a_subclass_of_the_kind_is_a_valid_target():
    from nerfstudio.engine.optimizers import AdamOptimizerConfig
    from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipeline

    from mzen_ns.pipeline import MZENPipeline
    from mzen_ns.run_files import check_config, target_kind

    assert target_kind(VanillaPipeline) is Pipeline and target_kind(MZENPipeline) is MZENPipeline
    check_config(AdamOptimizerConfig(_target=torch.optim.AdamW), "x.yml")
    with pytest.raises(RunFileError, match="torch.optim.lr_scheduler.StepLR is not a torch.optim.optimizer.Optimizer"):
        check_config(AdamOptimizerConfig(_target=torch.optim.lr_scheduler.StepLR), "x.yml")


@pytest.mark.slow
def test_a_function_in_another_field_is_accepted_only_as_its_default(scene, tmp_path):
    default = "!!python/name:nerfstudio.data.utils.nerfstudio_collate.nerfstudio_collate ''"
    path = edited_config(scene, tmp_path, default, "!!python/name:nerfstudio.utils.scripts.run_command ''")
    with pytest.raises(
        RunFileError,
        match=r"datamanager.collate_fn: nerfstudio.utils.scripts.run_command is not this field.s default",
    ):
        load_config(path)


def test_a_config_of_another_kind_in_a_config_field_is_refused(scene, tmp_path):
    path = edited_config(
        scene,
        tmp_path,
        "  model: !!python/object:mzen_ns.model.MZENModelConfig",
        "  datamanager: !!python/object:nerfstudio.configs.base_config.MachineConfig\n    device_type: cpu\n"
        "  model: !!python/object:mzen_ns.model.MZENModelConfig",
    )
    with pytest.raises(RunFileError, match="config.pipeline.datamanager: a MachineConfig where a config building a"):
        load_config(path)
    from nerfstudio.configs.base_config import MachineConfig

    from mzen_ns.run_files import check_config

    config = tiny_trainer_config(scene, tmp_path, steps=4)
    config.pipeline.priming = MachineConfig()
    with pytest.raises(
        RunFileError, match="x.yml: config.pipeline.priming: a MachineConfig where a PrimingConfig belongs"
    ):
        check_config(config, "x.yml")


def test_a_missing_field_is_named(scene, tmp_path):
    lines = yaml.dump(tiny_trainer_config(scene, tmp_path, steps=4)).splitlines()
    start = lines.index("  datamanager: !!python/object:mzen_ns.datamanager.MZENDataManagerConfig")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("   "))
    text = "\n".join(lines[:start] + lines[end:])
    with pytest.raises(
        RunFileError, match=r"x.yml: config.pipeline.datamanager is missing \(MZENPipelineConfig needs it\)"
    ):
        parse_config(text, "x.yml")


COMMANDS = {
    "mzen-export-cameras": ["mzen-export-cameras", "--load-config", "{config}", "--output-path", "{out}/t.json"],
    "mzen-render": ["mzen-render", "--load-config", "{config}", "--view", "a", "--output", "{out}/r.png"],
    "ns-eval": ["ns-eval", "--load-config", "{config}", "--output-path", "{out}/e.json"],
    "ns-train": ["ns-train", "mzen", "--load-config", "{config}"],
    "ns-viewer": ["ns-viewer", "--load-config", "{config}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.slow
def test_no_command_runs_a_hostile_config(command, tmp_path):
    path, marker = hostile_config(tmp_path)
    args = [a.format(config=path, out=tmp_path) for a in COMMANDS[command]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert not marker.exists()
    assert str(path) in result.stderr + result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.slow
def test_no_command_calls_a_function_named_as_target(command, scene, tmp_path):
    path = edited_config(
        scene, tmp_path, PIPELINE_TARGET, "  _target: !!python/name:nerfstudio.utils.scripts.run_command ''\n"
    )
    args = [a.format(config=path, out=tmp_path) for a in COMMANDS[command]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"{path}: config.pipeline._target: nerfstudio.utils.scripts.run_command" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_damaged_checkpoints_are_named_and_skipped(finished_run, capsys):
    folder = finished_run.checkpoint_dir
    steps = [step for step, _ in checkpoint_files(folder)]
    assert steps == [2, 4, 5]
    (folder / "README").write_text("not a checkpoint")
    (folder / "step-000000008.ckpt").write_bytes(b"")
    (folder / "step-000000009.ckpt").write_bytes(os.urandom(4096))
    good = folder / "step-000000005.ckpt"
    (folder / "step-000000007.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    try:
        path, state, skipped = newest_readable_checkpoint(folder)
        assert path == good and state["step"] == 5
        assert [line.split(":")[0] for line in skipped] == [str(folder / f"step-00000000{s}.ckpt") for s in (9, 8, 7)]
        assert not any("weights_only" in line for line in skipped)  # never the advice to load unsafely
        with pytest.raises(RunFileError, match="checkpoint is empty"):
            read_checkpoint(folder / "step-000000008.ckpt")
    finally:
        for name in ("README", "step-000000007.ckpt", "step-000000008.ckpt", "step-000000009.ckpt"):
            (folder / name).unlink()


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "step-000000001.ckpt"
    torch.save({"step": 1, "pipeline": {"x": Evil()}}, path)
    with pytest.raises(RunFileError, match=r"step-000000001\.ckpt: damaged or not a checkpoint") as error:
        read_checkpoint(path)
    assert "weights_only" not in str(error.value) and not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_resume_uses_the_newest_readable_checkpoint_and_completes_the_new_folder(finished_run, scene, tmp_path, capsys):
    folder = finished_run.checkpoint_dir
    (folder / "step-000000009.ckpt").write_bytes(b"\x00" * 100)
    try:
        resumed = build(tiny_trainer_config(scene, tmp_path, steps=8, load_dir=folder))
    finally:
        (folder / "step-000000009.ckpt").unlink()
    printed = capsys.readouterr().out
    assert "step-000000009.ckpt" in printed and "Skipped" in printed
    assert resumed._start_step == 6
    original = json.loads((finished_run.base_dir / "priming.json").read_text())
    again = json.loads((resumed.base_dir / "priming.json").read_text())
    said_when_priming = ("field_ncc", "attainable_ncc")  # not kept in the checkpoint
    assert all(row[key] is None for row in again for key in said_when_priming)
    assert [{**row, **dict.fromkeys(said_when_priming)} for row in original] == again
    assert (resumed.base_dir / "priming.png").is_file()


@pytest.mark.slow
def test_resume_from_a_folder_without_checkpoints_names_it(scene, tmp_path):
    with pytest.raises(RunFileError, match=r"missing-folder: checkpoint folder not found"):
        build(tiny_trainer_config(scene, tmp_path, steps=4, load_dir=tmp_path / "missing-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFileError, match=r"empty: no checkpoint"):
        build(tiny_trainer_config(scene, tmp_path, steps=4, load_dir=tmp_path / "empty"))


_KILLED_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys, torch
    from pathlib import Path
    from tests.helpers import build, tiny_trainer_config

    saves = []
    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):  # the third save is killed half-way through writing
        saves.append(f)
        if len(saves) == 3:
            data = Path(f)
            real_save(obj, data)
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save_then_die
    build(tiny_trainer_config(Path(sys.argv[1]), Path(sys.argv[2]), steps=10, steps_per_save=2)).train()
    """
)


@pytest.mark.slow
def test_a_kill_during_a_save_leaves_the_previous_checkpoint(scene, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_DURING_SAVE, str(scene), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    folder = tmp_path / "tiny" / "mzen" / "run" / "nerfstudio_models"
    # saved at steps 2 and 4, killed while writing step 6: step 4 is whole, nothing partial is there
    assert [path.name for _, path in checkpoint_files(folder)] == ["step-000000004.ckpt"]
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000004.ckpt"]
    assert read_checkpoint(folder / "step-000000004.ckpt")["step"] == 4
    resumed = build(tiny_trainer_config(scene, tmp_path / "resumed", steps=10, load_dir=folder))
    assert resumed._start_step == 5


@pytest.mark.slow
def test_commands_use_the_newest_readable_checkpoint_and_name_the_damaged(finished_run, tmp_path):
    folder, config = finished_run.checkpoint_dir, finished_run.base_dir / "config.yml"
    damaged = folder / "step-000000009.ckpt"
    damaged.write_bytes(os.urandom(2048))
    try:
        export = subprocess.run(
            ["mzen-export-cameras", "--load-config", str(config), "--output-path", str(tmp_path / "t.json")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert export.returncode == 0, export.stderr[-2000:]
        assert "step-000000009.ckpt" in export.stdout and "(step 5)" in export.stdout
        hidden = [path.rename(path.with_suffix(".hidden")) for _, path in checkpoint_files(folder) if path != damaged]
        try:
            evaluation = subprocess.run(
                ["ns-eval", "--load-config", str(config), "--output-path", str(tmp_path / "e.json")],
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            for path in hidden:
                path.rename(path.with_suffix(".ckpt"))
        assert evaluation.returncode != 0 and "Traceback" not in evaluation.stderr
        assert f"{damaged}: damaged or not a checkpoint" in evaluation.stderr.replace("\n", "")
    finally:
        damaged.unlink()
