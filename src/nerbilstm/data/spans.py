"""Character-span corpora: JSON Lines from annotation tools, and brat standoff directories.

Both formats hold whole documents: a text and its entities as character offsets into it
(``end`` exclusive, offsets counting characters, i.e. code points).  Each text is cut into
tokens and sentences by our tokenizer (:mod:`nerbilstm.data.tokenizer`, the way ``predict``
cuts raw text), and each span becomes the IOB2 tags of the tokens it covers.

``jsonl``
    One JSON object per line with ``"text"`` and its spans, in one of the spellings the tools
    export: ``"spans": [{"start": s, "end": e, "label": L}, ...]`` (Prodigy),
    ``"label": [[s, e, L], ...]`` (doccano) or ``"entities": [[s, e, L], ...]``; either key
    takes either form of span.  Other keys (a tool's own ``"tokens"``, ids, ``"meta"``) are
    ignored.  A record whose ``"answer"`` is not ``"accept"`` (Prodigy's reject / ignore) is
    skipped and counted.
``brat``
    A directory of ``NAME.txt`` + ``NAME.ann`` files (brat standoff, not recursive).  ``T`` lines
    (``T1<TAB>TYPE START END<TAB>TEXT``) are the entities, and their TEXT is checked against the
    ``.txt`` file (a mismatch means wrong offsets or a wrong encoding: an error).  Discontinuous
    entities (``START END;START END``), event triggers and the other kinds of line (relations,
    events, attributes, normalizations, notes) are skipped and counted.

Spans and tokens: whitespace at either end of a span is ignored.  A span that does not start
and end on token boundaries is snapped to the tokens it touches (counted, the first one named),
or with ``strict`` refused.  Overlapping spans (also when they only overlap once snapped) are an
error naming the line; an exact duplicate (same offsets and label) is dropped and counted.  A
sentence break that would cut an entity is not made (counted).

The readers run inside :class:`nerbilstm.data.readers.SentenceStream`, which gives them its
decoded lines (``jsonl``), its options, its notes and its ``_emit`` (type map, tag checks).
"""

from __future__ import annotations

import hashlib
import json
import os
from bisect import bisect_left, bisect_right
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

from nerbilstm.data.tokenizer import Token, split_sentences, tokenize
from nerbilstm.errors import DataError
from nerbilstm.tags import is_iob2_tag

if TYPE_CHECKING:
    from nerbilstm.data.readers import Sentence, SentenceStream

__all__ = ["CharSpan", "SpanLog", "document_sentences", "read_jsonl", "read_brat", "brat_documents",
           "brat_sha256", "looks_like_jsonl"]

_WS = " \t\r\n\f\v"
_SPAN_KEYS = ("spans", "entities", "label")  # Prodigy, spaCy-style, doccano; the first present is used


class CharSpan(NamedTuple):
    """An entity as character offsets into a document's text, with where it was read."""

    start: int
    end: int
    label: str
    path: str  # the file that holds it, and its 1-based line (for errors)
    line: int
    place: str  # the same for notes: "line 7" or "NAME.ann:7"


class SpanLog:
    """What a span reader repaired or skipped: counts, with the first place of each, as notes."""

    _NOTES = {
        "snapped": "snapped {n} span{s} that did not fall on token boundaries to the tokens {they} touch{es}",
        "blank": "skipped {n} span{s} that cover no token (only whitespace)",
        "duplicate": "dropped {n} duplicate span{s} (same offsets and label)",
        "joined": "did not make {n} sentence break{s} that would cut an entity",
        "rejected": "skipped {n} record{s} whose answer is not 'accept'",
        "discontinuous": "skipped {n} discontinuous entit{ies}",
        "trigger": "skipped {n} event trigger{s}",
        "no_ann": "read {n} .txt file{s} without a .ann beside {them} as having no entities",
        "cp1252": "{n} file{s} not valid UTF-8, read as cp1252",
    }

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, what: str, place: str) -> None:
        self.counts[what] += 1
        self.first.setdefault(what, place)

    def notes(self) -> list[str]:
        out = []
        for what, template in self._NOTES.items():
            n = self.counts[what]
            if n:
                words = {"n": n, "s": "s" if n != 1 else "", "ies": "ies" if n != 1 else "y",
                         "them": "them" if n != 1 else "it", "they": "they" if n != 1 else "it",
                         "es": "" if n != 1 else "es"}
                out.append(template.format(**words) + f" (first at {self.first[what]})")
        kinds = sorted((k[5:], n) for k, n in self.counts.items() if k.startswith("line "))
        if kinds:
            first = self.first["line " + kinds[0][0]]
            out.append(f"skipped {sum(n for _, n in kinds)} brat lines other than entities ("
                       + ", ".join(f"{k} {n}" for k, n in kinds) + f"; first at {first})")
        return out


