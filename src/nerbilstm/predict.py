"""Inference, once: the batched tagging loop, and the ``Tagger`` users load and call."""

from __future__ import annotations

import gc
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from itertools import islice
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from nerbilstm.config import ModelConfig, from_dict
from nerbilstm.data.batching import Encoded, collate, encode, length_buckets
from nerbilstm.data.tokenizer import Token, text_and_pieces, text_and_sentences
from nerbilstm.data.vocab import Vocab
from nerbilstm.errors import ModelFileError, NerError
from nerbilstm.io import CONFIG, WEIGHTS, finite_json, load_tensors, read_config, tensor_shapes, verify_weights
from nerbilstm.model.single import SingleSentence
from nerbilstm.model.tagger import BiLSTMTagger, parameter_shapes
from nerbilstm.tags import entity_spans, entity_type

# Tagging batches hold at most this many (padded) tokens: long sentences come in smaller batches,
# so the transient tensors of one batch (features, LSTM states, CRF posteriors: about 4 KB a
# token) stay small; 8,192 cost 9 MB more peak memory for no measurable speed.
MAX_BATCH_TOKENS = 6144
DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
# Calls with at most this many sentences (a web service's one text) run through the numpy
# decoder of model/single.py, one sentence at a time.
SINGLE_MAX_SENTENCES = 4


@contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector for a tagging call.

    Tagging allocates one small object per token and creates no reference cycles; with a
    large heap alive (a loaded corpus, say) the collections these allocations trigger can
    cost 5 times the tokenizer itself. The collector's state is restored on exit."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _weights_key(model: BiLSTMTagger, tensors: Sequence[torch.Tensor]) -> tuple | None:
    """What identifies the current weights of ``model``, whose parameters and buffers (taken
    once: walking the module tree costs more than a one-text call) are ``tensors``: each one's
    storage and version counter (bumped by every in-place change, an optimizer step or a
    load_state_dict), the CRF's constraint buffers (replaced by set_constraints) and the training
    flag; None where a tensor has no version counter (made under inference_mode)."""
    try:
        versions = tuple((t.data_ptr(), t._version) for t in tensors)
    except RuntimeError:
        return None
    constraints = tuple(map(id, model.crf._buffers.values())) if model.crf is not None else ()
    return model.training, constraints, versions


@dataclass
class TaggedSentence:
    """Decoder output for one sentence of n tokens: tag ids (n,), path score, and with
    confidences: marginals (n, K), the probability of each entity of ``entity_spans(tags)``,
    and the k best paths with their probabilities."""

    tag_ids: list[int]
    score: float
    marginals: np.ndarray | None = None
    entity_probs: list[float] | None = None
    nbest: list[tuple[list[int], float]] | None = None


