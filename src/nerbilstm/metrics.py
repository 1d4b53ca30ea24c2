"""Evaluation metrics for tag sequences (pure Python + numpy; no torch).

Entity-level scores
-------------------
Entities are those of :func:`nerbilstm.tags.entity_spans`, in one of its two modes
(``"conll"``, the default, or ``"strict"``; the module docstring of :mod:`nerbilstm.tags`
gives the rules).  A predicted entity is correct only when its sentence, span and type
all match a gold entity exactly.

Token-level scores follow ``sklearn.metrics.precision_recall_fscore_support``
with ``zero_division=0``: every zero division yields ``0.0``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from nerbilstm.tags import MODES, entity_spans

__all__ = [
    "entity_scores",
    "entity_errors",
    "token_scores",
    "seed_batch_macro_f1",
    "confusion_matrix",
    "evaluate_tags",
    "entity_counts",
    "bootstrap_f1_deltas",
    "paired_bootstrap",
]

# ---------------------------------------------------------------------------
# helpers


def _check_pair(gold, pred) -> None:
    """Raise ValueError unless gold and pred are parallel lists of tag sequences."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if isinstance(g, str) or isinstance(p, str):
            raise ValueError(
                f"sentence {i}: expected a sequence of tags, got a string "
                "(pass a list of sentences, each a list of tags)"
            )
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: gold has {len(g)} tags but pred has {len(p)}")


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(precision: float, recall: float) -> float:
    s = precision + recall
    return 2.0 * precision * recall / s if s else 0.0


def _prf(n_correct: int, n_pred: int, n_gold: int) -> dict:
    p = _safe_div(n_correct, n_pred)
    r = _safe_div(n_correct, n_gold)
    return {"precision": p, "recall": r, "f1": _f1(p, r), "support": int(n_gold)}


# ---------------------------------------------------------------------------
# entities


def _entity_set(sentences, mode: str) -> set[tuple[int, str, int, int]]:
    out = set()
    for s, tags in enumerate(sentences):
        for typ, a, b in entity_spans(tags, mode):
            out.add((s, typ, a, b))
    return out


def entity_scores(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: str = "conll"
) -> dict:
    """Micro-averaged entity precision/recall/F1 (exact span and type match).

    Returns ``{'precision', 'recall', 'f1', 'support', 'n_pred', 'n_correct',
    'per_type': {type: {'precision', 'recall', 'f1', 'support'}}}`` where
    ``support`` counts gold entities; ``per_type`` covers every type seen in
    gold or prediction, sorted by name.  Zero divisions give 0.0.
    """
    _check_pair(gold, pred)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    g = _entity_set(gold, mode)
    p = _entity_set(pred, mode)
    hit = g & p
    n_gold = Counter(e[1] for e in g)
    n_pred = Counter(e[1] for e in p)
    n_hit = Counter(e[1] for e in hit)
    out = _prf(len(hit), len(p), len(g))
    out["n_pred"] = len(p)
    out["n_correct"] = len(hit)
    out["per_type"] = {
        t: _prf(n_hit[t], n_pred[t], n_gold[t]) for t in sorted(set(n_gold) | set(n_pred))
    }
    return out


ERROR_KINDS = ("correct", "wrong_type", "wrong_span", "wrong_span_and_type", "missed")


