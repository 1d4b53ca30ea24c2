"""Scoring a tagger on gold sentences: the figures of metrics.py, over predictions of predict.py."""

from __future__ import annotations

from typing import Sequence

from nerbilstm.metrics import evaluate_tags, paired_bootstrap


def label_set(model_labels: Sequence[str], gold: Sequence[Sequence[str]]) -> list[str]:
    """The model's labels plus any gold tag it never saw in training (those count as misses)."""
    extra = sorted({t for tags in gold for t in tags} - set(model_labels))
    return list(model_labels) + extra


def score_predictions(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], model_labels: Sequence[str]) -> dict:
    """metrics.evaluate_tags over the model's labels, plus ``unseen_gold_tags`` (gold tags the
    model cannot predict: a dev/test tag never seen in training)."""
    labels = label_set(model_labels, gold)
    metrics = evaluate_tags(gold, pred, labels)
    metrics["unseen_gold_tags"] = labels[len(model_labels):]
    return metrics


def evaluate_tagger(tagger, sentences, return_predictions: bool = False):
    """Tag the sentences' tokens with ``tagger`` and score them against their gold tags.

    sentences: objects with ``tokens`` and ``tags``. -> metrics dict, or (metrics, predicted tags).
    """
    gold = [s.tags for s in sentences]
    pred = tagger.tags([s.tokens for s in sentences])
    metrics = score_predictions(gold, pred, tagger.labels)
    return (metrics, pred) if return_predictions else metrics


def compare_taggers(tagger_a, tagger_b, sentences, samples: int = 1000, seed: int = 0) -> dict:
    """Score two taggers on the same gold sentences, and test the difference of their entity F1
    with a paired bootstrap over sentences. -> ``{"a": metrics, "b": metrics, "bootstrap": ...}``
    (metrics as :func:`evaluate_tagger`; bootstrap as :func:`metrics.paired_bootstrap`)."""
    metrics_a, pred_a = evaluate_tagger(tagger_a, sentences, return_predictions=True)
    metrics_b, pred_b = evaluate_tagger(tagger_b, sentences, return_predictions=True)
    gold = [s.tags for s in sentences]
    return {"a": metrics_a, "b": metrics_b, "bootstrap": paired_bootstrap(gold, pred_a, pred_b, samples, seed)}
