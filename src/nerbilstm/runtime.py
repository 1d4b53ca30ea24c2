"""Tag with an exported ONNX artefact: numpy and onnxruntime only, no torch.

``OnnxTagger`` reads everything it needs from the artefact itself (``nerbilstm.json`` in the
ONNX metadata, written by ``nerbilstm export --format onnx``: vocabularies, labels, casing
classes, CRF potentials) and answers with the same documents as ``nerbilstm.Tagger``:

>>> tagger = OnnxTagger("tagger.onnx")
>>> tagger("Angela Merkel visited Paris.")["entities"]
>>> tagger.tag_tokens([["John", "lives", "here"]])[0]["tokens"]

Same tags as ``Tagger.load(model_dir, pretrained=None)`` (or, with ``pretrained="auto"``, as
``Tagger.load(model_dir)``: words outside the vocabulary then get the vectors of the table the
model was trained with, which needs that table installed). Probabilities (a token's ``prob``,
an entity's ``score``) are computed here from the artefact's ``emissions`` output in float64
(forward-backward for the CRF, softmax otherwise); the eager tagger computes them in float32,
so they agree to about 1e-6 and may differ in the last rounded digit. An artefact exported
before the ``emissions`` output existed gives ``None`` for them. Not offered: ``nbest``.

Imports: numpy, onnxruntime, and of this package only modules that need neither torch nor
anything else (tokenizer, vocab casing rule, tag schemes, errors).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from nerbilstm.data.tokenizer import Token, text_and_sentences
from nerbilstm.data.vocab import CASES, casing
from nerbilstm.errors import ModelFileError
from nerbilstm.tags import continuations, entity_spans

__all__ = ["OnnxTagger"]

METADATA_NAME = "nerbilstm.json"  # as nerbilstm.export.METADATA_NAME (which imports torch)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.exp(x - top).sum(axis=axis)) + np.squeeze(top, axis)


class _Posterior:
    """The posterior of one sentence's tag sequence given its emissions em (n, K), float64.

    CRF (potentials given): forward-backward in log space; log_marginals (n, K) and
    ``log_conditional(t, prev, cur)`` = log P(y_t = cur | y_{t-1} = prev). Softmax: tokens are
    independent, the conditional is the token's own marginal."""

    def __init__(self, em: np.ndarray, potentials: tuple[np.ndarray, np.ndarray, np.ndarray] | None):
        n = len(em)
        if potentials is None:
            self.alpha = None
            self.log_marginals = em - _logsumexp(em, 1)[:, None]
            return
        trans, start, end = potentials
        alpha = np.empty_like(em)
        beta = np.empty_like(em)
        alpha[0] = start + em[0]
        for t in range(1, n):
            alpha[t] = _logsumexp(alpha[t - 1][:, None] + trans, 0) + em[t]
        beta[n - 1] = end
        for t in range(n - 2, -1, -1):
            beta[t] = _logsumexp(trans + (em[t + 1] + beta[t + 1])[None, :], 1)
        log_z = _logsumexp(alpha[n - 1] + end, 0)
        self.alpha, self.beta, self.em, self.trans = alpha, beta, em, trans
        self.log_marginals = alpha + beta - log_z

    def log_conditional(self, t: int, prev: int, cur: int) -> float:
        if self.alpha is None:
            return float(self.log_marginals[t, cur])
        # P(y_{t-1}=i, y_t=j) / P(y_{t-1}=i); log Z cancels.
        value = (self.alpha[t - 1, prev] + self.trans[prev, cur] + self.em[t, cur] + self.beta[t, cur]
                 - self.alpha[t - 1, prev] - self.beta[t - 1, prev])
        return min(float(value), 0.0)

    def span_probability(self, s: int, e: int, ids: Sequence[int], inside: int | None) -> float:
        """P(y_s..y_{e-1} = ids and the entity ends at e): as the eager decoders define it."""
        log_p = float(self.log_marginals[s, ids[0]])
        for k in range(1, len(ids)):
            log_p += self.log_conditional(s + k, ids[k - 1], ids[k])
        p = math.exp(log_p)
        if inside is not None and e < len(self.log_marginals):
            p *= -math.expm1(self.log_conditional(e, ids[-1], inside))
        return min(max(p, 0.0), 1.0)


