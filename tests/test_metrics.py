"""Tests for nerbilstm.metrics, checked against seqeval and scikit-learn as references."""

from __future__ import annotations

import json
from collections import Counter
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

seqeval_metrics = pytest.importorskip("seqeval.metrics")
seqeval_scheme = pytest.importorskip("seqeval.scheme")
sk = pytest.importorskip("sklearn.metrics")

from nerbilstm.report import render_evaluation  # noqa: E402
from nerbilstm.metrics import (  # noqa: E402
    confusion_matrix,
    entity_errors,
    entity_scores,
    evaluate_tags,
    seed_batch_macro_f1,
    token_scores,
)

IOB2 = seqeval_scheme.IOB2

from synthetic import BIO, IOBES, quiet  # noqa: E402

# ---------------------------------------------------------------------------
# references


def seqeval_ref(gold, pred, strict=False):
    kw = {"zero_division": 0}
    if strict:
        kw.update(mode="strict", scheme=IOB2)
    gold = [list(s) for s in gold]
    pred = [list(s) for s in pred]
    ref = {
        "precision": quiet(seqeval_metrics.precision_score, gold, pred, **kw),
        "recall": quiet(seqeval_metrics.recall_score, gold, pred, **kw),
        "f1": quiet(seqeval_metrics.f1_score, gold, pred, **kw),
    }
    report = quiet(seqeval_metrics.classification_report, gold, pred, output_dict=True, **kw)
    ref["per_type"] = {
        t: {
            "precision": float(r["precision"]),
            "recall": float(r["recall"]),
            "f1": float(r["f1-score"]),
            "support": int(r["support"]),
        }
        for t, r in report.items()
        if not t.endswith(" avg")
    }
    return ref


def assert_matches_seqeval(gold, pred, mode):
    ours = entity_scores(gold, pred, mode=mode)
    ref = seqeval_ref(gold, pred, strict=(mode == "strict"))
    for k in ("precision", "recall", "f1"):
        assert ours[k] == pytest.approx(float(ref[k]), abs=1e-12), (k, gold, pred)
    # seqeval's report lists types with a gold *or* a predicted entity
    assert set(ours["per_type"]) == set(ref["per_type"]), (gold, pred)
    for t, r in ref["per_type"].items():
        o = ours["per_type"][t]
        assert o["support"] == r["support"]
        for k in ("precision", "recall", "f1"):
            assert o[k] == pytest.approx(r[k], abs=1e-12), (t, k, gold, pred)
    assert ours["support"] == sum(r["support"] for r in ref["per_type"].values())


def seqeval_spans(tags):
    """seqeval's default-mode chunks as (type, start, end-exclusive)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(t, a, b + 1) for t, a, b in quiet(get_entities, list(tags))]


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        entity_scores([["O"]], [["O"]], mode="lenient")


# ---------------------------------------------------------------------------
# entity scores vs seqeval

SCORE_CASES = [
    # gold, pred
    ([["B-a", "I-a", "O", "B-b"]], [["B-a", "I-a", "O", "B-b"]]),
    ([["B-a", "I-a", "O", "B-b"]], [["O", "I-a", "O", "B-b"]]),  # I- after O
    ([["B-a", "I-a", "I-a"]], [["B-a", "I-b", "I-a"]]),  # I- after another type
    ([["O", "B-a", "I-a"], ["B-b"]], [["O", "B-a", "I-a"], ["I-b"]]),  # at end, stray I
    ([["B-a", "B-a", "O"]], [["B-a", "I-a", "O"]]),  # adjacent B-B vs merged
    ([["O", "O"]], [["B-a", "O"]]),  # no gold entity
    ([["B-a", "O"]], [["O", "O"]]),  # no prediction
    ([["O"]], [["O"]]),  # nothing at all
    ([["B-a"], ["B-a"]], [["B-a"], ["O"]]),  # same span in two sentences counts twice
    ([["I-a", "I-a", "B-b", "I-b"]], [["B-a", "I-a", "I-b", "I-b"]]),
]


@pytest.mark.parametrize("mode", ["conll", "strict"])
@pytest.mark.parametrize("gold,pred", SCORE_CASES)
def test_entity_scores_hand_cases(gold, pred, mode):
    assert_matches_seqeval(gold, pred, mode)


def test_zero_division_is_zero():
    r = entity_scores([["O"]], [["O"]])
    assert (r["precision"], r["recall"], r["f1"], r["support"]) == (0.0, 0.0, 0.0, 0)
    assert r["per_type"] == {}


@st.composite
def gold_pred(draw, alphabet=BIO):
    n = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    tag = st.sampled_from(alphabet)
    gold = [draw(st.lists(tag, min_size=k, max_size=k)) for k in lengths]
    pred = [draw(st.lists(tag, min_size=k, max_size=k)) for k in lengths]
    # half the time, make pred a light corruption of gold so there are hits
    if draw(st.booleans()):
        pred = [
            [p if draw(st.integers(0, 3)) == 0 else g for g, p in zip(gs, ps)]
            for gs, ps in zip(gold, pred)
        ]
    return gold, pred


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(gold_pred())
def test_entity_scores_random_conll(gp):
    gold, pred = gp
    assert_matches_seqeval(gold, pred, "conll")


@FAST
@given(gold_pred())
def test_entity_scores_random_strict(gp):
    gold, pred = gp
    assert_matches_seqeval(gold, pred, "strict")


@settings(max_examples=100, deadline=None)
@given(gold_pred(IOBES))
def test_entity_scores_random_iobes_conll(gp):
    """E-/S- prefixes in conll mode decode exactly as seqeval's default mode."""
    gold, pred = gp
    assert_matches_seqeval(gold, pred, "conll")


