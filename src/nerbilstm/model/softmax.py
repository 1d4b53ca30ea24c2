"""The softmax decoder: every token's tag chosen on its own, with the CRF's interface.

Masks are (B, T) bool, True on real tokens, as for the CRF. The loss is the class-weighted
cross-entropy of the gold tags summed over a sentence (the original's decoder, weights
n / (k * count_c) from the training data); decoding is the per-token argmax. The methods carry
the CRF's names and shapes (neg_log_likelihood, viterbi_decode, posteriors, marginals,
span_probabilities), so the tagger, prediction and export use either decoder the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class SoftmaxPosteriors:
    """Per-token tag probabilities of a batch: marginals (B, T, K), zero past each length.
    Tokens are independent, so a tag sequence's probability is the product of its tokens'."""

    marginals: Tensor


class SoftmaxDecoder:
    """Independent softmax over each token's emission scores.

    class_weights (K,) weight each gold tag's cross-entropy (ones: the plain loss). The tagger
    keeps them as its ``class_weights`` buffer, saved with the model, and hands them over.
    """

    def __init__(self, class_weights: Tensor):
        if not isinstance(class_weights, Tensor) or class_weights.dim() != 1 or len(class_weights) < 1:
            raise ValueError("class_weights must be a (K,) tensor with K >= 1")
        self.class_weights = class_weights
        self.num_tags = len(class_weights)

    def neg_log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """emissions (B, T, K), tags (B, T) long, mask (B, T) -> (B,) class-weighted
        cross-entropy summed over each sentence's real tokens (no reduction over the batch)."""
        B, T, K = emissions.shape
        ce = nn.functional.cross_entropy(emissions.reshape(B * T, K), tags.reshape(B * T),
                                         weight=self.class_weights, reduction="none").view(B, T)
        return (ce * mask).sum(1)

    @torch.no_grad()
    def viterbi_decode(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """emissions (B, T, K), mask (B, T) -> best tags (B, T) long (0 past the length) and
        the log-probability of that tag sequence (B,)."""
        best, tags = emissions.log_softmax(-1).max(-1)
        return tags.masked_fill(~mask, 0), (best * mask).sum(1)

    @torch.no_grad()
    def posteriors(self, emissions: Tensor, mask: Tensor) -> SoftmaxPosteriors:
        """emissions (B, T, K), mask (B, T) -> SoftmaxPosteriors (the per-token softmax)."""
        return SoftmaxPosteriors(emissions.log_softmax(-1).exp() * mask.unsqueeze(-1))

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """emissions (B, T, K), mask (B, T) -> (B, T, K) P(y_t = k | x); rows past the length are 0."""
        return self.posteriors(emissions, mask).marginals

    @torch.no_grad()
    def span_probabilities(self, emissions: Tensor, mask: Tensor, spans: list[tuple[int, int, int, list[int]]],
                           inside: list[int | None], posteriors: SoftmaxPosteriors | None = None) -> Tensor:
        """Probability that each span carries exactly the given tags and does not go on.

        emissions (B, T, K), mask (B, T); spans: (row b, start s, end e exclusive, tag ids of
        s..e-1); inside: per span, the tag that would continue it at e (None: nothing can).
        -> (N,): the product of the span's token probabilities, times 1 - P(y_e = inside) when
        the sentence goes on past e. ``posteriors`` of this batch are computed if not given.
        """
        if not spans:
            return emissions.new_zeros(0)
        marginals = (posteriors or self.posteriors(emissions, mask)).marginals
        lengths = mask.sum(1).tolist()
        out = []
        for (b, s, e, ids), i_tag in zip(spans, inside):
            p = marginals[b, torch.arange(s, e), torch.tensor(ids)].prod()
            if i_tag is not None and e < lengths[b]:
                p = p * (1 - marginals[b, e, i_tag])
            out.append(p)
        return torch.stack(out)

    def nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Not defined for independent tokens: k-best paths need the CRF decoder."""
        raise ValueError("k-best decoding needs the CRF decoder (this model decodes with softmax)")