def entity_errors(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: str = "conll"
) -> dict:
    """What became of each gold entity, and which predictions match no gold entity at all.

    Each gold entity gets the first kind that applies: ``correct`` (a prediction with its span
    and type), ``wrong_type`` (a prediction with its span and another type), ``wrong_span`` (an
    overlapping prediction of its type), ``wrong_span_and_type`` (overlapping predictions, none
    of its type), ``missed`` (no prediction overlaps it).  A prediction that overlaps no gold
    entity is ``spurious``.  Returns ``{'per_type': {gold type: {kind: count}}, 'spurious':
    {predicted type: count}, 'confusions': {'gold>pred': count}}``, the confusions counting the
    ``wrong_type`` cases, most frequent first; types sorted by name.
    """
    _check_pair(gold, pred)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    kinds: dict[str, Counter] = {}
    spurious: Counter = Counter()
    confusions: Counter = Counter()
    for g_tags, p_tags in zip(gold, pred):
        g_spans, p_spans = entity_spans(g_tags, mode), entity_spans(p_tags, mode)
        for typ, a, b in g_spans:
            over = [(t, c, d) for t, c, d in p_spans if c < b and a < d]
            same_span = [t for t, c, d in over if (c, d) == (a, b)]
            if typ in same_span:
                kind = "correct"
            elif same_span:
                kind = "wrong_type"
                confusions[f"{typ}>{same_span[0]}"] += 1
            elif any(t == typ for t, _, _ in over):
                kind = "wrong_span"
            else:
                kind = "wrong_span_and_type" if over else "missed"
            kinds.setdefault(typ, Counter())[kind] += 1
        for typ, c, d in p_spans:
            if not any(a < d and c < b for _, a, b in g_spans):
                spurious[typ] += 1
    return {
        "per_type": {t: {k: kinds[t][k] for k in ERROR_KINDS} for t in sorted(kinds)},
        "spurious": {t: spurious[t] for t in sorted(spurious)},
        "confusions": dict(sorted(confusions.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


# ---------------------------------------------------------------------------
# tokens


def _index_tokens(gold, pred, labels: Sequence[str]):
    """Flattened gold/pred as int arrays; tags outside ``labels`` map to ``len(labels)``."""
    index = {t: i for i, t in enumerate(labels)}
    other = len(labels)
    g = np.fromiter((index.get(t, other) for s in gold for t in s), dtype=np.int64)
    p = np.fromiter((index.get(t, other) for s in pred for t in s), dtype=np.int64)
    return g, p


def _full_matrix(gold, pred, labels: Sequence[str]) -> np.ndarray:
    """(n+1) x (n+1) counts; the last row/column gathers tags outside ``labels``."""
    labels = list(labels)
    if len(set(labels)) != len(labels):
        raise ValueError("labels contains duplicates")
    g, p = _index_tokens(gold, pred, labels)
    k = len(labels) + 1
    return np.bincount(g * k + p, minlength=k * k).reshape(k, k)


def confusion_matrix(gold, pred, labels: Sequence[str]) -> list[list[int]]:
    """Token confusion matrix, rows gold and columns prediction, in ``labels`` order.

    Tokens whose gold or predicted tag is not in ``labels`` are left out (as
    ``sklearn.metrics.confusion_matrix(labels=...)`` does).
    """
    _check_pair(gold, pred)
    m = _full_matrix(gold, pred, labels)
    n = len(labels)
    return [[int(x) for x in row[:n]] for row in m[:n]]


def token_scores(gold, pred, labels: Sequence[str]) -> dict:
    """Token-level scores for the tags in ``labels``.

    Returns ``{'per_tag': {tag: {'precision','recall','f1','support'}},
    'macro_f1', 'accuracy'}``.  Precision/recall count every token (also those
    whose other side is a tag outside ``labels``), as sklearn does; ``macro_f1``
    is the plain mean of F1 over *all* ``labels``, including tags never seen
    (F1 0), i.e. ``f1_score(labels=labels, average='macro', zero_division=0)``.
    ``accuracy`` is the share of tokens whose predicted tag equals the gold tag.
    """
    _check_pair(gold, pred)
    labels = list(labels)
    m = _full_matrix(gold, pred, labels)
    n = len(labels)
    tp = np.diag(m)[:n]
    n_pred = m.sum(axis=0)[:n]
    n_gold = m.sum(axis=1)[:n]
    per_tag = {}
    f1s = []
    for i, tag in enumerate(labels):
        # F1 as 2tp / (2tp + fp + fn), like sklearn >= 1.3 (0 when undefined)
        f1 = _safe_div(2 * tp[i], n_pred[i] + n_gold[i])
        per_tag[tag] = {
            "precision": _safe_div(tp[i], n_pred[i]),
            "recall": _safe_div(tp[i], n_gold[i]),
            "f1": f1,
            "support": int(n_gold[i]),
        }
        f1s.append(f1)
    n_tokens = int(m.sum())
    n_same = sum(1 for gs, ps in zip(gold, pred) for a, b in zip(gs, ps) if a == b)
    return {
        "per_tag": per_tag,
        "macro_f1": float(sum(f1s) / len(f1s)) if f1s else 0.0,
        "accuracy": _safe_div(n_same, n_tokens),
    }


def _macro_f1_present(gold_tokens: list[str], pred_tokens: list[str]) -> float:
    """Macro F1 over the tags present in gold or prediction (zero_division=0)."""
    tp: Counter = Counter()
    ng = Counter(gold_tokens)
    npred = Counter(pred_tokens)
    for a, b in zip(gold_tokens, pred_tokens):
        if a == b:
            tp[a] += 1
    classes = set(ng) | set(npred)
    return sum(_safe_div(2 * tp[c], ng[c] + npred[c]) for c in classes) / len(classes)


def seed_batch_macro_f1(gold, pred, batch_size: int = 8) -> float:
    """The original notebook's figure: mean over batches of per-batch token macro-F1.

    Sentences are cut into consecutive batches of ``batch_size`` in the given
    order (the last, partial batch counts as a batch).  In each batch the tokens
    are flattened and macro-F1 is taken over the tags present in that batch's
    gold or prediction (= sklearn ``f1_score(y_true, y_pred, average='macro',
    zero_division=0)``); the result is the plain mean over batches.  A batch
    with no tokens at all (only empty sentences) is skipped, since the figure is
    undefined there; 0.0 when no batch has tokens.
    """
    _check_pair(gold, pred)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scores = []
    for b in range(0, len(gold), batch_size):
        g = [t for s in gold[b : b + batch_size] for t in s]
        p = [t for s in pred[b : b + batch_size] for t in s]
        if g:
            scores.append(_macro_f1_present(g, p))
    return float(sum(scores) / len(scores)) if scores else 0.0


# ---------------------------------------------------------------------------
# significance: is one tagger's entity F1 really above another's?


def entity_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: str = "conll") -> np.ndarray:
    """Per sentence, ``(correct, predicted, gold)`` entity counts. -> (N, 3) int64.

    Summed over any multiset of sentences they give its micro F1 = 2 correct / (predicted + gold).
    """
    _check_pair(gold, pred)
    out = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        gs, ps = set(entity_spans(g, mode)), set(entity_spans(p, mode))
        out[i] = (len(gs & ps), len(ps), len(gs))
    return out


def _f1_of_counts(counts: np.ndarray) -> np.ndarray:
    """counts: (..., 3) summed (correct, predicted, gold) -> (...) micro F1 (0 where nothing at all)."""
    den = counts[..., 1] + counts[..., 2]
    return np.where(den > 0, 2.0 * counts[..., 0] / np.maximum(den, 1), 0.0)


def bootstrap_f1_deltas(counts_a: np.ndarray, counts_b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """F1(B) - F1(A) on resampled test sets.

    counts_a, counts_b: (N, 3) from :func:`entity_counts` on the same sentences; weights: (S, N)
    how often each sentence is drawn into each of S resamples. -> (S,) float64.
    """
    return _f1_of_counts(weights @ counts_b) - _f1_of_counts(weights @ counts_a)


def paired_bootstrap(
    gold: Sequence[Sequence[str]], pred_a: Sequence[Sequence[str]], pred_b: Sequence[Sequence[str]],
    samples: int = 1000, seed: int = 0, mode: str = "conll",
) -> dict:
    """Paired bootstrap over sentences (Koehn 2004; Berg-Kirkpatrick et al. 2012) of entity F1.

    Both taggers' predictions on the same sentences are resampled together, ``samples`` times, each
    resample as many sentences as the test set, drawn with replacement. Returns ``f1_a``, ``f1_b``,
    ``delta`` (B - A on the test set itself), ``ci95`` (2.5th and 97.5th percentiles of the resampled
    deltas), ``b_better`` / ``a_better`` (fractions of resamples where B / A scores higher),
    ``p_value`` (Berg-Kirkpatrick's: the fraction of resamples whose delta exceeds twice the
    observed one in the observed direction; small means the sign of ``delta`` is unlikely to be
    luck), and ``samples``, ``seed``, ``sentences``.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    counts_a = entity_counts(gold, pred_a, mode)
    counts_b = entity_counts(gold, pred_b, mode)
    n = len(gold)
    if n == 0:
        raise ValueError("no sentences to resample")
    rng = np.random.default_rng(seed)
    deltas = np.concatenate([
        bootstrap_f1_deltas(counts_a, counts_b, rng.multinomial(n, np.full(n, 1.0 / n), size=min(256, samples - k)))
        for k in range(0, samples, 256)
    ])
    f1_a, f1_b = float(_f1_of_counts(counts_a.sum(0))), float(_f1_of_counts(counts_b.sum(0)))
    delta = f1_b - f1_a
    if delta == 0:
        p_value = 1.0
    else:
        p_value = float(np.mean(np.sign(delta) * deltas > 2 * abs(delta)))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return {
        "f1_a": f1_a, "f1_b": f1_b, "delta": delta, "ci95": [float(lo), float(hi)],
        "b_better": float(np.mean(deltas > 0)), "a_better": float(np.mean(deltas < 0)),
        "p_value": p_value, "samples": int(samples), "seed": int(seed), "sentences": n,
    }


# ---------------------------------------------------------------------------
# everything at once


def evaluate_tags(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], labels: Sequence[str]
) -> dict:
    """All figures for one gold/prediction pair, as a JSON-serialisable dict.

    Keys: ``entity_precision``, ``entity_recall``, ``entity_f1``,
    ``entity_support``, ``entity_n_pred`` (conll mode); the same with a
    ``_strict`` suffix (strict IOB2); ``token_macro_f1``, ``token_accuracy``,
    ``seed_batch_macro_f1``, ``n_sentences``, ``n_tokens``; ``per_type``
    ({type: precision, recall, f1, support (conll) plus precision_strict,
    recall_strict, f1_strict}); ``per_tag`` (token scores for ``labels``);
    ``entity_errors`` (:func:`entity_errors`, conll mode).
    """
    _check_pair(gold, pred)
    conll = entity_scores(gold, pred, "conll")
    strict = entity_scores(gold, pred, "strict")
    tok = token_scores(gold, pred, labels)
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    per_type = {}
    for t in sorted(set(conll["per_type"]) | set(strict["per_type"])):
        c = conll["per_type"].get(t, zero)
        s = strict["per_type"].get(t, zero)
        per_type[t] = {
            "precision": c["precision"],
            "recall": c["recall"],
            "f1": c["f1"],
            "support": c["support"],
            "precision_strict": s["precision"],
            "recall_strict": s["recall"],
            "f1_strict": s["f1"],
        }
    return {
        "entity_precision": conll["precision"],
        "entity_recall": conll["recall"],
        "entity_f1": conll["f1"],
        "entity_support": conll["support"],
        "entity_n_pred": conll["n_pred"],
        "entity_precision_strict": strict["precision"],
        "entity_recall_strict": strict["recall"],
        "entity_f1_strict": strict["f1"],
        "entity_n_pred_strict": strict["n_pred"],
        "token_macro_f1": tok["macro_f1"],
        "token_accuracy": tok["accuracy"],
        "seed_batch_macro_f1": seed_batch_macro_f1(gold, pred),
        "n_sentences": len(gold),
        "n_tokens": sum(len(s) for s in gold),
        "per_type": per_type,
        "per_tag": tok["per_tag"],
        "entity_errors": entity_errors(gold, pred, "conll"),
    }
