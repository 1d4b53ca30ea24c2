"""Speed benchmark: our BiLSTM and CRF against ``torch.nn.LSTM`` and ``pytorch-crf``.

Every figure is measured in one process, on the same configuration and data, ours beside
the reference, and printed as ONE JSON object (stdout, and ``--out FILE`` if given).
Ratios are reference time / our time: above 1 means we are faster.

Measurements (one function each):

* ``measure_train``: full tagger training throughput, tokens/s of forward + backward +
  gradient clipping + Adam step, over length-bucketed batches as ``nerbilstm train`` makes
  them (collation excluded). The reference is our tagger's features and emission layer
  around ``torch.nn.LSTM`` (packed sequences) and ``torchcrf.CRF`` (see ReferenceTagger),
  starting from the very same weights.
* ``measure_inference``: sentences/s of the tagger (emissions + Viterbi), batches of 256.
* ``measure_end_to_end``: the shipped model (``Tagger.load``) tagging raw test sentences:
  tokenization, tagging with confidences, entity building. No reference; absolute only (and
  one text per call against the batched path).
* ``measure_crf``: CRF alone, NLL forward + backward and Viterbi, random emissions, full
  and ragged masks, at each of ``crf_lengths``.
* ``measure_lstm``: the BiLSTM alone, forward + backward, GMB-like ragged lengths.
* ``measure_char_cnn``: the char CNN as it trains (forward + backward, dropout on) on the
  training batches, against ``nn.Conv1d`` over the words padded to the batch's longest.
* ``measure_train_rss``: peak RSS of training steps, one fresh subprocess per variant so
  the peaks do not mix (``ru_maxrss``; the children run after all the timings).

Timing (``median_time``): warm-up calls first, then repeats interleaved ours/reference
(order alternating each round), so machine noise hits both alike; medians are reported.

Data: GMB (``--data`` or $NERBILSTM_DATA, read with ``read_corpus``, canonical split: the
train split for training, the test split for inference); without it, synthetic sentences
with GMB's length distribution (the JSON says ``"data": "synthetic"``).

The result is the LAST line of standard output. Needs the dev extra (``pytorch-crf``):
``pip install -e '.[dev]'``.

    python benchmarks/speed.py --threads 2 --data ner_dataset.csv --out bench.json
    python benchmarks/speed.py --threads 1 --quick    # tiny sizes: a smoke test
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Callable, Sequence

import torch
import torchcrf
from torch import Tensor, nn

from nerbilstm.config import ModelConfig, TrainConfig
from nerbilstm.data.batching import Batch, collate, encode, length_buckets
from nerbilstm.data.dataset import split_canonical
from nerbilstm.data.readers import Sentence, read_corpus
from nerbilstm.data.vocab import Vocab
from nerbilstm.errors import DataError, NerError
from nerbilstm.model.chars import CharCNN
from nerbilstm.model.crf import CRF
from nerbilstm.model.lstm import BiLSTM
from nerbilstm.model.tagger import BiLSTMTagger
from nerbilstm.train import make_optimizer

log = logging.getLogger("benchmarks.speed")

VARIANTS = ("ours", "reference")

# The 17 GMB tags (O and B-/I- of 8 types), for synthetic data.
GMB_TYPES = ("art", "eve", "geo", "gpe", "nat", "org", "per", "tim")
GMB_LABELS = ["O"] + [f"{p}-{t}" for t in GMB_TYPES for p in "BI"]
GMB_MEAN_LENGTH, GMB_MAX_LENGTH = 22, 104


@dataclass
class BenchConfig:
    """Sizes of every measurement. ``model``: the tagger every speed figure is measured on, a
    2-layer BiLSTM of hidden size 256 (input 50 word + 50 char + 8 case = 108), larger than
    the shipped model; constrained=False as pytorch-crf has no constraints, so both sides
    compute the same function."""

    model: ModelConfig = field(default_factory=lambda: ModelConfig(hidden_size=256, layers=2, constrained=False))
    batch_size: int = 32  # training batch
    train_batches: int = 8  # batches per timed training call
    vocab_sentences: int = 8000  # train-split sentences the vocabulary is built from
    infer_batch: int = 256
    infer_sentences: int = 1024  # test-split sentences per timed inference call
    crf_tags: int = 17
    crf_batch: int = 32
    crf_lengths: tuple[int, ...] = (25, 100)
    lstm_batch: int = 32
    repeats: int = 7
    warmup: int = 1

    @property
    def train_sentences(self) -> int:
        return self.batch_size * self.train_batches


def lstm_input_size(mc: ModelConfig) -> int:
    """The tagger's LSTM input: word + char CNN + case features."""
    return mc.word_dim + (mc.char_filters if mc.char_dim > 0 else 0) + mc.case_dim


