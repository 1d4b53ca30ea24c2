"""Tagging inputs of any size, streamed: records are read lazily, tagged in batches and written
in input order as soon as their batch is done, so memory stays flat whatever the input's size.

A record is one line of text (blank lines included: outputs line up with inputs) or one
sentence of a CoNLL file (its first column). ``open_input`` tells the two apart when asked to
(``auto``), ``write_tagged`` runs a ``Tagger`` over the records and writes one output record
per input record.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from nerbilstm.data.readers import STDIN_NAME, TextLines, decode_argument, iter_conll_tokens, looks_like_conll
from nerbilstm.errors import DataError, NerError
from nerbilstm.report import render_documents

log = logging.getLogger("nerbilstm")

INPUT_FORMATS = ("auto", "text", "conll")
DETECT_LINES = 20  # non-blank lines looked at to tell CoNLL from text
# Records read and tagged at a time: enough for the tagger's length buckets to be tight (little
# padding), few enough that the first records appear within a second or two.
READ_AHEAD = 2048


@dataclass
class Input:
    """Records to tag (texts, or token lists for CoNLL), lazily; ``kind`` is text or conll;
    ``lines`` (text input from a file or stdin) tells how far the input has been read."""

    records: Iterable[str | list[str]]
    kind: str
    name: str
    lines: TextLines | None = None
    notes: Callable[[], list[str]] = field(default=lambda: [])


def open_input(texts: list[str], source: str | None, input_format: str = "auto",
               encoding: str | None = None) -> Input:
    """Text arguments, then the ``source`` file (``-``: standard input) as ``input_format``."""
    if input_format not in INPUT_FORMATS:
        raise NerError(f"unknown input format {input_format!r}; expected one of {', '.join(INPUT_FORMATS)}")
    args = [decode_argument(t, k, encoding) for k, t in enumerate(texts, start=1)]
    if source is None:
        return Input(args, "text", "arguments")
    lines = TextLines(source, encoding)
    lines_iter = iter(lines)
    head = _head(lines_iter) if input_format == "auto" else []
    kind = input_format if input_format != "auto" else ("conll" if looks_like_conll(head) else "text")
    if kind == "text":
        return Input(chain(args, head, lines_iter), kind, lines.name, lines, lambda: lines.notes)
    if args:
        raise NerError("text arguments and a CoNLL --input cannot be tagged together")
    if source == "-":
        return Input(_conll_from_stdin(chain(head, lines_iter)), kind, STDIN_NAME, lines, lambda: lines.notes)
    return Input(iter_conll_tokens(source, encoding), kind, lines.name, lines)


def _head(lines: Iterator[str]) -> list[str]:
    """The first lines of an input, up to DETECT_LINES non-blank ones (taken from ``lines``)."""
    head, filled = [], 0
    for line in lines:
        head.append(line)
        filled += bool(line.strip())
        if filled >= DETECT_LINES:
            break
    return head


def _conll_from_stdin(lines: Iterable[str]) -> Iterator[list[str]]:
    """CoNLL sentences of standard input: its lines spooled to a temporary UTF-8 file (the CoNLL
    reader reads files), errors naming <stdin>."""
    with tempfile.TemporaryDirectory(prefix="nerbilstm-stdin-") as tmp:
        path = Path(tmp) / "stdin.conll"
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
        try:
            yield from iter_conll_tokens(path, "utf-8")
        except DataError as err:
            raise DataError(err.message, path=STDIN_NAME, line=err.line) from None


@contextmanager
def _progress_bar(inp: Input, show: bool):
    """A byte-counting bar over a file input on a terminal; None otherwise."""
    if not show or inp.lines is None or inp.lines.size is None:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=inp.lines.size, unit="B", unit_scale=True, desc=Path(inp.name).name, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()


def check_options(batch_size: int, nbest: int, output_format: str, tagger=None) -> None:
    """Refuse options that cannot work together, before any input is read (with ``tagger``: also
    those its model cannot do)."""
    if batch_size < 1:
        raise NerError(f"--batch-size must be at least 1, got {batch_size}")
    if nbest < 0:
        raise NerError("--nbest must be >= 0")
    if nbest and output_format not in ("jsonl", "json"):
        raise NerError(f"--nbest needs --output-format jsonl (the {output_format} output has no place for it)")
    if nbest and tagger is not None and tagger.model.config.decoder != "crf":
        raise NerError("--nbest needs a CRF model (this one decodes with softmax)")


def write_tagged(tagger, inp: Input, out: TextIO, fmt: str = "inline", read_ahead: int = READ_AHEAD, nbest: int = 0,
                 progress: bool = False) -> int:
    """Tag ``inp``'s records with ``tagger``, ``read_ahead`` records at a time, and write them to
    ``out`` in ``fmt`` (see report.render_documents), flushed after each batch. -> records written.
    (The tagger groups the sentences of each chunk by length into its own batches.)"""
    written = 0
    records = iter(inp.records)
    with _progress_bar(inp, progress) as bar:
        while chunk := list(islice(records, read_ahead)):
            docs = tagger.tag_documents(chunk, nbest)
            out.write(render_documents(docs, fmt))
            out.flush()
            written += len(docs)
            del docs
            _release_freed_memory()
            if bar is not None:
                bar.update(inp.lines.bytes_read - bar.n)
    for note in inp.notes():
        log.warning("%s: %s", inp.name, note)
    return written


def _release_freed_memory() -> None:
    """Hand the heap's freed pages back to the system after a chunk (glibc keeps them otherwise:
    the big transient tensors of one chunk would stay in the process's footprint for good)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim  # noqa: B018  (glibc only)
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None
