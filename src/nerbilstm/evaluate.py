"""Scoring a tagger on gold sentences: the figures of metrics.py, over predictions of predict.py."""

from __future__ import annotations

from typing import Sequence

from nerbilstm.metrics import evaluate_tags, format_report  # noqa: F401  (format_report re-exported)


def label_set(model_labels: Sequence[str], gold: Sequence[Sequence[str]]) -> list[str]:
    """The model's labels plus any gold tag it never saw in training (those count as misses)."""
    extra = sorted({t for tags in gold for t in tags} - set(model_labels))
    return list(model_labels) + extra


def evaluate_tagger(tagger, sentences) -> dict:
    """Tag the sentences' tokens with ``tagger`` and score them against their gold tags.

    sentences: objects with ``tokens`` and ``tags`` lists. -> the dict of metrics.evaluate_tags,
    plus ``unseen_gold_tags`` (gold tags the model cannot predict).
    """
    gold = [s.tags for s in sentences]
    pred = tagger.tags([s.tokens for s in sentences])
    labels = label_set(tagger.labels, gold)
    metrics = evaluate_tags(gold, pred, labels)
    metrics["unseen_gold_tags"] = labels[len(tagger.labels):]
    return metrics
