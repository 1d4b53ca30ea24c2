"""Our tagger as a spaCy pipeline component (the optional extra ``spacy``).

    nlp = spacy.blank("en")
    nlp.add_pipe("nerbilstm", config={"model": "runs/crf"})   # no "model": the shipped one
    doc = nlp("Angela Merkel visited Paris.")
    [(e.text, e.label_, e._.nerbilstm_score) for e in doc.ents]

spaCy finds the factory through the package's ``spacy_factories`` entry point. The component
tags spaCy's own tokens (our pre-tokenized path: no second tokenization), sentence by sentence
when the doc's sentences are set (a sentencizer, a parser or a senter ran before it), else the
whole doc as one sentence. Whitespace tokens (``"\\n"``, runs of spaces) are not shown to the
model, as our own tokenizer never makes them. ``nlp.pipe(texts, batch_size=N)`` tags the
sentences of N docs in one call of ``Tagger.tagged_sentences``.

What it sets:
  ``doc.ents``                       the entities (IOB2 tags -> spans by ``tags.entity_spans``)
  ``span._.nerbilstm_score``         an entity's probability: that exactly this span is this entity
  ``doc._.nerbilstm_sentence_scores`` each tagged sentence's best-path score (CRF: the Viterbi
                                     score; softmax: the path's log-probability)
  ``doc._.nerbilstm_score``          their sum: the doc's best-path score (sentences are tagged
                                     independently)

A doc that already has entities (from spaCy's ``ner`` or an entity ruler, say) is refused with
EntitiesExistError unless the component is configured with ``overwrite: true``, which replaces
them. ``nlp.to_disk`` stores the model's files (config.json, model.safetensors) in the
component's folder, so ``spacy.load`` needs nothing else; the model is read when the first doc
arrives, or from that folder by ``spacy.load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

try:
    from spacy.language import Language
    from spacy.tokens import Doc, Span
    from spacy.util import minibatch
except ImportError as err:  # pragma: no cover - only without the extra
    raise ImportError("the spaCy component needs spaCy: pip install 'nerbilstm[spacy]'") from err

from nerbilstm.errors import NerError
from nerbilstm.tags import entity_spans

FACTORY = "nerbilstm"
MODEL_FILES = ("config.json", "model.safetensors")  # a model directory's files (see io.py)
DEFAULT_CONFIG = {"model": None, "batch_size": 256, "overwrite": False}


class EntitiesExistError(NerError, ValueError):
    """A doc reached the component with entities already set, and overwrite is off."""


def _register_extensions() -> None:
    if not Span.has_extension("nerbilstm_score"):
        Span.set_extension("nerbilstm_score", default=None)
    if not Doc.has_extension("nerbilstm_score"):
        Doc.set_extension("nerbilstm_score", default=None)
    if not Doc.has_extension("nerbilstm_sentence_scores"):
        Doc.set_extension("nerbilstm_sentence_scores", default=None)


@Language.factory(FACTORY, default_config=DEFAULT_CONFIG,
                  assigns=["doc.ents", "token.ent_iob", "token.ent_type", "span._.nerbilstm_score",
                           "doc._.nerbilstm_score", "doc._.nerbilstm_sentence_scores"])
def make_component(nlp: Language, name: str, model: str | None, batch_size: int, overwrite: bool) -> "NerBiLSTM":
    """The ``nerbilstm`` factory: ``model`` a model directory (None: the shipped model),
    ``batch_size`` sentences per forward pass, ``overwrite`` whether existing entities may be replaced."""
    return NerBiLSTM(name, model, batch_size, overwrite)


class NerBiLSTM:
    """The pipeline component: sets ``doc.ents`` from our tagger's tags on the doc's tokens."""

    def __init__(self, name: str = FACTORY, model: str | Path | None = None, batch_size: int = 256,
                 overwrite: bool = False):
        _register_extensions()
        self.name = name
        self.model = None if model is None else str(model)
        self.batch_size = int(batch_size)
        self.overwrite = bool(overwrite)
        self._tagger = None

    @property
    def tagger(self):
        """The ``Tagger`` (read on first use: from ``model``, or the shipped model)."""
        if self._tagger is None:
            self._tagger = self._load(self.model)
        return self._tagger

    def _load(self, directory):
        from nerbilstm.predict import Tagger

        tagger = Tagger.load(directory)
        tagger.batch_size = self.batch_size
        return tagger

    def __call__(self, doc: Doc) -> Doc:
        return self.tag_docs([doc])[0]

    def pipe(self, stream: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        """Tag the docs ``batch_size`` at a time: all their sentences in one tagging call."""
        for docs in minibatch(stream, size=batch_size):
            yield from self.tag_docs(list(docs))

    def tag_docs(self, docs: list[Doc]) -> list[Doc]:
        """Tag the sentences of ``docs`` together and set each doc's entities and scores."""
        for doc in docs:
            if doc.ents and not self.overwrite:
                raise EntitiesExistError(
                    f"the doc already has {len(doc.ents)} entities ({doc.ents[0].text!r}, ...) that the "
                    f"{self.name!r} component would overwrite; put it before the component that sets them, "
                    f"or add it with config={{'overwrite': True}} to replace them")
        pieces = [(k, kept) for k, doc in enumerate(docs) for kept in _sentences(doc)]
        tagged = self.tagger.tagged_sentences([[docs[k][i].text for i in kept] for k, kept in pieces],
                                              with_confidence=True)
        labels = self.tagger.labels
        ents: list[list[Span]] = [[] for _ in docs]
        scores: list[list[float]] = [[] for _ in docs]
        for (k, kept), result in zip(pieces, tagged):
            tags = [labels[t] for t in result.tag_ids]
            for (label, s, e), prob in zip(entity_spans(tags, mode="conll"), result.entity_probs):
                span = Span(docs[k], kept[s], kept[e - 1] + 1, label=label)
                span._.nerbilstm_score = prob
                ents[k].append(span)
            scores[k].append(result.score)
        for doc, spans, sentence_scores in zip(docs, ents, scores):
            doc.set_ents(spans, default="outside")
            doc._.nerbilstm_sentence_scores = sentence_scores
            doc._.nerbilstm_score = float(sum(sentence_scores))
        return docs

    # -------------------------------------------------------------- serialization

    def to_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> None:
        """Copy the model's files (not its path) into the component's folder ``path``."""
        from nerbilstm.io import atomic_write_bytes

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        source = Path(self.tagger.config["_path"]).parent
        for name in MODEL_FILES:
            atomic_write_bytes(path / name, (source / name).read_bytes())

    def from_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> "NerBiLSTM":
        """Read the model stored by ``to_disk`` in the component's folder ``path``."""
        self._tagger = self._load(Path(path))
        return self


def _sentences(doc: Doc) -> list[list[int]]:
    """The token indices the model sees, one list per sentence (the whole doc when its
    sentences are not set); whitespace tokens are left out."""
    bounds = [(s.start, s.end) for s in doc.sents] if doc.has_annotation("SENT_START") else [(0, len(doc))]
    return [[i for i in range(start, end) if not doc[i].is_space] for start, end in bounds]
