"""The wired tagger: padding invariance of emissions, decoding and losses; both decoders."""

import pytest
import torch

from nerbilstm.config import ModelConfig
from nerbilstm.data.batching import collate, encode
from nerbilstm.data.vocab import Vocab
from nerbilstm.model.tagger import BiLSTMTagger

from synthetic import synthetic_sentences


@pytest.fixture
def corpus():
    return synthetic_sentences(12, seed=3)


@pytest.mark.parametrize("decoder", ["crf", "softmax"])
def test_sentence_result_independent_of_batch(seed, corpus, decoder):
    vocab = Vocab.build([s.tokens for s in corpus], [s.tags for s in corpus])
    model = BiLSTMTagger(ModelConfig(word_dim=8, char_dim=6, char_filters=5, hidden_size=7, layers=2,
                                     decoder=decoder), len(vocab.words), len(vocab.chars), vocab.labels).eval()
    items = [encode(s.tokens, vocab, s.tags) for s in corpus]
    with torch.no_grad():
        batch = collate(items)
        out = model.decode(batch, with_marginals=True)
        tags, scores, marg = out.tags, out.score, out.marginals
        losses = model.loss(batch)
        for i, item in enumerate(items):
            alone = collate([item])
            one = model.decode(alone, with_marginals=True)
            t1, s1, m1 = one.tags, one.score, one.marginals
            n = len(item.words)
            assert t1[0, :n].tolist() == tags[i, :n].tolist()
            assert torch.allclose(s1[0], scores[i], atol=1e-5)
            assert torch.allclose(m1[0, :n], marg[i, :n], atol=1e-5)
            assert torch.allclose(model.loss(alone)[0], losses[i], atol=1e-4)


def test_unknown_word_gets_pretrained_vector(seed, corpus):
    class Table:
        dim = 8

        def vectors_for(self, words):
            import numpy as np

            vec = np.ones((len(words), 8), np.float32)
            return vec, np.array([w == "Zanzibar" for w in words])

    vocab = Vocab.build([s.tokens for s in corpus], [s.tags for s in corpus])
    batch = collate([encode(["Zanzibar", "Qwzx"], vocab)], pretrained=Table())
    assert batch.pretrained_mask.tolist() == [[True, False]]
    model = BiLSTMTagger(ModelConfig(word_dim=8, char_dim=0, case_dim=0, hidden_size=4, layers=1),
                         len(vocab.words), len(vocab.chars), vocab.labels).eval()
    feats = model.features(batch)
    assert torch.equal(feats[0, 0], torch.ones(8))
    assert torch.equal(feats[0, 1], model.word_embed.weight[1])


LABELS = ["O", "B-a", "I-a", "B-b", "I-b"]


def brute_force_paths(crf, emissions, n):
    """Every tag path of a sentence of n tokens with its probability under the CRF."""
    import itertools

    K = emissions.shape[-1]
    paths = [list(p) for p in itertools.product(range(K), repeat=n)]
    tags = torch.tensor(paths)
    em = emissions[:, :n].expand(len(paths), n, K)
    scores = crf.score(em, tags, torch.ones(len(paths), n, dtype=torch.bool))
    return paths, (scores - scores.logsumexp(0)).exp().detach()


@pytest.mark.parametrize("decoder", ["crf", "softmax", "crf-exact-fallback"])
def test_span_probability_equals_enumeration(seed, decoder, monkeypatch):
    if decoder == "crf-exact-fallback":
        # Scaled messages unavailable: every span must take the exact constrained partition.
        import nerbilstm.model.crf as crf_module

        monkeypatch.setattr(crf_module, "_scaled_forward", lambda *args, **kwargs: None)
        decoder = "crf"
    model = BiLSTMTagger(ModelConfig(word_dim=4, char_dim=0, case_dim=0, hidden_size=3, layers=1, decoder=decoder,
                                     constrained=False), 5, 2, LABELS).eval()
    n = 4
    emissions = torch.randn(2, 5, len(LABELS))
    mask = torch.arange(5)[None] < torch.tensor([5, n])[:, None]
    spans = [(1, 1, 3, [1, 2]), (1, 0, 1, [3]), (1, 3, 4, [2]), (0, 2, 5, [3, 4, 4])]
    if decoder == "crf":
        marginals = None
    else:
        marginals = emissions.softmax(-1) * mask.unsqueeze(-1)
    got = model.span_probabilities(emissions, mask, spans)  # the decoder's own posteriors
    for (b, s, e, ids), p in zip(spans, got):
        length = int(mask[b].sum())
        if decoder == "crf":
            paths, probs = brute_force_paths(model.crf, emissions[b : b + 1], length)
        else:
            import itertools

            paths = [list(q) for q in itertools.product(range(len(LABELS)), repeat=length)]
            probs = torch.stack([marginals[b, torch.arange(length), torch.tensor(q)].prod() for q in paths])
        i_tag = LABELS.index("I-" + LABELS[ids[0]][2:])
        expected = sum(float(pr) for q, pr in zip(paths, probs)
                       if q[s:e] == ids and (e >= length or q[e] != i_tag))
        assert float(p) == pytest.approx(expected, abs=1e-5)


def test_span_probabilities_chain_equals_exact(seed):
    # Many spans, long enough sentences, IOB2 constraints: the Markov-chain product and the
    # constrained partition function agree.
    model = BiLSTMTagger(ModelConfig(word_dim=4, char_dim=0, case_dim=0, hidden_size=3, layers=1), 5, 2,
                         LABELS).eval()
    emissions = 3 * torch.randn(3, 9, len(LABELS))
    mask = torch.arange(9)[None] < torch.tensor([9, 5, 1])[:, None]
    gen = torch.Generator().manual_seed(0)
    spans = []
    for b, length in enumerate([9, 5, 1]):
        for _ in range(6):
            s = int(torch.randint(length, (1,), generator=gen))
            e = s + 1 + int(torch.randint(length - s, (1,), generator=gen))
            kind = LABELS[1 + 2 * int(torch.randint((len(LABELS) - 1) // 2, (1,), generator=gen))][2:]
            spans.append((b, s, e, [LABELS.index("B-" + kind)] + [LABELS.index("I-" + kind)] * (e - s - 1)))
    chain = model.span_probabilities(emissions, mask, spans)
    inside = [model.continuation[ids[0]] for _, _, _, ids in spans]
    exact = model.crf._exact_span_probabilities(emissions, mask, spans, inside)
    assert torch.allclose(chain, exact, atol=1e-5)
    assert chain.max() > 0.01  # not all vanishing


def test_nbest_probabilities_equal_enumeration(seed):
    model = BiLSTMTagger(ModelConfig(word_dim=4, char_dim=0, case_dim=0, hidden_size=3, layers=1,
                                     constrained=False), 5, 2, LABELS).eval()
    emissions = torch.randn(1, 3, len(LABELS))
    mask = torch.ones(1, 3, dtype=torch.bool)
    paths, probs = model.nbest(emissions, mask, 4)
    all_paths, all_probs = brute_force_paths(model.crf, emissions, 3)
    top = all_probs.topk(4)
    assert torch.allclose(probs[0], top.values, atol=1e-5)
    assert [all_paths[i] for i in top.indices.tolist()] == paths[0].tolist()


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector(enabled):
    import gc

    from nerbilstm.predict import gc_paused

    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(RuntimeError):
            with gc_paused():
                assert not gc.isenabled()
                raise RuntimeError("boom")
        assert gc.isenabled() == enabled
    finally:
        gc.enable()
