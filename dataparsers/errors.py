"""The one error type the FF-MZN parser raises for bad scenes, and a clean console report of it."""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Optional, Type, Union


class SceneFormatError(ValueError):
    """A scene does not follow FF-MZN (``docs/format.md``). The message names the file or frame at fault."""

    def __init__(self, where: Union[str, Path], problem: str) -> None:
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


_previous_hook = sys.excepthook


def _report_scene_error(exc_type: Type[BaseException], exc: BaseException, traceback: Optional[TracebackType]) -> None:
    if not isinstance(exc, SceneFormatError):
        _previous_hook(exc_type, exc, traceback)
        return
    print(f"\nFF-MZN scene error: {exc}\n(the FF-MZN scene format is described in the mzen README)", file=sys.stderr)


def install_clean_error_report() -> None:
    """Make an uncaught :class:`SceneFormatError` print one clear line instead of a stack trace.

    Installed by the parser when it runs (not on import), so ``ns-train`` users see the file at
    fault; every other exception still reaches the previous hook unchanged.
    """
    if sys.excepthook is not _report_scene_error:
        global _previous_hook
        _previous_hook = sys.excepthook
        sys.excepthook = _report_scene_error
