"""model/single.py: one text per call through the numpy decoder gives the batched path's results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nerbilstm.model.single as single
from nerbilstm.config import ModelConfig
from nerbilstm.data.batching import encode
from nerbilstm.data.vocab import Vocab
from nerbilstm.model.tagger import BiLSTMTagger
from nerbilstm.predict import SINGLE_MAX_SENTENCES, Tagger, tag_encoded
from synthetic import synthetic_sentences

TEXTS = [
    "Angela Merkel visited Paris on Monday to meet President Emmanuel Macron .",
    "Thousands of demonstrators have marched through London to protest the war in Iraq .",
    # words the model never saw (some that GloVe knows, some nobody knows)
    "Zorblaxian envoys met Qwertyuiop Vandersnoot in Ulaanbaatar and Xkcdville yesterday .",
    "a",
    "The United Nations Security Council met in New York . It said nothing .",  # two sentences
    # a long one: 150 tokens
    " ".join(["The European Union and the African Union discussed trade with China in Brussels ."
              .rstrip(" .")] * 10) + " .",
]


@pytest.fixture(scope="module")
def shipped(one_thread):
    return Tagger.load()


@pytest.fixture(scope="module")
def two_layers(one_thread):
    sents = synthetic_sentences(60, seed=3)
    vocab = Vocab.build([s.tokens for s in sents], [s.tags for s in sents])
    torch.manual_seed(5)
    model = BiLSTMTagger(ModelConfig(hidden_size=16, layers=2), len(vocab.words), len(vocab.chars), vocab.labels)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))  # far from the initial weights: peaked, varied scores
        model.char_cnn.embed.weight[0] = 1.0  # no path may read it: outside a word is zero
        model.word_embed.weight[0] = 0.0
    return Tagger(model, vocab, {})


def _batched_docs(tagger, texts):
    """Each text tagged in one call with enough other texts that the batched path runs."""
    filler = ["Filler text number one .", "Another filler ."] * SINGLE_MAX_SENTENCES
    return tagger(list(texts) + filler)[: len(texts)]


def _assert_same_doc(one, batched):
    """Tags, offsets and entities equal; probabilities and scores up to float32 rounding (they
    are rounded to 4 decimals, which a difference of 1e-6 can move by one unit)."""
    strip = lambda d: ([(t["text"], t["start"], t["end"], t["tag"]) for t in d["tokens"]],  # noqa: E731
                       [(e["text"], e["start"], e["end"], e["label"]) for e in d["entities"]],
                       [(s["start"], s["end"]) for s in d["sentences"]])
    assert strip(one) == strip(batched)
    for a, b in zip(one["tokens"], batched["tokens"]):
        assert a["prob"] == pytest.approx(b["prob"], abs=2e-4)
    for a, b in zip(one["entities"], batched["entities"]):
        assert a["score"] == pytest.approx(b["score"], abs=2e-4)
    for a, b in zip(one["sentences"], batched["sentences"]):
        assert a["score"] == pytest.approx(b["score"], rel=1e-5, abs=2e-4)


@pytest.mark.parametrize("which", ["shipped", "two_layers"])
def test_one_text_equals_the_batched_path(which, request, monkeypatch):
    tagger = request.getfixturevalue(which)
    calls = []
    decode = single.SingleSentence.decode
    monkeypatch.setattr(single.SingleSentence, "decode", lambda self, *a: calls.append(1) or decode(self, *a))
    batched = _batched_docs(tagger, TEXTS)
    assert not calls  # a many-text call takes the batched path
    for text, want in zip(TEXTS, batched):
        _assert_same_doc(tagger(text), want)
    assert len(calls) >= len(TEXTS)  # ... and a one-text call the numpy one
    assert sum(len(d["entities"]) for d in batched) > 0 or which == "two_layers"


@pytest.mark.parametrize("which", ["shipped", "two_layers"])
def test_decoder_output_matches_tag_encoded(which, request):
    """The TaggedSentence itself: tags equal, scores, marginals, entity probabilities within 1e-5."""
    tagger = request.getfixturevalue(which)
    sentences = [t.split() for t in TEXTS] + [s.tokens for s in synthetic_sentences(30, seed=11)]
    items = [encode(s, tagger.vocab) for s in sentences]
    want = tag_encoded(tagger.model, items, tagger.pretrained, with_confidence=True)
    numpy_path = single.SingleSentence.build(tagger.model)
    checked = 0
    for item, w in zip(items, want):
        got = numpy_path.decode(item, tagger.pretrained)
        if got is None:  # the batched path's exact fallback would apply: the caller takes it
            continue
        checked += 1
        assert got.tag_ids == w.tag_ids
        assert got.score == pytest.approx(w.score, rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(got.marginals, w.marginals, atol=1e-5)
        np.testing.assert_allclose(got.entity_probs, w.entity_probs, atol=1e-5)
    assert checked >= len(items) - 2


def test_changed_weights_are_seen_and_fallbacks_give_the_batched_result(two_layers, monkeypatch):
    text = TEXTS[0]
    before = two_layers(text)
    with torch.no_grad():
        two_layers.model.emission.bias[0] += 5.0  # in place, as an optimizer step
    try:
        after = two_layers(text)
        _assert_same_doc(after, _batched_docs(two_layers, [text])[0])
        assert [t["prob"] for t in after["tokens"]] != [t["prob"] for t in before["tokens"]]
        # Where the numpy path declines (here: every message "underflows"), the batched one answers.
        monkeypatch.setattr(single, "_THRESHOLD", float("inf"))
        assert two_layers._single.decode(encode(text.split(), two_layers.vocab)) is None
        _assert_same_doc(two_layers(text), after)
    finally:
        with torch.no_grad():
            two_layers.model.emission.bias[0] -= 5.0


def test_nbest_and_empty_texts_take_the_batched_path(shipped):
    doc = shipped(TEXTS[0], nbest=2)
    assert len(doc["sentences"][0]["nbest"]) == 2
    assert shipped("")["tokens"] == [] and shipped("   ")["sentences"] == []