@torch.inference_mode()
def tag_encoded(model: BiLSTMTagger, items: Sequence[Encoded], pretrained=None, batch_size: int = 256,
                with_confidence: bool = False, nbest: int = 0) -> list[TaggedSentence]:
    """Tag encoded sentences in length-bucketed batches; results come back in input order.

    with_confidence adds marginals and entity probabilities; nbest > 0 adds the k best paths (CRF).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    labels = model.labels
    results: list[TaggedSentence | None] = [None] * len(items)
    nonempty = [i for i, e in enumerate(items) if e.words]
    for i, e in enumerate(items):
        if not e.words:
            results[i] = TaggedSentence([], 0.0, np.zeros((0, len(labels)), np.float32) if with_confidence else None,
                                        [] if with_confidence else None, [([], 1.0)] if nbest else None)
    lengths = [len(items[i].words) for i in nonempty]
    for bucket in length_buckets(lengths, batch_size, shuffle=False, max_tokens=MAX_BATCH_TOKENS):
        index = [nonempty[j] for j in bucket]
        batch = collate([items[i] for i in index], pretrained).to(device)
        out = model.decode(batch, with_confidence)
        tags, scores = out.tags.cpu().numpy(), out.score.float().cpu().numpy()
        for row, i in enumerate(index):
            n = len(items[i].words)
            results[i] = TaggedSentence(tags[row, :n].tolist(), float(scores[row]))
        if with_confidence:
            marg = out.marginals.float().cpu().numpy()
            spans, owners = [], []
            for row, i in enumerate(index):
                ids = results[i].tag_ids
                results[i].marginals = marg[row, : len(ids)]
                results[i].entity_probs = []
                for _, s, e in entity_spans([labels[t] for t in ids], mode="conll"):
                    spans.append((row, s, e, ids[s:e]))
                    owners.append(i)
            probs = model.span_probabilities(out.emissions, batch.mask, spans, out.posteriors).float().cpu().tolist()
            for i, p in zip(owners, probs):
                results[i].entity_probs.append(p)
        if nbest:
            paths, probs = model.nbest(out.emissions, batch.mask, nbest)
            paths, probs = paths.cpu().numpy(), probs.float().cpu().numpy()
            for row, i in enumerate(index):
                n = len(items[i].words)
                results[i].nbest = [(paths[row, j, :n].tolist(), float(probs[row, j]))
                                    for j in range(nbest) if probs[row, j] > 0]
    model.train(was_training)
    return results  # type: ignore[return-value]


def build_model(config: dict, shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[BiLSTMTagger, Vocab]:
    """An untrained tagger with the architecture and vocabulary a config.json describes.

    shapes: the tensor shapes of the weights file (``io.tensor_shapes``, read from its header).
    Given, config and weights must agree before anything is allocated: every tensor the config
    implies, with its shape, and nothing else; so a config claiming a million layers is a
    one-line error, not gigabytes of memory."""
    path = config.get("_path")
    try:
        vocab = Vocab.from_dict(config["vocab"])
        model_config = from_dict(ModelConfig, config["model"])
        model_config.validate()
        if shapes is not None:
            weights = Path(path).parent / WEIGHTS if path else WEIGHTS
            _check_shapes(parameter_shapes(model_config, len(vocab.words), len(vocab.chars), len(vocab.labels)),
                          shapes, weights)
        model = BiLSTMTagger(model_config, len(vocab.words), len(vocab.chars), vocab.labels)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise ModelFileError(f"config.json does not describe a model: {err}", path=path) from None
    return model, vocab


def _check_shapes(implied, shapes: dict[str, tuple[int, ...]], weights) -> None:
    """Raise ModelFileError unless the (name, shape) pairs ``implied`` by config.json are exactly
    the tensors of the weights file. ``implied`` is consumed lazily: the first tensor the file
    lacks stops it, however many layers the config claims."""
    def mismatch(what: str) -> ModelFileError:
        return ModelFileError(f"weights do not match config.json: {what}", path=weights)

    seen = set()
    for name, shape in implied:
        if name not in shapes:
            raise mismatch(f"config.json implies a tensor {name} of shape {list(shape)}, which the file lacks")
        if tuple(shapes[name]) != tuple(shape):
            raise mismatch(f"{name} has shape {list(shapes[name])} in the file, config.json implies {list(shape)}")
        seen.add(name)
    extra = sorted(set(shapes) - seen)
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise mismatch(f"the file holds {', '.join(extra[:3])}{more}, which config.json does not imply")


def _training_embeddings(config: dict, directory: Path):
    """The pretrained table the model was trained with: the GloVe package, or a file that
    config.json names (found as recorded, or beside the model); None, with a warning, where it
    cannot be had: unseen words then get no pretrained vector."""
    embeddings = config.get("embeddings")
    source = embeddings.get("source") if isinstance(embeddings, dict) else None
    if not source:
        return None
    from nerbilstm.embeddings import GLOVE_PACKAGE, load_embeddings

    candidates = [source] if source == GLOVE_PACKAGE else [source, directory / Path(source).name]
    for candidate in candidates:
        if candidate == GLOVE_PACKAGE or Path(candidate).is_file():
            try:
                return load_embeddings(candidate)
            except NerError as err:
                logging.getLogger("nerbilstm").warning("%s: %s", directory, err)
                return None
    logging.getLogger("nerbilstm").warning(
        "%s: the embeddings file %s it was trained with is not here (put it beside the model, or pass "
        "pretrained=PATH): unseen words get no pretrained vector", directory, Path(source).name)
    return None


class Tagger:
    """A trained model ready to tag text.

    >>> tagger = Tagger.load()            # the shipped default model
    >>> tagger("Angela Merkel visited Paris.")["entities"]
    """

    def __init__(self, model: BiLSTMTagger, vocab: Vocab, config: dict, pretrained=None, batch_size: int = 256):
        self.model = model.eval()
        self.vocab = vocab
        self.config = config
        self.pretrained = pretrained
        self.batch_size = batch_size
        self._tracked: list[torch.Tensor] | None = None  # the model's tensors, for _weights_key
        self._single: SingleSentence | None = None  # the numpy decoder, built for _single_key's weights
        self._single_key: tuple | None = None

    @property
    def labels(self) -> list[str]:
        return self.vocab.labels

    @classmethod
    def load(cls, directory: str | Path | None = None, pretrained="auto", device: str = "cpu") -> "Tagger":
        """Load a model directory (safetensors + JSON; never pickle). None: the shipped default model.

        pretrained: "auto" loads the embedding table the model was trained with (so words never
        seen in training still get their pretrained vectors), a path loads that table instead (a
        user's vectors file that moved), None skips it.
        """
        directory = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
        config = read_config(directory)  # its own checksum and the weights' are checked here and below
        config["_path"] = str(directory / CONFIG)
        weights = verify_weights(directory, config)
        model, vocab = build_model(config, tensor_shapes(weights))  # sizes checked against the header first
        state = load_tensors(weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise ModelFileError("weights do not match config.json: " + " ".join(s.strip() for s in first[:3]),
                                 path=directory / "model.safetensors") from None
        model.to(device)
        source = None if pretrained is None else pretrained if pretrained == "auto" else str(pretrained)
        if pretrained == "auto":
            pretrained = _training_embeddings(config, directory)
        elif isinstance(pretrained, (str, Path)):
            from nerbilstm.embeddings import load_embeddings

            pretrained = load_embeddings(pretrained)
        tagger = cls(model, vocab, config, pretrained)
        tagger.pretrained_source = source  # how worker processes load the same table (see workers.py)
        return tagger

    def info(self) -> dict:
        """What the model is, from its config.json and weights: architecture and size, labels,
        vocabulary, embeddings, the training recipe and data, and the figures recorded when it was
        trained. Keys as in the server's ``GET /api/model`` where the two overlap."""
        config = self.config
        directory = Path(config["_path"]).parent if "_path" in config else None
        weights = directory / "model.safetensors" if directory is not None else None
        embeddings = config.get("embeddings") or {}
        data = config.get("data") or {}
        train = data.get("train") or {}
        return finite_json({
            "path": None if directory is None else str(directory),
            "trained_with": config.get("nerbilstm_version"),
            "format_version": config.get("format_version"),
            "model": config.get("model"),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weights": {"bytes": weights.stat().st_size if weights is not None and weights.is_file() else None,
                        "sha256": config.get("weights_sha256")},
            "labels": list(self.labels),
            "entity_types": sorted({t for t in map(entity_type, self.labels) if t is not None}),
            "vocabulary": {"words": len(self.vocab.words), "chars": len(self.vocab.chars)},
            "embeddings": {**embeddings, "loaded": self.pretrained is not None},
            "training": config.get("training"),
            "data": {"file": Path(train["path"]).name if train.get("path") else None,
                     **{k: train.get(k) for k in ("sha256", "format", "encoding", "sentences")},
                     "split": data.get("split")},
            "metrics": config.get("metrics"),
        })

    def tagged_sentences(self, sentences: Sequence[Sequence[str]], with_confidence: bool = False,
                         nbest: int = 0) -> list[TaggedSentence]:
        """Decoder output for pre-tokenized sentences: one TaggedSentence (tag ids, path score,
        and with confidences marginals and entity probabilities) per sentence."""
        with gc_paused():
            items = [encode(tokens, self.vocab) for tokens in sentences]
            if with_confidence and not nbest and len(items) <= SINGLE_MAX_SENTENCES:
                tagged = self._tag_singly(items)
                if tagged is not None:
                    return tagged
            return tag_encoded(self.model, items, self.pretrained, self.batch_size, with_confidence, nbest)

    def _tag_singly(self, items: Sequence[Encoded]) -> list[TaggedSentence] | None:
        """The few sentences of a one-text call, one by one through the numpy decoder
        (model/single.py): the batched path's results without its per-op overhead. None where
        that path does not apply (then the caller takes the batched one)."""
        if not all(e.words for e in items):
            return None
        if self._tracked is None:
            self._tracked = [*self.model.parameters(), *self.model.buffers()]
        key = _weights_key(self.model, self._tracked)
        if key is None:
            return None
        if self._single_key != key:
            self._single, self._single_key = SingleSentence.build(self.model), key
        if self._single is None:
            return None
        out = [self._single.decode(e, self.pretrained) for e in items]
        return None if any(r is None for r in out) else out

    def tags(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """Tag names for pre-tokenized sentences."""
        labels = self.vocab.labels
        return [[labels[i] for i in r.tag_ids] for r in self.tagged_sentences(sentences)]

    def tag_tokens(self, sentences: Iterable[Sequence[str]], nbest: int = 0) -> list[dict]:
        """Tag pre-tokenized sentences, in batches: one document per sentence, in the shape of
        ``tagger(text)``, whose text is the tokens joined by single spaces (offsets point into it).
        A sentence longer than 200 tokens is tagged in pieces, as raw text is.

        >>> tagger.tag_tokens([["John", "lives", "here"]])[0]["entities"]
        """
        return list(self.pipe((list(tokens) for tokens in sentences), nbest=nbest))

    def __call__(self, text: str | Sequence[str], nbest: int = 0):
        """Tag raw text (a str -> dict) or a list of inputs (-> list of dicts, tagged in batches).

        Each dict: text, tokens [{text, start, end, tag, prob}], entities [{text, label, start,
        end, score}], sentences [{start, end, score, nbest?}], with character offsets into the
        text. ``prob`` is the tag's marginal probability, an entity's ``score`` the probability
        that exactly this span is this entity, a sentence's ``score`` the best path's score;
        ``nbest`` > 0 adds the k best tag sequences of each sentence with their probabilities.
        In a list, an item that is a list of str is a pre-tokenized sentence (see ``tag_tokens``).
        """
        if isinstance(text, str):
            return self.tag_documents([text], nbest)[0]
        return self.tag_documents(list(text), nbest)

    def pipe(self, items: Iterable[str | Sequence[str]], batch_size: int | None = None,
             nbest: int = 0, workers: int = 1, threads: int | None = None) -> Iterator[dict]:
        """Tag any iterable (a generator over a huge file, say) lazily, in order: ``batch_size``
        inputs (default: the tagger's batch size) are read and tagged at a time, so memory stays
        bounded whatever the input's length. Items as in ``__call__``: raw texts or token lists.
        ``workers`` > 1 tags in that many processes, each loading this tagger's model directory
        (with ``threads`` torch threads each; default: cores // workers); same documents, same order.

        >>> for doc in tagger.pipe(open("big.txt", encoding="utf-8")): ...
        """
        size = batch_size or self.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        if workers != 1:
            from nerbilstm.workers import pipe_in_workers

            yield from pipe_in_workers(self, items, size, nbest, workers, threads)
            return
        it = iter(items)
        while chunk := list(islice(it, size)):
            yield from self.tag_documents(chunk, nbest)

    def tag_documents(self, items: Sequence[str | Sequence[str]], nbest: int = 0) -> list[dict]:
        """Tag one batch of inputs (raw texts or token lists) -> one document each."""
        # Paused for the whole list: re-enabled after each document, the collector ran each time,
        # over the documents made so far (measured: 8% of a 4,796-text call).
        with gc_paused():
            return list(self.iter_documents(items, nbest))

    def iter_documents(self, items: Sequence[str | Sequence[str]], nbest: int = 0) -> Iterator[dict]:
        """As ``tag_documents``, the documents made one at a time as they are asked for (all the
        inputs are tagged first): a caller writing each out holds one, not the batch's."""
        with gc_paused():
            texts, pieces = [], []
            for k, item in enumerate(items):
                text, sentences = text_and_sentences(item, k)
                texts.append(text)
                pieces.append(sentences)
            tagged = iter(self.tagged_sentences([[t.text for t in s] for p in pieces for s in p],
                                                with_confidence=True, nbest=nbest))
        for k, text in enumerate(texts):
            with gc_paused():
                doc = {"text": text, **self._part(text, pieces[k], tagged)}
            pieces[k] = None  # the document's tokens are in doc now
            yield doc

    def tag_in_parts(self, item: str | Sequence[str], nbest: int = 0,
                     part_tokens: int = MAX_BATCH_TOKENS) -> tuple[str, Iterator[dict]]:
        """Tag one long input a part at a time -> (its text, its parts): dicts of tokens,
        entities and sentences (offsets into the text) of about ``part_tokens`` tokens each,
        made as they are asked for; together, the document ``tag_documents([item])`` makes.

        The batches are those ``tag_documents`` would make (the same numbers to the last bit),
        tagged in their order; a sentence's result waits, compact, until those before it are out."""
        text, sentences = text_and_pieces(item, 0)
        return text, self._parts(text, sentences, nbest, part_tokens)

    def _parts(self, text: str, sentences: Sequence[list[Token]], nbest: int, part_tokens: int) -> Iterator[dict]:
        lengths = [len(s) for s in sentences] if isinstance(sentences, list) else sentences.lengths
        nonempty = [i for i, n in enumerate(lengths) if n]
        batches = iter(length_buckets([lengths[i] for i in nonempty], self.batch_size, shuffle=False,
                                      max_tokens=MAX_BATCH_TOKENS))
        done: dict[int, TaggedSentence] = {}
        group, results, size = [], [], 0
        for i, n in enumerate(lengths):
            while n and i not in done:
                index = [nonempty[j] for j in next(batches)]
                done.update(zip(index, self.tagged_sentences([[t.text for t in sentences[k]] for k in index],
                                                             with_confidence=True, nbest=nbest)))
            group.append(sentences[i])
            results.append(done.pop(i) if n else self.tagged_sentences([[]], with_confidence=True, nbest=nbest)[0])
            size += n
            if size >= part_tokens or i == len(lengths) - 1:
                with gc_paused():
                    part = self._part(text, group, iter(results))
                group, results, size = [], [], 0
                yield part

    def _part(self, text: str, sentences: list[list[Token]], tagged: Iterator[TaggedSentence]) -> dict:
        """{tokens, entities, sentences} of ``sentences`` of ``text``, their results taken from ``tagged``."""
        part: dict = {"tokens": [], "entities": []}
        part["sentences"] = [self._sentence_dict(text, s, next(tagged), part) for s in sentences]
        return part

    def _sentence_dict(self, text: str, sentence: list[Token], result: TaggedSentence, doc: dict) -> dict:
        labels = self.vocab.labels
        tags = [labels[i] for i in result.tag_ids]
        probs = result.marginals[np.arange(len(tags)), result.tag_ids].tolist() if len(tags) else []
        doc["tokens"].extend({"text": tok.text, "start": tok.start, "end": tok.end, "tag": tag, "prob": round(p, 4)}
                             for tok, tag, p in zip(sentence, tags, probs))
        for (label, s, e), score in zip(entity_spans(tags, mode="conll"), result.entity_probs):
            start, end = sentence[s].start, sentence[e - 1].end
            doc["entities"].append({"text": text[start:end], "label": label, "start": start, "end": end,
                                    "score": round(score, 4)})
        score = result.score
        out = {"start": sentence[0].start if sentence else 0, "end": sentence[-1].end if sentence else 0,
               "score": None if math.isnan(score) else round(score, 4)}
        if result.nbest is not None:
            out["nbest"] = [{"tags": [labels[i] for i in path], "prob": round(p, 6)} for path, p in result.nbest]
        return out
