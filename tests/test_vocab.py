"""data/vocab.py: vocabularies built from sentences, their saved form, and lookups."""

from __future__ import annotations

from nerbilstm.data.vocab import PAD, UNK, Vocab


def test_build_orders_and_indexes():
    vocab = Vocab.build([["Paris", "is", "in", "France"], ["paris", "!"]],
                        [["B-geo", "O", "O", "B-geo"], ["I-org", "O"]])
    assert vocab.words[:2] == [PAD, UNK] and vocab.chars[:2] == [PAD, UNK]
    assert vocab.words[2:] == sorted({"paris", "is", "in", "france", "!"})
    assert set(vocab.chars[2:]) == set("ParisinFrancep!") and vocab.chars[2:] == sorted(vocab.chars[2:])
    assert vocab.labels == ["O", "B-geo", "I-org"]  # O first, then by type, B- before I-
    for table, index in ((vocab.words, vocab.word_index), (vocab.labels, vocab.label_index)):
        assert all(index[item] == i for i, item in enumerate(table))


def test_word_id_is_case_insensitive_and_unknown_is_one():
    vocab = Vocab.build([["Paris"]], [["B-geo"]])
    assert vocab.word_id("PARIS") == vocab.word_id("paris") == vocab.word_index["paris"]
    assert vocab.word_id("London") == 1


def test_min_count_leaves_rare_words_out():
    vocab = Vocab.build([["a", "b", "a"], ["a", "c"]], [["O"] * 3, ["O"] * 2], min_count=2)
    assert vocab.words == [PAD, UNK, "a"]


def test_round_trip_through_dict():
    vocab = Vocab.build([["Angela", "Merkel"]], [["B-per", "I-per"]])
    again = Vocab.from_dict(vocab.to_dict())
    assert (again.words, again.chars, again.labels) == (vocab.words, vocab.chars, vocab.labels)
    assert again.label_index == vocab.label_index and again.token_cache == {}


def test_build_pairs_reads_a_stream_once():
    pairs = iter([(["x", "y"], ["O", "B-a"]), (["y"], ["I-a"])])
    vocab = Vocab.build_pairs(pairs)
    assert vocab.words[2:] == ["x", "y"] and vocab.labels == ["O", "B-a", "I-a"]