class OnnxTagger:
    """An exported ONNX tagger ready to tag text; see the module docstring.

    path: the .onnx file. pretrained: None (unknown words get the trained unknown-word vector),
    "auto" (the table named in the artefact, via nerbilstm.embeddings), or an object with
    ``vectors_for(words) -> (vectors (n, E) float32, found (n,) bool)``. threads: onnxruntime's
    intra-op threads (None: its default). batch_size: sentences per run.
    """

    def __init__(self, path: str | Path, pretrained=None, threads: int | None = None, batch_size: int = 256):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ModelFileError(f"the ONNX runtime needs onnxruntime ({err}): pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise ModelFileError("ONNX file not found", path=path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = options.inter_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            meta = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_NAME])
        except KeyError:
            raise ModelFileError(f"no {METADATA_NAME} metadata: not exported by nerbilstm", path=path) from None
        except Exception as err:  # onnxruntime's own error types
            raise ModelFileError(f"cannot load the ONNX file: {str(err).strip().splitlines()[0]}", path=path) from None
        self.path, self.meta, self.batch_size = path, meta, batch_size
        self._read_metadata(meta, path)
        self.pretrained = self._load_pretrained(pretrained)

    def _read_metadata(self, meta: dict, path: Path) -> None:
        try:
            self.labels: list[str] = list(meta["labels"])
            self.word_index = {w: i for i, w in enumerate(meta["words"])}
            self.char_index = {c: i for i, c in enumerate(meta["chars"])}
            self.unknown_id, self.max_word_chars, self.word_dim = (int(meta["unknown_id"]), int(meta["max_word_chars"]),
                                                                   int(meta["word_dim"]))
            self.case_ids = [list(meta["cases"]).index(name) for name in CASES]
            pot = meta.get("potentials")
            self.potentials = None if pot is None else tuple(
                np.asarray(pot[k], dtype=np.float32).astype(np.float64) for k in ("transitions", "start", "end"))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{METADATA_NAME} metadata does not describe a tagger: {err!r}", path=path) from None
        if meta.get("decoder") == "crf" and self.potentials is None:
            self.potentials = False  # an older CRF artefact: tags only, no probabilities
        self.continuation = continuations(self.labels)
        self.has_emissions = "emissions" in [o.name for o in self.session.get_outputs()]
        self._cache: dict[str, tuple[int, tuple[int, ...], int]] = {}

    def _load_pretrained(self, pretrained):
        if pretrained != "auto":
            return pretrained
        source = (self.meta.get("pretrained") or {}).get("source")
        if not source:
            return None
        from nerbilstm.embeddings import load_embeddings

        return load_embeddings(source)

    # -- inputs

    def _ids(self, token: str) -> tuple[int, tuple[int, ...], int]:
        entry = self._cache.get(token)
        if entry is None:
            if len(self._cache) >= 100_000:
                self._cache.clear()
            entry = (self.word_index.get(token.lower(), self.unknown_id),
                     tuple(self.char_index.get(c, self.unknown_id) for c in token[: self.max_word_chars]),
                     self.case_ids[casing(token)])
            if len(token) <= 64:
                self._cache[token] = entry
        return entry

    def _feeds(self, sentences: list[list[str]]) -> dict[str, np.ndarray]:
        """Padded, left-aligned inputs of the artefact for non-empty sentences."""
        B, T = len(sentences), max(len(s) for s in sentences)
        ids = [[self._ids(tok) for tok in s] for s in sentences]
        L = max(1, max(len(e[1]) for row in ids for e in row))
        words = np.zeros((B, T), np.int64)
        cases = np.zeros((B, T), np.int64)
        chars = np.zeros((B, T, L), np.int64)
        mask = np.zeros((B, T), bool)
        for b, row in enumerate(ids):
            for t, (w, cs, c) in enumerate(row):
                words[b, t], cases[b, t], mask[b, t] = w, c, True
                chars[b, t, : len(cs)] = cs
        pre, pre_mask = np.zeros((1, 1, self.word_dim), np.float32), np.zeros((1, 1), bool)
        unknown = [(b, t, tok) for b, s in enumerate(sentences) for t, tok in enumerate(s)
                   if words[b, t] == self.unknown_id]
        if self.pretrained is not None and unknown:
            vectors, found = self.pretrained.vectors_for([tok for _, _, tok in unknown])
            pre, pre_mask = np.zeros((B, T, self.word_dim), np.float32), np.zeros((B, T), bool)
            for (b, t, _), v, ok in zip(unknown, vectors, found):
                if ok:
                    pre[b, t], pre_mask[b, t] = v, True
        return {"words": words, "chars": chars, "cases": cases, "mask": mask, "pretrained": pre,
                "pretrained_mask": pre_mask}

    # -- tagging

    def tagged(self, sentences: Sequence[Sequence[str]]) -> list[dict]:
        """Per pre-tokenized sentence: {"tag_ids": [...], "score": float, "probs": [...] or None,
        "entity_probs": [...] or None}, the last two in the order of ``entity_spans``."""
        sentences = [list(s) for s in sentences]
        out: list[dict | None] = [None] * len(sentences)
        order = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: len(sentences[i]))
        for i, s in enumerate(sentences):
            if not s:
                out[i] = {"tag_ids": [], "score": 0.0, "probs": [], "entity_probs": []}
        names = ["tags", "scores"] + (["emissions"] if self.has_emissions else [])
        for k in range(0, len(order), self.batch_size):
            index = order[k: k + self.batch_size]
            results = self.session.run(names, self._feeds([sentences[i] for i in index]))
            for row, i in enumerate(index):
                em = results[2][row, : len(sentences[i])] if self.has_emissions else None
                out[i] = self._sentence(results[0][row, : len(sentences[i])].tolist(), float(results[1][row]), em)
        return out  # type: ignore[return-value]

    def _sentence(self, tag_ids: list[int], score: float, em: np.ndarray | None) -> dict:
        if em is None or self.potentials is False:
            return {"tag_ids": tag_ids, "score": score, "probs": None, "entity_probs": None}
        post = _Posterior(em.astype(np.float64), self.potentials)
        probs = np.exp(post.log_marginals[np.arange(len(tag_ids)), tag_ids]).tolist()
        entity_probs = [post.span_probability(s, e, tag_ids[s:e], self.continuation[tag_ids[s]])
                        for _, s, e in entity_spans([self.labels[t] for t in tag_ids], mode="conll")]
        return {"tag_ids": tag_ids, "score": score, "probs": probs, "entity_probs": entity_probs}

    def tags(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """Tag names for pre-tokenized sentences."""
        return [[self.labels[i] for i in r["tag_ids"]] for r in self.tagged(sentences)]

    def tag_tokens(self, sentences: Sequence[Sequence[str]]) -> list[dict]:
        """One document per pre-tokenized sentence, as ``Tagger.tag_tokens``: the text is the
        tokens joined by single spaces (offsets point into it)."""
        return self.tag_documents([list(tokens) for tokens in sentences])

    def __call__(self, text: str | Sequence[str]):
        """Tag raw text (a str -> dict) or a list of inputs (-> list of dicts), as ``Tagger``."""
        if isinstance(text, str):
            return self.tag_documents([text])[0]
        return self.tag_documents(list(text))

    def tag_texts(self, texts: list[str]) -> list[dict]:
        return self.tag_documents(texts)

    def tag_documents(self, items: Sequence) -> list[dict]:
        """Raw texts or token lists -> one document each (as ``Tagger.tag_documents``)."""
        texts, pieces = [], []
        for k, item in enumerate(items):
            text, sentences = text_and_sentences(item, k)
            texts.append(text)
            pieces += [(k, sentence) for sentence in sentences]
        tagged = self.tagged([[t.text for t in s] for _, s in pieces])
        out = [{"text": t, "tokens": [], "entities": [], "sentences": []} for t in texts]
        for (k, sentence), result in zip(pieces, tagged):
            out[k]["sentences"].append(self._sentence_dict(texts[k], sentence, result, out[k]))
        return out

    def _sentence_dict(self, text: str, sentence: list[Token], result: dict, doc: dict) -> dict:
        """Fills doc's tokens and entities; -> the sentence's dict (as Tagger._sentence_dict)."""
        tags = [self.labels[i] for i in result["tag_ids"]]
        probs = result["probs"] if result["probs"] is not None else [None] * len(tags)
        for tok, tag, p in zip(sentence, tags, probs):
            doc["tokens"].append({"text": tok.text, "start": tok.start, "end": tok.end, "tag": tag,
                                  "prob": None if p is None else round(float(p), 4)})
        spans = entity_spans(tags, mode="conll")
        scores = result["entity_probs"] if result["entity_probs"] is not None else [None] * len(spans)
        for (label, s, e), score in zip(spans, scores):
            start, end = sentence[s].start, sentence[e - 1].end
            doc["entities"].append({"text": text[start:end], "label": label, "start": start, "end": end,
                                    "score": None if score is None else round(score, 4)})
        score = result["score"]
        return {"start": sentence[0].start if sentence else 0, "end": sentence[-1].end if sentence else 0,
                "score": None if math.isnan(score) else round(score, 4)}
