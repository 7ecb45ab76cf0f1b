"""What the console commands share: loading a run safely, and one-line errors about files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Literal, Tuple, TypeVar

from mzen_dataparsers.errors import FileError

T = TypeVar("T")


def load_run(config_path: Path, test_mode: Literal["test", "val", "inference"]) -> Tuple[Any, Any, int]:
    """(config, pipeline, step) of a run: nerfstudio's ``eval_setup`` with mzen's safe loaders."""
    from nerfstudio.utils import eval_utils

    from mzen_ns import patches
    from mzen_ns.run_files import load_config

    patches.protect_run_loading()
    load_config(config_path)  # a missing or unsafe config is named before anything is built
    config, pipeline, _, step = eval_utils.eval_setup(config_path, test_mode=test_mode)
    return config, pipeline, step


def run_command(name: str, main: Callable[[], T]) -> T:
    """Run a command's ``main``; an error about a file or an argument ends it with one line naming it."""
    try:
        return main()
    except (FileError, ValueError) as error:
        print(f"{name}: {getattr(error, 'kind', 'error')}: {error}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)
