"""The tagger: word, char and casing features -> BiLSTM -> emission scores -> decoder.

The decoder is a CRF (model/crf.py) or a per-token softmax (model/softmax.py), both with one
interface. This module wires the parts; it knows nothing of files or training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

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
from nerbilstm.model.softmax import SoftmaxDecoder, SoftmaxPosteriors


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
        # Class weights of the softmax decoder's cross-entropy, saved with every model (the
        # CRF's too: model files keep one set of keys whatever the decoder).
        self.register_buffer("class_weights", torch.ones(K))
        # The I- tag that would continue an entity whose first tag is this one (None for O).
        self.continuation = continuations(self.labels)
        # The CRF is registered as `crf` (its weights are saved as crf.*); see ``decoder``.
        self.crf = None
        if config.decoder == "crf":
            self.crf = CRF(K)
            if config.constrained:
                self.crf.set_constraints(*iob2_constraints(self.labels))

    @property
    def decoder(self) -> CRF | SoftmaxDecoder:
        """The decoder over the emission scores: the CRF module, or a softmax decoder over
        ``class_weights`` (made on each access, so it follows the buffer across devices and loads)."""
        return self.crf if self.crf is not None else SoftmaxDecoder(self.class_weights)

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
        """-> (B,) loss per sentence: the decoder's negative log-likelihood (for softmax the
        class-weighted cross-entropy summed over the sentence's tokens). Under AMP the CRF
        computes in float32 whatever the emissions' dtype."""
        return self.decoder.neg_log_likelihood(self.emissions(batch, word_dropout), batch.tags, batch.mask)

    def decode(self, batch: Batch, with_marginals: bool = False) -> "Decoded":
        """Best tags, their score and, if asked, per-token marginals (see Decoded)."""
        scores = self.emissions(batch)
        decoder = self.decoder
        tags, path_score = decoder.viterbi_decode(scores, batch.mask)
        if not with_marginals:
            return Decoded(tags, path_score, None, scores)
        posteriors = decoder.posteriors(scores, batch.mask)
        return Decoded(tags, path_score, posteriors.marginals, scores, posteriors)

    @torch.no_grad()
    def span_probabilities(self, emissions: Tensor, mask: Tensor, spans: list[tuple[int, int, int, list[int]]],
                           posteriors: Posteriors | SoftmaxPosteriors | None = None) -> Tensor:
        """Probability that each span carries exactly the given tags and the entity ends there.

        emissions (B, T, K), mask (B, T); spans: (row b, start s, end e exclusive, tag ids of s..e-1).
        -> (N,). The entity ends at e unless y_e is the I- tag that continues the span's first
        tag (``continuation``). The decoder computes it (CRF: the posterior Markov chain, exact
        where that loses precision; softmax: a product of token probabilities) from the
        ``posteriors`` of this batch (Decoded.posteriors), computed if not given.
        """
        inside = [self.continuation[ids[0]] for _, _, _, ids in spans]
        return self.decoder.span_probabilities(emissions, mask, spans, inside, posteriors)

    @torch.no_grad()
    def nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best tag paths (B, k, T) and their probabilities (B, k) (CRF only: the softmax
        decoder raises ValueError)."""
        paths, scores = self.decoder.nbest(emissions, mask, k)
        return paths, (scores - self.decoder.log_partition(emissions, mask).unsqueeze(1)).exp()


def parameter_shapes(config: ModelConfig, n_words: int, n_chars: int,
                     n_labels: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of a ``BiLSTMTagger``'s state_dict, from the sizes alone:
    nothing is allocated, and the layers come one by one, so that a reader can compare a config
    claiming any size with a weights file's header before building the model."""
    K, H = n_labels, config.hidden_size
    yield "class_weights", (K,)
    yield "word_embed.weight", (n_words, config.word_dim)
    in_dim = config.word_dim
    if config.char_dim > 0:
        yield "char_cnn.embed.weight", (n_chars, config.char_dim)
        yield "char_cnn.conv.weight", (config.char_filters, config.char_dim, config.char_kernel)
        yield "char_cnn.conv.bias", (config.char_filters,)
        in_dim += config.char_filters
    if config.case_dim > 0:
        yield "case_embed.weight", (len(CASES), config.case_dim)
        in_dim += config.case_dim
    for k in range(config.layers):
        yield f"lstm.layers.{k}.weight_ih", (2, 4 * H, in_dim if k == 0 else 2 * H)
        yield f"lstm.layers.{k}.weight_hh", (2, 4 * H, H)
        yield f"lstm.layers.{k}.bias", (2, 4 * H)
    yield "emission.weight", (K, 2 * H)
    yield "emission.bias", (K,)
    if config.decoder == "crf":
        yield "crf.transitions", (K, K)
        yield "crf.start_scores", (K,)
        yield "crf.end_scores", (K,)


@dataclass
class Decoded:
    """Decoder output for a batch: tags (B, T) long (0 past a sentence's end), score (B,)
    (Viterbi score for the CRF, path log-probability for softmax), marginals (B, T, K) or
    None (CRF forward-backward, or the per-token softmax), emissions (B, T, K), and the
    decoder's posteriors with the marginals (what span_probabilities needs)."""

    tags: Tensor
    score: Tensor
    marginals: Tensor | None
    emissions: Tensor
    posteriors: Posteriors | SoftmaxPosteriors | None = None  # when marginals were asked for