def quick_config() -> BenchConfig:
    """Tiny sizes for smoke tests (CRF sizes unchanged: they are cheap)."""
    model = ModelConfig(word_dim=16, char_dim=8, char_filters=16, case_dim=8, hidden_size=16, layers=2,
                        constrained=False)
    return BenchConfig(model=model, batch_size=4, train_batches=2, vocab_sentences=64, infer_batch=8,
                       infer_sentences=16, lstm_batch=4, repeats=2, warmup=1)


# ----------------------------------------------------------------------------- timing


def median_time(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time (seconds) of each function, by name.

    Each function is first called ``warmup`` times untimed. Then ``repeats`` rounds call every
    function once, interleaved, in an order reversed every other round, so that drifting
    machine load hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, repeats)):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def compare(ours: Callable[[], object], reference: Callable[[], object], cfg: BenchConfig) -> tuple[float, float]:
    """(our median seconds, the reference's), measured interleaved."""
    t = median_time({"ours": ours, "reference": reference}, cfg.repeats, cfg.warmup)
    return t["ours"], t["reference"]


def timing_fields(prefix: str, ours_s: float, ref_s: float, suffix: str = "", work: float | None = None,
                  unit: str = "tokens") -> dict:
    """JSON fields of one comparison: ``{prefix}_ms{suffix}``, ``{prefix}_ms_reference{suffix}``,
    ``{prefix}_speedup{suffix}`` (reference time / ours) and, given the work done per call,
    ``{prefix}_{unit}_per_s{suffix}`` for both."""
    out = {f"{prefix}_ms{suffix}": _r(ours_s * 1e3), f"{prefix}_ms_reference{suffix}": _r(ref_s * 1e3),
           f"{prefix}_speedup{suffix}": _r(ref_s / ours_s)}
    if work is not None:
        out[f"{prefix}_{unit}_per_s{suffix}"] = _r(work / ours_s, 1)
        out[f"{prefix}_{unit}_per_s_reference{suffix}"] = _r(work / ref_s, 1)
    return out


def _r(x: float, digits: int = 3) -> float:
    return round(float(x), digits)


# ----------------------------------------------------------------------------- reference model