# ------------------------------------------------------------------ spans -> sentences


def document_sentences(text: str, spans: Iterable[CharSpan], strict: bool, log: SpanLog
                       ) -> list[tuple[list[str], list[str], int]]:
    """One document as ``(tokens, IOB2 tags, offset of its first token)`` per sentence.

    Raises :class:`DataError` (naming the span's file and line) for overlapping spans, and with
    ``strict`` for a span off token boundaries; ``log`` counts what was snapped or dropped.
    """
    tokens = tokenize(text)
    starts, ends = [t.start for t in tokens], [t.end for t in tokens]
    entities: list[tuple[int, int, CharSpan]] = []  # first token, last token + 1, span
    seen: set[tuple[int, int, str]] = set()
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        a, b = _trim(text, span.start, span.end)
        if (a, b, span.label) in seen:
            log.add("duplicate", span.place)
            continue
        seen.add((a, b, span.label))
        i, j = bisect_right(ends, a), bisect_left(starts, b)  # the tokens [i, j) that the span touches
        if i >= j:
            if strict:
                raise _span_error(span, text, "covers no token (only whitespace)")
            log.add("blank", span.place)
            continue
        if (starts[i], ends[j - 1]) != (a, b):
            if strict:
                raise _span_error(span, text, "does not fall on token boundaries: the tokens it touches are "
                                  f"{_short(text[starts[i]:ends[j - 1]])!r} (strict spans)")
            log.add("snapped", span.place)
        entities.append((i, j, span))
    _check_overlaps(entities, text, tokens)
    tags = ["O"] * len(tokens)
    for i, j, span in entities:
        tags[i:j] = ["B-" + span.label] + ["I-" + span.label] * (j - i - 1)
    return [([t.text for t in tokens[a:b]], tags[a:b], tokens[a].start)
            for a, b in _sentence_ranges(tokens, text, entities, log)]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _short(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _describe(span: CharSpan, text: str) -> str:
    return f"{span.start}-{span.end} {span.label} ({_short(text[span.start:span.end])!r})"


def _span_error(span: CharSpan, text: str, problem: str) -> DataError:
    return DataError(f"span {_describe(span, text)} {problem}", path=span.path, line=span.line)


def _check_overlaps(entities: list[tuple[int, int, CharSpan]], text: str, tokens: list[Token]) -> None:
    entities.sort(key=lambda e: (e[0], e[1]))
    for (_, j, prev), (i, _, span) in zip(entities, entities[1:]):
        if i < j:
            both = f"spans {_describe(prev, text)} and {_describe(span, text)} overlap"
            if span.start >= prev.end or prev.start >= span.end:
                both += f" once snapped to tokens (token {_short(tokens[i].text)!r})"
            raise DataError(both + ": a token can belong to one entity only", path=span.path, line=span.line)


def _sentence_ranges(tokens: list[Token], text: str, entities, log: SpanLog) -> list[tuple[int, int]]:
    """Token ranges of the sentences split_sentences finds, joined where a break would cut an entity."""
    continued = {k: span for i, j, span in entities for k in range(i + 1, j)}  # tokens inside an entity
    out: list[tuple[int, int]] = []
    a = 0
    for sentence in split_sentences(tokens, text):
        b = a + len(sentence)
        if out and a in continued:
            out[-1] = (out[-1][0], b)
            log.add("joined", continued[a].place)
        else:
            out.append((a, b))
        a = b
    return out


def _check_label(label, path: str, line: int, what: str) -> str:
    if not isinstance(label, str) or label == "O" or not is_iob2_tag("B-" + label):
        raise DataError(f"{what}: label {_short(repr(label))} is not an entity type name (no spaces)",
                        path=path, line=line)
    return label


def _check_offsets(start, end, text: str, path: str, line: int, what: str) -> None:
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
        raise DataError(f"{what}: start and end should be integers, got {start!r} and {end!r}", path=path, line=line)
    if not 0 <= start < end <= len(text):
        raise DataError(f"{what}: offsets {start}-{end} are not a span of the text "
                        f"({len(text)} characters; need 0 <= start < end <= {len(text)})", path=path, line=line)


# ------------------------------------------------------------------------ JSON Lines


def looks_like_jsonl(first_line: str) -> bool:
    """Whether a file's first non-blank line is a JSON object with a ``"text"`` (the jsonl format)."""
    s = first_line.strip(_WS)
    if not s.startswith("{"):
        return False
    try:
        record = json.loads(s)
    except (ValueError, RecursionError):
        return '"text"' in s  # perhaps a line longer than the look-ahead
    return isinstance(record, dict) and "text" in record


def read_jsonl(stream: "SentenceStream", lines: Iterator[str]) -> Iterator["Sentence"]:
    """The sentences of a JSON Lines file whose decoded ``lines`` ``stream`` is reading."""
    log = SpanLog()
    seen = False
    try:
        for lineno, raw in enumerate(lines, start=1):
            s = raw.lstrip("\ufeff").strip(_WS) if lineno == 1 else raw.strip(_WS)
            if not s:
                continue
            seen = True
            record = _jsonl_record(s, stream.path, lineno, log)
            if record is None:
                continue
            for tokens, tags, _ in document_sentences(*record, stream.strict_spans, log):
                yield stream._emit(tokens, tags, lineno)
        if not seen:
            raise DataError("empty file (no data)", path=stream.path)
    finally:
        stream.notes.extend(log.notes())


def _jsonl_record(s: str, path: str, line: int, log: SpanLog) -> tuple[str, list[CharSpan]] | None:
    """(text, spans) of one line, or None for a record that was not accepted."""
    try:
        record = json.loads(s)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg} (column {e.colno})", path=path, line=line) from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"not valid JSON: {e}", path=path, line=line) from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError('expected a JSON object with a "text" string and its spans ("spans", "label" or '
                        f'"entities"); got {_short(s)!r}', path=path, line=line)
    if record.get("answer", "accept") != "accept":
        log.add("rejected", f"line {line}")
        return None
    text = record["text"]
    key = next((k for k in _SPAN_KEYS if k in record), None)
    items = record.get(key) if key else None
    if items is None:
        return text, []
    if not isinstance(items, list):
        raise DataError(f'"{key}" should be a list of spans, got {type(items).__name__}', path=path, line=line)
    return text, [_json_span(item, f'"{key}" item {k}', text, path, line) for k, item in enumerate(items, 1)]


