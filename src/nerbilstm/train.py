"""The training loop, once: used by both decoders, by --init-from, --resume and distributed runs.

The recipe: Adam with gradient clipping and a per-epoch learning-rate decay, dev evaluation
after every epoch, the best epoch by dev entity F1 kept, early stopping with patience. A
checkpoint is written atomically after every epoch (and every N batches if asked), so a killed
run continues with ``resume=True`` and ends with the same weights as an uninterrupted one.
``train`` reads as that recipe; each step below it is one function.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import islice
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nerbilstm import __version__
from nerbilstm.checkpoint import (prefixed, read_checkpoint, remove_checkpoint, restore_optimizer,
                                  save_checkpoint, set_rng_state)
from nerbilstm.config import (FIELDS_BEFORE_THEY_EXISTED, ConfigError, DataConfig, ModelConfig, TrainConfig,
                              from_dict)
from nerbilstm.config_file import run_configs, write_config
from nerbilstm.data.batching import collate
from nerbilstm.data.sampling import RepeatFactors
from nerbilstm.data.sources import InMemoryBatches, StreamedBatches, TrainingData, scan
from nerbilstm.data.vocab import Vocab
from nerbilstm.embeddings import GLOVE_PACKAGE, load_embeddings
from nerbilstm.distributed import Context, gather_checksums, setup, share_flag
from nerbilstm.errors import DataError, NerError
from nerbilstm.evaluate import evaluate_tagger, label_set
from nerbilstm.io import atomic_write_json, save_model_dir
from nerbilstm.model.tagger import BiLSTMTagger
from nerbilstm.predict import Tagger
from nerbilstm.run_dir import TRAIN_LOG, check_run_id, claim_out_dir, new_run_id
from nerbilstm.tags import entity_type
from nerbilstm.tensorboard_log import TensorBoardLog, require_tensorboard

log = logging.getLogger("nerbilstm.train")

HEADLINE = ("entity_f1", "entity_f1_strict", "token_macro_f1", "seed_batch_macro_f1")
# ModelConfig fields a model started from --init-from may change; the rest is its architecture.
CHANGEABLE_ON_INIT = ("decoder", "lstm_backend", "constrained")


class TrainingInterrupted(NerError):
    """Training stopped by the user; a checkpoint was saved to resume from."""


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint. ``step`` counts finished batches of ``epoch``."""

    epoch: int = 1
    step: int = 0
    epoch_loss: float = 0.0
    epoch_tokens: int = 0
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    stale_base: float = -1.0  # the dev F1 an epoch must beat by --min-gain to reset ``stale``
    averaged: int = 0  # epochs in the running weight average (--average-from)
    history: list = field(default_factory=list)

    def next_epoch(self) -> None:
        self.epoch, self.step, self.epoch_loss, self.epoch_tokens = self.epoch + 1, 0, 0.0, 0


@dataclass
class ResumePoint:
    """A checkpoint read back (see checkpoint.py): its JSON state and its tensors."""

    state: dict
    tensors: dict

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        # A checkpoint written before a training field existed ran as that field's value then,
        # not as today's default: --resume must go on with the same recipe.
        training = {**FIELDS_BEFORE_THEY_EXISTED, **self.state["training"]}
        return from_dict(ModelConfig, self.state["model"]), from_dict(TrainConfig, training)


@dataclass
class Epoch:
    """An epoch's training pass: when it started, its seconds and the tokens this rank trained on."""

    started: float
    train_seconds: float
    tokens: int


