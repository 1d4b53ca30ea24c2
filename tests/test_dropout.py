"""Our dropout: the drop rate, the scale, the gradient, independence of elements, modes."""

import pytest
import torch

from nerbilstm.model.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5])
def test_drop_rate_and_scale(seed, p):
    out = dropout(torch.ones(400_000), p)
    dropped = out == 0
    # Binomial standard deviation at n = 400,000 is below 0.001.
    assert abs(dropped.float().mean().item() - p) < 0.005
    assert torch.allclose(out[~dropped], torch.full_like(out[~dropped], 1 / (1 - p)))


def test_neighbouring_elements_are_independent(seed):
    # Four elements share one 64-bit draw: their masks must still be independent.
    dropped = (dropout(torch.ones(100_000, 4), 0.5) == 0).float()
    for a in range(4):
        for b in range(a + 1, 4):
            both = (dropped[:, a] * dropped[:, b]).mean().item()
            assert abs(both - 0.25) < 0.01


def test_gradient_is_the_mask(seed):
    x = torch.randn(7, 9, 5, requires_grad=True)
    out = dropout(x, 0.4)
    out.sum().backward()
    kept = out != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.6))
    assert (x.grad[~kept] == 0).all()


def test_seeded_masks_repeat():
    torch.manual_seed(3)
    first = dropout(torch.ones(1000), 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(torch.ones(1000), 0.5), first)


def test_modes_and_edges(seed):
    x = torch.randn(3, 4)
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    assert dropout(x, 0.0) is x
    assert (dropout(x, 1.0) == 0).all()
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
