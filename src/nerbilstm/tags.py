"""Tag schemes: which tags exist, how they become IOB2, and where their entities are.

Pure Python + numpy; no torch.  This module is the one home of what a tag means: the
readers, the vocabulary, the CRF's constraints, the metrics, prediction and the server
all ask it.

Schemes
-------
A tag is ``O`` (outside any entity) or ``P-TYPE``: a one-letter prefix, a dash and the
entity type (one or more non-space characters).

``IOB2`` (the scheme of every model, and of what the readers hand on)
    ``B-x`` starts an entity of type ``x``, ``I-x`` continues it.  An ``I-x`` never
    follows ``O``, the start of a sentence or a tag of another type
    (:func:`is_iob2_tag` tells the tags; :func:`iob2_constraints` the transitions).
``IOB1``
    The same two prefixes, but ``I-x`` starts an entity too and ``B-x`` is only used
    between two adjacent entities of one type.  :func:`to_iob2` rewrites it (and
    repairs a broken IOB2 sequence) by turning every ``I-x`` that starts an entity
    into ``B-x``.
``IOBES`` (``BIOES``) and ``BILOU``
    ``S-x`` / ``U-x`` is a single-token entity, ``E-x`` / ``L-x`` the last token of
    a longer one.  :func:`from_iobes` rewrites them as IOB2 (``S``, ``U`` -> ``B``;
    ``E``, ``L`` -> ``I``), which keeps the spans of a well-formed sequence.

The readers accept any of these (:func:`is_scheme_tag`) and convert to IOB2.

Entity spans
------------
Entities are extracted per sentence as ``(type, start, end)`` with ``end``
exclusive (:func:`entity_spans`).  Two decoding modes (:data:`MODES`):

``"conll"`` (the default; what ``conlleval`` and ``seqeval``'s default mode do)
    A chunk starts at ``B-x`` / ``S-x``, or at an ``I-x`` / ``E-x`` that does not
    continue an open chunk of type ``x`` (i.e. after ``O``, after another type,
    or after an ``E-``/``S-`` that closed the previous chunk).  ``I-x`` and
    ``E-x`` continue an open chunk of the same type that was opened or extended
    by ``B-x``/``I-x``; ``E-x`` and ``S-x`` close their chunk.  Any tag that is
    not ``O`` and not of the form ``P-type`` with ``P`` in ``B I E S`` and a
    non-empty type (e.g. ``"B"`` alone, ``"X-foo"``, ``"PER"``) is treated as
    ``O``.  (seqeval differs only on such malformed tags, which it parses
    loosely.)  The type is everything after the first ``-``, so ``B-geo-nam``
    has type ``geo-nam``.

``"strict"`` (seqeval ``mode="strict", scheme=IOB2``)
    An entity is exactly ``B-x`` followed by zero or more ``I-x``.  An ``I-x``
    that does not continue a ``B-x``/``I-x`` of its type belongs to no entity
    (it is an invalid span and counts as nothing, neither hit nor miss).  Any
    tag other than ``B-x``/``I-x`` (``O``, ``E-x``, ``S-x``, malformed tags) is
    treated as outside.

Label sets
----------
A model's labels are ordered by :func:`sort_labels` (``O`` first, then grouped by
type, ``B-x`` before ``I-x``); :func:`entity_type` names the type a label tags and
:func:`continuations` the ``I-`` label that continues an entity begun by each label.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np

__all__ = [
    "MODES",
    "is_iob2_tag",
    "is_scheme_tag",
    "from_iobes",
    "to_iob2",
    "count_b_starts",
    "entity_spans",
    "entity_type",
    "continuation_tag",
    "continuations",
    "sort_labels",
    "iob2_constraints",
    "TypeMap",
]

MODES = ("conll", "strict")

_IOB2_TAG = re.compile(r"O|[BI]-\S+")
_SCHEME_TAG = re.compile(r"O|[BIESLU]-\S+")  # IOB, IOB2, IOBES (BIOES) and BILOU tags as read
_IOBES_TO_IOB2 = {"S": "B", "U": "B", "E": "I", "L": "I"}
_TYPED_PREFIXES = ("B-", "I-", "E-", "S-", "L-", "U-")


# --------------------------------------------------------------------------- validity


def is_iob2_tag(tag: str) -> bool:
    """``O``, ``B-TYPE`` or ``I-TYPE`` (TYPE: one or more non-space characters)."""
    return _IOB2_TAG.fullmatch(tag) is not None


def is_scheme_tag(tag: str) -> bool:
    """A tag the readers accept: ``O`` or ``X-TYPE`` with X one of B, I (IOB, IOB2), E, S (IOBES)
    or L, U (BILOU)."""
    return _SCHEME_TAG.fullmatch(tag) is not None


# --------------------------------------------------------------------------- conversion


def from_iobes(tags: list[str]) -> tuple[list[str], int]:
    """Rewrite IOBES (``S-``, ``E-``) and BILOU (``U-``, ``L-``) tags as IOB2.

    A single-token entity (``S-x``, ``U-x``) becomes ``B-x``, the last token of a longer one
    (``E-x``, ``L-x``) ``I-x``; ``B-``, ``I-`` and ``O`` stay, so the entity spans of a
    well-formed sequence are unchanged.  Returns the new tags and how many were changed; the
    input list is not modified.
    """
    out = [tag if tag[:1] not in _IOBES_TO_IOB2 or tag[1:2] != "-" else _IOBES_TO_IOB2[tag[0]] + tag[1:]
           for tag in tags]
    return out, sum(a != b for a, b in zip(tags, out))


def to_iob2(tags: list[str]) -> tuple[list[str], int]:
    """Convert IOB1 to IOB2 / repair a broken IOB2 sequence.

    An ``I-x`` that starts an entity (at the start of the sentence, after ``O``, or
    after a tag of another type) becomes ``B-x``.  Returns the new tags and how many
    were changed; the input list is not modified.
    """
    out = list(tags)
    changed = 0
    prev_type = None  # entity type of the previous tag, None after O / at the start
    for i, tag in enumerate(out):
        if tag.startswith("I-"):
            typ = tag[2:]
            if prev_type != typ:
                out[i] = "B-" + typ
                changed += 1
            prev_type = typ
        elif tag.startswith("B-"):
            prev_type = tag[2:]
        else:
            prev_type = None
    return out, changed


def count_b_starts(tags: list[str]) -> int:
    """How many ``B-`` tags open an entity after ``O``/the start/another type (IOB2 style).

    An IOB1 file has none (there ``B-`` only separates two entities of one type), so a
    reader uses this count to tell IOB1 from IOB2."""
    n = 0
    prev_type = None
    for tag in tags:
        if tag.startswith("B-"):
            if prev_type != tag[2:]:
                n += 1
            prev_type = tag[2:]
        elif tag.startswith("I-"):
            prev_type = tag[2:]
        else:
            prev_type = None
    return n


# --------------------------------------------------------------------------- entity spans


@lru_cache(maxsize=4096)
def _parse(tag: str) -> tuple[str, str]:
    """Return ``(prefix, type)``; ``("O", "")`` for anything that is not ``P-type``."""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return "O", ""


def entity_spans(tags: Sequence[str], mode: str = "conll") -> list[tuple[str, int, int]]:
    """Entities of one sentence as ``(type, start, end)``, ``end`` exclusive.

    ``mode="conll"``: conlleval / seqeval default semantics (an ``I-x`` after
    ``O`` or after another type starts a new entity; ``E-``/``S-`` prefixes are
    honoured as in seqeval; malformed tags count as ``O``).
    ``mode="strict"``: strict IOB2 (``B-x I-x*`` only; stray ``I-x`` is ignored).
    See the module docstring for the full rules.
    """
    if mode == "conll":
        return _spans_conll(tags)
    if mode == "strict":
        return _spans_strict(tags)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def _spans_conll(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    spans = []
    open_type = None  # type of the chunk that may still be continued
    start = 0
    for i, tag in enumerate(tags):
        prefix, typ = _parse(tag)
        if prefix == "O":
            if open_type is not None:
                spans.append((open_type, start, i))
                open_type = None
            continue
        if prefix in "IE" and open_type == typ:
            # continues the open chunk
            if prefix == "E":
                spans.append((open_type, start, i + 1))
                open_type = None
            continue
        # starts a new chunk (closing any open one)
        if open_type is not None:
            spans.append((open_type, start, i))
        if prefix in "ES":  # a single-token chunk, closed at once
            spans.append((typ, i, i + 1))
            open_type = None
        else:  # B, or an I that could not continue
            open_type, start = typ, i
    if open_type is not None:
        spans.append((open_type, start, len(tags)))
    return spans


def _spans_strict(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    spans = []
    open_type = None
    start = 0
    for i, tag in enumerate(tags):
        prefix, typ = _parse(tag)
        if prefix == "I" and open_type == typ:
            continue
        if open_type is not None:
            spans.append((open_type, start, i))
            open_type = None
        if prefix == "B":
            open_type, start = typ, i
    if open_type is not None:
        spans.append((open_type, start, len(tags)))
    return spans


# --------------------------------------------------------------------------- label sets


def entity_type(tag: str) -> str | None:
    """The entity type a label tags: ``None`` for ``O``; what follows the prefix of
    ``B-``, ``I-``, ``E-``, ``S-``, ``L-`` and ``U-`` tags; any other label is its own type."""
    if tag == "O":
        return None
    return tag[2:] if tag[:2] in _TYPED_PREFIXES else tag


def continuation_tag(tag: str) -> str | None:
    """The IOB2 tag that continues an entity whose current tag is ``tag``: ``I-x`` for
    ``B-x`` and ``I-x``, ``None`` for anything else."""
    return "I-" + tag[2:] if tag[:2] in ("B-", "I-") else None


def continuations(labels: Sequence[str]) -> list[int | None]:
    """For each label, the index in ``labels`` of its :func:`continuation_tag` (``None`` where
    there is none or ``labels`` lacks it)."""
    labels = list(labels)
    return [labels.index(c) if c is not None and c in labels else None
            for c in map(continuation_tag, labels)]


def sort_labels(tags: Iterable[str]) -> list[str]:
    """O first, then entity tags grouped by type: B-x before I-x."""
    unique = set(tags)
    rest = sorted(unique - {"O"}, key=lambda t: (t[2:], t[:1]))
    return (["O"] if "O" in unique else []) + rest


def iob2_constraints(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IOB2 rules as (allowed[from,to] (K,K), allowed_start (K,), allowed_end (K,)) bool arrays.

    I-x may only follow B-x or I-x and may not start a sentence; any ending is allowed.
    Labels that are not O, B-* or I-* (e.g. '<pad>') are unconstrained in both directions.
    ``CRF.set_constraints`` takes the three arrays as they are."""
    K = len(labels)

    def parse(label: str) -> tuple[str, str | None]:
        if label == "O":
            return "O", None
        if label.startswith(("B-", "I-")):
            return label[0], label[2:]
        return "free", None

    parsed = [parse(lab) for lab in labels]
    allowed = np.ones((K, K), dtype=bool)
    start = np.ones(K, dtype=bool)
    end = np.ones(K, dtype=bool)
    for j, (kind_j, type_j) in enumerate(parsed):
        if kind_j != "I":
            continue
        start[j] = False
        for i, (kind_i, type_i) in enumerate(parsed):
            if kind_i == "free":
                continue
            allowed[i, j] = kind_i in ("B", "I") and type_i == type_j
    return allowed, start, end


