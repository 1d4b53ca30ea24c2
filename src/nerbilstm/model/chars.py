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
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"the char CNN's kernel width must be odd, got {kernel}")
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
        """flat: (N, L) char ids of N words -> (N, filters), 0 for a word with no characters.

        The convolution sees zero vectors outside a word (its zero padding), never the
        embedding of the padding id, so a word's features depend on its own characters only."""
        if not torch.is_grad_enabled() and not (self.training and self.dropout.p > 0):
            return self.looked_up_features(flat)
        return self.convolved_features(flat)

    def convolved_features(self, flat: Tensor) -> Tensor:
        """word_features through the convolution, for training: flat (N, L) -> (N, filters).

        Only real characters are convolved. They are laid end to end, each word preceded by
        k // 2 padding ids (whose vectors are zeroed), so that a word's window never reaches
        another word; the convolution is k shifted products of the (P, C) char vectors of the
        P real characters with the kernel's (C, filters) slices, and a word's features are the
        max over its characters (a scatter). On GMB's training batches this is about 2x faster,
        backward pass included, than convolving the (N, C, L) padded words, most of whose L
        positions are padding (``benchmarks/speed.py``, ``char_cnn_speedup``)."""
        N, _ = flat.shape
        k = self.conv.kernel_size[0]
        half = k // 2
        real = flat != 0
        lengths = real.sum(1)
        word, position = real.nonzero(as_tuple=True)  # (P,) each, word by word
        starts = torch.cumsum(lengths + half, 0) - lengths  # sequence index of each word's first char
        at = starts.index_select(0, word) + position  # (P,) sequence index of each real char
        sequence = flat.new_zeros(int((lengths + half).sum()) + half)
        sequence[at] = flat[word, position]
        vectors = self.embed(sequence) * (sequence != 0).unsqueeze(1).to(self.embed.weight.dtype)
        vectors = self.dropout(vectors)  # (S, C)
        weight = self.conv.weight  # (filters, C, k)
        out = vectors.index_select(0, at - half) @ weight[:, :, 0].t()
        for j in range(1, k):
            out = out + vectors.index_select(0, at - half + j) @ weight[:, :, j].t()
        if self.conv.bias is not None:
            out = out + self.conv.bias  # (P, filters)
        index = word.unsqueeze(1).expand_as(out)
        return out.new_zeros(N, out.shape[1]).scatter_reduce(0, index, out, "amax", include_self=False)

    def looked_up_features(self, flat: Tensor) -> Tensor:
        """word_features without the convolution, for inference: flat (N, L) -> (N, filters).

        An embedding followed by a convolution is linear in each character's one-hot vector, so
        the convolution at position l is bias + sum_j table_j[char at l + j - k//2], with
        table_j = embed.weight @ conv.weight[:, :, j].T (n_chars, filters) and a zero row for
        the positions outside the word (the padding id's included, as in convolved_features).
        Positions are taken one at a time and max-pooled as they come: the transient memory is
        (N, filters) instead of (N, filters, L) activations. Same values up to float rounding."""
        N, L = flat.shape
        k = self.conv.kernel_size[0]
        weight, bias = self.conv.weight, self.conv.bias
        tables = torch.einsum("vc,fcj->jvf", self.embed.weight, weight)  # (k, V, F)
        zero_row = tables.new_zeros(k, 1, weight.shape[0])
        tables = torch.cat([tables, zero_row], dim=1)  # row V: outside the word
        padding = flat == 0
        outside = tables.shape[1] - 1
        ids = nn.functional.pad(flat.masked_fill(padding, outside), (k // 2, k // 2), value=outside)  # (N, L+k-1)
        best = None
        for l in range(L):
            at_l = tables[0].index_select(0, ids[:, l])
            for j in range(1, k):
                at_l = at_l + tables[j].index_select(0, ids[:, l + j])
            if bias is not None:
                at_l = at_l + bias
            at_l = at_l.masked_fill(padding[:, l : l + 1], float("-inf"))
            best = at_l if best is None else torch.maximum(best, at_l)
        if best is None:
            return flat.new_zeros((N, weight.shape[0]), dtype=weight.dtype)
        return torch.where(torch.isfinite(best), best, torch.zeros_like(best))  # empty (padding) words


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