@dataclass
class Run:
    """A training run's moving parts, made by start_run and carried through the steps.

    ``net`` is ``model`` or its DistributedDataParallel wrapper; ``best_state`` and ``average``
    the best weights so far and the running average (--average-from); ``run_config`` what
    config.json and every checkpoint record (configs, vocabulary, data); ``tensorboard`` the
    event-file writer (rank 0, with --tensorboard)."""

    out_dir: Path
    ctx: Context
    cfg: TrainConfig
    model: BiLSTMTagger
    net: torch.nn.Module
    vocab: Vocab
    tagger: Tagger
    pretrained: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    run_config: dict
    show_bar: bool
    progress: Progress = field(default_factory=Progress)
    best_state: dict | None = None
    average: dict | None = None
    started: float = field(default_factory=time.perf_counter)
    data_config: dict | None = None  # the data options (absolute paths), for --resume
    tensorboard: TensorBoardLog | None = None

    @property
    def going(self) -> bool:
        return self.progress.epoch <= self.cfg.epochs and self.progress.stale < self.cfg.patience

    def checkpoint(self) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.out_dir, self.model, self.optimizer, self.best_state,
                            dict(self.run_config, progress=asdict(self.progress), data_config=self.data_config,
                                 scheduler=self.scheduler.state_dict()), self.average)


def train(train_sents, dev_sents, model_config: ModelConfig, train_config: TrainConfig, out_dir: str | Path,
          test_sents=None, init_from: str | Path | None = None, data_info: dict | None = None,
          progress: bool | None = None, plots: bool = True, resume: bool = False, ctx: Context | None = None,
          overwrite: bool = False, data_config: DataConfig | None = None) -> dict:
    """Train a tagger, keep the best epoch by dev entity F1, write it to ``out_dir``.

    Sentences are objects with ``tokens`` and ``tags``. Returns the final metrics dict (dev,
    and test when test sentences are given). Per-epoch metrics are appended as JSON lines to
    ``out_dir/train_log.jsonl``; plots (learning curves, dev confusion matrix, tag distribution)
    are written there as PNG unless ``plots`` is False. ``resume`` continues from
    ``out_dir/checkpoint`` (same data required); the configs then come from the checkpoint.
    Without ``resume``, a directory holding another run is refused unless ``overwrite``.
    ``data_config`` (the data options, see train_files) is kept in the checkpoint for resume.
    ``init_from`` starts from a trained model's weights, vocabulary and architecture: see
    inherit_architecture for which ``model_config`` fields may differ from it.

    ``ctx`` (see distributed.py) places the run on a device and, with several processes, makes
    it a DistributedDataParallel run: every global batch of ``batch_size`` sentences is split
    across the ranks, gradients are averaged so each step equals the one-process step on the
    same global batch, and rank 0 alone evaluates, logs and writes files (others return {}).
    """
    ctx = ctx or setup(train_config.device)
    out_dir = Path(out_dir)
    log_to_stderr_by_default()
    saved = open_run_dir(out_dir, resume, overwrite, data_info, ctx)
    model_config, cfg = saved.configs() if saved else (model_config, train_config)
    prepare_process(cfg, ctx)
    pretrained = load_embeddings(cfg.embeddings)
    data = scan_training_data(train_sents, cfg.min_word_count)
    model, vocab, model_config = make_model(train_sents, data, model_config, cfg, pretrained, init_from, saved)
    run = start_run(out_dir, ctx, model, vocab, model_config, cfg, pretrained, data_info, progress, saved)
    run.data_config = asdict(data_config) if data_config is not None else (saved.state.get("data_config")
                                                                            if saved else None)
    source = batch_source(train_sents, vocab, cfg, data)
    while run.going:
        epoch = run_epoch(run, source)
        if end_epoch(run, epoch, dev_sents, data.n_sentences):
            break
    return finish_run(run, dev_sents, test_sents, data.tag_counts, plots)


# ----------------------------------------------------------------------------- before the first epoch


def open_run_dir(out_dir: Path, resume: bool, overwrite: bool, data_info: dict | None,
                 ctx: Context) -> ResumePoint | None:
    """Claim ``out_dir`` for a fresh run (run_dir.claim_out_dir); with ``resume``, read its
    checkpoint, which must be of this directory's run and of the same data files."""
    if not resume:
        if ctx.is_main:
            claim_out_dir(out_dir, overwrite)
        return None
    saved = ResumePoint(*read_checkpoint(out_dir))
    check_run_id(out_dir, saved.state.get("run_id"))
    for split, now in (data_info or {}).items():
        then = saved.state.get("data", {}).get(split)
        if isinstance(now, dict) and isinstance(then, dict) and now.get("sha256") != then.get("sha256"):
            raise DataError(f"the {split} data ({Path(str(now.get('path'))).name}) differs from the data of the "
                            "run being resumed (checksums differ)", path=out_dir)
    return saved


