"""Errors that name the file at fault, and a clean console report of them.

:class:`FileError` is the base of every error mzen raises about a user's file (a scene, a run's
config or checkpoint); :class:`SceneFormatError` is the FF-MZN parser's. Uncaught, they print one
line naming the file instead of a stack trace (:func:`install_clean_error_report`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Optional, Type, Union


class FileError(ValueError):
    """A file (or an entry in it) that cannot be used; the message names it."""

    kind = "file error"
    """How the console report introduces the error."""
    hint = ""
    """Where to read more, printed under the error."""

    def __init__(self, where: Union[str, Path], problem: str) -> None:
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class SceneFormatError(FileError):
    """A scene does not follow FF-MZN (``docs/format.md``). The message names the file or frame at fault."""

    kind = "FF-MZN scene error"
    hint = "(the FF-MZN scene format is described in mzen's docs/format.md)"


_previous_hook = sys.excepthook


def _report_file_error(exc_type: Type[BaseException], exc: BaseException, traceback: Optional[TracebackType]) -> None:
    if not isinstance(exc, FileError):
        _previous_hook(exc_type, exc, traceback)
        return
    print(f"\n{exc.kind}: {exc}" + (f"\n{exc.hint}" if exc.hint else ""), file=sys.stderr)


def install_clean_error_report() -> None:
    """Make an uncaught :class:`FileError` print one clear line instead of a stack trace.

    Installed when a parser or a run's files are read (not on import), so users see the file at
    fault; every other exception still reaches the previous hook unchanged.
    """
    if sys.excepthook is not _report_file_error:
        global _previous_hook
        _previous_hook = sys.excepthook
        sys.excepthook = _report_file_error