def _json_span(item, what: str, text: str, path: str, line: int) -> CharSpan:
    if isinstance(item, dict):
        start, end, label = item.get("start"), item.get("end"), item.get("label")
    elif isinstance(item, list) and len(item) == 3:
        start, end, label = item
    else:
        raise DataError(f'{what}: expected {{"start": S, "end": E, "label": L}} or [S, E, L]; got '
                        f"{_short(json.dumps(item, ensure_ascii=False))}", path=path, line=line)
    _check_offsets(start, end, text, path, line, what)
    return CharSpan(start, end, _check_label(label, path, line, what), path, line, f"line {line}")


# ----------------------------------------------------------------------------- brat


def brat_documents(directory: str) -> list[tuple[Path, Path | None]]:
    """The ``(NAME.txt, NAME.ann or None)`` pairs of a brat directory, sorted by name."""
    root = Path(directory)
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_file())
    except OSError as e:
        raise DataError(f"cannot list the directory: {e.strerror or e}", path=directory) from None
    txt = [n[:-4] for n in names if n.endswith(".txt")]
    ann = {n[:-4] for n in names if n.endswith(".ann")}
    orphans = sorted(ann.difference(txt))
    if orphans:
        raise DataError("no .txt file beside this .ann file", path=root / f"{orphans[0]}.ann")
    if not ann:
        raise DataError("not a brat standoff directory: no NAME.txt + NAME.ann files in this directory",
                        path=directory)
    return [(root / f"{n}.txt", root / f"{n}.ann" if n in ann else None) for n in txt]