# --------------------------------------------------------------------------- type map


class TypeMap:
    """Renames entity types in IOB2 tags, so several types can be merged into one:
    ``TypeMap.parse("SpecificDisease=Disease,Modifier=Disease")``.  A type mapped to ``O``
    is dropped (its tags become ``O``); types not in the map stay.  The map is applied once
    (``A=B,B=C`` sends ``A`` to ``B``, not to ``C``).  Used on IOB2 tags, where every entity
    starts with ``B-``, two adjacent entities stay two after a merge.

    Counts what it renamed (:meth:`notes`), by entity (``B-`` tags).
    """

    _NAME = re.compile(r"[^\s,=]+")

    def __init__(self, mapping: Mapping[str, str]):
        self.mapping = dict(mapping)
        self.renamed: Counter[str] = Counter()  # entities renamed, by their type as read
        self._cache: dict[str, str] = {}

    @classmethod
    def parse(cls, text: "str | Mapping[str, str] | TypeMap | None") -> "TypeMap | None":
        """``"A=B,C=D"`` (or a mapping) -> a TypeMap; None or ``""`` -> None.  A malformed map
        raises :class:`~nerbilstm.errors.DataError` saying which pair is wrong."""
        from nerbilstm.errors import DataError

        if text is None:
            return None
        if isinstance(text, TypeMap):  # a fresh one: the counts belong to one reading
            return cls(text.mapping)
        pairs = list(text.items()) if isinstance(text, Mapping) else \
            [p.partition("=")[::2] if "=" in p else (p, None) for p in text.split(",") if p.strip()]
        mapping: dict[str, str] = {}
        for old, new in pairs:
            old, new = str(old).strip(), None if new is None else str(new).strip()
            if new is None or not cls._NAME.fullmatch(old) or not cls._NAME.fullmatch(new) or old == "O":
                raise DataError(f"type map {text!r}: {old + '=' + (new or '')!r} is not OLD=NEW "
                                "(entity type names, pairs separated by commas; NEW may be O to drop a type)")
            if old in mapping:
                raise DataError(f"type map {text!r}: type {old!r} is mapped twice")
            mapping[old] = new
        return cls(mapping) if mapping else None

    def __call__(self, tags: Sequence[str]) -> list[str]:
        """The tags with their types renamed (a new list)."""
        out = []
        for tag in tags:
            new = self._cache.get(tag)
            if new is None:
                new = self._rename(tag)
                if len(self._cache) < 10_000:
                    self._cache[tag] = new
            if new is not tag and tag.startswith("B-"):
                self.renamed[tag[2:]] += 1
            out.append(new)
        return out

    def _rename(self, tag: str) -> str:
        if tag[1:2] != "-" or tag[2:] not in self.mapping:
            return tag
        new = self.mapping[tag[2:]]
        return "O" if new == "O" else f"{tag[:2]}{new}"

    def notes(self) -> list[str]:
        """What the map did, for a reader's notes: entities renamed per type, types never seen."""
        out = []
        if self.renamed:
            n = sum(self.renamed.values())
            out.append(f"type map: {n} entit{'ies' if n != 1 else 'y'} renamed ("
                       + ", ".join(f"{t} {k} -> {self.mapping[t]}" for t, k in sorted(self.renamed.items())) + ")")
        unseen = [t for t in self.mapping if t not in self.renamed]
        if unseen:
            out.append(f"type map: no entities of type {', '.join(unseen)} (check the spelling)")
        return out
