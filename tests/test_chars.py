"""The char CNN: features once per distinct word equal features per token, values and gradients."""

import torch

import nerbilstm.model.chars as chars_module
from nerbilstm.model.chars import CharCNN, distinct_rows


def test_distinct_words_computed_once_give_the_same_features_and_gradients(seed):
    cnn = CharCNN(n_chars=12, char_dim=5, filters=4, kernel=3, dropout=0.0)
    words = torch.tensor([[3, 4, 5, 0], [3, 4, 5, 0], [6, 0, 0, 0], [0, 0, 0, 0], [7, 8, 9, 10]])
    char_ids = torch.stack([words, words.flip(0)])  # (B=2, T=5, L=4): repeats within and across rows
    out = cnn(char_ids)
    per_token = cnn.word_features(char_ids.view(-1, 4)).view(2, 5, -1)
    assert torch.allclose(out, per_token, atol=1e-6)
    assert (out[0, 3] == 0).all()  # a padding word has zero features
    weight = torch.randn_like(out)
    grads = torch.autograd.grad((out * weight).sum(), list(cnn.parameters()))
    expected = torch.autograd.grad((per_token * weight).sum(), list(cnn.parameters()))
    for g, e in zip(grads, expected):
        assert torch.allclose(g, e, atol=1e-5)


def test_training_with_dropout_sees_every_token(seed):
    cnn = CharCNN(n_chars=12, char_dim=5, filters=4, kernel=3, dropout=0.5).train()
    char_ids = torch.tensor([[[3, 4, 0], [3, 4, 0]]])
    out = cnn(char_ids)
    # Independent dropout masks per token: the two occurrences differ.
    assert not torch.equal(out[0, 0], out[0, 1])


def test_distinct_rows_are_exact(seed):
    rows = torch.randint(0, 4, (500, 3))
    distinct, inverse = distinct_rows(rows)
    assert torch.equal(distinct[inverse], rows)
    assert len(distinct) == len({tuple(r) for r in rows.tolist()})


def test_hash_collision_falls_back_to_every_token(seed, monkeypatch):
    # All-zero hash weights: every row collides, verification fails, features are still right.
    monkeypatch.setattr(chars_module, "_HASH_WEIGHTS", {(3, torch.device("cpu")): torch.zeros(3, dtype=torch.long)})
    rows = torch.tensor([[1, 2, 0], [2, 1, 0]])
    assert distinct_rows(rows) is None
    cnn = CharCNN(n_chars=5, char_dim=3, filters=2, kernel=3).eval()
    out = cnn(rows.view(1, 2, 3))
    assert torch.allclose(out[0], cnn.word_features(rows), atol=1e-6)
