"""Corpus readers and writers: GMB CSV, text/labels CSV and CoNLL; and the dispatch to the
character-span readers (JSON Lines, brat standoff: :mod:`nerbilstm.data.spans`).

Every problem with the input file is reported as a :class:`~nerbilstm.errors.DataError`
that names the file and the 1-based line (``PATH:LINE: message``); bad input never
ends in a traceback of some other kind.

Reading streams: :func:`iter_sentences` holds one block of the file (1 MiB) and one
sentence at a time, so corpora larger than memory can be read; :func:`read_corpus`
collects its output.

Formats (see :data:`FORMATS`):

``gmb``
    The Kaggle GMB extract: header ``Sentence #,Word,POS,Tag``; a row whose first
    column starts with ``Sentence:`` opens a sentence, the first column is empty on the
    rows that continue it.  The POS column is ignored.
``text-labels``
    A CSV file whose header has the columns ``text`` and ``labels`` (others are
    ignored); one sentence per row, tokens and tags separated by spaces.  Rows whose
    token and tag counts differ are skipped and counted.
``conll``
    One token per line, columns separated by spaces or tabs (never by other
    whitespace: a token may contain a no-break space), the tag in column
    ``tag_column`` (default: the last), blank lines between sentences,
    ``-DOCSTART-`` lines ignored.
``jsonl``, ``brat``
    Documents with character-span entities (annotation tools' JSON Lines export; a directory of
    brat ``NAME.txt`` + ``NAME.ann``), tokenized here: see :mod:`nerbilstm.data.spans`.

Every reader takes a ``type_map`` (:class:`nerbilstm.tags.TypeMap`: rename or merge entity
types as they are read, counted in a note).

Encoding: with ``encoding=None`` the file is read as UTF-8 if all of it is valid
UTF-8, else as cp1252 (the GMB file is cp1252), with a note saying so.  The decision
is made without reading the file twice where possible: all-ASCII text reads the same
in both, so the file is only looked ahead (from the first non-ASCII byte on) to decide.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from nerbilstm.errors import DataError
from nerbilstm.tags import TypeMap, count_b_starts, from_iobes, is_iob2_tag, is_scheme_tag, to_iob2

__all__ = [
    "FORMATS",
    "Sentence",
    "Corpus",
    "SentenceStream",
    "detect_format",
    "read_corpus",
    "read_conll_tokens",
    "TextLines",
    "decode_argument",
    "looks_like_conll",
    "iter_conll_tokens",
    "check_encoding",
    "iter_sentences",
    "write_conll",
    "write_gmb_csv",
    "write_text_labels_csv",
]

FORMATS = ("gmb", "text-labels", "conll", "jsonl", "brat")

GMB_HEADER = ("Sentence #", "Word", "POS", "Tag")

_BLOCK = 1 << 20
_MAX_LINE = 32 << 20  # characters held while looking for the end of a line
_ASCII_WS = " \t\r\n\f\v"
_CONLL_WS = " \t\f\v"  # columns of a CoNLL line: ASCII blanks only, never U+00A0
_CONLL_SPLIT = re.compile(r"[ \t\f\v]+")
_LIST_SPLIT = re.compile(r"[ \t\r\n\f\v]+")
_EOL = re.compile(r"\r\n|\r|\n")
_NON_ASCII = re.compile(rb"[\x80-\xff]")


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    line: int = 0  # 1-based line in the source file where the sentence starts

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Corpus:
    sentences: list[Sentence]
    path: str
    format: str  # one of FORMATS
    encoding: str  # what was actually used
    notes: list[str] = field(default_factory=list)
    skipped: int = 0
    repaired: int = 0
    converted: int = 0  # IOBES / BILOU tags rewritten as IOB2

    def __len__(self) -> int:
        return len(self.sentences)

    def __iter__(self) -> Iterator[Sentence]:
        return iter(self.sentences)


# ----------------------------------------------------------------- file handling


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise DataError("no such file", path=path)
    if os.path.isdir(path):
        raise DataError("is a directory, not a corpus file", path=path)


def _open_binary(path: str) -> IO[bytes]:
    _check_file(path)
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror or e}", path=path) from None


def check_encoding(encoding: str, path: str) -> str:
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise DataError(f"unknown encoding {encoding!r}", path=path) from None
    if not getattr(info, "_is_text_encoding", True):
        raise DataError(f"{encoding!r} is not a text encoding", path=path)
    return info.name


def _binary_error(path: str, line: int) -> DataError:
    return DataError(
        "looks like a binary file (contains NUL bytes), not a text corpus", path=path, line=line
    )


def _head_text(path: str, encoding: str | None, limit: int = 1 << 20) -> str:
    """The first block of the file decoded leniently (for format sniffing)."""
    with _open_binary(path) as f:
        data = f.read(64 * 1024)
        while b"\n" not in data and len(data) < limit:
            more = f.read(64 * 1024)
            if not more:
                break
            data += more
    if encoding is not None:
        enc = check_encoding(encoding, path)
        text = codecs.getincrementaldecoder(enc)("replace").decode(data)
        if "\x00" in text:
            raise _binary_error(path, text[: text.index("\x00")].count("\n") + 1)
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            raise _binary_error(path, data.count(b"\n", 0, nul) + 1)
        try:
            text = codecs.getincrementaldecoder("utf-8")("strict").decode(data)
        except UnicodeDecodeError:
            text = data.decode("cp1252", "replace")
    return text.lstrip("\ufeff")


def detect_format(path, encoding: str | None = None) -> str:
    """Tell the format of a corpus file from its first non-blank line.

    ``gmb`` if it is the header ``Sentence #,Word,POS,Tag``; ``text-labels`` if it is a
    CSV header with the columns ``text`` and ``labels``; ``conll`` if it is a
    ``-DOCSTART-`` line or has two or more space/tab-separated columns one of which is
    a tag; ``jsonl`` if it is a JSON object with a ``"text"``; a directory is ``brat``.  The
    file extension plays no part.
    """
    from nerbilstm.data.spans import looks_like_jsonl

    path = str(path)
    if os.path.isdir(path):
        return "brat"
    text = _head_text(path, encoding)
    first = None
    lineno = 0
    for lineno, raw in enumerate(_EOL.split(text), start=1):
        if raw.strip(_ASCII_WS):
            first = raw
            break
    if first is None:
        if text.strip(_ASCII_WS) == "":
            raise DataError("empty file (no data)", path=path)
        raise DataError("cannot tell the format: the first line is too long", path=path, line=1)
    try:
        fields = next(csv.reader([first]))
    except csv.Error:
        fields = []
    names = [c.strip(_ASCII_WS).lower() for c in fields]
    if {"sentence #", "word", "tag"} <= set(names):
        return "gmb"
    if {"text", "labels"} <= set(names):
        return "text-labels"
    if looks_like_jsonl(first):
        return "jsonl"
    stripped = first.strip(_CONLL_WS)
    if stripped.startswith("-DOCSTART-"):
        return "conll"
    cols = _CONLL_SPLIT.split(stripped)
    if len(cols) >= 2 and any(is_scheme_tag(c) for c in cols[1:]):
        return "conll"
    raise DataError(
        "cannot tell the format from the first line "
        f"{_shorten(first.strip(_ASCII_WS))!r}: expected the GMB header "
        "'Sentence #,Word,POS,Tag', a CSV header with columns 'text' and 'labels', "
        "CoNLL lines 'TOKEN ... TAG', or JSON objects with a \"text\" and its spans",
        path=path,
        line=lineno,
    )


def _shorten(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


# ------------------------------------------------------------------- streaming


class SentenceStream(Iterator[Sentence]):
    """The sentences of a corpus file, read lazily (what :func:`iter_sentences` returns).

    Besides iterating, it tells ``format``, ``encoding`` (what was actually used),
    ``notes``, ``skipped``, ``repaired`` and ``converted``; these are complete once the stream is
    exhausted (or after :meth:`finish`).  Use it as a context manager, or call
    :meth:`close`, to release the file early.
    """

    def __init__(self, path, fmt=None, encoding=None, tag_column=-1, repair=True, _tokens_only=False,
                 type_map=None, strict_spans=False):
        self.path = str(path)
        self._tokens_only = _tokens_only
        if fmt == "brat" and not os.path.isdir(self.path):
            raise DataError("the brat format reads a directory of NAME.txt + NAME.ann files", path=self.path)
        if not (fmt in (None, "brat") and os.path.isdir(self.path)):
            _check_file(self.path)
        if fmt is not None and fmt not in FORMATS:
            raise DataError(
                f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", path=self.path
            )
        self._explicit = check_encoding(encoding, self.path) if encoding is not None else None
        self.format = fmt if fmt is not None else detect_format(self.path, encoding)
        self.encoding = self._explicit or "utf-8"
        self.tag_column = tag_column
        self.repair = repair
        self.type_map = TypeMap.parse(type_map)
        self.strict_spans = strict_spans  # jsonl, brat: refuse spans off token boundaries instead of snapping
        self.notes: list[str] = []
        self.skipped = 0
        self.repaired = 0
        self.converted = 0
        self.sentences_read = 0
        self._b_starts = 0
        self._first_skip_line: int | None = None
        self._first_repair_line: int | None = None
        self._first_convert_line: int | None = None
        self._finished = False
        self._valid_tags: set[str] = set()
        self._scheme_tags_seen = False  # an E-/S-/L-/U- tag was read: sentences get from_iobes
        self._gen = self._generate()

    # iterator protocol
    def __iter__(self) -> "SentenceStream":
        return self

    def __next__(self) -> Sentence:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> "SentenceStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finish(self) -> None:
        """Add the summary notes (skipped rows, repaired tags); idempotent."""
        if self._finished:
            return
        self._finished = True
        if self.skipped:
            self.notes.append(
                f"skipped {self.skipped} row{'s' if self.skipped != 1 else ''} whose token and "
                f"tag counts differ (first at line {self._first_skip_line})"
            )
        if self.converted:
            self.notes.append(
                f"converted {self.converted} IOBES/BILOU tag{'s' if self.converted != 1 else ''} to IOB2 "
                f"(S-/U- to B-, E-/L- to I-; first at line {self._first_convert_line})"
            )
        if self.repaired:
            if self._b_starts == 0:
                self.notes.append(f"converted IOB1 to IOB2 ({self.repaired} tags changed from I- to B-)")
            else:
                self.notes.append(
                    f"repaired {self.repaired} I- tag{'s' if self.repaired != 1 else ''} that "
                    f"started an entity (after O, another type or at sentence start) into B- "
                    f"(first at line {self._first_repair_line})"
                )
        if self.type_map is not None:
            self.notes.extend(self.type_map.notes())

    # ---------------------------------------------------------------- internals

    def _error(self, message: str, line: int | None) -> DataError:
        return DataError(message, path=self.path, line=line)

    def _generate(self) -> Iterator[Sentence]:
        if self.format == "brat":
            from nerbilstm.data.spans import read_brat

            yield from read_brat(self)
            self.finish()
            return
        f = _open_binary(self.path)
        try:
            lines = self._lines(f)
            if self.format == "gmb":
                yield from self._read_gmb(lines)
            elif self.format == "text-labels":
                yield from self._read_text_labels(lines)
            elif self.format == "jsonl":
                from nerbilstm.data.spans import read_jsonl

                yield from read_jsonl(self, lines)
            else:
                yield from self._read_conll(lines)
        except OSError as e:
            raise self._error(f"cannot read: {e.strerror or e}", None) from None
        finally:
            f.close()
        self.finish()

    def _lines(self, f: IO[bytes]) -> Iterator[str]:
        """Decoded lines, each with its line ending (``\\n``, ``\\r\\n`` or ``\\r``)."""
        path = self.path
        mode = "fixed" if self._explicit else "probe"
        dec = codecs.getincrementaldecoder(self._explicit)("strict") if self._explicit else None
        newlines_before = 0  # b"\n" in the blocks already decoded (for error line numbers)
        buf = ""
        first_block = True
        while True:
            block = f.read(_BLOCK)
            final = not block
            if first_block and mode == "probe" and block.startswith(codecs.BOM_UTF8):
                block = block[3:]
            first_block = False
            if mode != "fixed" and block:
                nul = block.find(b"\x00")
                if nul >= 0:
                    raise _binary_error(path, newlines_before + block.count(b"\n", 0, nul) + 1)
            if mode == "probe" and block and not block.isascii():
                bad = _NON_ASCII.search(block).start()
                where = self._first_invalid_utf8(f, block, bad, newlines_before)
                if where is None:
                    mode, self.encoding = "utf-8", "utf-8"
                    dec = codecs.getincrementaldecoder("utf-8")("strict")
                else:
                    byte, line = where
                    mode, self.encoding = "cp1252", "cp1252"
                    dec = codecs.getincrementaldecoder("cp1252")("strict")
                    self.notes.append(
                        f"not valid UTF-8 (byte 0x{byte:02x} at line {line}); read as cp1252"
                    )
            try:
                if mode == "probe":
                    text = block.decode("ascii")
                else:
                    text = dec.decode(block, final=final)
            except UnicodeDecodeError as e:
                line = newlines_before + block.count(b"\n", 0, max(0, e.start)) + 1
                if "\x00" in block.decode("latin-1"):  # e.g. UTF-16 read as something else
                    raise _binary_error(path, line) from None
                bad = block[e.start : e.start + 1] if 0 <= e.start < len(block) else b""
                what = f"byte 0x{bad[0]:02x}" if bad else "truncated character at the end"
                if mode == "cp1252":
                    msg = f"neither UTF-8 nor cp1252 ({what}); give the right encoding explicitly"
                else:
                    msg = f"cannot be decoded as {self.encoding} ({what})"
                raise self._error(msg, line) from None
            if mode == "fixed" and "\x00" in text:
                line = newlines_before + text[: text.index("\x00")].count("\n") + 1
                raise _binary_error(path, line)
            newlines_before += block.count(b"\n")
            buf += text
            start = 0
            for m in _EOL.finditer(buf):
                end = m.end()
                if end == len(buf) and m.group() == "\r" and not final:
                    break  # may be the first half of \r\n
                yield buf[start:end]
                start = end
            buf = buf[start:]
            if len(buf) > _MAX_LINE:
                raise self._error(
                    f"a line longer than {_MAX_LINE // (1 << 20)} MiB: not a line-based corpus file",
                    newlines_before + 1,
                )
            if final:
                if buf:
                    yield buf
                return

    def _first_invalid_utf8(self, f: IO[bytes], block: bytes, at: int, newlines_before: int):
        """Look ahead from the first non-ASCII byte: (bad byte, line) or None if valid UTF-8.

        The text before ``at`` is ASCII and so reads the same either way; the file
        position is restored.
        """
        pos = f.tell()
        dec = codecs.getincrementaldecoder("utf-8")("strict")
        chunk, offset, lines = block, at, newlines_before
        try:
            while True:
                try:
                    dec.decode(chunk[offset:], final=not chunk)
                except UnicodeDecodeError as e:
                    i = offset + max(0, e.start)
                    byte = chunk[i] if i < len(chunk) else 0
                    return byte, lines + chunk.count(b"\n", 0, min(i, len(chunk))) + 1
                if not chunk:
                    return None
                lines += chunk.count(b"\n")
                chunk, offset = f.read(_BLOCK), 0
        finally:
            f.seek(pos)

    def _emit(self, tokens: list[str], tags: list[str], line: int) -> Sentence:
        if self._scheme_tags_seen:
            tags, n = from_iobes(tags)
            if n:
                self.converted += n
                if self._first_convert_line is None:
                    self._first_convert_line = line
        self._b_starts += count_b_starts(tags)  # on the tags as read: IOB2 files have some
        if self.repair:
            tags, n = to_iob2(tags)
            if n:
                self.repaired += n
                if self._first_repair_line is None:
                    self._first_repair_line = line
        if self.type_map is not None:
            tags = self.type_map(tags)
        self.sentences_read += 1
        return Sentence(tokens, tags, line)

    def _tag(self, raw: str, line: int) -> str:
        if raw in self._valid_tags:
            return raw
        tag = raw.strip(_ASCII_WS)
        if is_scheme_tag(tag):
            if not is_iob2_tag(tag):
                self._scheme_tags_seen = True
            if tag == raw and len(self._valid_tags) < 10_000:
                self._valid_tags.add(tag)
        else:
            raise self._error(
                f"invalid tag {_shorten(tag)!r}: expected O, B-TYPE or I-TYPE "
                "(IOB/IOB2; IOBES and BILOU tags are converted)", line
            )
        return tag

    def _token(self, raw: str, line: int) -> str:
        tok = raw.strip(_ASCII_WS)
        if not tok:
            raise self._error("empty token", line)
        return tok

    def _csv_rows(self, lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
        """(start line, fields) of the non-blank CSV rows."""
        reader = csv.reader(lines)
        first = True
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise self._error(f"malformed CSV: {e}", reader.line_num or start) from None
            if first and row:
                row[0] = row[0].lstrip("\ufeff")
                first = False
            if not row or all(not c.strip(_ASCII_WS) for c in row):
                continue
            yield start, row

    def _header(self, rows, needed: tuple[str, ...], expected: str) -> tuple[int, list[str], dict[str, int]]:
        try:
            line, row = next(rows)
        except StopIteration:
            raise self._error("empty file (no data)", None) from None
        names = [c.strip(_ASCII_WS).lower() for c in row]
        missing = [n for n in needed if n not in names]
        if missing:
            raise self._error(
                f"wrong header: expected {expected}; got {_shorten(','.join(row))!r} "
                f"(missing: {', '.join(missing)})",
                line,
            )
        return line, row, {n: names.index(n) for n in needed}

    def _read_gmb(self, lines: Iterator[str]) -> Iterator[Sentence]:
        rows = self._csv_rows(lines)
        _, header, idx = self._header(
            rows, ("sentence #", "word", "tag"), "the GMB header 'Sentence #,Word,POS,Tag'"
        )
        si, wi, ti = idx["sentence #"], idx["word"], idx["tag"]
        need = max(si, wi, ti) + 1
        tokens: list[str] = []
        tags: list[str] = []
        start = 0
        for line, row in rows:
            self._check_columns(row, need, header, line)
            first = row[si].strip(_ASCII_WS)
            if first.startswith("Sentence:"):
                if tokens:
                    yield self._emit(tokens, tags, start)
                tokens, tags, start = [], [], line
            elif first:
                raise self._error(
                    f"first column should be empty or 'Sentence: N'; got {_shorten(first)!r}", line
                )
            elif not start:
                raise self._error("continuation row before any 'Sentence: N' row", line)
            tokens.append(self._token(row[wi], line))
            tags.append(self._tag(row[ti], line))
        if tokens:
            yield self._emit(tokens, tags, start)

    def _check_columns(self, row: list[str], need: int, header: list[str], line: int) -> None:
        if len(row) < need:
            raise self._error(
                f"row has {len(row)} column{'s' if len(row) != 1 else ''}, expected "
                f"{len(header)} ({','.join(c.strip(_ASCII_WS) for c in header)})",
                line,
            )

    def _read_text_labels(self, lines: Iterator[str]) -> Iterator[Sentence]:
        rows = self._csv_rows(lines)
        _, header, idx = self._header(
            rows, ("text", "labels"), "a CSV header with columns 'text' and 'labels'"
        )
        xi, yi = idx["text"], idx["labels"]
        need = max(xi, yi) + 1
        for line, row in rows:
            self._check_columns(row, need, header, line)
            text = row[xi].strip(_ASCII_WS)
            labels = row[yi].strip(_ASCII_WS)
            tokens = _LIST_SPLIT.split(text) if text else []
            tags = _LIST_SPLIT.split(labels) if labels else []
            if not tokens and not tags:
                continue
            if len(tokens) != len(tags):
                self.skipped += 1
                if self._first_skip_line is None:
                    self._first_skip_line = line
                continue
            yield self._emit(tokens, [self._tag(t, line) for t in tags], line)

    def _read_conll(self, lines: Iterator[str]) -> Iterator[Sentence]:
        tokens: list[str] = []
        tags: list[str] = []
        start = 0
        col = self.tag_column
        lineno = 0
        seen_data = False
        for lineno, raw in enumerate(lines, start=1):
            if lineno == 1:
                raw = raw.lstrip("\ufeff")
            s = raw.strip(_ASCII_WS)
            if s:
                seen_data = True
            if not s or s.startswith("-DOCSTART-"):
                if tokens:
                    yield self._emit(tokens, tags, start)
                    tokens, tags = [], []
                continue
            cols = _CONLL_SPLIT.split(s)
            if self._tokens_only:
                if not tokens:
                    start = lineno
                tokens.append(cols[0])
                tags.append("O")
                continue
            if len(cols) < 2:
                raise self._error(
                    f"expected a token and a tag separated by spaces or tabs; got one column "
                    f"{_shorten(s)!r}",
                    lineno,
                )
            i = col if col >= 0 else len(cols) + col
            if not 0 <= i < len(cols):
                raise self._error(
                    f"no tag column {col}: the line has {len(cols)} columns", lineno
                )
            if i == 0:
                raise self._error(f"tag column {col} is the token column", lineno)
            if not tokens:
                start = lineno
            tokens.append(cols[0])
            tags.append(self._tag(cols[i], lineno))
        if not seen_data:
            raise self._error("empty file (no data)", None)
        if tokens:
            yield self._emit(tokens, tags, start)


def iter_sentences(path, fmt=None, encoding=None, tag_column=-1, repair=True, type_map=None,
                   strict_spans=False) -> SentenceStream:
    """Stream the sentences of a corpus file (constant memory).

    Returns a :class:`SentenceStream`: an iterator of :class:`Sentence` that also
    carries ``format``, ``encoding``, ``notes``, ``skipped`` and ``repaired``.
    Errors in the file are raised as :class:`DataError` when the reading reaches them.
    """
    return SentenceStream(path, fmt, encoding, tag_column, repair, type_map=type_map, strict_spans=strict_spans)


def read_conll_tokens(path, encoding: str | None = None) -> list[list[str]]:
    """The tokens (first column) of a CoNLL file, for tagging: tags may be absent.

    Same layout rules as the ``conll`` format (blank lines between sentences,
    ``-DOCSTART-`` ignored, columns split on spaces/tabs only); other columns are ignored.
    """
    return list(iter_conll_tokens(path, encoding))


def read_corpus(
    path,
    fmt: str | None = None,
    encoding: str | None = None,
    tag_column: int = -1,
    max_sentences: int | None = None,
    repair: bool = True,
    type_map=None,
    strict_spans: bool = False,
) -> Corpus:
    """Read a whole corpus (or its first ``max_sentences`` sentences) into memory.

    ``fmt``: one of :data:`FORMATS`, or None to detect it from the content.
    ``encoding``: None for UTF-8 with a cp1252 fallback (noted), or a codec name.
    ``tag_column``: for ``conll`` only, the column (0-based; negative from the end)
    holding the tag.  ``repair``: turn an ``I-x`` that starts an entity into ``B-x``
    (IOB1 -> IOB2), counted in ``Corpus.repaired`` and noted.  IOBES and BILOU tags are
    always rewritten as IOB2 (:func:`nerbilstm.tags.from_iobes`), counted in ``Corpus.converted`` and noted.
    ``type_map``: ``"A=B,C=D"`` or a mapping, types renamed as read (:class:`nerbilstm.tags.TypeMap`).
    ``strict_spans``: ``jsonl`` and ``brat`` refuse a span off token boundaries instead of snapping it.
    """
    stream = iter_sentences(path, fmt, encoding, tag_column, repair, type_map, strict_spans)
    sentences: list[Sentence] = []
    with stream:
        if max_sentences is None:
            sentences.extend(stream)
        elif max_sentences > 0:
            for s in stream:
                sentences.append(s)
                if len(sentences) >= max_sentences:
                    break
    stream.finish()
    if not sentences and max_sentences != 0:
        stream.notes.append("no sentences found")
    return Corpus(
        sentences=sentences,
        path=stream.path,
        format=stream.format,
        encoding=stream.encoding,
        notes=list(stream.notes),
        skipped=stream.skipped,
        repaired=stream.repaired,
        converted=stream.converted,
    )


# ------------------------------------------------------------ plain text input

STDIN_NAME = "<stdin>"  # how messages name standard input


class TextLines:
    """The lines of a text input, read lazily: a file, or standard input for ``-``.

    Iterating yields each line without its line ending (``\\n`` or ``\\r\\n``), blank lines
    included, so that outputs can line up with inputs. Each line is decoded on its own as
    UTF-8, else as cp1252 (counted, with a note naming the first such line); or strictly as
    ``encoding`` when one is given. ``bytes_read`` and ``size`` (None for standard input) tell
    how far a file has been read. A NUL byte is an error: a binary file is not text.
    """

    def __init__(self, source: str, encoding: str | None = None):
        self.source = source
        self.name = STDIN_NAME if source == "-" else str(source)
        if source != "-":
            p = Path(source)
            if not p.is_file():
                raise DataError("input file not found" if not p.exists() else "not a file", path=p)
            self.size: int | None = p.stat().st_size
        else:
            self.size = None
        self.encoding = check_encoding(encoding, self.name) if encoding is not None else None
        self.bytes_read = 0
        self.cp1252_lines = 0
        self.first_cp1252_line: int | None = None

    @property
    def notes(self) -> list[str]:
        if not self.cp1252_lines:
            return []
        n = self.cp1252_lines
        return [f"not valid UTF-8; read as cp1252 ({n} line{'s' if n != 1 else ''}, the first at line "
                f"{self.first_cp1252_line})"]

    @contextmanager
    def _binary(self):
        if self.source == "-":
            yield sys.stdin.buffer
            return
        with _open_binary(self.name) as f:
            yield f

    def __iter__(self) -> Iterator[str]:
        with self._binary() as f:
            yield from (self._decoded_strictly(f) if self.encoding else self._decoded_by_line(f))

    def _decoded_by_line(self, f: IO[bytes]) -> Iterator[str]:
        for n, raw in enumerate(f, start=1):
            self.bytes_read += len(raw)
            if b"\x00" in raw:
                raise _binary_error(self.name, n)
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                self.cp1252_lines += 1
                if self.first_cp1252_line is None:
                    self.first_cp1252_line = n
                yield raw.decode("cp1252", errors="replace")

    def _decoded_strictly(self, f: IO[bytes]) -> Iterator[str]:
        """Blocks through an incremental decoder (so multi-byte encodings such as UTF-16 work)."""
        dec = codecs.getincrementaldecoder(self.encoding)("strict")
        pending, lines_done = "", 0
        while True:
            block = f.read(1 << 16)
            self.bytes_read += len(block)
            try:
                text = pending + dec.decode(block, final=not block)
            except UnicodeDecodeError as err:
                line = lines_done + pending.count("\n") + block[: max(0, err.start)].count(b"\n") + 1
                raise DataError(f"not valid {self.encoding}: {err.reason}", path=self.name, line=line) from None
            *lines, pending = text.split("\n")
            for line in lines:
                lines_done += 1
                if "\x00" in line:
                    raise _binary_error(self.name, lines_done)
                yield line[:-1] if line.endswith("\r") else line
            if not block:
                if pending:
                    yield pending[:-1] if pending.endswith("\r") else pending
                return


def decode_argument(text: str, k: int, encoding: str | None = None) -> str:
    """Text argument ``k`` of a command line: bytes that were not valid in the locale's encoding
    reach Python as lone surrogates, which cannot be printed; decode those bytes as ``encoding``,
    else as UTF-8, else as cp1252 (with a note)."""
    import logging

    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # not from the command line: a str with lone surrogates
        return text.encode("utf-8", "replace").decode("utf-8")
    try:
        return raw.decode(check_encoding(encoding, f"text argument {k}") if encoding else "utf-8")
    except UnicodeDecodeError as err:
        if encoding:
            raise DataError(f"text argument {k} is not valid {encoding}: {err.reason}") from None
    logging.getLogger("nerbilstm").warning("text argument %d: not valid UTF-8; read as cp1252", k)
    return raw.decode("cp1252", errors="replace")


def looks_like_conll(lines: Sequence[str]) -> bool:
    """Whether the first lines of an input are CoNLL (token ... tag): the first non-blank line
    is ``-DOCSTART-``, or every non-blank line among them has two or more space/tab-separated
    columns, the last a tag (O, B-x, I-x, or IOBES/BILOU). Prose such as "Fans sang O Canada."
    has lines whose last word is no tag, so it stays text."""
    filled = [line.strip(_CONLL_WS + "\r\n") for line in lines if line.strip(_ASCII_WS)]
    if not filled:
        return False
    if filled[0].startswith("-DOCSTART-"):
        return True
    for line in filled:
        cols = _CONLL_SPLIT.split(line)
        if len(cols) < 2 or not is_scheme_tag(cols[-1]):
            return False
    return True


def iter_conll_tokens(path, encoding: str | None = None) -> Iterator[list[str]]:
    """The tokens (first column) of each sentence of a CoNLL file, read lazily (see
    :func:`read_conll_tokens`)."""
    with SentenceStream(path, "conll", encoding, -1, False, _tokens_only=True) as stream:
        for sentence in stream:
            yield sentence.tokens


# --------------------------------------------------------------------- writers


def _pairs(sentences: Iterable, path: str) -> Iterator[tuple[int, list[str], list[str]]]:
    for n, s in enumerate(sentences, start=1):
        tokens, tags = (s.tokens, s.tags) if hasattr(s, "tokens") else s
        tokens, tags = list(tokens), list(tags)
        if not tokens:
            raise DataError(f"sentence {n} is empty and cannot be written", path=path)
        if len(tokens) != len(tags):
            raise DataError(
                f"sentence {n} has {len(tokens)} tokens but {len(tags)} tags", path=path
            )
        for tok in tokens:
            if not isinstance(tok, str) or not tok or any(c in _ASCII_WS for c in tok):
                raise DataError(
                    f"sentence {n}: token {tok!r} is empty or contains ASCII whitespace", path=path
                )
        for tag in tags:
            if not isinstance(tag, str) or not is_iob2_tag(tag):
                raise DataError(f"sentence {n}: invalid tag {tag!r}", path=path)
        yield n, tokens, tags


def write_conll(sentences, path) -> None:
    """Write ``TOKEN TAG`` lines, a blank line after each sentence (UTF-8)."""
    path = str(path)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for n, tokens, tags in _pairs(sentences, path):
            for tok, tag in zip(tokens, tags):
                if tok.startswith("-DOCSTART-"):
                    raise DataError(f"sentence {n}: token {tok!r} would read as a document marker", path=path)
                f.write(f"{tok} {tag}\n")
            f.write("\n")


def write_gmb_csv(sentences, path) -> None:
    """Write the GMB layout (``Sentence #,Word,POS,Tag``; POS written as ``_``), UTF-8."""
    path = str(path)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(GMB_HEADER)
        for n, tokens, tags in _pairs(sentences, path):
            for i, (tok, tag) in enumerate(zip(tokens, tags)):
                w.writerow((f"Sentence: {n}" if i == 0 else "", tok, "_", tag))


def write_text_labels_csv(sentences, path) -> None:
    """Write a ``text,labels`` CSV, one sentence per row, UTF-8."""
    path = str(path)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("text", "labels"))
        for _, tokens, tags in _pairs(sentences, path):
            w.writerow((" ".join(tokens), " ".join(tags)))