def log_to_stderr_by_default() -> None:
    """Progress reaches the user from Python as from the CLI: where logging is not configured
    at all, the ``nerbilstm`` logger gets a stderr handler at INFO (configured logging wins)."""
    logger = logging.getLogger("nerbilstm")
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def prepare_process(cfg: TrainConfig, ctx: Context) -> None:
    """Check the recipe (ConfigError), then set torch's threads and seed every RNG."""
    cfg.validate()
    if cfg.tensorboard and ctx.is_main:
        require_tensorboard()
    if cfg.amp == "bf16" and ctx.device.type != "cuda":
        raise ConfigError("{amp} bf16 needs a CUDA device ({device} cuda)", ("amp", "device"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def scan_training_data(sentences, min_word_count: int) -> TrainingData:
    data = scan(sentences, min_word_count)
    if data.n_sentences == 0:
        raise DataError("no training sentences")
    return data


def class_weights(counts: Counter, labels: Sequence[str]) -> torch.Tensor:
    """The original's weights n / (k * count_c) over the training tag counts -> (K,)."""
    n, k = sum(counts.values()), len(labels)
    return torch.tensor([n / (k * counts[c]) if counts[c] else 0.0 for c in labels], dtype=torch.float32)


def make_model(train_sents, data: TrainingData, model_config: ModelConfig, cfg: TrainConfig, pretrained,
               init_from: str | Path | None, saved: ResumePoint | None) -> tuple[BiLSTMTagger, Vocab, ModelConfig]:
    """The model to train: the resumed run's (weights restored later, by restore_run), or
    build_tagger's; its class weights set from the training tag counts (--class-weighting)."""
    if saved is not None:
        vocab = Vocab.from_dict(saved.state["vocab"])
        model = BiLSTMTagger(model_config, len(vocab.words), len(vocab.chars), vocab.labels)
    else:
        model, vocab, model_config = build_tagger(train_sents, data.vocab, model_config, cfg, pretrained, init_from)
    balanced = cfg.class_weighting == "balanced"
    model.class_weights.copy_(class_weights(data.tag_counts, vocab.labels) if balanced
                              else torch.ones(len(vocab.labels)))
    return model, vocab, model_config


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


def build_tagger(train_sents, vocab: Vocab, model_config: ModelConfig, cfg: TrainConfig, pretrained,
                 init_from: str | Path | None) -> tuple[BiLSTMTagger, Vocab, ModelConfig]:
    """A fresh model (``vocab`` from the training data, word table from the pretrained vectors),
    or one that starts from a trained model's weights and vocabulary (``init_from``).
    ``model_config`` is left as it is: the model's own config is returned."""
    if init_from is not None:
        base = Tagger.load(init_from, pretrained=None)
        vocab = base.vocab
        model_config = inherit_architecture(base.model.config, model_config, init_from)
        check_labels(train_sents, vocab, "training")
        model = BiLSTMTagger(model_config, len(vocab.words), len(vocab.chars), vocab.labels)
        missing, _ = model.load_state_dict(base.model.state_dict(), strict=False)
        log.info("initialised from %s (new: %s)", init_from, ", ".join(missing) or "nothing")
        return model, vocab, model_config
    model_config = replace(model_config, word_dim=pretrained.dim)
    model = BiLSTMTagger(model_config, len(vocab.words), len(vocab.chars), vocab.labels)
    n_found = init_word_vectors(model, vocab, pretrained, cfg.seed)
    log.info("vocabulary: %d words (%d with pretrained vectors), %d chars, %d labels",
             len(vocab.words) - 2, n_found, len(vocab.chars) - 2, len(vocab.labels))
    return model, vocab, model_config


def inherit_architecture(base: ModelConfig, wanted: ModelConfig, init_from: str | Path) -> ModelConfig:
    """``base`` (the config of the model to start from) with the decoder, LSTM backend and
    constraints of ``wanted``. A field of ``wanted`` counts as given when it differs from the
    ModelConfig default (on the command line: a flag typed with a value other than its default);
    a given architecture field that differs from ``base`` is a ConfigError, not silently dropped."""
    defaults = ModelConfig()
    for f in fields(ModelConfig):
        given, have = getattr(wanted, f.name), getattr(base, f.name)
        if f.name not in CHANGEABLE_ON_INIT and given != getattr(defaults, f.name) and given != have:
            template = ("{%s} {given} differs from the model of {init_from} ({path}), which has {have}; "
                        "only {decoder}, {lstm_backend} and {constrained} can change") % f.name
            raise ConfigError(template, (f.name, "init_from", *CHANGEABLE_ON_INIT), given=given, have=have,
                              path=str(init_from))
    return replace(base, **{name: getattr(wanted, name) for name in CHANGEABLE_ON_INIT})


def start_run(out_dir: Path, ctx: Context, model: BiLSTMTagger, vocab: Vocab, model_config: ModelConfig,
              cfg: TrainConfig, pretrained, data_info: dict | None, progress: bool | None,
              saved: ResumePoint | None) -> Run:
    """Place the model (DDP with several processes), make its optimizer and schedule, and
    continue from ``saved`` if given; a fresh run starts a fresh training log."""
    model.to(ctx.device)
    net = model
    if ctx.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg)
    run = Run(out_dir, ctx, cfg, model, net, vocab, Tagger(model, vocab, {}, pretrained), pretrained, optimizer,
              torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay),
              run_config={"run_id": saved.state.get("run_id") if saved else new_run_id(),
                          "model": asdict(model_config), "training": asdict(cfg), "vocab": vocab.to_dict(),
                          "data": data_info or {}},
              show_bar=ctx.is_main and (sys.stderr.isatty() if progress is None else progress))
    if saved is not None:
        restore_run(run, saved)
    if cfg.tensorboard and ctx.is_main:
        run.tensorboard = TensorBoardLog(cfg.tensorboard)
    return run


