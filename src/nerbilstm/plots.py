"""Pictures of a run, written as PNG: learning curves, tag confusion, tag distribution."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Sequence[dict], path: str | Path) -> None:
    """Training loss and dev F1 per epoch (records as in train_log.jsonl)."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], marker="o")
    ax1.set(title="training loss per sentence", xlabel="epoch", ylabel="loss")
    for key, name in (("dev_entity_f1", "entity F1 (CoNLL)"), ("dev_entity_f1_strict", "entity F1 (strict)"),
                      ("dev_token_macro_f1", "token macro-F1"), ("dev_seed_batch_macro_f1", "original batch figure")):
        if all(key in r for r in history):
            ax2.plot(epochs, [r[key] for r in history], marker="o", label=name)
    ax2.set(title="dev scores", xlabel="epoch", ylabel="score")
    ax2.legend(loc="lower right")
    ax2.grid(alpha=0.3)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path) -> None:
    """Row-normalised confusion of tags (rows gold, columns predicted), counts written in cells."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(labels), 0.8 + 0.45 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="gold", title="tag confusion (row-normalised; counts in cells)")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tag_distribution(tag_counts: Mapping[str, int], path: str | Path) -> None:
    """Count of each tag in the data, on a log scale (O dwarfs the rest)."""
    plt = _pyplot()
    counts = Counter(tag_counts).most_common()
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar([c for c, _ in counts], [n for _, n in counts], color="tab:blue")
    ax.set_yscale("log")
    ax.set(title="tag distribution of the training data", ylabel="tokens (log scale)")
    for i, (_, n) in enumerate(counts):
        ax.text(i, n, f"{n:,}", ha="center", va="bottom", fontsize=7, rotation=90)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_run_plots(directory: str | Path, history=None, gold=None, pred=None, labels=None,
                    tag_counts: Mapping[str, int] | None = None) -> list[Path]:
    """Write whichever plots the given material allows into ``directory``; -> paths written."""
    from nerbilstm.metrics import confusion_matrix

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if history:
        plot_history(history, directory / "learning_curves.png")
        written.append(directory / "learning_curves.png")
    if gold is not None and pred is not None and labels:
        plot_confusion(confusion_matrix(gold, pred, labels), labels, directory / "confusion_matrix.png")
        written.append(directory / "confusion_matrix.png")
    if tag_counts:
        plot_tag_distribution(tag_counts, directory / "tag_distribution.png")
        written.append(directory / "tag_distribution.png")
    return written
