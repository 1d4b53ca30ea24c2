"""The tagger: word, char and casing features -> BiLSTM -> emission scores -> CRF or softmax.

This module wires the parts; it knows nothing of files or training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerbilstm.config import ModelConfig
from nerbilstm.data.batching import Batch
from nerbilstm.data.vocab import CASES
from nerbilstm.model.chars import CharCNN
from nerbilstm.model.crf import CRF, iob2_constraints
from nerbilstm.model.lstm import BiLSTM


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
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = BiLSTM(in_dim, config.hidden_size, config.layers, config.dropout, config.lstm_backend)
        self.emission = nn.Linear(2 * config.hidden_size, K)
        # Class weights of the softmax decoder's cross-entropy (saved with the model).
        self.register_buffer("class_weights", torch.ones(K))
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
        """-> (B, T, K) emission scores; rows past a sentence's length are meaningless."""
        x = self.dropout(self.features(batch, word_dropout))
        h = self.dropout(self.lstm(x, batch.mask))
        return self.emission(h)

    def loss(self, batch: Batch, word_dropout: float = 0.0) -> Tensor:
        """-> (B,) loss per sentence: CRF negative log-likelihood, or the class-weighted
        cross-entropy summed over the sentence's tokens for the softmax decoder."""
        scores = self.emissions(batch, word_dropout)
        if self.crf is not None:
            return self.crf.neg_log_likelihood(scores, batch.tags, batch.mask)
        B, T, K = scores.shape
        ce = nn.functional.cross_entropy(scores.reshape(B * T, K), batch.tags.reshape(B * T),
                                         weight=self.class_weights, reduction="none").view(B, T)
        return (ce * batch.mask).sum(1)

    def decode(self, batch: Batch, with_marginals: bool = False):
        """-> (tags (B, T) long, path score (B,), marginals (B, T, K) or None).

        For the CRF, the path score is the unnormalised Viterbi score and marginals come from
        forward-backward; for softmax, the score is the path's log-probability and marginals
        are the per-token softmax.
        """
        scores = self.emissions(batch)
        if self.crf is not None:
            tags, path_score = self.crf.viterbi_decode(scores, batch.mask)
            marginals = self.crf.marginals(scores, batch.mask) if with_marginals else None
            return tags, path_score, marginals
        log_probs = scores.log_softmax(-1)
        best, tags = log_probs.max(-1)
        tags = tags.masked_fill(~batch.mask, 0)
        path_score = (best * batch.mask).sum(1)
        marginals = log_probs.exp() * batch.mask.unsqueeze(-1) if with_marginals else None
        return tags, path_score, marginals