def brat_sha256(directory: str) -> str:
    """One checksum of a brat directory: its documents' names and contents, in name order."""
    digest = hashlib.sha256()
    for pair in brat_documents(directory):
        for path in pair:
            if path is not None:
                digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def read_brat(stream: "SentenceStream") -> Iterator["Sentence"]:
    """The sentences of the brat directory ``stream.path``, document by document."""
    log = SpanLog()
    try:
        for txt, ann in brat_documents(stream.path):
            text = _read_text(txt, stream, log)
            if ann is None:
                log.add("no_ann", txt.name)
                spans = []
            else:
                spans = _read_ann(ann, text, _read_text(ann, stream, log).lstrip(" "), log)
            newlines = [k for k, c in enumerate(text) if c == "\n"]
            for tokens, tags, offset in document_sentences(text, spans, stream.strict_spans, log):
                yield stream._emit(tokens, tags, bisect_left(newlines, offset) + 1)  # line in NAME.txt
    finally:
        stream.notes.extend(log.notes())


def _read_text(path: Path, stream: "SentenceStream", log: SpanLog) -> str:
    """A whole file decoded as the stream's encoding, else UTF-8, else cp1252 (counted).  A byte
    order mark becomes a space, so that offsets counted with it still point at the same text."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path=path) from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataError("looks like a binary file (contains NUL bytes), not a text file", path=path, line=line)
    encoding = stream._explicit or "utf-8"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        if stream._explicit:
            raise DataError(f"cannot be decoded as {encoding} (byte 0x{raw[e.start]:02x})", path=path,
                            line=line) from None
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError as e2:
            raise DataError(f"neither UTF-8 nor cp1252 (byte 0x{raw[e2.start]:02x}); give the right encoding "
                            "explicitly", path=path, line=raw[: e2.start].count(b"\n") + 1) from None
        log.add("cp1252", f"{path.name}:{line}")
        stream.encoding = "cp1252"
    return " " + text[1:] if text.startswith("\ufeff") else text


def _read_ann(path: Path, text: str, ann: str, log: SpanLog) -> list[CharSpan]:
    """The entities (``T`` lines) of one .ann file, checked against the document's text."""
    spans: dict[str, CharSpan] = {}
    triggers: set[str] = set()
    for lineno, line in enumerate(ann.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip(_WS):
            continue
        place = f"{path.name}:{lineno}"
        if line[0] != "T":
            log.add("line " + line[0], place)
            if line[0] == "E":  # E1<TAB>TYPE:T3 ROLE:T4 ...: T3 is the event's trigger, not an entity
                triggers.add(line.partition("\t")[2].split(" ", 1)[0].partition(":")[2])
            continue
        span = _t_line(line, text, str(path), lineno, place)
        if span is None:
            log.add("discontinuous", place)
        else:
            spans[line.split("\t", 1)[0]] = span
    for ident in triggers.intersection(spans):
        log.add("trigger", spans.pop(ident).place)
    return list(spans.values())


def _t_line(line: str, text: str, path: str, lineno: int, place: str) -> CharSpan | None:
    """One ``T`` line -> its span; None for a discontinuous one."""
    fields = line.split("\t")
    head = fields[1].split(" ") if len(fields) >= 2 else []
    if len(head) < 3:
        raise DataError(f"expected 'T1<TAB>TYPE START END<TAB>TEXT', got {_short(line)!r}", path=path, line=lineno)
    label, offsets = head[0], " ".join(head[1:])
    pieces = offsets.split(";")
    try:
        ranges = [tuple(int(x) for x in p.split()) for p in pieces]
    except ValueError:
        ranges = []
    if not ranges or any(len(r) != 2 for r in ranges):
        raise DataError(f"offsets {_short(offsets)!r} are not 'START END' (or 'START END;START END')",
                        path=path, line=lineno)
    for start, end in ranges:
        _check_offsets(start, end, text, path, lineno, fields[0])
    _check_label(label, path, lineno, fields[0])
    if len(ranges) > 1:
        return None
    (start, end), = ranges
    if len(fields) >= 3 and fields[2].split() != text[start:end].split():
        raise DataError(f"{fields[0]}: its text {_short(fields[2])!r} is not the text at {start}-{end} "
                        f"({_short(text[start:end])!r}): wrong offsets, or the .txt read with the wrong encoding",
                        path=path, line=lineno)
    return CharSpan(start, end, label, path, lineno, place)