# ---------------------------------------------------------------------------
# token scores vs sklearn


def _flat(x):
    return [t for s in x for t in s]


TOKEN_CASES = [
    ([["O", "B-a", "I-a"]], [["O", "B-a", "O"]], BIO),
    ([["O", "B-a", "I-a"], ["B-b"]], [["B-a", "B-a", "I-a"], ["I-b"]], BIO),
    ([["O", "O"]], [["O", "O"]], BIO),  # tags with no support and no prediction: F1 0
    ([["O", "B-a", "X"]], [["X", "B-a", "O"]], BIO),  # a tag outside labels
    ([["O", "O", "X"], ["B-a"]], [["O", "O", "O"], ["X"]], BIO),  # outside tags still count
    ([["O", "B-a"]], [["O", "B-b"]], ["B-a", "O"]),  # labels subset, other order
]


def _check_token_scores(gold, pred, labels):
    ours = token_scores(gold, pred, labels)
    y, yh = _flat(gold), _flat(pred)
    p, r, f, s = quiet(
        sk.precision_recall_fscore_support, y, yh, labels=labels, zero_division=0
    )
    assert list(ours["per_tag"]) == list(labels)
    for i, tag in enumerate(labels):
        o = ours["per_tag"][tag]
        assert o["precision"] == pytest.approx(p[i], abs=1e-12)
        assert o["recall"] == pytest.approx(r[i], abs=1e-12)
        assert o["f1"] == pytest.approx(f[i], abs=1e-12)
        assert o["support"] == s[i]
    macro = quiet(sk.f1_score, y, yh, labels=labels, average="macro", zero_division=0)
    assert ours["macro_f1"] == pytest.approx(macro, abs=1e-12)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, yh), abs=1e-12)


@pytest.mark.parametrize("gold,pred,labels", TOKEN_CASES)
def test_token_scores_hand_cases(gold, pred, labels):
    _check_token_scores(gold, pred, labels)


@FAST
@given(gold_pred())
def test_token_scores_random(gp):
    _check_token_scores(*gp, BIO)


# ---------------------------------------------------------------------------
# confusion matrix vs sklearn


@pytest.mark.parametrize("gold,pred,labels", TOKEN_CASES)
def test_confusion_matrix_hand_cases(gold, pred, labels):
    ref = sk.confusion_matrix(_flat(gold), _flat(pred), labels=labels).tolist()
    assert confusion_matrix(gold, pred, labels) == ref


@settings(max_examples=60, deadline=None)
@given(gold_pred())
def test_confusion_matrix_random(gp):
    gold, pred = gp
    ref = sk.confusion_matrix(_flat(gold), _flat(pred), labels=BIO).tolist()
    assert confusion_matrix(gold, pred, BIO) == ref


# ---------------------------------------------------------------------------
# the notebook's batch macro-F1


def seed_batch_ref(gold, pred, batch_size=8):
    scores = []
    for b in range(0, len(gold), batch_size):
        y = _flat(gold[b : b + batch_size])
        yh = _flat(pred[b : b + batch_size])
        scores.append(quiet(sk.f1_score, y, yh, average="macro", zero_division=0))
    return sum(scores) / len(scores)


