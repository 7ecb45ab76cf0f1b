"""``mzen-export-cameras --load-config CONFIG --output-path FILE``: the learned cameras of an mzen
run as a nerfstudio ``transforms.json`` (format: :mod:`mzen_ns.solved_cameras`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro
from rich.console import Console

from mzen_ns.scripts._common import load_run, run_command

CONSOLE = Console()


@dataclass
class ExportCameras:
    """Write the learned cameras of an mzen run as a nerfstudio transforms.json."""

    load_config: Path
    """The run's config.yml."""
    output_path: Path
    """The transforms.json to write (its folder may be anywhere: paths are made relative to it)."""

    def main(self) -> Path:
        """Load the run, write the file, return its path."""
        from mzen_ns.pipeline import MZENPipeline

        _, pipeline, step = load_run(self.load_config, test_mode="inference")
        if not isinstance(pipeline, MZENPipeline):
            raise ValueError(f"{self.load_config}: not an mzen run (its pipeline is {type(pipeline).__name__})")
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        manifest = pipeline.solved_cameras(self.output_path.parent)
        self.output_path.write_text(json.dumps(manifest, indent=2))
        CONSOLE.print(
            f"[bold green]Wrote[/] {len(manifest['frames'])} learned cameras (step {step}) to {self.output_path}"
        )
        return self.output_path


def entrypoint() -> None:
    """Console script ``mzen-export-cameras``."""
    run_command("mzen-export-cameras", tyro.cli(ExportCameras).main)


if __name__ == "__main__":
    entrypoint()
