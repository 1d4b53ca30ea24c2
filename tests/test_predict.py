"""predict.py: Tagger on pre-tokenized input gives the documents that raw text gives."""

from __future__ import annotations

import pytest

from servers import tiny_tagger
from synthetic import synthetic_sentences


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return tiny_tagger(tmp_path_factory.mktemp("predict") / "model")


@pytest.fixture(scope="module")
def sentences():
    return [s.tokens for s in synthetic_sentences(40, seed=9)]


def _check_offsets(doc):
    for tok in doc["tokens"]:
        assert doc["text"][tok["start"]:tok["end"]] == tok["text"]
    starts = {t["start"] for t in doc["tokens"]}
    ends = {t["end"] for t in doc["tokens"]}
    for ent in doc["entities"]:
        assert ent["start"] in starts and ent["end"] in ends


def _exact(doc):
    """A document without its probabilities."""
    return (doc["text"], [(t["text"], t["start"], t["end"], t["tag"]) for t in doc["tokens"]],
            [(e["text"], e["start"], e["end"], e["label"]) for e in doc["entities"]],
            [[n["tags"] for n in s.get("nbest", [])] for s in doc["sentences"]])


def test_tag_tokens_equals_tagging_the_joined_text(tagger, sentences):
    docs = tagger.tag_tokens(sentences)
    assert len(docs) == len(sentences)
    same = 0
    for tokens, doc in zip(sentences, docs):
        assert doc["text"] == " ".join(tokens) and [t["text"] for t in doc["tokens"]] == tokens
        _check_offsets(doc)
        from_text = tagger(doc["text"])
        if [t["text"] for t in from_text["tokens"]] == tokens and len(from_text["sentences"]) == 1:
            assert _exact(doc) == _exact(from_text)  # same tokens: the same document
            same += 1
    assert same > len(sentences) // 2


def test_tag_tokens_tags_equal_tags_and_batching_changes_nothing(tagger, sentences):
    docs = tagger.tag_tokens(sentences, nbest=2)
    assert [[t["tag"] for t in d["tokens"]] for d in docs] == tagger.tags(sentences)
    for doc, one in zip(docs, (tagger.tag_tokens([s], nbest=2)[0] for s in sentences)):
        assert _exact(doc) == _exact(one)  # rounded probabilities may differ in the last digit
        for a, b in zip(doc["tokens"] + doc["entities"], one["tokens"] + one["entities"]):
            assert a.get("prob", a.get("score")) == pytest.approx(b.get("prob", b.get("score")), abs=2e-4)
    for doc in docs:
        assert all(0.0 <= t["prob"] <= 1.0 for t in doc["tokens"])
        assert all(0.0 <= e["score"] <= 1.0 for e in doc["entities"])
        assert len(doc["sentences"]) == 1 and 1 <= len(doc["sentences"][0]["nbest"]) <= 2


def test_tag_tokens_empty_sentence(tagger):
    (doc,) = tagger.tag_tokens([[]])
    assert doc["text"] == "" and doc["tokens"] == [] and doc["entities"] == []


def test_no_garbage_collection_inside_a_call(tagger, sentences):
    """tag_documents pauses the collector for the whole list: re-enabling it after each document
    ran a collection each time, over the documents made so far (8% of a 4,796-text call); now
    one runs at the end at most."""
    import gc

    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    texts = [" ".join(s) for s in sentences] * 20  # 800 documents
    gc.callbacks.append(count)
    try:
        docs = tagger(texts)
    finally:
        gc.callbacks.remove(count)
    assert len(docs) == len(texts) and gc.isenabled()
    assert len(runs) <= 1, runs  # one, as the collector is re-enabled at the end
