"""Our error type: raised at the boundaries (readers, model files, API) for bad input."""

from __future__ import annotations

from pathlib import Path


class NerError(Exception):
    """A problem with the user's input, reported as one line.

    ``path`` and ``line`` (1-based) say where, when known; ``str(err)`` reads
    ``PATH:LINE: message`` so the CLI can print it as is.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        return where + self.message


class DataError(NerError):
    """A corpus or input file that cannot be read as asked."""


class ModelFileError(NerError):
    """A model directory that is missing, damaged, untrusted or from a newer format."""