def _random_corpus(n, seed, alphabet=BIO):
    rng = random.Random(seed)
    gold, pred = [], []
    for _ in range(n):
        k = rng.randint(1, 10)
        g = [rng.choice(alphabet) for _ in range(k)]
        p = [t if rng.random() < 0.7 else rng.choice(alphabet) for t in g]
        gold.append(g)
        pred.append(p)
    return gold, pred


@pytest.mark.parametrize("n,seed", [(1, 0), (7, 1), (8, 2), (9, 3), (33, 4), (80, 5)])
def test_seed_batch_macro_f1(n, seed):
    gold, pred = _random_corpus(n, seed)
    assert seed_batch_macro_f1(gold, pred) == pytest.approx(seed_batch_ref(gold, pred), abs=1e-12)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 100])
def test_seed_batch_macro_f1_batch_size(batch_size):
    gold, pred = _random_corpus(20, 9)
    ours = seed_batch_macro_f1(gold, pred, batch_size=batch_size)
    assert ours == pytest.approx(seed_batch_ref(gold, pred, batch_size), abs=1e-12)


def test_seed_batch_macro_f1_differs_from_global_macro():
    """The per-batch figure only averages tags present in each batch (so it is not the global one)."""
    gold = [["O", "B-a"]] * 8 + [["O", "B-b"]] * 8
    pred = [["O", "B-a"]] * 8 + [["O", "O"]] * 8
    assert seed_batch_macro_f1(gold, pred) == pytest.approx((1.0 + (2 / 3 + 0) / 2) / 2)
    assert seed_batch_macro_f1([], []) == 0.0