def restore_run(run: Run, saved: ResumePoint) -> None:
    """Weights, best and averaged weights, optimizer, schedule, progress and RNGs from ``saved``."""
    state, tensors = saved.state, saved.tensors
    run.model.load_state_dict(prefixed(tensors, "model."))
    run.best_state = prefixed(tensors, "best.") or None
    run.average = prefixed(tensors, "avg.") or None
    restore_optimizer(run.optimizer, state, tensors)
    run.scheduler.load_state_dict(state["scheduler"])
    run.progress = Progress(**{"stale_base": state["progress"]["best_f1"], **state["progress"]})  # before min_gain
    set_rng_state(state["rng"], tensors["rng.torch"])
    log.info("resuming at epoch %d, batch %d", run.progress.epoch, run.progress.step)


def batch_source(train_sents, vocab: Vocab, cfg: TrainConfig, data: TrainingData):
    """Where each epoch's batches come from: all sentences in memory, or streamed (--stream-chunk);
    sentences with rare entity types repeated with --repeat-threshold (logged in one line)."""
    repeat = None
    if cfg.repeat_threshold > 0:
        repeat = RepeatFactors(data.type_sets, cfg.repeat_threshold)
        log.info("%s", repeat.describe())
    if cfg.stream_chunk:
        return StreamedBatches(train_sents, vocab, cfg.batch_size, cfg.seed, cfg.stream_chunk, data.n_sentences,
                               repeat)
    return InMemoryBatches(train_sents, vocab, cfg.batch_size, cfg.seed, repeat)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam, with the fused kernel where torch has one: a step is one pass over all the
    parameters (on 2 CPU cores 1.3 ms instead of 7.4 for the default model's 29k-word table)."""
    device = next(model.parameters()).device.type
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device in ("cpu", "cuda"))


# ----------------------------------------------------------------------------- one epoch


