"""Dropout with a cheaper mask than ``torch.nn.Dropout``'s on a CPU.

``torch.nn.functional.dropout`` draws one Bernoulli sample per element, which on a CPU costs
more than the layer it regularises (about 4 ms for a 32 x 27 x 512 batch on 2 cores). Here
the mask comes from 16 random bits per element, drawn as 64-bit integers four elements at a
time (about 8 times faster). The drop probability is therefore a multiple of 1/65536.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LEVELS = 1 << 16


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element of x with probability p and scale the rest by 1 / (1 - p).

    x: any shape -> same shape. The identity when not training or p == 0.
    """
    _check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    bits = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    keep = bits >= round(p * _LEVELS) - _LEVELS // 2
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Module):
    """``dropout`` as a module: active in training mode only."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        _check_probability(p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
