"""What a run tells about its cameras (:mod:`mzen_ns.run_report`): on the console always, as files
in the run folder once the run has one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from mzen_ns.geometry.initialiser import Decision
from mzen_ns.priming.plan import PrimingConfig, placed_plan
from mzen_ns.run_report import RunReport


class ImageDataset(SimpleNamespace):
    """Training images as a dataset: names in the metadata, float images on request."""

    def __len__(self) -> int:
        return len(self.images)

    def get_image_float32(self, index: int) -> torch.Tensor:
        self.stacked += 1
        return self.images[index]


def report() -> RunReport:
    images = [torch.full((12, 16, 3), 0.1 * i) for i in range(3)]
    dataset = ImageDataset(metadata={"mzen_file_paths": ["w0.png", "w1.png", "z0.png"]}, images=images, stacked=0)
    return RunReport(
        dataset, torch.tensor([1.0, 1.0, 4.0]), flagged_left_out=True, priming=PrimingConfig(flag_margin=0.05)
    )


def one_zoom_in_plan():
    return placed_plan(
        torch.tensor([2]),
        torch.eye(3)[None],
        torch.tensor([4.0]),
        torch.tensor([1]),
        torch.tensor([40]),
        torch.tensor([20.0]),
        torch.tensor([[8.0, 6.0]]),
        0.75,
        "ncc",
    )


def test_without_a_run_folder_nothing_is_written(tmp_path: Path, capsys) -> None:
    told = report()
    told.wide_start(Decision("identity", "no geometry asked for"))
    told.priming(one_zoom_in_plan(), seconds=1.25)
    assert told.solved_cameras(lambda folder: {"frames": []}) is None
    said = capsys.readouterr().out
    assert "wide cameras start from identity" in said and "placed 1 zoom-in(s) in 1.2 s" in said
    assert told.dataset.stacked == 0  # no picture to draw, so the images were never read
    assert list(tmp_path.iterdir()) == []


def test_the_run_folder_receives_the_start_the_priming_and_the_solved_cameras(tmp_path: Path) -> None:
    told = report()
    told.run_dir = tmp_path / "run"  # created when the first file is written
    told.wide_start(Decision("identity", "no geometry asked for"))
    assert json.loads((told.run_dir / "initialiser.json").read_text())["start"] == "identity"
    told.priming(one_zoom_in_plan())  # images not given: stacked from the dataset
    assert told.dataset.stacked == 3
    rows = json.loads((told.run_dir / "priming.json").read_text())
    assert [row["zoom_in"] for row in rows] == ["z0.png"] and (told.run_dir / "priming.png").is_file()
    path = told.solved_cameras(lambda folder: {"folder": str(folder)})
    assert path == told.run_dir / "solved_cameras" / "transforms.json"
    assert json.loads(path.read_text()) == {"folder": str(path.parent)}  # paths relative to its own folder
