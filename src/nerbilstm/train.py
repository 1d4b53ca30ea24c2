"""The training loop, once: used by both decoders, by --init-from and by distributed runs."""

from __future__ import annotations

import copy
import json
import logging
import random
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nerbilstm import __version__
from nerbilstm.config import ModelConfig, TrainConfig
from nerbilstm.data.batching import collate, encode, length_buckets
from nerbilstm.data.vocab import Vocab
from nerbilstm.errors import DataError
from nerbilstm.evaluate import evaluate_tagger, label_set
from nerbilstm.io import atomic_write_json, save_model_dir
from nerbilstm.model.tagger import BiLSTMTagger
from nerbilstm.predict import Tagger

log = logging.getLogger("nerbilstm.train")

HEADLINE = ("entity_f1", "entity_f1_strict", "token_macro_f1", "seed_batch_macro_f1")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(tag_lists: Sequence[Sequence[str]], labels: Sequence[str]) -> torch.Tensor:
    """The original's weights n / (k * count_c) over the training tags -> (K,)."""
    counts = Counter(t for tags in tag_lists for t in tags)
    n, k = sum(counts.values()), len(labels)
    return torch.tensor([n / (k * counts[c]) if counts[c] else 0.0 for c in labels], dtype=torch.float32)


@torch.no_grad()
def init_word_vectors(model: BiLSTMTagger, vocab: Vocab, pretrained, seed: int) -> int:
    """Copy pretrained vectors into the word table; others drawn at the table's scale. -> #found."""
    vectors, found = pretrained.vectors_for(vocab.words)
    std = float(vectors[found].std()) if found.any() else 0.1
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(len(vocab.words), pretrained.dim, generator=gen) * std
    table[torch.from_numpy(found)] = torch.from_numpy(vectors[found])
    table[0] = 0.0
    model.word_embed.weight.copy_(table)
    return int(found[2:].sum())


def check_labels(sentences, vocab: Vocab, name: str) -> None:
    for s in sentences:
        for tag in s.tags:
            if tag not in vocab.label_index:
                raise DataError(f"{name} tag {tag!r} is not among the labels of the model being trained "
                                f"({', '.join(vocab.labels)})", path=getattr(s, "path", None), line=s.line or None)


