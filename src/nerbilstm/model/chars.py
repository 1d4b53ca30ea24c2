"""Character-level word features: a char CNN with max pooling (Ma & Hovy 2016)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerbilstm.model.dropout import Dropout


class CharCNN(nn.Module):
    """Embeds each word's characters, convolves, and max-pools over the word.

    char_ids: (B, T, L) long with 0 for padding -> (B, T, filters).
    """

    def __init__(self, n_chars: int, char_dim: int, filters: int, kernel: int = 3, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel, padding=kernel // 2)
        self.dropout = Dropout(dropout)
        self.out_dim = filters

    def forward(self, char_ids: Tensor) -> Tensor:
        B, T, L = char_ids.shape
        flat = char_ids.view(B * T, L)
        # Without dropout a word's features depend on its characters only: compute them once
        # per distinct word. With it, every token draws its own mask.
        found = None if self.training and self.dropout.p > 0 else distinct_rows(flat)
        if found is None:
            return self.word_features(flat).view(B, T, -1)
        distinct, inverse = found
        return self.word_features(distinct).index_select(0, inverse).view(B, T, -1)

    def word_features(self, flat: Tensor) -> Tensor:
        """flat: (N, L) char ids of N words -> (N, filters)."""
        x = self.dropout(self.embed(flat)).transpose(1, 2)  # (N, C, L)
        feats = self.conv(x)  # (N, F, L)
        # Padding characters must not win the max: a word's features depend on its own chars only.
        pad = (flat == 0).unsqueeze(1)
        feats = feats.masked_fill(pad, float("-inf")).amax(dim=2)
        return torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats))  # empty (padding) words


_HASH_WEIGHTS: dict[tuple[int, torch.device], Tensor] = {}


def distinct_rows(rows: Tensor) -> tuple[Tensor, Tensor] | None:
    """The distinct rows of an (N, L) long tensor: (distinct (U, L), inverse (N,)) with
    distinct[inverse] == rows; None in the (unlikely) event of a hash collision.

    Rows are hashed to one int64 each and the hashes made unique (``torch.unique(dim=0)``
    compares rows one by one and costs a hundred times more); the result is verified."""
    N, L = rows.shape
    key = (L, rows.device)
    weights = _HASH_WEIGHTS.get(key)
    if weights is None:
        gen = torch.Generator().manual_seed(L)
        weights = _HASH_WEIGHTS[key] = torch.randint(1, 2**62, (L,), generator=gen).to(rows.device) | 1
    hashes = (rows * weights).sum(1)  # int64 arithmetic wraps around
    _, inverse = torch.unique(hashes, return_inverse=True)
    U = int(inverse.max()) + 1 if N else 0
    first = torch.full((U,), N, dtype=torch.long, device=rows.device)
    first.scatter_reduce_(0, inverse, torch.arange(N, device=rows.device), reduce="amin")
    distinct = rows.index_select(0, first)
    if not torch.equal(distinct.index_select(0, inverse), rows):
        return None
    return distinct, inverse
