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


def unknown_type_warnings(model_labels: Sequence[str], gold: Sequence[Sequence[str]]) -> list[str]:
    """One warning for the gold entity types the model does not know (they can only be missed),
    with how many gold entities they hold; a DataError when it knows none of them: its figures
    on this data would be 0.0 and mean nothing."""
    from collections import Counter

    from nerbilstm.errors import DataError
    from nerbilstm.tags import entity_spans, entity_type

    known = {entity_type(label) for label in model_labels} - {None}
    counts = Counter(kind for tags in gold for kind, _, _ in entity_spans(tags))
    unknown = {kind: n for kind, n in sorted(counts.items()) if kind not in known}
    if not unknown:
        return []
    if len(unknown) == len(counts):
        raise DataError(f"the model knows none of the data's entity types: the model has {', '.join(sorted(known))}; "
                        f"the data has {', '.join(unknown)}")
    listed = ", ".join(f"{kind} ({n:,} gold entit{'ies' if n != 1 else 'y'})" for kind, n in unknown.items())
    return [f"gold entity types the model does not know, counted as misses: {listed}"]


def evaluate_on(tagger, sentences, scored: str, return_predictions: bool = False):
    """evaluate_tagger, with ``scored`` (which sentences: see dataset.select_split) and the
    warnings of unknown_type_warnings in the metrics (refused before tagging when it raises)."""
    warnings = unknown_type_warnings(tagger.labels, [s.tags for s in sentences])
    metrics, pred = evaluate_tagger(tagger, sentences, return_predictions=True)
    metrics.update(scored=scored, warnings=warnings)
    return (metrics, pred) if return_predictions else metrics


def write_evaluation_plots(folder, tagger, sentences, pred) -> None:
    """The model's learning curves and the tag confusion matrix of ``pred`` against the
    sentences' gold tags, as PNG files in ``folder``."""
    from nerbilstm.plots import write_run_plots

    gold = [s.tags for s in sentences]
    write_run_plots(folder, tagger.config.get("history"), gold, pred, label_set(tagger.labels, gold))