def train(train_sents, dev_sents, model_config: ModelConfig, train_config: TrainConfig, out_dir: str | Path,
          test_sents=None, init_from: str | Path | None = None, data_info: dict | None = None,
          progress: bool | None = None, plots: bool = True) -> dict:
    """Train a tagger, keep the best epoch by dev entity F1, write it to ``out_dir``.

    Sentences are objects with ``tokens`` and ``tags``. Returns the final metrics dict
    (dev, and test when test sentences are given). Per-epoch metrics are appended as JSON
    lines to ``out_dir/train_log.jsonl``; plots (learning curves, dev confusion matrix, tag
    distribution) are written there as PNG unless ``plots`` is False.
    """
    from nerbilstm.embeddings import load_embeddings

    cfg = train_config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    if not train_sents:
        raise DataError("no training sentences")

    pretrained = load_embeddings(cfg.embeddings)
    if init_from is not None:
        base = Tagger.load(init_from, pretrained=None)
        vocab = base.vocab
        arch = dict(asdict(base.model.config), decoder=model_config.decoder, lstm_backend=model_config.lstm_backend,
                    constrained=model_config.constrained)
        model_config = ModelConfig(**arch)
        check_labels(train_sents, vocab, "training")
        model = BiLSTMTagger(model_config, len(vocab.words), len(vocab.chars), vocab.labels)
        missing, unexpected = model.load_state_dict(base.model.state_dict(), strict=False)
        log.info("initialised from %s (new: %s)", init_from, ", ".join(missing) or "nothing")
    else:
        vocab = Vocab.build((s.tokens for s in train_sents), (s.tags for s in train_sents), cfg.min_word_count)
        model_config.word_dim = pretrained.dim
        model = BiLSTMTagger(model_config, len(vocab.words), len(vocab.chars), vocab.labels)
        n_found = init_word_vectors(model, vocab, pretrained, cfg.seed)
        log.info("vocabulary: %d words (%d with pretrained vectors), %d chars, %d labels",
                 len(vocab.words) - 2, n_found, len(vocab.chars) - 2, len(vocab.labels))
    model.class_weights.copy_(class_weights([s.tags for s in train_sents], vocab.labels))

    encoded = [encode(s.tokens, vocab, s.tags) for s in train_sents]
    lengths = [len(e.words) for e in encoded]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    tagger = Tagger(model, vocab, {}, pretrained)
    log_path = out_dir / "train_log.jsonl"
    log_path.unlink(missing_ok=True)
    show_bar = sys.stderr.isatty() if progress is None else progress

    best_f1, best_state, best_epoch, history, stale = -1.0, None, 0, [], 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        batches = length_buckets(lengths, cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch)
        total_loss, total_tokens, seen = 0.0, 0, 0
        bar = _progress(len(batches), f"epoch {epoch}/{cfg.epochs}", show_bar)
        for index in batches:
            batch = collate([encoded[i] for i in index])
            loss = model.loss(batch, cfg.word_dropout).sum() / len(index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            total_loss += loss.item() * len(index)
            total_tokens += int(batch.mask.sum())
            seen += len(index)
            if bar is not None:
                elapsed = time.perf_counter() - epoch_start
                bar.set_postfix(loss=f"{total_loss / seen:.3f}",
                                tok_s=f"{total_tokens / elapsed:.0f}", refresh=False)
                bar.update()
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - epoch_start
        scheduler.step()
        dev = evaluate_tagger(tagger, dev_sents) if dev_sents else {}
        record = {"epoch": epoch, "train_loss": total_loss / len(encoded), "lr": optimizer.param_groups[0]["lr"],
                  "train_seconds": round(train_seconds, 2), "tokens_per_s": round(total_tokens / train_seconds, 1),
                  "elapsed_seconds": round(time.perf_counter() - start, 2)}
        record.update({f"dev_{k}": dev[k] for k in HEADLINE if k in dev})
        history.append(record)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log.info("epoch %d: loss %.4f, dev entity F1 %.4f, token macro-F1 %.4f, %.0f tok/s, %.0f s",
                 epoch, record["train_loss"], dev.get("entity_f1", float("nan")),
                 dev.get("token_macro_f1", float("nan")), record["tokens_per_s"], train_seconds)
        f1 = dev.get("entity_f1", -record["train_loss"])
        if f1 > best_f1:
            best_f1, best_epoch, stale = f1, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("no dev gain for %d epochs: stopping after epoch %d", stale, epoch)
                break
    wall = time.perf_counter() - start
    model.load_state_dict(best_state)

    metrics = {"best_epoch": best_epoch, "epochs_run": len(history), "train_wall_seconds": round(wall, 1)}
    dev_pred = None
    if dev_sents:
        metrics["dev"], dev_pred = evaluate_tagger(tagger, dev_sents, return_predictions=True)
    if test_sents:
        metrics["test"] = evaluate_tagger(tagger, test_sents)
    config = {
        "nerbilstm_version": __version__,
        "model": asdict(model_config),
        "training": asdict(cfg),
        "labels": vocab.labels,
        "embeddings": {"source": pretrained.source, "checksum": pretrained.checksum, "dim": pretrained.dim},
        "data": data_info or {},
        "metrics": {k: _headline(v) if isinstance(v, dict) else v for k, v in metrics.items()},
        "history": history,
        "vocab": vocab.to_dict(),
    }
    save_model_dir(out_dir, model.state_dict(), config)
    atomic_write_json(out_dir / "metrics.json", metrics)
    if plots:
        from nerbilstm.plots import write_run_plots

        dev_gold = [s.tags for s in dev_sents] if dev_sents else None
        write_run_plots(out_dir, history, dev_gold, dev_pred, label_set(vocab.labels, dev_gold or []),
                        [s.tags for s in train_sents])
    return metrics


def _headline(metrics: dict) -> dict:
    keep = ("entity_f1", "entity_precision", "entity_recall", "entity_f1_strict", "token_macro_f1",
            "seed_batch_macro_f1", "n_sentences", "n_tokens")
    out = {k: metrics[k] for k in keep if k in metrics}
    if "per_type" in metrics:
        out["per_type_f1"] = {t: v["f1"] for t, v in metrics["per_type"].items()}
    return out


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
