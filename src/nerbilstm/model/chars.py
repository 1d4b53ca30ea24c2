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
        if self.training and self.dropout.p > 0:
            return self.word_features(flat).view(B, T, -1)
        # A word's features depend on its characters only: compute them once per distinct word.
        distinct, inverse = torch.unique(flat, dim=0, return_inverse=True)
        return self.word_features(distinct).index_select(0, inverse).view(B, T, -1)

    def word_features(self, flat: Tensor) -> Tensor:
        """flat: (N, L) char ids of N words -> (N, filters)."""
        x = self.dropout(self.embed(flat)).transpose(1, 2)  # (N, C, L)
        feats = self.conv(x)  # (N, F, L)
        # Padding characters must not win the max: a word's features depend on its own chars only.
        pad = (flat == 0).unsqueeze(1)
        feats = feats.masked_fill(pad, float("-inf")).amax(dim=2)
        return torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats))  # empty (padding) words
