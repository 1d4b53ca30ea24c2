"""Tests for nerbilstm.tags: validity, scheme conversion, entity spans (against seqeval),
label sets and the IOB2 constraint table."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbilstm.tags import (
    continuation_tag,
    continuations,
    count_b_starts,
    entity_spans,
    entity_type,
    from_iobes,
    iob2_constraints,
    is_iob2_tag,
    is_scheme_tag,
    sort_labels,
    to_iob2,
)


from synthetic import BIO, IOBES, quiet  # noqa: E402

# ---------------------------------------------------------------------------
# references (seqeval is a test dependency; tests that need it skip without it)


def seqeval_spans(tags):
    """seqeval's default-mode chunks as (type, start, end-exclusive)."""
    get_entities = pytest.importorskip("seqeval.metrics.sequence_labeling").get_entities
    return [(t, a, b + 1) for t, a, b in quiet(get_entities, list(tags))]


def seqeval_strict_spans(tags):
    scheme = pytest.importorskip("seqeval.scheme")
    toks = scheme.Tokens(list(tags), scheme.IOB2)
    return [(e.tag, e.start, e.end) for e in toks.entities]


# ---------------------------------------------------------------------------
# validity


@pytest.mark.parametrize("tag", ["O", "B-a", "I-a", "B-geo-nam", "I-x.y"])
def test_iob2_tags(tag):
    assert is_iob2_tag(tag)
    assert is_scheme_tag(tag)


@pytest.mark.parametrize("tag", ["E-a", "S-a", "L-a", "U-a"])
def test_scheme_tags_that_are_not_iob2(tag):
    assert is_scheme_tag(tag)
    assert not is_iob2_tag(tag)


@pytest.mark.parametrize("tag", ["X-geo", "B-", "b-geo", "I", "T-per", "S_per", "o", "", "B-a b", " O", "PER"])
def test_not_tags(tag):
    assert not is_scheme_tag(tag)
    assert not is_iob2_tag(tag)


# ---------------------------------------------------------------------------
# conversion to IOB2


def test_to_iob2():
    assert to_iob2([]) == ([], 0)
    assert to_iob2(["I-a", "I-a", "O", "I-a", "I-b", "B-b", "I-b"]) == (
        ["B-a", "I-a", "O", "B-a", "B-b", "B-b", "I-b"], 3)
    tags = ["I-x"]
    to_iob2(tags)
    assert tags == ["I-x"]  # input untouched


_tag = st.sampled_from(["O", "B-a", "I-a", "B-b", "I-b", "B-geo-loc", "I-geo-loc"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_tag, max_size=30))
def test_to_iob2_properties(tags):
    out, n = to_iob2(tags)
    assert len(out) == len(tags)
    assert n == sum(a != b for a, b in zip(tags, out))
    for i, t in enumerate(out):  # every I- continues an entity of its type
        if t.startswith("I-"):
            assert i > 0 and out[i - 1] != "O" and out[i - 1][2:] == t[2:]
    assert to_iob2(out) == (out, 0)  # idempotent
    assert [t[2:] for t in out] == [t[2:] for t in tags]  # types unchanged


def test_count_b_starts():
    assert count_b_starts([]) == 0
    # IOB1: B- only between two adjacent entities of one type, so it never opens one
    assert count_b_starts(["I-a", "I-a", "B-a", "O", "I-b", "B-b"]) == 0
    # IOB2: every entity opens with B-
    assert count_b_starts(["B-a", "I-a", "B-a", "O", "B-b", "B-a"]) == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(_tag, max_size=30))
def test_count_b_starts_of_iob2_counts_entities_after_another_type(tags):
    iob2, _ = to_iob2(tags)
    spans = entity_spans(iob2, mode="strict")
    # an entity is opened by a B- that follows O / the start / another type, or by a B-x right after x
    following_same_type = sum(1 for (t1, _, e1), (t2, s2, _) in zip(spans, spans[1:]) if e1 == s2 and t1 == t2)
    assert count_b_starts(iob2) == len(spans) - following_same_type