def run_epoch(run: Run, source) -> Epoch:
    """Train on the epoch's batches, from the one a resumed run stopped at. Ctrl+C writes a
    checkpoint and raises TrainingInterrupted."""
    state, ctx, cfg = run.progress, run.ctx, run.cfg
    started = time.perf_counter()
    run.model.train()
    # Every rank takes its slice of each global batch; all ranks must run the same steps.
    batches = islice(source.epoch(state.epoch, min_batch=ctx.world_size), state.step, None)
    total = source.count_batches(state.epoch, ctx.world_size) if run.show_bar else None
    bar = _progress(total, f"epoch {state.epoch}/{cfg.epochs}", run.show_bar, initial=state.step)
    tokens = 0
    try:
        for items in batches:
            tokens += train_step(run, items)
            if bar is not None:
                bar.set_postfix(loss=f"{state.epoch_loss / (state.step * cfg.batch_size):.3f}",
                                tok_s=f"{tokens / (time.perf_counter() - started):.0f}", refresh=False)
                bar.update()
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                run.checkpoint()
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        run.checkpoint()
        raise TrainingInterrupted(f"interrupted at epoch {state.epoch}, batch {state.step}; checkpoint "
                                  f"saved: continue with --resume", path=run.out_dir) from None
    if bar is not None:
        bar.close()
    return Epoch(started, time.perf_counter() - started, tokens)


def train_step(run: Run, items) -> int:
    """One optimizer step on a global batch (this rank's slice of it) -> tokens in the batch."""
    state, ctx, cfg = run.progress, run.ctx, run.cfg
    batch = collate(items[ctx.rank :: ctx.world_size]).to(ctx.device)
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
        # DDP averages gradients over ranks: scaling by world_size makes the step
        # the gradient of the mean loss over the whole global batch.
        loss = run.net(batch, cfg.word_dropout).sum() * ctx.world_size / len(items)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip)
    run.optimizer.step()
    n_tokens = sum(len(e.words) for e in items)
    state.epoch_loss += loss.item() * len(items) / ctx.world_size  # rank 0's share
    state.epoch_tokens += n_tokens
    state.step += 1
    return n_tokens


def end_epoch(run: Run, epoch: Epoch, dev_sents, n_train: int) -> bool:
    """Decay the learning rate; rank 0 evaluates on dev, logs, keeps the best weights and writes
    a checkpoint. -> True when every rank is to stop (no dev gain for ``patience`` epochs)."""
    run.scheduler.step()
    state = run.progress
    if not run.ctx.is_main:
        stop = share_flag(run.ctx, False)
        state.next_epoch()
        return stop
    trained, dev_raw = average_weights(run, dev_sents)
    dev = evaluate_tagger(run.tagger, dev_sents) if dev_sents else {}
    record = epoch_record(run, epoch, dev, dev_raw, n_train)
    log_epoch(run, record, dev, epoch.train_seconds)
    keep_best(run, dev.get("entity_f1", -record["train_loss"]))
    if trained is not None:
        run.model.load_state_dict(trained)
    state.next_epoch()
    run.checkpoint()
    return share_flag(run.ctx, state.stale >= run.cfg.patience)


def average_weights(run: Run, dev_sents) -> tuple[dict | None, dict | None]:
    """From epoch ``average_from`` on: score the epoch's own weights, fold them into the running
    average and put the average in the model. -> (the epoch's weights to resume training from,
    their dev metrics), or (None, None) when not averaging."""
    cfg, state = run.cfg, run.progress
    if not (cfg.average_from and state.epoch >= cfg.average_from):
        return None, None
    # The epoch's own weights are scored too, so that the log shows what averaging gains.
    dev_raw = evaluate_tagger(run.tagger, dev_sents) if dev_sents else {}
    state.averaged += 1
    run.average = running_average(run.average, run.model.state_dict(), state.averaged)
    trained = copy.deepcopy(run.model.state_dict())
    run.model.load_state_dict(run.average)  # evaluated, and kept if best; training resumes from `trained`
    return trained, dev_raw


