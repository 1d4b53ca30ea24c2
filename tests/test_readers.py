"""Tests for nerbilstm.data.readers: formats, encodings, errors, round trips, split."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbilstm.data import readers
from nerbilstm.data.readers import (
    FORMATS,
    Corpus,
    Sentence,
    detect_format,
    iter_sentences,
    read_corpus,
    write_conll,
    write_gmb_csv,
    write_text_labels_csv,
)
from nerbilstm.data.dataset import split_canonical
from nerbilstm.errors import DataError
from nerbilstm.tags import to_iob2

NBSP = "\xa0"


def put(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return p


def pairs(corpus: Corpus) -> list[tuple[list[str], list[str]]]:
    return [(s.tokens, s.tags) for s in corpus.sentences]


GMB = (
    "Sentence #,Word,POS,Tag\r\n"
    "Sentence: 1,Hundreds,NNS,O\r\n"
    ",of,IN,O\r\n"
    ",London,NNP,B-geo\r\n"
    ',"10,000",CD,O\r\n'
    ",.,.,O\r\n"
    "Sentence: 2,Hyde,NNP,B-geo\r\n"
    ",Park,NNP,I-geo\r\n"
    f",5{NBSP}storm,NN,O\r\n"
    ',"""",``,O\r\n'
)


# --------------------------------------------------------------------- gmb


def test_gmb_basic(tmp_path):
    p = put(tmp_path, "corpus.txt", GMB)  # the extension plays no part
    assert detect_format(p) == "gmb"
    c = read_corpus(p)
    assert c.format == "gmb" and c.encoding == "utf-8" and c.path == str(p)
    assert c.notes == [] and c.skipped == 0 and c.repaired == 0
    assert pairs(c) == [
        (["Hundreds", "of", "London", "10,000", "."], ["O", "O", "B-geo", "O", "O"]),
        (["Hyde", "Park", f"5{NBSP}storm", '"'], ["B-geo", "I-geo", "O", "O"]),
    ]
    assert [s.line for s in c.sentences] == [2, 7]


def test_gmb_tolerates_blank_lines_and_stray_whitespace(tmp_path):
    text = (
        "\n Sentence # , Word ,POS, Tag \n\n"
        "Sentence: 1,  Hello ,UH, O \n"
        "   ,\tworld\t,NN,B-geo\n"
        "\n"
        ",,,\n"
        "Sentence: 2,again,RB,O\n"
    )
    c = read_corpus(put(tmp_path, "c.csv", text))
    assert pairs(c) == [(["Hello", "world"], ["O", "B-geo"]), (["again"], ["O"])]
    assert [s.line for s in c.sentences] == [4, 8]


def test_gmb_utf8_bom(tmp_path):
    p = put(tmp_path, "c.csv", b"\xef\xbb\xbf" + GMB.encode())
    assert detect_format(p) == "gmb"
    assert len(read_corpus(p).sentences) == 2
    assert len(read_corpus(p, encoding="utf-8").sentences) == 2


def test_cp1252_fallback_with_note(tmp_path):
    data = (
        b"Sentence #,Word,POS,Tag\r\n"
        b"Sentence: 1,together,RB,O\r\n"
        b",\x85,:,O\r\n"
        b",Iraq\x92s,NNP,B-geo\r\n"
    )
    p = put(tmp_path, "c.csv", data)
    assert detect_format(p) == "gmb"
    c = read_corpus(p)
    assert c.encoding == "cp1252"
    assert c.sentences[0].tokens == ["together", "\u2026", "Iraq\u2019s"]
    assert any("cp1252" in n and "UTF-8" in n for n in c.notes), c.notes
    assert any("line 3" in n for n in c.notes), c.notes
    # an explicit encoding overrides the detection
    c = read_corpus(p, encoding="latin-1")
    assert c.encoding == "iso8859-1" and c.notes == []
    assert c.sentences[0].tokens[1] == "\x85"