# ---------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    "fn", [entity_scores, seed_batch_macro_f1,
           lambda g, p: token_scores(g, p, BIO), lambda g, p: confusion_matrix(g, p, BIO),
           lambda g, p: evaluate_tags(g, p, BIO)],
)
def test_mismatched_lengths_raise(fn):
    with pytest.raises(ValueError, match="sentence 1"):
        fn([["O"], ["O", "B-a"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="sentences"):
        fn([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0"):
        fn(["O", "B-a"], ["O", "B-a"])  # flat lists, not sentences


# ---------------------------------------------------------------------------
# evaluate_tags / render_evaluation


def test_evaluate_tags_and_report():
    gold, pred = _random_corpus(50, 11)
    m = evaluate_tags(gold, pred, BIO)
    json.dumps(m)  # plain Python types only
    c = entity_scores(gold, pred)
    s = entity_scores(gold, pred, mode="strict")
    assert m["entity_f1"] == c["f1"] and m["entity_precision"] == c["precision"]
    assert m["entity_recall"] == c["recall"]
    assert m["entity_f1_strict"] == s["f1"] and m["entity_precision_strict"] == s["precision"]
    assert m["entity_recall_strict"] == s["recall"]
    t = token_scores(gold, pred, BIO)
    assert m["token_macro_f1"] == t["macro_f1"] and m["token_accuracy"] == t["accuracy"]
    assert m["per_tag"] == t["per_tag"]
    assert m["seed_batch_macro_f1"] == seed_batch_macro_f1(gold, pred)
    assert m["n_sentences"] == 50 and m["n_tokens"] == sum(map(len, gold))
    for typ, r in m["per_type"].items():
        assert r["f1"] == c["per_type"].get(typ, {"f1": 0.0})["f1"]
        assert r["f1_strict"] == s["per_type"].get(typ, {"f1": 0.0})["f1"]
    for v in m.values():
        assert type(v) in (float, int, dict)

    text = render_evaluation(m)
    assert "entities (conll)" in text and "entities (strict)" in text
    assert f"{m['entity_f1']:.4f}" in text
    for tag in BIO:
        assert tag in text
    lines = text.splitlines()
    # per-tag rows are aligned: every row of that table has the same length
    start = next(i for i, l in enumerate(lines) if l.startswith("Per tag"))
    rows = lines[start + 1 : start + 3 + len(BIO)]
    assert len({len(r) for r in rows}) == 1


def test_speed_gmb_sized():
    """~5,000 sentences x ~22 tokens must evaluate quickly."""
    rng = random.Random(0)
    labels = ["O"] + [f"{p}-{t}" for t in ("geo", "org", "per", "gpe", "tim", "art", "eve", "nat")
                      for p in "BI"]
    gold = [[rng.choice(labels) for _ in range(22)] for _ in range(5000)]
    pred = [[t if rng.random() < 0.9 else rng.choice(labels) for t in s] for s in gold]
    t0 = time.perf_counter()
    evaluate_tags(gold, pred, labels)
    assert time.perf_counter() - t0 < 3.0


# ---------------------------------------------------------------------------
# error breakdown


def test_entity_errors_hand_case():
    gold = [["B-per", "I-per", "O", "B-geo", "O", "B-org", "I-org", "O", "B-tim", "O", "O"]]
    pred = [["B-per", "I-per", "O", "B-org", "O", "B-org", "O", "O", "B-geo", "O", "B-art"]]
    # per: exact; geo: same span, other type; org: overlapping prediction of its type, shorter;
    # tim: overlapped by a geo only; the art at the end overlaps nothing gold
    errors = entity_errors(gold, pred)
    assert errors["per_type"] == {
        "geo": {"correct": 0, "wrong_type": 1, "wrong_span": 0, "wrong_span_and_type": 0, "missed": 0},
        "org": {"correct": 0, "wrong_type": 0, "wrong_span": 1, "wrong_span_and_type": 0, "missed": 0},
        "per": {"correct": 1, "wrong_type": 0, "wrong_span": 0, "wrong_span_and_type": 0, "missed": 0},
        "tim": {"correct": 0, "wrong_type": 1, "wrong_span": 0, "wrong_span_and_type": 0, "missed": 0},
    }
    assert errors["spurious"] == {"art": 1}
    assert errors["confusions"] == {"geo>org": 1, "tim>geo": 1}
    missed = entity_errors([["B-a", "I-a", "O"]], [["O", "O", "B-b"]])
    assert missed["per_type"]["a"]["missed"] == 1 and missed["spurious"] == {"b": 1}
    both = entity_errors([["B-a", "I-a", "O"]], [["O", "B-b", "I-b"]])
    assert both["per_type"]["a"]["wrong_span_and_type"] == 1 and both["spurious"] == {}


def reference_errors(gold, pred):
    """The same breakdown from seqeval's chunks and token sets, written independently."""
    kinds, spurious = {}, Counter()
    for g_tags, p_tags in zip(gold, pred):
        g_chunks = [(t, set(range(a, b))) for t, a, b in seqeval_spans(g_tags)]
        p_chunks = [(t, set(range(a, b))) for t, a, b in seqeval_spans(p_tags)]
        for typ, toks in g_chunks:
            over = [(t, q) for t, q in p_chunks if q & toks]
            if (typ, toks) in over:
                kind = "correct"
            elif any(q == toks for _, q in over):
                kind = "wrong_type"
            elif any(t == typ for t, _ in over):
                kind = "wrong_span"
            else:
                kind = "wrong_span_and_type" if over else "missed"
            kinds.setdefault(typ, Counter())[kind] += 1
        for typ, toks in p_chunks:
            if not any(q & toks for _, q in g_chunks):
                spurious[typ] += 1
    return kinds, spurious


@FAST
@given(gold_pred())
def test_entity_errors_random_against_seqeval_chunks(gp):
    gold, pred = gp
    ours = entity_errors(gold, pred)
    kinds, spurious = reference_errors(gold, pred)
    assert {t: {k: v for k, v in c.items() if v} for t, c in ours["per_type"].items()} == \
        {t: dict(c) for t, c in kinds.items()}
    assert ours["spurious"] == dict(spurious)
    scores = entity_scores(gold, pred)
    for t, c in ours["per_type"].items():
        assert sum(c.values()) == scores["per_type"][t]["support"]
    assert sum(c["correct"] for c in ours["per_type"].values()) == scores["n_correct"]
    assert sum(ours["confusions"].values()) == sum(c["wrong_type"] for c in ours["per_type"].values())


def test_report_shows_the_error_breakdown():
    gold = [["B-per", "I-per", "O", "B-geo"]]
    pred = [["B-per", "I-per", "O", "B-org"]]
    metrics = evaluate_tags(gold, pred, BIO + ["B-per", "I-per", "B-geo", "B-org"])
    assert metrics["entity_errors"]["confusions"] == {"geo>org": 1}
    json.dumps(metrics)
    report = render_evaluation(metrics)
    assert "Gold entities by outcome" in report and "geo>org 1" in report