def test_from_iobes():
    assert from_iobes([]) == ([], 0)
    iobes = ["S-per", "O", "B-geo", "I-geo", "E-geo", "B-org", "E-org", "S-org"]
    assert from_iobes(iobes) == (["B-per", "O", "B-geo", "I-geo", "I-geo", "B-org", "I-org", "B-org"], 4)
    bilou = ["U-per", "O", "B-geo", "I-geo", "L-geo"]
    assert from_iobes(bilou) == (["B-per", "O", "B-geo", "I-geo", "I-geo"], 2)
    assert from_iobes(["O", "B-x", "I-x", "Spain", "E"]) == (["O", "B-x", "I-x", "Spain", "E"], 0)
    tags = ["S-x"]
    from_iobes(tags)
    assert tags == ["S-x"]  # input untouched


def _to_iobes(iob2: list[str]) -> list[str]:
    """IOB2 -> IOBES, written independently of the module: the reference for the round trip."""
    out = []
    for i, t in enumerate(iob2):
        last = i + 1 == len(iob2) or iob2[i + 1] != "I-" + t[2:]
        if t == "O":
            out.append(t)
        elif t.startswith("B-"):
            out.append(("S-" if last else "B-") + t[2:])
        else:
            out.append(("E-" if last else "I-") + t[2:])
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(_tag, max_size=30))
def test_from_iobes_round_trip_and_seqeval_spans(tags):
    iob2, _ = to_iob2(tags)
    iobes = _to_iobes(iob2)
    assert from_iobes(iobes)[0] == iob2
    bilou = [{"S": "U", "E": "L"}.get(t[0], t[0]) + t[1:] for t in iobes]
    assert from_iobes(bilou)[0] == iob2
    # seqeval reads IOBES itself: its entities are those of the IOB2 we return
    get_entities = pytest.importorskip("seqeval.metrics.sequence_labeling").get_entities
    ours = [(typ, start, end - 1) for typ, start, end in entity_spans(from_iobes(iobes)[0])]
    assert ours == get_entities(iobes)


# ---------------------------------------------------------------------------
# entity spans: hand-written tricky cases

SPAN_CASES = [
    # tags, conll spans, strict spans
    (["B-a", "I-a", "O", "B-b"], [("a", 0, 2), ("b", 3, 4)], [("a", 0, 2), ("b", 3, 4)]),
    (["O", "I-a", "I-a", "O"], [("a", 1, 3)], []),  # I- after O
    (["B-a", "I-b", "I-b"], [("a", 0, 1), ("b", 1, 3)], [("a", 0, 1)]),  # I- after other type
    (["O", "B-a", "I-a"], [("a", 1, 3)], [("a", 1, 3)]),  # entity at end
    (["B-a", "B-a", "B-b"], [("a", 0, 1), ("a", 1, 2), ("b", 2, 3)],
     [("a", 0, 1), ("a", 1, 2), ("b", 2, 3)]),  # adjacent B-B
    (["I-a"], [("a", 0, 1)], []),
    (["I-a", "B-a", "I-a"], [("a", 0, 1), ("a", 1, 3)], [("a", 1, 3)]),
    (["B-a", "I-a", "I-b", "I-a"], [("a", 0, 2), ("b", 2, 3), ("a", 3, 4)], [("a", 0, 2)]),
    (["B-a", "O", "I-a"], [("a", 0, 1), ("a", 2, 3)], [("a", 0, 1)]),
    (["B-geo-nam", "I-geo-nam"], [("geo-nam", 0, 2)], [("geo-nam", 0, 2)]),
    ([], [], []),
    (["O", "O"], [], []),
    # IOBES prefixes (conll mode only: strict IOB2 treats them as outside)
    (["B-a", "E-a", "S-a"], [("a", 0, 2), ("a", 2, 3)], [("a", 0, 1)]),
    (["S-a", "I-a", "E-a"], [("a", 0, 1), ("a", 1, 3)], []),
    (["E-a", "E-a"], [("a", 0, 1), ("a", 1, 2)], []),
]


@pytest.mark.parametrize("tags,conll,strict", SPAN_CASES)
def test_entity_spans_hand_cases(tags, conll, strict):
    assert entity_spans(tags) == conll
    assert entity_spans(tags, mode="conll") == conll
    assert entity_spans(tags, mode="strict") == strict
    assert seqeval_spans(tags) == conll
    if all(t == "O" or t[:2] in ("B-", "I-") for t in tags):
        assert seqeval_strict_spans(tags) == strict


@pytest.mark.parametrize(
    "tags,conll",
    [(["X-a", "I-a"], [("a", 1, 2)]), (["B", "I-a"], [("a", 1, 2)]), (["PER"], [])],
)
def test_malformed_tags_are_outside(tags, conll):
    assert entity_spans(tags) == conll


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        entity_spans(["O"], mode="lenient")