def test_cp1252_decided_on_the_whole_file(tmp_path, monkeypatch):
    # Valid UTF-8 non-ASCII text first, a cp1252 byte only a few blocks later: the
    # file is not UTF-8, so all of it is read as cp1252 (and nothing read before the
    # decision differs).
    monkeypatch.setattr(readers, "_BLOCK", 64)
    rows = "".join(f",w{i},NN,O\n" for i in range(40))
    data = (
        "Sentence #,Word,POS,Tag\nSentence: 1,caf\u00e9,NN,O\n" + rows
    ).encode("utf-8") + b",\x92,NN,O\n"
    c = read_corpus(put(tmp_path, "c.csv", data))
    assert c.encoding == "cp1252"
    assert c.sentences[0].tokens[0] == "caf\u00c3\u00a9"  # the UTF-8 bytes of é read as cp1252
    assert c.sentences[0].tokens[-1] == "\u2019"
    assert any(f"line {3 + 40}" in n for n in c.notes), c.notes


def test_utf8_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_BLOCK", 7)  # splits multi-byte characters and \r\n
    text = "Sentence #,Word,POS,Tag\r\n" + "".join(f"Sentence: {i},Zürich\u2019s€,NNP,B-geo\r\n,{NBSP}x,NN,O\r\n" for i in range(20))
    c = read_corpus(put(tmp_path, "c.csv", text))
    assert c.encoding == "utf-8" and c.notes == []
    assert len(c.sentences) == 20
    assert all(s.tokens == ["Zürich\u2019s€", f"{NBSP}x"] for s in c.sentences)
    assert [s.line for s in c.sentences] == list(range(2, 42, 2))


