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
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from nerbilstm.data.readers import STDIN_NAME, TextLines, decode_argument, iter_conll_tokens, looks_like_conll
from nerbilstm.errors import DataError, NerError
from nerbilstm.report import render_document_parts, render_documents

log = logging.getLogger("nerbilstm")

INPUT_FORMATS = ("auto", "text", "conll")
DETECT_LINES = 20  # non-blank lines looked at to tell CoNLL from text
# Records read and tagged at a time: enough for the tagger's length buckets to be tight (little
# padding: 1,024 was about 5% slower), few enough that the first records appear within a second
# or two and that a chunk's tokens and results stay small (4,096: 20 MB more peak memory).
READ_AHEAD = 2048
READ_AHEAD_TOKENS = 2**16  # ... and at most about this many tokens
RENDER_GROUP = 256  # documents rendered and written at a time
# A record of more than this many tokens is tagged and written a part at a time (Tagger.tag_in_parts).
LONG_RECORD_TOKENS = 8192
CHARS_PER_TOKEN = 6  # for the sizes of texts not yet tokenized


@dataclass
class Input:
    """Records to tag (texts, or token lists for CoNLL), lazily; ``kind`` is text or conll;
    ``lines`` (text input from a file or stdin) tells how far the input has been read."""

    records: Iterable[str | list[str]]
    kind: str
    name: str
    lines: TextLines | None = None
    notes: Callable[[], list[str]] = field(default=lambda: [])


@dataclass
class ScaleOptions:
    """How ``predict`` spreads the work: processes on this machine, or a Ray cluster."""

    workers: int = field(default=1, metadata={"help": "processes, each with a copy of the model and cores/N torch "
                                                      "threads; output identical to 1"})
    ray: bool = field(default=False, metadata={"help": "tag --input on Ray (pip install 'nerbilstm[ray]'): JSON "
                                                       "Lines out, a record per input line, in order"})
    ray_address: str = field(default=None, metadata={"help": "Ray cluster to join (default: a local one, or "
                                                             "RAY_ADDRESS)"})


def default_source(texts: list[str], source: str | None, stdin) -> str | None:
    """The file to tag: ``source``, else standard input (``-``) when there are no text arguments
    and it is not a terminal; a NerError when there is nothing to tag."""
    if texts or source:
        return source
    if stdin is None or stdin.isatty():
        raise NerError("nothing to tag: give text arguments, --input FILE, or text on standard input")
    return "-"


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


def check_options(batch_size: int, nbest: int, output_format: str, tagger=None, workers: int = 1) -> None:
    """Refuse options that cannot work together, before any input is read (with ``tagger``: also
    those its model cannot do)."""
    if batch_size < 1:
        raise NerError(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 1:
        raise NerError(f"--workers must be at least 1, got {workers}")
    if nbest < 0:
        raise NerError("--nbest must be >= 0")
    if nbest and output_format not in ("jsonl", "json"):
        raise NerError(f"--nbest needs --output-format jsonl (the {output_format} output has no place for it)")
    if nbest and tagger is not None and tagger.model.config.decoder != "crf":
        raise NerError("--nbest needs a CRF model (this one decodes with softmax)")


def write_tagged(tagger, inp: Input, out: TextIO, fmt: str = "inline", read_ahead: int = READ_AHEAD, nbest: int = 0,
                 progress: bool = False, workers: int = 1) -> int:
    """Tag ``inp``'s records with ``tagger``, ``read_ahead`` records at a time, and write them to
    ``out`` in ``fmt`` (see report.render_documents), flushed as written: every RENDER_GROUP records
    (with workers, every chunk). -> records written. (The tagger groups the sentences of each chunk
    by length into its own batches.) ``workers`` > 1 tags the chunks in that many processes (see
    workers.py): same output, byte for byte."""
    written = 0
    with _progress_bar(inp, progress) as bar:
        def advance() -> None:
            if bar is not None:
                bar.update(inp.lines.bytes_read - bar.n)

        for text, count in _rendered_chunks(tagger, inp.records, fmt, read_ahead, nbest, workers, advance):
            out.write(text)
            out.flush()
            written += count
    for note in inp.notes():
        log.warning("%s: %s", inp.name, note)
    return written


def _rendered_chunks(tagger, records: Iterable, fmt: str, read_ahead: int, nbest: int, workers: int,
                     advance: Callable[[], None]) -> Iterator[tuple[str, int]]:
    """(rendered text, records) per chunk of ``read_ahead`` records, in input order: tagged here,
    or in ``workers`` processes."""
    if workers > 1:
        from nerbilstm.workers import WorkerSpec, chunked, tag_in_workers

        sizes: deque[int] = deque()
        counted = (sizes.append(len(chunk)) or chunk for chunk in chunked(records, read_ahead))
        for text in tag_in_workers(WorkerSpec.of(tagger, workers), workers, counted, nbest, fmt, advance):
            yield text, sizes.popleft()
        return
    in_parts = getattr(tagger, "tag_in_parts", None)
    for chunk in _chunks(records, read_ahead):
        if in_parts is not None and len(chunk) == 1 and _size(chunk[0]) > LONG_RECORD_TOKENS:
            text, parts = in_parts(chunk[0], nbest)
            for piece in render_document_parts(text, parts, fmt):
                yield piece, 0
                _release_freed_memory()
            yield "", 1
        else:
            docs = iter(getattr(tagger, "iter_documents", tagger.tag_documents)(chunk, nbest))
            while group := list(islice(docs, RENDER_GROUP)):  # a chunk's text is never whole in memory
                yield render_documents(group, fmt), len(group)
        del chunk
        _release_freed_memory()
        advance()


def _size(record) -> int:
    """A record's size in tokens: a token list's length; a text's, guessed from its characters."""
    return len(record) if isinstance(record, (list, tuple)) else len(record) // CHARS_PER_TOKEN


def _chunks(records: Iterable, read_ahead: int) -> Iterator[list]:
    """Records in lists of ``read_ahead``, cut short before READ_AHEAD_TOKENS tokens are
    exceeded; a record of more than LONG_RECORD_TOKENS comes alone."""
    chunk: list = []
    tokens = 0
    for record in records:
        size = _size(record)
        if chunk and (len(chunk) >= read_ahead or tokens + size > READ_AHEAD_TOKENS or size > LONG_RECORD_TOKENS):
            yield chunk
            chunk, tokens = [], 0
        chunk.append(record)
        tokens += size
        if size > LONG_RECORD_TOKENS:
            yield chunk
            chunk, tokens = [], 0
    if chunk:
        yield chunk


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