class PackedLSTM(nn.Module):
    """``torch.nn.LSTM`` (bidirectional, batch first) behind our BiLSTM's interface:
    forward(x (B,T,D), mask (B,T) bool) -> (B,T,2H), via packed sequences."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=True,
                           dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class ReferenceTagger(BiLSTMTagger):
    """Our tagger's features (word, char CNN, case) and emission layer around the references:
    ``torch.nn.LSTM`` (PackedLSTM) and ``torchcrf.CRF``. ``loss`` and ``decode`` mirror ours
    (decode returns pytorch-crf's lists of tag ids)."""

    def __init__(self, config: ModelConfig, n_words: int, n_chars: int, labels: list[str]):
        super().__init__(config, n_words, n_chars, labels)
        in_dim = self.lstm.layers[0].input_size
        self.lstm = PackedLSTM(in_dim, config.hidden_size, config.layers, config.dropout)
        self.crf = torchcrf.CRF(len(labels), batch_first=True)

    def emissions(self, batch: Batch, word_dropout: float = 0.0) -> Tensor:
        """The usual way round nn.LSTM: padded output, dropout, linear layer."""
        x = self.dropout(self.features(batch, word_dropout))
        return self.emission(self.dropout(self.lstm(x, batch.mask)))

    def loss(self, batch: Batch, word_dropout: float = 0.0) -> Tensor:
        return -self.crf(self.emissions(batch, word_dropout), batch.tags, batch.mask, reduction="none")

    def decode(self, batch: Batch, with_marginals: bool = False):
        return self.crf.decode(self.emissions(batch), batch.mask)


def copy_crf(ours: CRF, ref: torchcrf.CRF) -> None:
    """Give pytorch-crf our CRF's scores."""
    with torch.no_grad():
        ref.transitions.copy_(ours.transitions)
        ref.start_transitions.copy_(ours.start_scores)
        ref.end_transitions.copy_(ours.end_scores)


def build_models(cfg: BenchConfig, vocab: Vocab, variants: Sequence[str] = VARIANTS) -> dict[str, nn.Module]:
    """Our tagger and/or the reference tagger, with identical weights where both are built."""
    torch.manual_seed(0)
    sizes = (cfg.model, len(vocab.words), len(vocab.chars), vocab.labels)
    models: dict[str, nn.Module] = {}
    if "ours" in variants:
        models["ours"] = BiLSTMTagger(*sizes)
    if "reference" in variants:
        ref = models["reference"] = ReferenceTagger(*sizes)
        if "ours" in models:
            ours = models["ours"]
            shared = {k: v for k, v in ours.state_dict().items() if not k.startswith(("lstm.", "crf."))}
            ref.load_state_dict(shared, strict=False)
            ours.lstm.copy_from_torch(ref.lstm.rnn)
            copy_crf(ours.crf, ref.crf)
    return models


# ----------------------------------------------------------------------------- data


@dataclass
class Workload:
    """The data every measurement runs on, encoded and collated once."""

    source: str  # "gmb" (or the file's format) or "synthetic"
    path: str | None
    vocab: Vocab
    train_batches: list[Batch]
    infer_batches: list[Batch]
    test_sentences: list[Sentence]
    train_lengths: list[int]  # of all the train-split sentences read

    @property
    def train_tokens(self) -> int:
        return sum(int(b.mask.sum()) for b in self.train_batches)


def synthetic_sentences(n: int, seed: int = 0) -> list[Sentence]:
    """Random sentences with GMB's length distribution (gamma, mean 22, clipped to 1..104),
    words from a made-up lexicon (some capitalised) and GMB's 17 tags (~85% O)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lexicon = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    lexicon += [",", ".", "the", "of", "'s", "%", "1990"]
    out = []
    for k in range(n):
        length = min(GMB_MAX_LENGTH, max(1, round(rng.gammavariate(8.0, GMB_MEAN_LENGTH / 8.0))))
        tokens, tags = [], []
        while len(tokens) < length:
            if rng.random() < 0.15:
                kind = rng.choice(GMB_TYPES)
                span = min(rng.randint(1, 3), length - len(tokens))
                tokens += [rng.choice(lexicon).capitalize() for _ in range(span)]
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (span - 1)
            else:
                tokens.append(rng.choice(lexicon))
                tags.append("O")
        out.append(Sentence(tokens, tags, line=k + 1))
    return out


def load_workload(data_path: str | None, cfg: BenchConfig) -> Workload:
    """Read (or make up) the sentences, build the vocabulary, collate the batches."""
    test_needed = cfg.infer_sentences
    n_read = max(math.ceil(max(cfg.vocab_sentences, cfg.train_sentences) * 10 / 8) + 10, test_needed * 10 + 10)
    if data_path:
        corpus = read_corpus(data_path, max_sentences=n_read)
        sentences, source = corpus.sentences, corpus.format
        log.info("read %d sentences from %s", len(sentences), data_path)
    else:
        sentences, source = synthetic_sentences(n_read), "synthetic"
        log.info("no data given: %d synthetic sentences with GMB's length distribution", len(sentences))
    train, _, test = split_canonical(sentences)
    if len(train) < cfg.train_sentences or not test:
        raise DataError(f"too few sentences for the benchmark ({len(sentences)} read)", path=data_path)
    known = train[: max(cfg.vocab_sentences, cfg.train_sentences)]
    vocab = Vocab.build([s.tokens for s in known], [s.tags for s in known])
    train_items = [encode(s.tokens, vocab, s.tags) for s in train[: cfg.train_sentences]]
    # As nerbilstm train batches: length buckets in shuffled order.
    buckets = length_buckets([len(e.words) for e in train_items], cfg.batch_size, shuffle=True, seed=0)
    test = test[:test_needed]
    test_items = [encode(s.tokens, vocab) for s in test]
    # As Tagger batches: length buckets in order.
    infer = length_buckets([len(e.words) for e in test_items], cfg.infer_batch, shuffle=False)
    return Workload(source, str(data_path) if data_path else None, vocab,
                    [collate([train_items[i] for i in b]) for b in buckets],
                    [collate([test_items[i] for i in b]) for b in infer], test, [len(s) for s in train])


# ----------------------------------------------------------------------------- measurements


def train_pass(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Sequence[Batch],
               train_cfg: TrainConfig) -> None:
    """One training step per batch, as nerbilstm train does them."""
    model.train()
    for batch in batches:
        loss = model.loss(batch, train_cfg.word_dropout).sum() / batch.mask.shape[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip)
        optimizer.step()


def _trainer(model: nn.Module, batches: Sequence[Batch]) -> Callable[[], None]:
    train_cfg = TrainConfig()
    optimizer = make_optimizer(model, train_cfg)  # the one nerbilstm train uses, for both models
    return lambda: train_pass(model, optimizer, batches, train_cfg)


def measure_train(work: Workload, cfg: BenchConfig) -> tuple[dict, dict]:
    """Training throughput of the full tagger, ours against the reference.
    -> (timing fields, agreement check: the two losses on the first batch, no dropout)."""
    models = build_models(cfg, work.vocab)
    with torch.no_grad():
        first = work.train_batches[0]
        losses = [models[v].eval().loss(first) for v in VARIANTS]
        diff = float((losses[0] - losses[1]).abs().max())
    ours, ref = compare(_trainer(models["ours"], work.train_batches),
                        _trainer(models["reference"], work.train_batches), cfg)
    out = timing_fields("train", ours, ref, work=work.train_tokens)
    out["train_ms_per_batch"] = _r(ours * 1e3 / len(work.train_batches))
    out["train_ms_per_batch_reference"] = _r(ref * 1e3 / len(work.train_batches))
    return out, {"train_loss_max_abs_diff": diff}


def measure_inference(work: Workload, cfg: BenchConfig) -> dict:
    """Tagger inference (emissions + Viterbi) in batches of infer_batch, sentences/s."""
    models = build_models(cfg, work.vocab)

    def decoder(model: nn.Module) -> Callable[[], None]:
        model.eval()

        @torch.inference_mode()
        def run() -> None:
            for batch in work.infer_batches:
                model.decode(batch)

        return run

    ours, ref = compare(decoder(models["ours"]), decoder(models["reference"]), cfg)
    n = sum(b.mask.shape[0] for b in work.infer_batches)
    out = timing_fields("infer", ours, ref, work=n, unit="sentences")
    out.update(timing_fields("infer", ours, ref, work=sum(int(b.mask.sum()) for b in work.infer_batches)))
    return out


def measure_end_to_end(work: Workload, cfg: BenchConfig, model_dir: str | None) -> dict:
    """The shipped model (or model_dir) on raw text: tokenize, tag with confidences, build
    entities, via Tagger.load() and tagger(texts). Skipped with a note without a model."""
    from nerbilstm.predict import DEFAULT_MODEL_DIR, Tagger

    directory = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    if not (directory / "config.json").is_file():
        return {"e2e_note": f"skipped: no model in {directory} (give --model DIR)"}
    tagger = Tagger.load(directory)
    texts = [" ".join(s.tokens) for s in work.test_sentences]
    tokens = sum(len(doc["tokens"]) for doc in tagger(texts))
    seconds = median_time({"e2e": lambda: tagger(texts)}, cfg.repeats, cfg.warmup)["e2e"]
    mc = tagger.model.config
    return {"e2e_sentences_per_s": _r(len(texts) / seconds, 1), "e2e_tokens_per_s": _r(tokens / seconds, 1),
            "e2e_ms": _r(seconds * 1e3), "e2e_sentences": len(texts), **measure_one_text(tagger, texts, cfg),
            "e2e_model": {"dir": str(directory), "hidden_size": mc.hidden_size, "layers": mc.layers,
                          "decoder": mc.decoder, "n_words": len(tagger.vocab.words),
                          "pretrained": tagger.pretrained is not None}}


def measure_one_text(tagger, texts: Sequence[str], cfg: BenchConfig, calls: int = 200) -> dict:
    """One text per call, as a web service calls ``tagger(text)``: the test sentence closest to
    20 tokens, ``calls`` calls per timing, through the numpy decoder of one-text calls against
    the batched path (``SINGLE_MAX_SENTENCES`` = 0) in the same process."""
    import nerbilstm.predict as predict

    text = min(texts, key=lambda t: (abs(len(t.split()) - 20), t))
    limit = predict.SINGLE_MAX_SENTENCES

    def run(single: bool) -> Callable[[], None]:
        def calls_() -> None:
            predict.SINGLE_MAX_SENTENCES = limit if single else 0
            try:
                for _ in range(calls):
                    tagger(text)
            finally:
                predict.SINGLE_MAX_SENTENCES = limit
        return calls_

    ours, ref = compare(run(True), run(False), cfg)
    out = timing_fields("one_text", ours / calls, ref / calls)
    out.update({"one_text_calls_per_s": _r(calls / ours, 1), "one_text_calls_per_s_batched_path": _r(calls / ref, 1),
                "one_text_tokens": len(text.split())})
    return out


def _mask(lengths: Tensor, T: int) -> Tensor:
    return torch.arange(T)[None, :] < lengths[:, None]


def measure_crf_case(cfg: BenchConfig, T: int, ragged: bool) -> tuple[dict, dict]:
    """CRF alone at length T: NLL forward + backward and Viterbi, ours vs pytorch-crf with the
    same scores and random emissions. -> (timing fields, agreement checks)."""
    K, B = cfg.crf_tags, cfg.crf_batch
    gen = torch.Generator().manual_seed(T)
    lengths = torch.randint(1, T + 1, (B,), generator=gen) if ragged else torch.full((B,), T)
    lengths[0] = T
    mask = _mask(lengths, T)
    em = torch.randn(B, T, K, generator=gen).requires_grad_()
    tags = torch.randint(0, K, (B, T), generator=gen)
    ours = CRF(K)
    ref = torchcrf.CRF(K, batch_first=True)
    copy_crf(ours, ref)

    def nll(fn, module):
        def run():
            em.grad = None
            module.zero_grad(set_to_none=True)
            fn().backward()
        return run

    suffix = f"_len{T}" + ("_ragged" if ragged else "")
    out = timing_fields("crf_nll", *compare(nll(lambda: ours.neg_log_likelihood(em, tags, mask).sum(), ours),
                                           nll(lambda: -ref(em, tags, mask, reduction="sum"), ref), cfg),
                        suffix=suffix)
    x = em.detach()
    no_grad = torch.inference_mode()  # pytorch-crf's decode would otherwise record a graph
    out.update(timing_fields("viterbi", *compare(no_grad(lambda: ours.viterbi_decode(x, mask)),
                                                no_grad(lambda: ref.decode(x, mask)), cfg), suffix=suffix))
    with torch.no_grad():
        diff = (ours.neg_log_likelihood(x, tags, mask) + ref(x, tags, mask, reduction="none")).abs().max()
        paths = ours.viterbi_decode(x, mask)[0]
        same = [p[:n] for p, n in zip(paths.tolist(), lengths.tolist())] == ref.decode(x, mask)
    return out, {f"crf_nll_max_abs_diff{suffix}": float(diff), f"viterbi_paths_equal{suffix}": same}


def measure_crf(cfg: BenchConfig) -> tuple[dict, dict]:
    """measure_crf_case at every length, full and ragged masks."""
    out, checks = {}, {}
    for T in cfg.crf_lengths:
        for ragged in (False, True):
            fields_, checks_ = measure_crf_case(cfg, T, ragged)
            out.update(fields_)
            checks.update(checks_)
    return out, checks


def measure_lstm(work: Workload, cfg: BenchConfig) -> tuple[dict, dict]:
    """BiLSTM alone, forward + backward (input gradient too, as the embeddings train), ours vs
    torch.nn.LSTM on packed sequences with the same weights; lengths drawn from the data."""
    mc = cfg.model
    D = lstm_input_size(mc)
    lengths = torch.tensor(random.Random(1).sample(work.train_lengths, cfg.lstm_batch))
    T = int(lengths.max())
    mask = _mask(lengths, T)
    torch.manual_seed(1)
    ref = PackedLSTM(D, mc.hidden_size, mc.layers)
    ours = BiLSTM(D, mc.hidden_size, mc.layers)
    ours.copy_from_torch(ref.rnn)
    x = torch.randn(len(lengths), T, D).requires_grad_()
    grad = torch.randn(len(lengths), T, 2 * mc.hidden_size)

    def step(module: nn.Module) -> Callable[[], None]:
        def run():
            x.grad = None
            module.zero_grad(set_to_none=True)
            (module(x, mask) * grad).sum().backward()
        return run

    ours_s, ref_s = compare(step(ours), step(ref), cfg)
    with torch.no_grad():
        diff = (ours(x, mask) - ref(x, mask)).abs().max()
    out = timing_fields("lstm", ours_s, ref_s, work=int(lengths.sum()))
    return out, {"lstm_max_abs_diff": float(diff)}


def padded_char_features(cnn: CharCNN, flat: Tensor) -> Tensor:
    """The usual char CNN (Ma & Hovy's): nn.Conv1d over every word padded to the batch's longest,
    max over the real positions. flat (N, L) -> (N, filters); the reference of measure_char_cnn."""
    x = cnn.dropout(cnn.embed(flat)).transpose(1, 2)  # (N, C, L)
    feats = cnn.conv(x).masked_fill((flat == 0).unsqueeze(1), float("-inf")).amax(dim=2)
    return torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats))


def measure_char_cnn(work: Workload, cfg: BenchConfig) -> tuple[dict, dict]:
    """The char CNN as it trains (dropout on, forward + backward) on the training batches: ours
    (real characters laid end to end) against the padded convolution, same weights."""
    mc = cfg.model
    torch.manual_seed(2)
    cnn = CharCNN(len(work.vocab.chars), mc.char_dim, mc.char_filters, mc.char_kernel, dropout=mc.dropout / 2).train()
    words = [b.chars.view(-1, b.chars.shape[-1]) for b in work.train_batches]

    def step(features: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def run():
            cnn.zero_grad(set_to_none=True)
            for flat in words:
                features(flat).sum().backward()
        return run

    ours_s, ref_s = compare(step(cnn.convolved_features), step(lambda flat: padded_char_features(cnn, flat)), cfg)
    cnn.eval()
    with torch.enable_grad():
        diff = max(float((cnn.convolved_features(f) - padded_char_features(cnn, f)).abs().max().detach())
                   for f in words)
    return timing_fields("char_cnn", ours_s, ref_s, work=work.train_tokens), {"char_cnn_max_abs_diff": diff}


# ----------------------------------------------------------------------------- peak memory


def _proc_status_mb(key: str) -> float | None:
    """A memory line of /proc/self/status (e.g. VmHWM, VmRSS) in MiB; None where absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB.

    VmHWM where Linux has it: ru_maxrss survives exec, so a child started from a large
    parent would report at least the parent's size; the new address space's VmHWM does not."""
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1 << 20) if sys.platform == "darwin" else maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux); False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _touch_code_paths(model: nn.Module, batch: Batch) -> None:
    """Forward + backward on the batch's first sentence alone, gradients dropped after: pages in
    the library code (and lazy imports) a training step runs, so that the RSS growth measured
    afterwards is the step's data rather than code."""
    values = {f.name: getattr(batch, f.name) for f in dataclass_fields(batch)}
    one = Batch(**{k: v[:1] if isinstance(v, Tensor) else v for k, v in values.items()})
    model.train()
    model.loss(one).sum().backward()
    model.zero_grad(set_to_none=True)
    try:  # the optimizer's first step imports it: modules, not training memory
        import torch._dynamo  # noqa: F401
    except ImportError:
        pass


def rss_child(variant: str, data_path: str | None, quick: bool) -> dict:
    """In a fresh process: build the workload and one model, touch the code paths, then run two
    passes of training steps (the second with the optimizer state in place).
    -> RSS before the steps and the peak during them (the whole run's peak where the peak
    cannot be reset), MiB."""
    cfg = quick_config() if quick else BenchConfig()
    work = load_workload(data_path, cfg)
    model = build_models(cfg, work.vocab, [variant])[variant]
    run = _trainer(model, work.train_batches)
    _touch_code_paths(model, work.train_batches[0])
    before = _proc_status_mb("VmRSS") or peak_rss_mb()
    reset = reset_peak_rss()
    run()
    run()
    return {"rss_before_mb": _r(before, 1), "peak_rss_mb": _r(peak_rss_mb(), 1), "peak_reset": reset}


def measure_train_rss(data_path: str | None, quick: bool) -> dict:
    """Peak RSS of training steps, ours and reference, each in its own fresh subprocess
    (rss_child); train_step_rss_growth_mb is the peak over the RSS just before the pass.

    The two children run at the same time (each one's peak is its own); call this after the
    timings so that they do not disturb any."""
    env = {k: v for k, v in os.environ.items() if k != "NERBILSTM_DATA"}
    args = ["--threads", str(torch.get_num_threads())] + (["--data", data_path] if data_path else [])
    args += ["--quick"] if quick else []
    procs = {v: subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--rss-child", v, *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for v in VARIANTS}
    res = {}
    for variant, proc in procs.items():
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"peak-RSS subprocess ({variant}) failed:\n{stderr[-3000:]}")
        res[variant] = json.loads(stdout.strip().splitlines()[-1])
    out = {}
    for variant, suffix in zip(VARIANTS, ("", "_reference")):
        r = res[variant]
        out[f"train_peak_rss_mb{suffix}"] = r["peak_rss_mb"]
        out[f"train_rss_before_mb{suffix}"] = r["rss_before_mb"]
        out[f"train_step_rss_growth_mb{suffix}"] = _r(r["peak_rss_mb"] - r["rss_before_mb"], 1)
    out["train_peak_rss_ratio"] = _r(out["train_peak_rss_mb_reference"] / out["train_peak_rss_mb"])
    out["train_peak_rss_scope"] = ("two training passes (peak reset after building model and data and "
                                   "one warm-up forward + backward on one sentence)"
                                   if all(r["peak_reset"] for r in res.values()) else "whole subprocess")
    return out


# ----------------------------------------------------------------------------- driver


def run_benchmark(data: str | None = None, model: str | None = None, repeats: int | None = None,
                  threads: int | None = None, quick: bool = False) -> dict:
    """Run every measurement; -> the JSON-ready result (see the module docstring).

    data: a corpus file (None: $NERBILSTM_DATA, else synthetic); model: the model directory
    of the end-to-end figure (None: the shipped model); threads: torch intra-op threads
    (None: torch's default); quick: tiny sizes for smoke tests."""
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(data, model, repeats, quick)
    finally:
        torch.set_num_threads(previous_threads)  # in-process callers (tests) get theirs back


def _run(data: str | None, model: str | None, repeats: int | None, quick: bool) -> dict:
    cfg = quick_config() if quick else BenchConfig()
    if repeats:
        cfg = replace(cfg, repeats=repeats)
    data = data or os.environ.get("NERBILSTM_DATA") or None
    work = load_workload(data, cfg)
    mc = cfg.model
    result: dict = {
        "torch_version": torch.__version__, "torchcrf_version": getattr(torchcrf, "__version__", None),
        "threads": torch.get_num_threads(), "repeats": cfg.repeats, "warmup": cfg.warmup, "quick": quick,
        "data": work.source, "data_path": work.path,
        "config": {**{k: v for k, v in asdict(cfg).items() if k != "model"}, "model": asdict(mc),
                   "lstm_input_size": lstm_input_size(mc),
                   "n_words": len(work.vocab.words), "n_chars": len(work.vocab.chars),
                   "n_tags": len(work.vocab.labels), "train_tokens_per_call": work.train_tokens,
                   "mean_train_length": _r(statistics.mean(work.train_lengths), 2)},
        "notes": ["ratios are reference time / our time (> 1: ours faster); times are medians",
                  "reference: torch.nn.LSTM on packed sequences + pytorch-crf, same features, "
                  "emission layer and initial weights; collation excluded from the tagger timings"],
    }
    checks: dict = {}
    steps = [("training", lambda: measure_train(work, cfg)),
             ("inference", lambda: measure_inference(work, cfg)),
             ("end to end", lambda: measure_end_to_end(work, cfg, model)),
             ("CRF", lambda: measure_crf(cfg)),
             ("LSTM", lambda: measure_lstm(work, cfg)),
             ("char CNN", lambda: measure_char_cnn(work, cfg)),
             ("peak RSS", lambda: measure_train_rss(data, quick))]
    for name, fn in steps:
        log.info("measuring %s", name)
        start = time.perf_counter()
        out = fn()
        log.info("%s: %.1f s", name, time.perf_counter() - start)
        if isinstance(out, tuple):
            out, more = out
            checks.update(more)
        result.update(out)
    result["checks"] = checks
    return result


def write_report(result: dict, out: str | None = None) -> None:
    """The result as one JSON line on stdout, and into ``out`` if given."""
    text = json.dumps(result)
    print(text, flush=True)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")


def build_parser():
    """The script's flags (``--rss-child VARIANT``: the internal mode of measure_train_rss)."""
    import argparse

    p = argparse.ArgumentParser(
        description="Speed of training, inference, the CRF and the LSTM, ours beside the references "
                    "(torch.nn.LSTM, pytorch-crf) in one process, and peak memory of training; prints one "
                    "JSON object as the last line (ratios: reference time / ours).",
        epilog="examples:\n"
               "  python benchmarks/speed.py --threads 2 --data ner_dataset.csv --out bench.json\n"
               "  python benchmarks/speed.py --threads 1 --quick    # tiny sizes: a smoke test\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="GMB corpus file (default: $NERBILSTM_DATA, else synthetic sentences)")
    p.add_argument("--model", help="model directory for the end-to-end figure (default: the shipped model)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (default: 7; 2 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--rss-child", choices=VARIANTS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/speed.py ARGS``: run every measurement, print the JSON."""
    args = build_parser().parse_args(argv)
    if args.rss_child:
        torch.set_num_threads(args.threads)
        print(json.dumps(rss_child(args.rss_child, args.data, args.quick)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        result = run_benchmark(args.data, args.model, args.repeats, args.threads, args.quick)
    except NerError as err:
        print(f"speed.py: {err}", file=sys.stderr)
        return 2
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
