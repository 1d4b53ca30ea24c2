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
        tags, scores, marg = model.decode(batch, with_marginals=True)
        losses = model.loss(batch)
        for i, item in enumerate(items):
            alone = collate([item])
            t1, s1, m1 = model.decode(alone, with_marginals=True)
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