def test_ascii_then_cp1252_after_first_block(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_BLOCK", 32)
    text = b"Sentence #,Word,POS,Tag\n" + b"".join(b"Sentence: %d,a,DT,O\n" % i for i in range(10)) + b",\x85,:,O\n"
    c = read_corpus(put(tmp_path, "c.csv", text))
    assert c.encoding == "cp1252" and c.sentences[-1].tokens == ["a", "\u2026"]


# ----------------------------------------------------------------- text-labels


def test_text_labels(tmp_path):
    text = (
        "id,text,labels,source\n"
        "1,Hyde Park is in London,B-geo I-geo O O B-geo,x\n"
        '2,"Hello , world",O O O,y\n'
        "3,one two three,O O,z\n"  # mismatch: skipped
        "\n"
        f"4,  5{NBSP}storm   hit  ,  O   O ,w\n"
        "5,a b,O,z\n"  # mismatch: skipped
    )
    p = put(tmp_path, "data.conll", text)
    assert detect_format(p) == "text-labels"
    c = read_corpus(p)
    assert c.format == "text-labels"
    assert pairs(c) == [
        (["Hyde", "Park", "is", "in", "London"], ["B-geo", "I-geo", "O", "O", "B-geo"]),
        (["Hello", ",", "world"], ["O", "O", "O"]),
        ([f"5{NBSP}storm", "hit"], ["O", "O"]),
    ]
    assert [s.line for s in c.sentences] == [2, 3, 6]
    assert c.skipped == 2
    assert any("skipped 2 rows" in n and "line 4" in n for n in c.notes), c.notes


def test_text_labels_column_order(tmp_path):
    c = read_corpus(put(tmp_path, "c.csv", "Labels,Text\nO B-per,hello Bob\n"))
    assert pairs(c) == [(["hello", "Bob"], ["O", "B-per"])]


# ----------------------------------------------------------------------- conll


CONLL = (
    "-DOCSTART- -X- O O\n"
    "\n"
    "EU NNP B-NP I-ORG\n"
    "rejects\tVBZ B-VP O\n"
    "German JJ\tB-NP I-MISC\n"
    "call NN I-NP O\n"
    "\n"
    "\n"
    "-DOCSTART- -X- O O\n"
    f"5{NBSP}storm NN O O\n"
    "Peter NNP B-NP I-PER\n"
    "Blackburn NNP I-NP I-PER  \n"
)


def test_conll_iob1_converted_and_docstart_ignored(tmp_path):
    p = put(tmp_path, "x.csv", CONLL)  # the extension plays no part
    assert detect_format(p) == "conll"
    c = read_corpus(p)
    assert c.format == "conll"
    assert pairs(c) == [
        (["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
        ([f"5{NBSP}storm", "Peter", "Blackburn"], ["O", "B-PER", "I-PER"]),
    ]
    assert [s.line for s in c.sentences] == [3, 10]
    assert c.repaired == 3
    assert any("IOB1 to IOB2" in n for n in c.notes), c.notes


def test_conll_repair_off(tmp_path):
    c = read_corpus(put(tmp_path, "x", CONLL), repair=False)
    assert c.sentences[0].tags == ["I-ORG", "O", "I-MISC", "O"]
    assert c.repaired == 0 and c.notes == []


def test_conll_tag_column(tmp_path):
    c = read_corpus(put(tmp_path, "x", CONLL), fmt="conll", tag_column=2)
    assert c.sentences[0].tags == ["B-NP", "B-VP", "B-NP", "I-NP"]
    assert c.notes == []  # IOB2 already
    with pytest.raises(DataError) as e:
        read_corpus(put(tmp_path, "x", CONLL), fmt="conll", tag_column=7)
    assert e.value.line == 3 and "column 7" in str(e.value)


def test_iob2_repair_note(tmp_path):
    text = "A B-per\nB I-per\nsaw O\nC I-org\n\nD O\nE I-geo\n"
    c = read_corpus(put(tmp_path, "x", text))
    assert pairs(c)[0][1] == ["B-per", "I-per", "O", "B-org"]
    assert pairs(c)[1][1] == ["O", "B-geo"]
    assert c.repaired == 2
    assert any(n.startswith("repaired 2 I- tags") and "line 1" in n for n in c.notes), c.notes


def test_gmb_repairs_too(tmp_path):
    text = "Sentence #,Word,POS,Tag\nSentence: 1,The,DT,O\n,Park,NNP,I-geo\n,Hotel,NNP,B-org\n"
    c = read_corpus(put(tmp_path, "c.csv", text))
    assert c.sentences[0].tags == ["O", "B-geo", "B-org"] and c.repaired == 1


def test_conll_iobes_and_bilou_converted(tmp_path):
    iobes = "-DOCSTART- O\n\nJohn S-PER\nlives O\nin O\nNew B-LOC\nYork E-LOC\n\nAcme B-ORG\nInc E-ORG\n"
    p = put(tmp_path, "x.bioes", iobes)
    assert detect_format(put(tmp_path, "y", "John S-PER\nsmiled O\n")) == "conll"
    c = read_corpus(p)
    assert pairs(c) == [(["John", "lives", "in", "New", "York"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
                        (["Acme", "Inc"], ["B-ORG", "I-ORG"])]
    assert c.converted == 3 and c.repaired == 0
    assert c.notes == ["converted 3 IOBES/BILOU tags to IOB2 (S-/U- to B-, E-/L- to I-; first at line 3)"]
    c = read_corpus(put(tmp_path, "x.bilou", "A O\nParis U-LOC\n\nNew B-LOC\nYork L-LOC\n"), repair=False)
    assert pairs(c) == [(["A", "Paris"], ["O", "B-LOC"]), (["New", "York"], ["B-LOC", "I-LOC"])]
    assert c.converted == 2
    c = read_corpus(put(tmp_path, "x.csv", "Sentence #,Word,POS,Tag\nSentence: 1,Bonn,NNP,S-geo\n,is,VBZ,O\n"))
    assert c.sentences[0].tags == ["B-geo", "O"] and c.converted == 1


# ----------------------------------------------------------------------- errors


def expect_error(path, line, *fragments, **kw):
    with pytest.raises(DataError) as e:
        read_corpus(path, **kw)
    err = e.value
    assert err.path == str(path)
    assert err.line == line, str(err)
    for f in fragments:
        assert f in str(err), str(err)
    assert str(err).startswith(f"{path}:{line}: " if line is not None else f"{path}: ")
    return err


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.csv", None, "no such file")
    with pytest.raises(DataError):
        detect_format(tmp_path / "nope.csv")
    with pytest.raises(DataError):
        iter_sentences(tmp_path / "nope.csv")


def test_directory(tmp_path):
    expect_error(tmp_path, None, "directory")


@pytest.mark.parametrize("content", ["", "\n\n  \n", "\r\n\t\r\n"])
@pytest.mark.parametrize("fmt", [None, *(f for f in FORMATS if f != "brat")])  # brat reads a directory
def test_empty_file(tmp_path, content, fmt):
    expect_error(put(tmp_path, "e.csv", content), None, "empty file", fmt=fmt)


def test_wrong_gmb_header(tmp_path):
    p = put(tmp_path, "c.csv", "\nSentence,Token,POS,Label\nSentence: 1,a,DT,O\n")
    with pytest.raises(DataError) as e:
        detect_format(p)
    assert e.value.line == 2 and "Sentence #,Word,POS,Tag" in str(e.value)
    expect_error(p, 2, "Sentence #,Word,POS,Tag", "Sentence,Token,POS,Label", "missing: sentence #, word, tag", fmt="gmb")


def test_missing_header(tmp_path):
    p = put(tmp_path, "c.csv", "Sentence: 1,a,DT,O\n,b,NN,O\n")
    expect_error(p, 1, "Sentence #,Word,POS,Tag", "Sentence: 1,a,DT,O", fmt="gmb")


def test_text_labels_wrong_header(tmp_path):
    p = put(tmp_path, "c.csv", "text,tags\nhello,O\n")
    expect_error(p, 1, "'text' and 'labels'", "text,tags", "missing: labels", fmt="text-labels")


def test_gmb_too_few_columns(tmp_path):
    p = put(tmp_path, "c.csv", "Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n\n,b\n")
    expect_error(p, 4, "2 columns", "expected 4")


def test_text_labels_too_few_columns(tmp_path):
    p = put(tmp_path, "c.csv", "text,labels\nhello,O\nworld\n")
    expect_error(p, 3, "1 column", "expected 2")


@pytest.mark.parametrize("bad", ["X-geo", "B-", "b-geo", "I", "T-per", "S_per", "o"])
def test_bad_tag_gmb(tmp_path, bad):
    p = put(tmp_path, "c.csv", f"Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,b,NN,{bad}\n")
    expect_error(p, 3, repr(bad), "expected O, B-TYPE or I-TYPE")


def test_bad_tag_conll_and_text_labels(tmp_path):
    expect_error(put(tmp_path, "a", "a O\nb X-geo\n"), 2, "'X-geo'", fmt="conll")
    expect_error(put(tmp_path, "b", "text,labels\na b,O O\nc d,O X-geo\n"), 3, "'X-geo'")


def test_binary_file(tmp_path):
    expect_error(put(tmp_path, "b.csv", b"Sentence #,Word,POS,Tag\n\x00\x01\x02\xff"), 2, "looks like a binary file")
    # NUL bytes far into the file, past the sniffed head and the first blocks
    body = "Sentence #,Word,POS,Tag\n" + "Sentence: 1,a,DT,O\n" * 3000
    p = put(tmp_path, "c.csv", body.encode() + b",x\x00y,NN,O\n")
    expect_error(p, 3002, "looks like a binary file")
    # explicit encoding too
    expect_error(p, 3002, "looks like a binary file", encoding="cp1252")
    # pure garbage
    expect_error(put(tmp_path, "d.bin", bytes(range(256)) * 4), 1, "looks like a binary file")


def test_undecodable_with_explicit_encoding(tmp_path):
    p = put(tmp_path, "c.csv", b"Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,\x92,NN,O\n")
    expect_error(p, 3, "utf-8", "0x92", encoding="utf-8")


def test_neither_utf8_nor_cp1252(tmp_path):
    p = put(tmp_path, "c.csv", b"Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,\x81,NN,O\n")
    expect_error(p, 3, "cp1252", "0x81")


def test_unknown_encoding_and_format(tmp_path):
    p = put(tmp_path, "c.csv", GMB)
    expect_error(p, None, "unknown encoding", encoding="klingon-8")
    expect_error(p, None, "not a text encoding", encoding="rot13")
    expect_error(p, None, "unknown format", "gmb, text-labels, conll", fmt="json")


def test_continuation_before_sentence(tmp_path):
    p = put(tmp_path, "c.csv", "Sentence #,Word,POS,Tag\n\n,a,DT,O\nSentence: 1,b,NN,O\n")
    expect_error(p, 3, "before any 'Sentence: N' row")


def test_bad_first_column(tmp_path):
    p = put(tmp_path, "c.csv", "Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\nfoo,b,NN,O\n")
    expect_error(p, 3, "'foo'")


def test_empty_token(tmp_path):
    p = put(tmp_path, "c.csv", 'Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,"  ",NN,O\n')
    expect_error(p, 3, "empty token")


def test_conll_one_column(tmp_path):
    expect_error(put(tmp_path, "c", "a O\n\nlonely\n"), 3, "one column", fmt="conll")


def test_unrecognised_format(tmp_path):
    with pytest.raises(DataError) as e:
        detect_format(put(tmp_path, "c", "\njust some prose here\n"))
    assert e.value.line == 2 and "cannot tell the format" in str(e.value)


def test_errors_raised_lazily_while_streaming(tmp_path):
    p = put(tmp_path, "c.csv", "Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\nSentence: 2,b,NN,O\nSentence: 3,c,NN,X-bad\n")
    stream = iter_sentences(p)
    assert next(stream).tokens == ["a"]
    assert next(stream).tokens == ["b"]
    with pytest.raises(DataError) as e:
        next(stream)
    assert e.value.line == 4
    # max_sentences stops before the bad row
    assert len(read_corpus(p, max_sentences=1).sentences) == 1


def test_multiline_quoted_field_line_numbers(tmp_path):
    text = 'text,labels\n"a\nb",O O\nc,X-geo\n'
    expect_error(put(tmp_path, "c.csv", text), 4, "X-geo")


# ------------------------------------------------------------------- streaming


def test_iter_sentences_is_a_stream(tmp_path):
    p = put(tmp_path, "c.csv", GMB)
    with iter_sentences(p) as stream:
        assert stream.format == "gmb"
        assert next(iter(stream)).tokens[0] == "Hundreds"
        rest = list(stream)
    assert len(rest) == 1
    assert stream.encoding == "utf-8"


def test_max_sentences(tmp_path):
    p = put(tmp_path, "c.csv", GMB)
    assert len(read_corpus(p, max_sentences=1).sentences) == 1
    assert len(read_corpus(p, max_sentences=0).sentences) == 0
    assert len(read_corpus(p, max_sentences=10).sentences) == 2


def test_header_only_gives_empty_corpus(tmp_path):
    c = read_corpus(put(tmp_path, "c.csv", "Sentence #,Word,POS,Tag\n"))
    assert c.sentences == [] and "no sentences found" in c.notes


# ----------------------------------------------------------------- round trips

# Tokens: any characters but ASCII whitespace (and not the CoNLL document marker);
# commas, quotes, no-break spaces and non-Latin letters included.
_token = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(",\"';:-.()$%#\xa0\u2019\u2026éß日")),
        st.characters(codec="utf-8", exclude_characters=" \t\r\n\f\v", exclude_categories=("Cs",)),
    ),
    min_size=1,
    max_size=6,
).filter(lambda t: not t.startswith("-DOCSTART-") and t.strip(" \t\r\n\f\v") == t and "\x00" not in t)
_tags = st.sampled_from(["O", "B-per", "I-per", "B-geo", "I-geo", "B-x-y", "I-x-y"])


@st.composite
def _sentence(draw):
    n = draw(st.integers(1, 8))
    tokens = draw(st.lists(_token, min_size=n, max_size=n))
    tags, _ = to_iob2(draw(st.lists(_tags, min_size=n, max_size=n)))
    return Sentence(tokens, tags)


_corpora = st.lists(_sentence(), min_size=1, max_size=6)

_WRITERS = {"gmb": write_gmb_csv, "text-labels": write_text_labels_csv, "conll": write_conll}


@pytest.mark.parametrize("fmt", list(_WRITERS))  # the formats with a writer
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(corpus=_corpora)
def test_round_trip(tmp_path, fmt, corpus):
    p = tmp_path / f"rt.{fmt}"
    _WRITERS[fmt](corpus, p)
    assert detect_format(p) == fmt
    c = read_corpus(p)
    assert c.format == fmt and c.encoding == "utf-8"
    assert pairs(c) == [(s.tokens, s.tags) for s in corpus]
    assert c.notes == [] and c.skipped == 0 and c.repaired == 0


@pytest.mark.parametrize("fmt", list(_WRITERS))  # the formats with a writer
def test_round_trip_nbsp_and_commas(tmp_path, fmt):
    corpus = [Sentence([f"5{NBSP}storm", "10,000", '"', "Iraq's"], ["O", "O", "O", "B-geo"]),
              Sentence(["a"], ["O"])]
    p = tmp_path / "rt"
    _WRITERS[fmt](corpus, p)
    assert pairs(read_corpus(p)) == [(s.tokens, s.tags) for s in corpus]


@pytest.mark.parametrize("fmt", list(_WRITERS))  # the formats with a writer
def test_writers_refuse_what_cannot_be_read_back(tmp_path, fmt):
    w = _WRITERS[fmt]
    for bad in ([Sentence(["a b"], ["O"])], [Sentence([], [])], [Sentence(["a"], ["O", "O"])],
                [Sentence(["a"], ["X-y"])], [Sentence([""], ["O"])]):
        with pytest.raises(DataError):
            w(bad, tmp_path / "out")


# ------------------------------------------------------------------------ split


def test_split_canonical():
    items = list(range(35))
    train, dev, test = split_canonical(items)
    assert test == [0, 10, 20, 30]
    assert dev == [1, 11, 21, 31]
    assert train == [i for i in items if i % 10 not in (0, 1)]
    assert split_canonical([]) == ([], [], [])


# -------------------------------------------------------------------- real file


@pytest.mark.skipif(
    not os.environ.get("NERBILSTM_DATA"),
    reason="set NERBILSTM_DATA to the path of the GMB ner_dataset.csv to run this test",
)
def test_real_gmb_file():
    path = os.environ["NERBILSTM_DATA"]
    assert detect_format(path) == "gmb"
    t0 = time.perf_counter()
    c = read_corpus(path)
    elapsed = time.perf_counter() - t0
    assert c.format == "gmb" and c.encoding == "cp1252"
    assert any("cp1252" in n for n in c.notes), c.notes
    assert c.skipped == 0 and c.repaired == 0
    assert len(c.sentences) == 47_959
    assert sum(len(s.tokens) for s in c.sentences) == 1_048_575
    assert max(len(s.tokens) for s in c.sentences) == 104
    assert Counter(t for s in c.sentences for t in s.tags) == {
        "O": 887_908, "B-geo": 37_644, "B-tim": 20_333, "B-org": 20_143, "I-per": 17_251,
        "B-per": 16_990, "I-org": 16_784, "B-gpe": 15_870, "I-geo": 7_414, "I-tim": 6_528,
        "B-art": 402, "B-eve": 308, "I-art": 297, "I-eve": 253, "B-nat": 201, "I-gpe": 198,
        "I-nat": 51,
    }
    assert c.sentences[0].line == 2 and c.sentences[0].tokens[0] == "Thousands"
    assert any(f"5{NBSP}storm" in s.tokens for s in c.sentences)
    assert any("\u2026" in s.tokens for s in c.sentences)  # byte 0x85
    train, dev, test = split_canonical(c.sentences)
    assert (len(train), len(dev), len(test)) == (38_367, 4_796, 4_796)
    assert elapsed < 20, f"reading took {elapsed:.1f}s"


def test_read_conll_tokens(tmp_path):
    from nerbilstm.data.readers import read_conll_tokens

    text = f"-DOCSTART-\n\nEU B-ORG\nrejects\n\n5{NBSP}storm NN O\n"
    assert read_conll_tokens(put(tmp_path, "x", text)) == [["EU", "rejects"], [f"5{NBSP}storm"]]
    with pytest.raises(DataError):
        read_conll_tokens(put(tmp_path, "y", "\n\n"))
    with pytest.raises(DataError) as e:
        read_conll_tokens(put(tmp_path, "z", b"a\n\x92\n"), encoding="utf-8")
    assert e.value.line == 2


def test_overlong_line(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_BLOCK", 16)
    monkeypatch.setattr(readers, "_MAX_LINE", 100)
    p = put(tmp_path, "c", "a O\nb O\n" + "x" * 300 + " O\n")
    expect_error(p, 3, "longer than", fmt="conll")