def running_average(average: dict | None, weights: dict, count: int) -> dict:
    """Fold the count-th weights into the running mean of the first count - 1 (in place).
    Non-float entries (none in our tagger, but buffers may be) keep the latest value."""
    if average is None or count == 1:
        return {k: v.detach().clone() for k, v in weights.items()}
    for k, v in weights.items():
        if v.is_floating_point():
            average[k].add_(v.detach() - average[k], alpha=1.0 / count)
        else:
            average[k].copy_(v)
    return average


def epoch_record(run: Run, epoch: Epoch, dev: dict, dev_raw: dict | None, n_train: int) -> dict:
    """The epoch's line of train_log.jsonl (``dev_raw``: the unaveraged weights' dev metrics)."""
    state = run.progress
    record = {"run_id": run.run_config["run_id"], "epoch": state.epoch, "train_loss": state.epoch_loss * run.ctx.world_size / n_train,
              "lr": run.optimizer.param_groups[0]["lr"], "train_seconds": round(epoch.train_seconds, 2),
              "tokens_per_s": round(epoch.tokens / epoch.train_seconds, 1),
              "elapsed_seconds": round(time.perf_counter() - run.started, 2)}
    record.update({f"dev_{k}": dev[k] for k in HEADLINE if k in dev})
    if dev_raw is not None:
        record["averaged_epochs"] = state.averaged
        record.update({f"dev_unaveraged_{k}": dev_raw[k] for k in HEADLINE if k in dev_raw})
    record["epoch_seconds"] = round(time.perf_counter() - epoch.started, 2)  # training + dev evaluation
    return record


