"""Hypothesis properties: batching never changes a sentence's result, the CRF's exact-inference
identities, and character offsets of the Tagger for any text.

Covered elsewhere, not repeated here:
* tokenizer offsets slice the input back to each token and no character is lost:
  tests/test_tokenizer.py (test_invariants_on_any_unicode_text and friends);
* every writer/reader pair round-trips a random corpus losslessly: tests/test_readers.py
  (test_round_trip, with hypothesis).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbilstm.config import ModelConfig
from nerbilstm.data.batching import encode
from nerbilstm.data.vocab import Vocab
from nerbilstm.model.crf import CRF
from nerbilstm.tags import iob2_constraints
from nerbilstm.model.tagger import BiLSTMTagger
from nerbilstm.predict import Tagger, tag_encoded

from offsets import check_entity_offsets
from synthetic import synthetic_sentences

pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------ a tiny untrained tagger

_CORPUS = synthetic_sentences(20, seed=5)
_VOCAB = Vocab.build([s.tokens for s in _CORPUS], [s.tags for s in _CORPUS])
_MODELS: dict[str, BiLSTMTagger] = {}


def tiny_model(decoder: str) -> BiLSTMTagger:
    """Randomly initialised (seeded), built once per decoder; the CRF's scores are widened so
    that paths really differ."""
    if decoder not in _MODELS:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(11)
        model = BiLSTMTagger(ModelConfig(word_dim=8, char_dim=6, char_filters=5, hidden_size=7, layers=2,
                                         decoder=decoder), len(_VOCAB.words), len(_VOCAB.chars), _VOCAB.labels)
        if model.crf is not None:
            with torch.no_grad():
                for p in model.crf.parameters():
                    p.normal_(0.0, 1.0)
        torch.random.set_rng_state(gen_state)
        _MODELS[decoder] = model.eval()
    return _MODELS[decoder]


# Tokens: words the vocabulary knows, and arbitrary strings (unknown words and characters).
_known = st.sampled_from(sorted({t for s in _CORPUS for t in s.tokens}))
_any = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
_token = st.one_of(_known, _any)
_sentence = st.lists(_token, min_size=0, max_size=12)


# ------------------------------------------------------------------ padding invariance


def _assert_same(alone, inside, labels):
    assert alone.tag_ids == inside.tag_ids
    assert math.isclose(alone.score, inside.score, rel_tol=1e-5, abs_tol=1e-5) or \
        (math.isnan(alone.score) and math.isnan(inside.score))
    np.testing.assert_allclose(alone.marginals, inside.marginals, rtol=0, atol=1e-5)
    assert alone.marginals.shape == (len(alone.tag_ids), len(labels))
    np.testing.assert_allclose(alone.entity_probs, inside.entity_probs, rtol=0, atol=1e-5)
    if alone.nbest is not None:
        assert len(alone.nbest) == len(inside.nbest)
        for (p1, q1), (p2, q2) in zip(alone.nbest, inside.nbest):
            assert math.isclose(q1, q2, abs_tol=1e-5)
            if p1 != p2:  # only paths of (numerically) equal probability may swap places
                assert any(math.isclose(q, q1, abs_tol=1e-5) for p, q in inside.nbest if p == p1)


@pytest.mark.parametrize("decoder", ["crf", "softmax"])
@SETTINGS
@given(batch=st.lists(_sentence, min_size=1, max_size=6))
def test_sentence_alone_equals_sentence_in_batch(decoder, batch):
    model = tiny_model(decoder)
    items = [encode(tokens, _VOCAB) for tokens in batch]
    nbest = 3 if decoder == "crf" else 0
    together = tag_encoded(model, items, batch_size=256, with_confidence=True, nbest=nbest)
    assert len(together) == len(items)
    for item, inside in zip(items, together):
        alone = tag_encoded(model, [item], batch_size=256, with_confidence=True, nbest=nbest)[0]
        _assert_same(alone, inside, model.labels)
        assert len(inside.tag_ids) == len(item.words)
        if inside.tag_ids:  # marginals are distributions at every real position
            np.testing.assert_allclose(inside.marginals.sum(-1), 1.0, rtol=0, atol=1e-5)
            assert all(-1e-6 <= p <= 1 + 1e-6 for p in inside.entity_probs)


# ------------------------------------------------------------------ CRF identities
# tests/test_crf.py checks these on fixed cases against enumeration; here hypothesis draws the
# scores (small K and T so that every path can be enumerated).


@st.composite
def crf_case(draw):
    K = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    T = max(lengths) + draw(st.integers(0, 1))  # sometimes padding on every row
    score = st.floats(-8.0, 8.0, allow_nan=False, allow_infinity=False, width=32)
    em = draw(st.lists(score, min_size=len(lengths) * T * K, max_size=len(lengths) * T * K))
    params = draw(st.lists(score, min_size=K * K + 2 * K, max_size=K * K + 2 * K))
    tags = draw(st.lists(st.integers(0, K - 1), min_size=len(lengths) * T, max_size=len(lengths) * T))
    constrained = K == 3 and draw(st.booleans())
    return K, lengths, T, em, params, tags, constrained


def _build(case):
    K, lengths, T, em, params, tags, constrained = case
    B = len(lengths)
    emissions = torch.tensor(em, dtype=torch.float64).view(B, T, K)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    tag_t = torch.tensor(tags).view(B, T)
    crf = CRF(K).double()
    p = torch.tensor(params, dtype=torch.float64)
    with torch.no_grad():
        crf.transitions.copy_(p[: K * K].view(K, K))
        crf.start_scores.copy_(p[K * K: K * K + K])
        crf.end_scores.copy_(p[K * K + K:])
    if constrained:
        crf.set_constraints(*iob2_constraints(["O", "B-a", "I-a"]))
    return crf, emissions, mask, tag_t


def _path_scores(crf, emissions, L):
    """Every path of length L of sentence 0..: {path: score}, with the constraint penalties."""
    K = crf.num_tags
    trans = crf.transitions.detach().clone()
    start = crf.start_scores.detach().clone()
    end = crf.end_scores.detach().clone()
    if crf.allowed_transitions is not None:
        trans = trans - (~crf.allowed_transitions) * 10000.0
        start = start - (~crf.allowed_start) * 10000.0
        end = end - (~crf.allowed_end) * 10000.0
    out = {}
    em = emissions.tolist()
    trans, start, end = trans.tolist(), start.tolist(), end.tolist()
    for path in itertools.product(range(K), repeat=L):
        s = start[path[0]] + em[0][path[0]] + end[path[-1]]
        for t in range(1, L):
            s += trans[path[t - 1]][path[t]] + em[t][path[t]]
        out[path] = s
    return out


@SETTINGS
@given(case=crf_case())
def test_crf_nll_nonnegative(case):
    crf, emissions, mask, tags = _build(case)
    nll = crf.neg_log_likelihood(emissions, tags, mask)
    assert nll.shape == (emissions.shape[0],)
    assert torch.isfinite(nll).all()
    assert (nll >= -1e-5).all(), nll


@SETTINGS
@given(case=crf_case())
def test_crf_viterbi_is_the_best_path(case):
    crf, emissions, mask, _ = _build(case)
    best, best_score = crf.viterbi_decode(emissions, mask)
    for b, L in enumerate(mask.sum(1).tolist()):
        scores = _path_scores(crf, emissions[b, :L], L)
        top = max(scores.values())
        assert best_score[b].item() == pytest.approx(top, abs=1e-6, rel=1e-9)
        assert scores[tuple(best[b, :L].tolist())] == pytest.approx(top, abs=1e-6, rel=1e-9)
        assert (best[b, L:] == 0).all()


@SETTINGS
@given(case=crf_case())
def test_crf_marginals_sum_to_one(case):
    crf, emissions, mask, _ = _build(case)
    mu = crf.marginals(emissions, mask)
    assert mu.shape == emissions.shape
    assert (mu >= -1e-9).all() and (mu <= 1 + 1e-9).all()
    torch.testing.assert_close(mu.sum(-1), mask.double(), rtol=0, atol=1e-6)
    # and they are the enumerated marginals (first sentence)
    L = int(mask[0].sum())
    scores = _path_scores(crf, emissions[0, :L], L)
    z = max(scores.values())
    norm = sum(math.exp(s - z) for s in scores.values())
    want = torch.zeros(L, crf.num_tags, dtype=torch.float64)
    for path, s in scores.items():
        for t, k in enumerate(path):
            want[t, k] += math.exp(s - z) / norm
    torch.testing.assert_close(mu[0, :L], want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ Tagger offsets on any text


def _check_offsets(text, doc):
    assert doc["text"] == text
    prev = 0
    for tok in doc["tokens"]:
        assert text[tok["start"]:tok["end"]] == tok["text"]
        assert tok["start"] >= prev and tok["end"] > tok["start"]
        prev = tok["end"]
        assert tok["tag"] in _VOCAB.labels
    check_entity_offsets(text, doc)
    for sent in doc["sentences"]:
        assert 0 <= sent["start"] <= sent["end"] <= len(text)


@SETTINGS
@given(text=st.text(max_size=300))
def test_tagger_offsets_on_any_text(text):
    tagger = Tagger(tiny_model("crf"), _VOCAB, {})
    _check_offsets(text, tagger(text))


@SETTINGS
@given(texts=st.lists(st.text(max_size=80), max_size=4))
def test_tagger_list_of_texts_equals_one_by_one(texts):
    tagger = Tagger(tiny_model("crf"), _VOCAB, {})
    docs = tagger(texts)
    assert len(docs) == len(texts)
    for text, doc in zip(texts, docs):
        _check_offsets(text, doc)
        one = tagger(text)
        assert [(t["start"], t["end"], t["tag"]) for t in one["tokens"]] == \
            [(t["start"], t["end"], t["tag"]) for t in doc["tokens"]]
        assert [(e["start"], e["end"], e["label"]) for e in one["entities"]] == \
            [(e["start"], e["end"], e["label"]) for e in doc["entities"]]
