"""Repeat-factor sampling (--repeat-threshold): the factors against hand-computed ones, the draws
against their expectation, and the batch sources: off means the batches of before, on means rare
sentences come floor(r) or ceil(r) times, the same batches again for the same epoch."""

from collections import Counter

import pytest

from nerbilstm.cli import main
from nerbilstm.data.batching import length_buckets
from nerbilstm.data.readers import Sentence, write_gmb_csv
from nerbilstm.data.sampling import RepeatFactors, sentence_types
from nerbilstm.data.sources import InMemoryBatches, StreamedBatches, scan

from synthetic import synthetic_sentences, write_tiny_vectors

pytestmark = pytest.mark.usefixtures("one_thread")


def corpus() -> list[Sentence]:
    """100 sentences: 50 with a per, 4 with an art, 1 with both, 45 without entities; lengths vary;
    each ends with its own token (#k), which tells the copies of a sentence in a batch."""
    sents = []
    for k in range(50):
        sents.append(Sentence(["Ann", "ran"] + ["x"] * (k % 7), ["B-per", "O"] + ["O"] * (k % 7), line=k))
    for k in range(4):
        sents.append(Sentence(["The", "Iliad", "Odyssey"][: 2 + k % 2], ["O", "B-art", "I-art"][: 2 + k % 2], line=k))
    sents.append(Sentence(["Ann", "read", "Iliad"], ["B-per", "O", "B-art"], line=99))
    for k in range(45):
        sents.append(Sentence(["a"] * (1 + k % 5), ["O"] * (1 + k % 5), line=k))
    return [Sentence(s.tokens + [f"#{k}"], s.tags + ["O"], line=k) for k, s in enumerate(sents)]


def test_sentence_types():
    assert sentence_types(["O", "B-per", "I-per", "B-geo", "I-per"]) == {"per", "geo"}
    assert sentence_types(["O", "O"]) == frozenset()


def test_scan_counts_the_type_sets():
    data = scan(corpus())
    assert data.n_sentences == 100
    assert data.type_sets == Counter({frozenset({"per"}): 50, frozenset(): 45, frozenset({"art"}): 4,
                                      frozenset({"art", "per"}): 1})


def test_factors_by_hand():
    repeat = RepeatFactors(scan(corpus()).type_sets, threshold=0.2)
    assert repeat.fractions == {"art": 0.05, "per": 0.51}
    assert repeat.factors["art"] == pytest.approx(2.0)  # sqrt(0.2 / 0.05)
    assert repeat.factors["per"] == 1.0  # above the threshold: max(1, sqrt(0.2 / 0.51))
    assert repeat.of(["B-per", "O", "B-art"]) == pytest.approx(2.0) and repeat.of(["O"]) == 1.0
    assert repeat.expected_sentences == pytest.approx(50 + 4 * 2 + 1 * 2 + 45)
    assert repeat.active
    assert "art x2.00 (in 5.00% of sentences)" in repeat.describe() and "about 105 sentences" in repeat.describe()


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_no_factor_above_one_is_inactive(threshold):
    repeat = RepeatFactors(scan(corpus()).type_sets, threshold)  # 0.05: art is at exactly 5%
    assert not repeat.active and set(repeat.factors.values()) == {1.0}
    assert "nothing is repeated" in repeat.describe()


def test_draws_are_floor_or_ceil_with_the_right_mean():
    rates = [1.0, 2.0, 1.25, 3.6]
    draws = [Counter(RepeatFactors(Counter(), 0.0).draw(rates, seed)) for seed in range(2000)]
    assert all(d[0] == 1 and d[1] == 2 and d[2] in (1, 2) and d[3] in (3, 4) for d in draws)
    assert sum(d[2] for d in draws) / 2000 == pytest.approx(1.25, abs=0.03)
    assert sum(d[3] for d in draws) / 2000 == pytest.approx(3.6, abs=0.03)
    assert RepeatFactors(Counter(), 0.0).draw(rates, 7) == RepeatFactors(Counter(), 0.0).draw(rates, 7)


def token_batches(source, epoch):
    return [[tuple(e.tokens) for e in b] for b in source.epoch(epoch)]


def test_off_gives_the_batches_of_before():
    sents = corpus()
    data = scan(sents)
    plain = InMemoryBatches(sents, data.vocab, 8, seed=5)
    # What the source did before repeat-factor sampling existed: length buckets of every sentence.
    lengths = [len(s.tokens) for s in sents]
    expected = [[tuple(sents[i].tokens) for i in b] for b in length_buckets(lengths, 8, shuffle=True, seed=5002)]
    assert token_batches(plain, 2) == expected
    for threshold in (0.0, 0.05):  # given but inactive
        inactive = InMemoryBatches(sents, data.vocab, 8, seed=5, repeat=RepeatFactors(data.type_sets, threshold))
        assert token_batches(inactive, 2) == expected


@pytest.mark.parametrize("streamed", [False, True])
def test_rare_sentences_come_floor_or_ceil_times(streamed):
    sents = corpus()
    data = scan(sents)
    repeat = RepeatFactors(data.type_sets, threshold=0.45)
    assert repeat.factors == {"art": pytest.approx(3.0), "per": 1.0}  # sqrt(0.45 / 0.05); 0.51 > 0.45
    repeat.factors["art"] = 2.5  # a fractional rate, to see both floor and ceil
    if streamed:
        source = StreamedBatches(sents, data.vocab, 8, seed=5, chunk=30, count=100, repeat=repeat)
    else:
        source = InMemoryBatches(sents, data.vocab, 8, seed=5, repeat=repeat)
    art = {s.tokens[-1] for s in sents if "art" in sentence_types(s.tags)}
    art_copies = Counter()
    for epoch in range(1, 41):
        seen = Counter(e.tokens[-1] for b in source.epoch(epoch) for e in b)  # the sentence's own last token
        assert set(seen) == {s.tokens[-1] for s in sents}
        assert all(seen[k] in ((2, 3) if k in art else (1,)) for k in seen)
        art_copies.update(seen[k] for k in art)
    assert art_copies[2] > 0 and art_copies[3] > 0
    assert sum(n * c for n, c in art_copies.items()) / (40 * len(art)) == pytest.approx(2.5, abs=0.2)
    assert token_batches(source, 3) == token_batches(source, 3)  # the same epoch, the same batches
    assert token_batches(source, 3) != token_batches(source, 4)


def test_train_logs_what_is_repeated(tmp_path, caplog):
    sents = synthetic_sentences(40, seed=1)
    write_gmb_csv(sents, tmp_path / "tiny.csv")
    write_tiny_vectors(sents, tmp_path / "emb.txt")
    flags = ["--data", str(tmp_path / "tiny.csv"), "--epochs", "1", "--hidden-size", "4", "--layers", "1",
             "--char-dim", "0", "--case-dim", "0", "--threads", "1", "--no-plots", "--no-progress",
             "--embeddings", str(tmp_path / "emb.txt"), "--repeat-threshold", "0.9"]
    with caplog.at_level("INFO", logger="nerbilstm"):
        assert main(["train", *flags, "--out", str(tmp_path / "m")]) == 0
    lines = [r.getMessage() for r in caplog.records if "--repeat-threshold" in r.getMessage()]
    # Every sentence has per, geo and tim; org is in about half of them: sqrt(0.9 / f) > 1.
    assert len(lines) == 1 and "sentences repeated per epoch for org x" in lines[0], lines