def log_epoch(run: Run, record: dict, dev: dict, train_seconds: float) -> None:
    run.progress.history.append(record)
    with open(run.out_dir / TRAIN_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    if run.tensorboard is not None:
        run.tensorboard.epoch(record)
    log.info("epoch %d: loss %.4f, dev entity F1 %.4f, token macro-F1 %.4f, %.0f tok/s, %.0f s",
             record["epoch"], record["train_loss"], dev.get("entity_f1", float("nan")),
             dev.get("token_macro_f1", float("nan")), record["tokens_per_s"], train_seconds)


def keep_best(run: Run, f1: float) -> None:
    """Keep the model's weights if ``f1`` beats the best so far. Count a stale epoch unless
    ``f1`` beats the last epoch that reset the count by more than --min-gain."""
    state = run.progress
    if f1 > state.best_f1:
        state.best_f1, state.best_epoch = f1, state.epoch
        run.best_state = copy.deepcopy(run.model.state_dict())
    if f1 > state.stale_base + run.cfg.min_gain:
        state.stale, state.stale_base = 0, f1
    else:
        state.stale += 1
        if state.stale >= run.cfg.patience:
            log.info("no dev gain for %d epochs: stopping after epoch %d", state.stale, state.epoch)


# ----------------------------------------------------------------------------- after the last epoch


def finish_run(run: Run, dev_sents, test_sents, tag_counts: Counter, plots: bool) -> dict:
    """Check that the ranks agree, put the best weights back, score them on dev and test and
    write the model directory (and its plots). -> the metrics (rank 0; others {})."""
    checksums = gather_checksums(run.ctx, run.model)
    if not run.ctx.is_main:
        return {}
    if len(set(checksums)) != 1:
        raise RuntimeError(f"ranks ended with different weights: {checksums}")
    run.model.load_state_dict(run.best_state)
    history = run.progress.history
    metrics = {"best_epoch": run.progress.best_epoch, "epochs_run": len(history), "world_size": run.ctx.world_size,
               "rank_weight_checksums": checksums,
               "train_wall_seconds": round(sum(r["epoch_seconds"] for r in history), 1)}
    dev_pred = None
    if dev_sents:
        metrics["dev"], dev_pred = evaluate_tagger(run.tagger, dev_sents, return_predictions=True)
    if test_sents:
        metrics["test"] = evaluate_tagger(run.tagger, test_sents)
    write_model(run, metrics, example_sentence(dev_sents or []))
    if run.tensorboard is not None:
        run.tensorboard.finish(run.run_config, metrics)
    if plots:
        from nerbilstm.plots import write_run_plots

        dev_gold = [s.tags for s in dev_sents] if dev_sents else None
        write_run_plots(run.out_dir, history, dev_gold, dev_pred, label_set(run.vocab.labels, dev_gold or []),
                        tag_counts)
    return metrics


def example_sentence(sentences) -> str | None:
    """The first sentence with the most entity types, its tokens joined by spaces: the example
    text of the model's web page (None without a sentence holding an entity)."""
    best, most = None, 0
    for s in sentences:
        n = len({entity_type(t) for t in s.tags} - {None})
        if n > most:
            best, most = " ".join(s.tokens), n
    return best


def write_model(run: Run, metrics: dict, example: str | None = None) -> None:
    """The model directory (weights, config.json with the page's ``example`` text, metrics.json,
    train.toml: the effective configuration, see config_file.py); the checkpoint is removed."""
    pretrained = run.pretrained
    # config.json names files, never this machine's folders (the checkpoint, removed now, kept them).
    data = {split: dict(part, path=Path(part["path"]).name) if isinstance(part, dict) and part.get("path") else part
            for split, part in run.run_config["data"].items()}
    source = pretrained.source if pretrained.source == GLOVE_PACKAGE else Path(pretrained.source).name
    config = dict(run.run_config, data=data, nerbilstm_version=__version__, labels=run.vocab.labels,
                  embeddings={"source": source, "checksum": pretrained.checksum, "dim": pretrained.dim},
                  metrics={k: _headline(v) if isinstance(v, dict) else v for k, v in metrics.items()},
                  history=run.progress.history, example=example)
    save_model_dir(run.out_dir, run.model.state_dict(), config)
    write_config(run.out_dir / "train.toml", run_configs(run.data_config, run.run_config["model"],
                                                         run.run_config["training"]))
    atomic_write_json(run.out_dir / "metrics.json", metrics)
    remove_checkpoint(run.out_dir)


def _headline(metrics: dict) -> dict:
    keep = ("entity_f1", "entity_precision", "entity_recall", "entity_f1_strict", "token_macro_f1",
            "seed_batch_macro_f1", "n_sentences", "n_tokens")
    out = {k: metrics[k] for k in keep if k in metrics}
    if "per_type" in metrics:
        out["per_type_f1"] = {t: v["f1"] for t, v in metrics["per_type"].items()}
    return out


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


# ----------------------------------------------------------------------------- from files (nerbilstm train)


def train_files(data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig, out_dir: str | Path,
                *, resume: bool = False, overwrite: bool = False, init_from: str | Path | None = None,
                distributed: bool = False, progress: bool | None = None, plots: bool = True) -> dict:
    """What ``nerbilstm train`` does: settle the run directory (run_dir.py) before reading any
    data (a resumed run takes its data options from its checkpoint), read the corpus files,
    then ``train``. -> the metrics (rank 0; other ranks of a distributed run get {})."""
    from nerbilstm.data.dataset import load_from_config
    from nerbilstm.distributed import teardown
    from nerbilstm.run_dir import absolute_paths, resume_point

    out_dir = Path(out_dir)
    model_config.validate()
    train_config.validate()
    if resume:
        _, data_config = resume_point(out_dir, data_config)
    else:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone touches the directory
            claim_out_dir(out_dir, overwrite)
        data_config = absolute_paths(data_config)
    data = load_from_config(data_config, streamed=bool(train_config.stream_chunk))
    log.info("sentences: %s train, %d dev, %d test",
             "streamed" if train_config.stream_chunk else len(data.train), len(data.dev), len(data.test))
    ctx = setup(train_config.device, distributed)
    if not ctx.is_main:
        logging.getLogger("nerbilstm").setLevel(logging.WARNING)  # rank 0 alone logs
    try:
        return train(data.train, data.dev, model_config, train_config, out_dir, test_sents=data.test,
                     init_from=init_from, data_info=data.info, progress=progress, plots=plots, resume=resume,
                     ctx=ctx, overwrite=True, data_config=data_config)
    finally:
        teardown(ctx)