# ---------------------------------------------------------------------------
# entity spans: random sentences against seqeval

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sentences(alphabet):
    return st.lists(st.lists(st.sampled_from(alphabet), min_size=1, max_size=12), min_size=1, max_size=12)


@FAST
@given(_sentences(BIO))
def test_entity_spans_random_conll(sentences):
    for s in sentences:
        assert entity_spans(s) == seqeval_spans(s)


@FAST
@given(_sentences(BIO))
def test_entity_spans_random_strict(sentences):
    for s in sentences:
        assert entity_spans(s, mode="strict") == seqeval_strict_spans(s)


@settings(max_examples=100, deadline=None)
@given(_sentences(IOBES))
def test_entity_spans_random_iobes_conll(sentences):
    """E-/S- prefixes in conll mode decode exactly as seqeval's default mode."""
    for s in sentences:
        assert entity_spans(s) == seqeval_spans(s)


# ---------------------------------------------------------------------------
# label sets


@pytest.mark.parametrize("tag,typ", [
    ("O", None), ("B-per", "per"), ("I-per", "per"), ("B-geo-nam", "geo-nam"),
    ("E-org", "org"), ("S-org", "org"), ("L-x", "x"), ("U-x", "x"),
    ("PER", "PER"), ("<pad>", "<pad>"),  # a label without a prefix is its own type
])
def test_entity_type(tag, typ):
    assert entity_type(tag) == typ


@settings(max_examples=200, deadline=None)
@given(st.lists(_tag, min_size=1, max_size=30))
def test_entity_type_is_the_span_type(tags):
    for typ, start, end in entity_spans(tags):
        assert {entity_type(t) for t in tags[start:end]} == {typ}


@pytest.mark.parametrize("tag,cont", [
    ("B-per", "I-per"), ("I-per", "I-per"), ("B-geo-nam", "I-geo-nam"),
    ("O", None), ("E-per", None), ("S-per", None), ("<pad>", None), ("PER", None),
])
def test_continuation_tag(tag, cont):
    assert continuation_tag(tag) == cont


def test_continuations():
    labels = ["O", "B-a", "I-a", "B-b", "B-c", "I-c", "<pad>"]
    assert continuations(labels) == [None, 2, 2, None, 5, 5, None]  # no I-b: B-b continues nothing
    assert continuations(tuple(labels)) == continuations(labels)
    assert continuations([]) == []


def test_sort_labels():
    tags = ["I-per", "O", "B-geo", "I-geo", "B-per", "O", "B-art", "B-geo"]
    assert sort_labels(tags) == ["O", "B-art", "B-geo", "I-geo", "B-per", "I-per"]
    assert sort_labels(iter(["I-x", "B-x"])) == ["B-x", "I-x"]  # no O, any iterable
    assert sort_labels([]) == []


# ---------------------------------------------------------------------------
# IOB2 constraint table


def test_iob2_constraints_table():
    labels = ["O", "B-a", "I-a", "B-b", "I-b", "<pad>"]
    allowed, start, end = iob2_constraints(labels)
    assert allowed.dtype == start.dtype == end.dtype == np.bool_
    assert allowed.shape == (6, 6) and start.shape == end.shape == (6,)
    expected_into_I_a = [False, True, True, False, False, True]  # from O, B-a, I-a, B-b, I-b, <pad>
    expected_into_I_b = [False, False, False, True, True, True]
    assert allowed[:, 2].tolist() == expected_into_I_a
    assert allowed[:, 4].tolist() == expected_into_I_b
    for j in (0, 1, 3, 5):  # O, B-*, <pad> may follow anything
        assert allowed[:, j].all()
    assert start.tolist() == [True, True, False, True, False, True]
    assert end.all()


@settings(max_examples=200, deadline=None)
@given(st.lists(_tag, min_size=1, max_size=30))
def test_iob2_constraints_allow_exactly_iob2(tags):
    """A sequence breaks no constraint exactly when to_iob2 leaves it as it is."""
    labels = sorted(set(tags))
    allowed, start, _ = iob2_constraints(labels)
    ids = [labels.index(t) for t in tags]
    ok = start[ids[0]] and all(allowed[i, j] for i, j in zip(ids, ids[1:]))
    assert ok == (to_iob2(tags)[1] == 0)
