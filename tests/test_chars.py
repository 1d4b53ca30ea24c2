"""The char CNN: features once per distinct word equal features per token, values and gradients."""

import pytest
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


@pytest.mark.parametrize("kernel, length", [(3, 6), (5, 7), (3, 1), (1, 4)])
def test_inference_lookup_equals_the_convolution(kernel, length):
    """Without gradients the features come from per-character tables (looked_up_features):
    the same values as the convolution, whatever the kernel, with empty words and a non-zero
    padding embedding (a loaded model may hold one)."""
    torch.manual_seed(kernel * 10 + length)
    cnn = CharCNN(n_chars=9, char_dim=4, filters=6, kernel=kernel).eval()
    with torch.no_grad():
        cnn.embed.weight[0] = torch.randn(4)
    flat = torch.randint(1, 9, (11, length))
    flat[2, length // 2:] = 0  # a short word
    flat[5] = 0  # an empty (padding) word
    with torch.enable_grad():
        by_convolution = cnn.word_features(flat)
    with torch.no_grad():
        by_lookup = cnn.word_features(flat)
        assert torch.allclose(by_lookup, cnn.looked_up_features(flat))
    assert by_lookup.requires_grad is False and by_convolution.requires_grad
    assert torch.allclose(by_lookup, by_convolution.detach(), atol=1e-6)
    assert torch.equal(by_lookup[5], torch.zeros(6))


@pytest.mark.parametrize("kernel", [0, 2, 4])
def test_an_even_kernel_is_refused(kernel):
    # padding kernel // 2 on both sides gives an even kernel one output more than the word has
    # characters: its features would be shifted against them
    with pytest.raises(ValueError, match=f"kernel width must be odd, got {kernel}"):
        CharCNN(n_chars=9, char_dim=4, filters=6, kernel=kernel)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_training_convolution_equals_torch_conv1d_word_by_word(kernel):
    """convolved_features (real characters laid end to end) against torch's conv1d run on each
    word's own characters with zero padding: values and gradients, with empty words, words of
    every length up to L and a non-zero padding embedding (which must not leak in)."""
    torch.manual_seed(kernel)
    cnn = CharCNN(n_chars=9, char_dim=4, filters=6, kernel=kernel, dropout=0.0).train()
    with torch.no_grad():
        cnn.embed.weight[0] = torch.randn(4)
    flat = torch.randint(1, 9, (12, 7))
    for row, length in enumerate([7, 1, 0, 3, 6, 2, 0, 5, 4, 7, 1, 2]):
        flat[row, length:] = 0
    ours = cnn.convolved_features(flat)
    expected = []
    for word in flat:
        chars = word[word != 0]
        if chars.numel() == 0:
            expected.append(torch.zeros(6))
            continue
        x = cnn.embed(chars).t().unsqueeze(0)  # (1, C, l)
        y = torch.nn.functional.conv1d(x, cnn.conv.weight, cnn.conv.bias, padding=kernel // 2)
        expected.append(y[0].amax(dim=1))
    expected = torch.stack(expected)
    assert torch.allclose(ours, expected, atol=1e-5)
    weight = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weight).sum(), list(cnn.parameters()))
    wanted = torch.autograd.grad((expected * weight).sum(), list(cnn.parameters()))
    for g, w in zip(grads, wanted):
        assert torch.allclose(g, w, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(cnn.eval().word_features(flat), expected, atol=1e-5)  # the inference tables
