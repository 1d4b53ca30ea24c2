"""The softmax decoder against independent computations: the class-weighted cross-entropy
written out by hand, the per-token argmax, and padding that changes nothing."""

import pytest
import torch

from nerbilstm.model.softmax import SoftmaxDecoder, SoftmaxPosteriors

K = 5


@pytest.fixture
def batch(seed):
    """emissions (3, 6, K), gold tags with padding set to -100, mask of lengths 6, 4, 1."""
    emissions = 2 * torch.randn(3, 6, K)
    mask = torch.arange(6)[None] < torch.tensor([6, 4, 1])[:, None]
    tags = torch.randint(K, (3, 6)).masked_fill(~mask, -100)
    return emissions, tags, mask


def test_loss_is_the_class_weighted_cross_entropy(batch):
    emissions, tags, mask = batch
    weights = torch.tensor([0.2, 1.0, 3.0, 0.5, 2.0])
    got = SoftmaxDecoder(weights).neg_log_likelihood(emissions, tags, mask)
    assert got.shape == (3,)
    for b in range(3):
        expected = 0.0
        for t in range(int(mask[b].sum())):
            gold = int(tags[b, t])
            log_p = emissions[b, t, gold] - torch.logsumexp(emissions[b, t], 0)
            expected += -float(weights[gold]) * float(log_p)
        assert float(got[b]) == pytest.approx(expected, rel=1e-5)


def test_unit_weights_give_the_plain_negative_log_likelihood(batch):
    emissions, tags, mask = batch
    got = SoftmaxDecoder(torch.ones(K)).neg_log_likelihood(emissions, tags, mask)
    log_p = emissions.log_softmax(-1).gather(2, tags.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(got, -(log_p * mask).sum(1), atol=1e-5)


def test_loss_has_gradients(batch):
    emissions, tags, mask = batch
    emissions.requires_grad_(True)
    SoftmaxDecoder(torch.ones(K)).neg_log_likelihood(emissions, tags, mask).sum().backward()
    assert emissions.grad is not None and torch.all(emissions.grad[~mask] == 0)


def test_decode_is_the_argmax(batch):
    emissions, _, mask = batch
    tags, score = SoftmaxDecoder(torch.ones(K)).viterbi_decode(emissions, mask)
    assert tags.shape == (3, 6) and score.shape == (3,)
    for b in range(3):
        n = int(mask[b].sum())
        assert tags[b, :n].tolist() == emissions[b, :n].argmax(-1).tolist()
        assert tags[b, n:].tolist() == [0] * (6 - n)
        log_probs = emissions[b, :n].log_softmax(-1)
        assert float(score[b]) == pytest.approx(float(log_probs.max(-1).values.sum()), rel=1e-5)


def test_marginals_are_the_softmax(batch):
    emissions, _, mask = batch
    posteriors = SoftmaxDecoder(torch.ones(K)).posteriors(emissions, mask)
    assert isinstance(posteriors, SoftmaxPosteriors)
    assert torch.allclose(posteriors.marginals, emissions.softmax(-1) * mask.unsqueeze(-1), atol=1e-6)
    assert torch.all(posteriors.marginals[~mask] == 0)


def test_padding_changes_nothing(batch):
    emissions, tags, mask = batch
    decoder = SoftmaxDecoder(torch.rand(K) + 0.1)
    # Garbage in the padded positions and two more padded steps.
    noisy = torch.where(mask.unsqueeze(-1), emissions, 100 * torch.randn_like(emissions))
    longer_em = torch.cat([noisy, 50 * torch.randn(3, 2, K)], 1)
    longer_mask = torch.cat([mask, torch.zeros(3, 2, dtype=torch.bool)], 1)
    longer_tags = torch.cat([tags, torch.full((3, 2), -100)], 1)
    assert torch.allclose(decoder.neg_log_likelihood(longer_em, longer_tags, longer_mask),
                          decoder.neg_log_likelihood(emissions, tags, mask), atol=1e-5)
    t1, s1 = decoder.viterbi_decode(emissions, mask)
    t2, s2 = decoder.viterbi_decode(longer_em, longer_mask)
    assert torch.equal(t2[:, :6], t1) and torch.all(t2[:, 6:] == 0)
    assert torch.allclose(s1, s2, atol=1e-5)
    m1 = decoder.marginals(emissions, mask)
    assert torch.allclose(decoder.marginals(longer_em, longer_mask)[:, :6], m1, atol=1e-6)
    # Each sentence alone gives what it gives in the batch.
    for b in range(3):
        n = int(mask[b].sum())
        alone = decoder.viterbi_decode(emissions[b : b + 1, :n], mask[b : b + 1, :n])
        assert alone[0][0].tolist() == t1[b, :n].tolist()
        assert float(alone[1][0]) == pytest.approx(float(s1[b]), rel=1e-5)


def test_span_probabilities_are_products_of_token_probabilities(batch):
    emissions, _, mask = batch
    decoder = SoftmaxDecoder(torch.ones(K))
    p = emissions.softmax(-1)
    spans = [(0, 1, 3, [1, 2]), (1, 3, 4, [3]), (2, 0, 1, [1])]
    inside = [2, 4, 2]
    got = decoder.span_probabilities(emissions, mask, spans, inside)
    assert float(got[0]) == pytest.approx(float(p[0, 1, 1] * p[0, 2, 2] * (1 - p[0, 3, 2])), rel=1e-5)
    assert float(got[1]) == pytest.approx(float(p[1, 3, 3]), rel=1e-5)  # ends its sentence: nothing can follow
    assert float(got[2]) == pytest.approx(float(p[2, 0, 1]), rel=1e-5)
    assert decoder.span_probabilities(emissions, mask, [], []).shape == (0,)


def test_nbest_needs_the_crf(batch):
    emissions, _, mask = batch
    with pytest.raises(ValueError, match="needs the CRF decoder"):
        SoftmaxDecoder(torch.ones(K)).nbest(emissions, mask, 2)


def test_tagger_with_softmax_uses_its_class_weights():
    from nerbilstm.config import ModelConfig
    from nerbilstm.model.tagger import BiLSTMTagger

    model = BiLSTMTagger(ModelConfig(word_dim=4, char_dim=0, case_dim=0, hidden_size=3, decoder="softmax"), 5, 2,
                         ["O", "B-a", "I-a"])
    assert model.crf is None and isinstance(model.decoder, SoftmaxDecoder)
    model.class_weights.copy_(torch.tensor([0.5, 2.0, 3.0]))
    assert model.decoder.class_weights is model.class_weights
    assert "class_weights" in model.state_dict() and not any(k.startswith("crf.") for k in model.state_dict())
