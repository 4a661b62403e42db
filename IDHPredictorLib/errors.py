"""The one exception type for bad user input: it names the file and the fix."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input data. The message says which file, what is wrong and what to do.

    The command line prints it without a traceback; Slicer shows it in a dialog.
    """

    def __init__(self, path: str | Path | None, problem: str, fix: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}. {fix}")

    def __reduce__(self) -> tuple:
        """Pickled with its parts, so that it crosses from a worker process or a Dask worker intact."""
        return type(self), (self.path, self.problem, self.fix)
