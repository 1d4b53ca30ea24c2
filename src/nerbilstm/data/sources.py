"""Where a training epoch's batches come from: all sentences in memory, or streamed from a file.

Both yield, for a given epoch, the same deterministic sequence of global batches (lists of
encoded sentences), so resuming at batch k of an epoch replays exactly what an uninterrupted
run would have seen.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import count, islice
from typing import Iterable, Iterator

from nerbilstm.data.batching import Encoded, encode, length_buckets
from nerbilstm.data.sampling import RepeatFactors, sentence_types
from nerbilstm.data.vocab import Vocab


@dataclass
class TrainingData:
    """What one pass over the training sentences tells: vocabulary, tag counts, sentence count,
    and how many sentences hold each set of entity types (for --repeat-threshold)."""

    vocab: Vocab
    tag_counts: Counter
    n_sentences: int
    type_sets: Counter


def scan(sentences: Iterable, min_count: int = 1) -> TrainingData:
    """One pass over the training sentences -> their TrainingData."""
    tags: Counter = Counter()
    type_sets: Counter = Counter()
    n = 0

    def tokens():
        nonlocal n
        for s in sentences:
            n += 1
            tags.update(s.tags)
            type_sets[sentence_types(s.tags)] += 1
            yield s.tokens, s.tags

    pairs = tokens()
    vocab = Vocab.build_pairs(pairs, min_count)
    return TrainingData(vocab, tags, n, type_sets)


class InMemoryBatches:
    """Every training sentence encoded once; each epoch re-buckets them by length (with
    ``repeat``, sentences holding rare types come more than once: see data/sampling.py)."""

    def __init__(self, sentences: Iterable, vocab: Vocab, batch_size: int, seed: int,
                 repeat: RepeatFactors | None = None):
        self.repeat = repeat if repeat is not None and repeat.active else None
        self.encoded, self.rates = [], []
        for s in sentences:
            self.encoded.append(encode(s.tokens, vocab, s.tags))
            if self.repeat:
                self.rates.append(self.repeat.of(s.tags))
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return len(self.encoded)

    def epoch(self, epoch: int, min_batch: int = 1) -> Iterator[list[Encoded]]:
        yield from _batches(self.encoded, self.rates, self.repeat, self.batch_size, self.seed * 1000 + epoch,
                            min_batch)

    def count_batches(self, epoch: int, min_batch: int = 1) -> int | None:
        return sum(1 for _ in self.epoch(epoch, min_batch))


class StreamedBatches:
    """Sentences re-read from their file every epoch, ``chunk`` at a time: only one chunk is
    encoded in memory; batches are length-bucketed and shuffled within the chunk."""

    def __init__(self, sentences: Iterable, vocab: Vocab, batch_size: int, seed: int, chunk: int, count: int,
                 repeat: RepeatFactors | None = None):
        self.sentences, self.vocab = sentences, vocab
        self.batch_size, self.seed, self.chunk, self.count = batch_size, seed, chunk, count
        self.repeat = repeat if repeat is not None and repeat.active else None

    def __len__(self) -> int:
        return self.count

    def epoch(self, epoch: int, min_batch: int = 1) -> Iterator[list[Encoded]]:
        stream = iter(self.sentences)
        for part in count():
            sentences = list(islice(stream, self.chunk))
            if not sentences:
                return
            encoded = [encode(s.tokens, self.vocab, s.tags) for s in sentences]
            rates = [self.repeat.of(s.tags) for s in sentences] if self.repeat else []
            seed = (self.seed * 1000 + epoch) * 1_000_003 + part
            yield from _batches(encoded, rates, self.repeat, self.batch_size, seed, min_batch)

    def count_batches(self, epoch: int, min_batch: int = 1) -> int | None:
        return None  # unknown without reading the file again


def _batches(encoded: list[Encoded], rates: list[float], repeat: RepeatFactors | None, batch_size: int,
             seed: int, min_batch: int) -> Iterator[list[Encoded]]:
    """One epoch's (or chunk's) shuffled length buckets; with ``rates`` (a factor per sentence), over
    the sentences ``repeat`` draws: a sentence may come more than once, sometimes twice in a batch."""
    order = repeat.draw(rates, seed * 7 + 1) if rates else range(len(encoded))
    lengths = [len(encoded[i].words) for i in order]
    for index in length_buckets(lengths, batch_size, shuffle=True, seed=seed):
        if len(index) >= min_batch:
            yield [encoded[order[i]] for i in index]
