"""The tagger: word, char and casing features -> BiLSTM -> emission scores -> CRF or softmax.

This module wires the parts; it knows nothing of files or training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerbilstm.config import ModelConfig
from nerbilstm.data.batching import Batch
from nerbilstm.data.vocab import CASES
from nerbilstm.model.chars import CharCNN
from nerbilstm.model.crf import CRF, Posteriors
from nerbilstm.model.dropout import Dropout
from nerbilstm.model.lstm import BiLSTM
from nerbilstm.tags import continuations, iob2_constraints


class BiLSTMTagger(nn.Module):
    """BiLSTM-CRF (decoder "crf") or BiLSTM-softmax (decoder "softmax") sequence tagger.

    Sizes: n_words, n_chars from the vocabulary; labels the tag names (K of them).
    """

    def __init__(self, config: ModelConfig, n_words: int, n_chars: int, labels: list[str]):
        super().__init__()
        config.validate()
        self.config = config
        self.labels = list(labels)
        K = len(labels)
        self.word_embed = nn.Embedding(n_words, config.word_dim, padding_idx=0)
        in_dim = config.word_dim
        self.char_cnn = None
        if config.char_dim > 0:
            self.char_cnn = CharCNN(n_chars, config.char_dim, config.char_filters, config.char_kernel,
                                    dropout=config.dropout / 2)
            in_dim += self.char_cnn.out_dim
        self.case_embed = None
        if config.case_dim > 0:
            self.case_embed = nn.Embedding(len(CASES), config.case_dim)
            in_dim += config.case_dim
        self.dropout = Dropout(config.dropout)
        self.lstm = BiLSTM(in_dim, config.hidden_size, config.layers, config.dropout, config.lstm_backend)
        self.emission = nn.Linear(2 * config.hidden_size, K)
        # Class weights of the softmax decoder's cross-entropy (saved with the model).
        self.register_buffer("class_weights", torch.ones(K))
        # The I- tag that would continue an entity whose first tag is this one (None for O).
        self.continuation = continuations(self.labels)
        self.crf = None
        if config.decoder == "crf":
            self.crf = CRF(K)
            if config.constrained:
                self.crf.set_constraints(*iob2_constraints(self.labels))

    def features(self, batch: Batch, word_dropout: float = 0.0) -> Tensor:
        """-> (B, T, D) the input of the LSTM."""
        words = batch.words
        if self.training and word_dropout > 0:
            # Word dropout: train the unknown-word vector on real contexts.
            drop = (torch.rand(words.shape, device=words.device) < word_dropout) & batch.mask
            words = words.masked_fill(drop, 1)
        x = self.word_embed(words)
        if batch.pretrained is not None:
            x = torch.where(batch.pretrained_mask.unsqueeze(-1), batch.pretrained.to(x.dtype), x)
        parts = [x]
        if self.char_cnn is not None:
            parts.append(self.char_cnn(batch.chars))
        if self.case_embed is not None:
            parts.append(self.case_embed(batch.cases))
        return torch.cat(parts, dim=-1)

    def emissions(self, batch: Batch, word_dropout: float = 0.0) -> Tensor:
        """-> (B, T, K) emission scores, zero past a sentence's length."""
        x = self.dropout(self.features(batch, word_dropout))
        h, layout = self.lstm.forward_packed(x, batch.mask)  # (N, 2H): real tokens only
        return layout.unpack(self.emission(self.dropout(h)), *batch.mask.shape)

    def forward(self, batch: Batch, word_dropout: float = 0.0) -> Tensor:
        """The training loss (see ``loss``); forward so that DistributedDataParallel can wrap it."""
        return self.loss(batch, word_dropout)

    def loss(self, batch: Batch, word_dropout: float = 0.0) -> Tensor:
        """-> (B,) loss per sentence: CRF negative log-likelihood, or the class-weighted
        cross-entropy summed over the sentence's tokens for the softmax decoder."""
        scores = self.emissions(batch, word_dropout)
        if self.crf is not None:
            return self.crf.neg_log_likelihood(scores.float(), batch.tags, batch.mask)  # float32 under AMP
        B, T, K = scores.shape
        ce = nn.functional.cross_entropy(scores.reshape(B * T, K), batch.tags.reshape(B * T),
                                         weight=self.class_weights, reduction="none").view(B, T)
        return (ce * batch.mask).sum(1)

    def decode(self, batch: Batch, with_marginals: bool = False) -> "Decoded":
        """Best tags, their score and, if asked, per-token marginals (see Decoded)."""
        scores = self.emissions(batch)
        if self.crf is not None:
            tags, path_score = self.crf.viterbi_decode(scores, batch.mask)
            if not with_marginals:
                return Decoded(tags, path_score, None, scores)
            posteriors = self.crf.posteriors(scores, batch.mask)
            return Decoded(tags, path_score, posteriors.marginals, scores, posteriors)
        log_probs = scores.log_softmax(-1)
        best, tags = log_probs.max(-1)
        tags = tags.masked_fill(~batch.mask, 0)
        path_score = (best * batch.mask).sum(1)
        marginals = log_probs.exp() * batch.mask.unsqueeze(-1) if with_marginals else None
        return Decoded(tags, path_score, marginals, scores)

    @torch.no_grad()
    def span_probabilities(self, emissions: Tensor, mask: Tensor, spans: list[tuple[int, int, int, list[int]]],
                           marginals: Tensor | None = None, posteriors: Posteriors | None = None) -> Tensor:
        """Probability that each span carries exactly the given tags and the entity ends there.

        emissions (B, T, K), mask (B, T); spans: (row b, start s, end e exclusive, tag ids of s..e-1).
        -> (N,). For the CRF: the posterior over tag sequences is a Markov chain, so this is
        P(y_s) times P(y_t | y_{t-1}) along the span, times 1 - P(y_e = the span's I- tag | y_{e-1})
        (see ``Posteriors``; ``posteriors`` of this batch are computed if not given). A span where
        those ratios would lose precision gets the exact figure instead: the partition function
        of the paths that agree with it over the full one, both by the forward algorithm. For
        softmax, tokens are independent: the product of their probabilities (``marginals`` needed).
        """
        if not spans:
            return emissions.new_zeros(0)
        inside = [self.continuation[ids[0]] for _, _, _, ids in spans]
        if self.crf is None:
            out = []
            for (b, s, e, ids), i_tag in zip(spans, inside):
                p = marginals[b, torch.arange(s, e), torch.tensor(ids)].prod()
                if i_tag is not None and e < int(mask[b].sum()):
                    p = p * (1 - marginals[b, e, i_tag])
                out.append(p)
            return torch.stack(out)
        if posteriors is None:
            posteriors = self.crf.posteriors(emissions, mask)
        probs, ok = _chain_span_probabilities(posteriors, mask.sum(1).tolist(), spans, inside)
        if not bool(ok.all()):
            redo = (~ok).nonzero().flatten().tolist()
            probs[redo] = self._exact_span_probabilities(emissions, mask, [spans[i] for i in redo],
                                                         [inside[i] for i in redo]).to(probs.dtype)
        return probs

    def _exact_span_probabilities(self, emissions: Tensor, mask: Tensor, spans, inside) -> Tensor:
        """Constrained over full partition function, per span (see span_probabilities)."""
        rows = torch.tensor([b for b, _, _, _ in spans], device=emissions.device)
        em = emissions[rows]
        T = em.shape[1]
        # Index lists, built in Python once: (span, position, tag) of the span's own tags, and
        # of the I- tag forbidden right after it.
        own: list[tuple[int, int, int]] = []
        after: list[tuple[int, int, int]] = []
        for n, ((_, s, e, ids), i_tag) in enumerate(zip(spans, inside)):
            own.extend((n, s + k, t) for k, t in enumerate(ids))
            if i_tag is not None and e < T:
                after.append((n, e, i_tag))
        own_index = torch.tensor(own, device=em.device).t()
        allowed = torch.ones_like(em, dtype=torch.bool)
        allowed[own_index[0], own_index[1]] = False  # inside the span: only its own tags
        allowed[own_index[0], own_index[1], own_index[2]] = True
        if after:
            after_index = torch.tensor(after, device=em.device).t()
            allowed[after_index[0], after_index[1], after_index[2]] = False
        # A large finite penalty rather than -inf keeps every step of the recursion finite.
        constrained = self.crf.log_partition(em.masked_fill(~allowed, -1e4), mask[rows])
        full = self.crf.log_partition(emissions, mask)[rows]  # once per sentence, not per span
        return (constrained - full).exp().clamp(0, 1)

    @torch.no_grad()
    def nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best tag paths (B, k, T) and their probabilities (B, k) under the CRF."""
        if self.crf is None:
            raise ValueError("k-best decoding needs the CRF decoder")
        paths, scores = self.crf.nbest(emissions, mask, k)
        return paths, (scores - self.crf.log_partition(emissions, mask).unsqueeze(1)).exp()


@dataclass
class Decoded:
    """Decoder output for a batch: tags (B, T) long (0 past a sentence's end), score (B,)
    (Viterbi score for the CRF, path log-probability for softmax), marginals (B, T, K) or
    None (CRF forward-backward, or the per-token softmax), emissions (B, T, K), and the
    CRF's Posteriors with the marginals."""

    tags: Tensor
    score: Tensor
    marginals: Tensor | None
    emissions: Tensor
    posteriors: Posteriors | None = None  # the CRF's, when marginals were asked for


def _chain_span_probabilities(post: Posteriors, lengths: list[int], spans, inside) -> tuple[Tensor, Tensor]:
    """Span probabilities from the posterior Markov chain (see span_probabilities).

    -> (probabilities (N,), ok (N,) bool: False where a factor lost precision)."""
    dev = post.marginals_t.device
    first: list[tuple[int, int, int]] = []  # (row, step, tag) of each span's first tag
    chain: list[tuple[int, int, int, int, int]] = []  # (span, row, step, previous tag, tag)
    stop: list[tuple[int, int, int, int, int]] = []  # the same for the continuation right after
    for n, ((b, s, e, ids), i_tag) in enumerate(zip(spans, inside)):
        first.append((b, s, ids[0]))
        chain.extend((n, b, s + k, ids[k - 1], ids[k]) for k in range(1, len(ids)))
        if i_tag is not None and e < lengths[b]:
            stop.append((n, b, e, ids[-1], i_tag))
    b0, t0, a0 = torch.tensor(first, device=dev).t()
    log_p = post.marginals_t[t0, b0, a0].log()
    ok = torch.ones_like(log_p, dtype=torch.bool)
    if chain:
        n, b, t, prev, cur = torch.tensor(chain, device=dev).t()
        log_c, fine = post.log_conditionals(b, t, prev, cur)
        log_p.index_add_(0, n, log_c)
        ok[n[~fine]] = False
    probs = log_p.exp()
    if stop:
        n, b, t, prev, cur = torch.tensor(stop, device=dev).t()
        log_c, fine = post.log_conditionals(b, t, prev, cur)
        probs[n] *= 1 - log_c.exp()
        ok[n[~fine]] = False
    return probs.clamp(0, 1), ok
