"""Tests for nerbilstm.data.spans (jsonl, brat), the type map every reader takes, and
``predict --output-format spans`` read back as training data."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbilstm.data.dataset import load_dataset, read_file, select_split, stream_dataset
from nerbilstm.data.readers import detect_format, iter_sentences, read_corpus
from nerbilstm.data.tokenizer import tokenize
from nerbilstm.errors import DataError
from nerbilstm.report import render_documents
from nerbilstm.tags import TypeMap, entity_spans

NCBI_ENV = "NERBILSTM_NCBI"
NCBI_TYPES = "CompositeMention=Disease,Modifier=Disease,SpecificDisease=Disease,DiseaseClass=Disease"

TEXT = "Angela Merkel met Emmanuel Macron in Paris. Then she flew home."
MERKEL, PARIS = (0, 13), (37, 42)
EXPECTED = [(["Angela", "Merkel", "met", "Emmanuel", "Macron", "in", "Paris", "."],
             ["B-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "O"]),
            (["Then", "she", "flew", "home", "."], ["O"] * 5)]


def jsonl(tmp_path: Path, *records, name: str = "c.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return p


def pairs(corpus) -> list[tuple[list[str], list[str]]]:
    return [(s.tokens, s.tags) for s in corpus]


def entities(corpus) -> Counter:
    """(type, tokens joined by a space) of every entity."""
    return Counter((t, " ".join(s.tokens[i:j])) for s in corpus for t, i, j in entity_spans(s.tags))


def error(path, *fragments, line=None, where=None, **kw) -> DataError:
    with pytest.raises(DataError) as e:
        read_corpus(path, **kw)
    err = e.value
    assert err.path == str(where or path) and err.line == line, str(err)
    for f in fragments:
        assert f in str(err), str(err)
    assert "\n" not in str(err)
    return err


# ----------------------------------------------------------------------- jsonl


@pytest.mark.parametrize("record", [
    {"text": TEXT, "spans": [{"start": 0, "end": 13, "label": "PER"}, {"start": 37, "end": 42, "label": "LOC"}]},
    {"text": TEXT, "label": [[0, 13, "PER"], [37, 42, "LOC"]]},
    {"text": TEXT, "entities": [[37, 42, "LOC"], [0, 13, "PER"]]},
    {"text": TEXT, "spans": [[0, 13, "PER"], {"start": 37, "end": 42, "label": "LOC", "score": 0.5}],
     "tokens": [], "meta": {"id": 3}, "answer": "accept"},
], ids=["prodigy", "doccano", "entities", "mixed"])
def test_jsonl_spellings(tmp_path, record):
    p = jsonl(tmp_path, record)
    assert detect_format(p) == "jsonl"
    c = read_corpus(p)
    assert c.format == "jsonl" and c.encoding == "utf-8"
    assert pairs(c) == EXPECTED
    assert [s.line for s in c] == [1, 1]
    assert c.notes == []


def test_jsonl_lines_blank_lines_and_records_without_spans(tmp_path):
    p = jsonl(tmp_path, {"text": "Nothing here."}, "", "   ", {"text": "Paris .", "spans": [[0, 5, "LOC"]]},
              {"text": "", "spans": []}, {"text": "rejected", "answer": "reject"}, {"text": "x", "answer": "ignore"})
    c = read_corpus(p)
    assert pairs(c) == [(["Nothing", "here", "."], ["O"] * 3), (["Paris", "."], ["B-LOC", "O"])]
    assert [s.line for s in c] == [1, 4]
    assert c.notes == ["skipped 2 records whose answer is not 'accept' (first at line 6)"]


def test_jsonl_snaps_spans_to_tokens_or_refuses_them(tmp_path):
    p = jsonl(tmp_path, {"text": "ok"}, {"text": TEXT, "label": [[1, 13, "PER"], [37, 41, "LOC"]]},
              {"text": "New Yorkers came.", "label": [[0, 7, "LOC"]]})
    c = read_corpus(p)
    assert pairs(c)[1:3] == EXPECTED
    assert pairs(c)[3] == (["New", "Yorkers", "came", "."], ["B-LOC", "I-LOC", "O", "O"])
    assert c.notes == ["snapped 3 spans that did not fall on token boundaries to the tokens they touch "
                       "(first at line 2)"]
    error(p, "span 1-13 PER ('ngela Merkel') does not fall on token boundaries", "'Angela Merkel'",
          line=2, strict_spans=True)


def test_jsonl_spans_between_touching_tokens(tmp_path):
    text = "(Paris)'s U.S.-led"
    c = read_corpus(jsonl(tmp_path, {"text": text, "label": [[1, 6, "LOC"], [7, 9, "X"]]}), strict_spans=True)
    assert pairs(c) == [(["(", "Paris", ")", "'s", "U.S.-led"], ["O", "B-LOC", "O", "B-X", "O"])]
    c = read_corpus(jsonl(tmp_path, {"text": text, "label": [[10, 14, "LOC"]]}, name="b.jsonl"))
    assert pairs(c)[0][1] == ["O", "O", "O", "O", "B-LOC"] and c.notes[0].startswith("snapped 1 span ")


def test_jsonl_whitespace_around_a_span_is_not_a_snap(tmp_path):
    p = jsonl(tmp_path, {"text": TEXT, "label": [[0, 14, "PER"], [36, 42, "LOC"]]})
    c = read_corpus(p, strict_spans=True)
    assert pairs(c) == EXPECTED and c.notes == []


def test_jsonl_span_over_whitespace_only(tmp_path):
    p = jsonl(tmp_path, {"text": "a   b", "label": [[1, 4, "X"]]})
    c = read_corpus(p)
    assert pairs(c) == [(["a", "b"], ["O", "O"])]
    assert c.notes == ["skipped 1 span that cover no token (only whitespace) (first at line 1)"]
    error(p, "covers no token", line=1, strict_spans=True)


@pytest.mark.parametrize("spans, fragment", [
    ([[0, 13, "PER"], [7, 20, "PER"]], "spans 0-13 PER ('Angela Merkel') and 7-20 PER ('Merkel met Em') overlap"),
    ([[0, 13, "PER"], [0, 13, "LOC"]], "overlap"),
    ([[0, 9, "PER"], [9, 13, "PER"]], "overlap once snapped to tokens (token 'Merkel')"),
])
def test_jsonl_overlapping_spans_are_an_error_naming_the_line(tmp_path, spans, fragment):
    p = jsonl(tmp_path, {"text": "fine"}, {"text": TEXT, "label": spans})
    error(p, fragment, line=2)


def test_jsonl_duplicate_spans_are_dropped(tmp_path):
    p = jsonl(tmp_path, {"text": TEXT, "label": [[37, 42, "LOC"], [0, 13, "PER"], [0, 13, "PER"], [36, 42, "LOC"]]})
    c = read_corpus(p)
    assert pairs(c) == EXPECTED
    assert c.notes == ["dropped 2 duplicate spans (same offsets and label) (first at line 1)"]


def test_jsonl_no_sentence_break_inside_an_entity(tmp_path):
    text = "He works at Yahoo! Inc. in Sunnyvale. He is happy."
    p = jsonl(tmp_path, {"text": text, "label": [[12, 23, "ORG"]]})
    c = read_corpus(p)
    assert pairs(c) == [(["He", "works", "at", "Yahoo", "!", "Inc.", "in", "Sunnyvale", "."],
                         ["O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "O", "O", "O"]),
                        (["He", "is", "happy", "."], ["O"] * 4)]
    assert c.notes == ["did not make 1 sentence break that would cut an entity (first at line 1)"]


@pytest.mark.parametrize("line, fragments", [
    ('{"text": "a", "spans": [', ["not valid JSON", "column"]),
    ("[1, 2]", ['expected a JSON object with a "text" string']),
    ('{"txt": "a"}', ['"text"']),
    ('{"text": 5}', ['"text"']),
    ('{"text": "abc", "spans": {"start": 0}}', ['"spans" should be a list']),
    ('{"text": "abc", "label": [[0, 1]]}', ['"label" item 1: expected', "[S, E, L]"]),
    ('{"text": "abc", "spans": [{"start": 0, "end": 1}]}', ['"spans" item 1: label None']),
    ('{"text": "abc", "label": [[0, 1, "A B"]]}', ["label 'A B' is not an entity type name"]),
    ('{"text": "abc", "label": [[0, 1, "O"]]}', ["label 'O'"]),
    ('{"text": "abc", "label": [[0, 4, "X"]]}', ["offsets 0-4 are not a span of the text (3 characters"]),
    ('{"text": "abc", "label": [[2, 2, "X"]]}', ["offsets 2-2"]),
    ('{"text": "abc", "label": [[-1, 2, "X"]]}', ["offsets -1-2"]),
    ('{"text": "abc", "label": [["0", 2, "X"]]}', ["should be integers"]),
    ('{"text": "abc", "label": [[true, 2, "X"]]}', ["should be integers"]),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, fragments):
    p = jsonl(tmp_path, {"text": "fine", "label": []}, line)
    error(p, *fragments, line=2, fmt="jsonl")


def test_jsonl_empty_file_and_encodings(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n  \n")
    error(empty, "empty file", fmt="jsonl")
    p = tmp_path / "cp.jsonl"
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"text": "ok"}\n')
    assert pairs(read_corpus(bom)) == [(["ok"], ["O"])]
    p.write_bytes(b'{"text": "ok"}\n' + json.dumps({"text": "Caf\xe9 Zo\xeb", "label": [[5, 8, "PER"]]},
                                                                 ensure_ascii=False).encode("cp1252") + b"\n")
    c = read_corpus(p)
    assert c.encoding == "cp1252" and pairs(c)[1] == (["Caf\xe9", "Zo\xeb"], ["O", "B-PER"])
    assert c.notes == ["not valid UTF-8 (byte 0xe9 at line 2); read as cp1252"]
    assert pairs(read_corpus(p, encoding="latin-1"))[1] == pairs(c)[1]
    error(p, "cannot be decoded as utf-8", line=2, encoding="utf-8")


# ------------------------------------------------------------------------- brat


def brat(tmp_path: Path, docs: dict[str, tuple[str, str | None]], name: str = "brat") -> Path:
    d = tmp_path / name
    d.mkdir()
    for doc, (text, ann) in docs.items():
        (d / f"{doc}.txt").write_text(text, encoding="utf-8", newline="")
        if ann is not None:
            (d / f"{doc}.ann").write_text(ann, encoding="utf-8", newline="")
    return d


ANN = ("T1\tPerson 0 13\tAngela Merkel\n"
       "#1\tAnnotatorNotes T1\tchancellor\n"
       "T2\tCity 37 42\tParis\n"
       "N1\tReference T2 Wikidata:Q90\n"
       "T3\tPerson 18 26;27 33\tEmmanuel Macron\n"
       "T4\tMeeting 14 17\tmet\n"
       "E1\tMeeting:T4 Agent:T1\n"
       "R1\tIn Arg1:T1 Arg2:T2\n"
       "A1\tNegated E1\n")


def test_brat_directory(tmp_path):
    d = brat(tmp_path, {"b": ("Nothing to see.\nReally .", ""), "a": (TEXT, ANN), "c": ("No annotations.", None)})
    (d / "annotation.conf").write_text("[entities]\nPerson\n")
    assert detect_format(d) == "brat"
    c = read_corpus(d, type_map="City=LOC,Person=PER")
    assert c.format == "brat" and c.encoding == "utf-8"
    assert pairs(c) == [*EXPECTED, (["Nothing", "to", "see", "."], ["O"] * 4), (["Really", "."], ["O", "O"]),
                        (["No", "annotations", "."], ["O"] * 3)]
    assert [s.line for s in c] == [1, 1, 1, 2, 1]  # line in NAME.txt
    assert c.notes == [
        "skipped 1 discontinuous entity (first at a.ann:5)",
        "skipped 1 event trigger (first at a.ann:6)",
        "read 1 .txt file without a .ann beside it as having no entities (first at c.txt)",
        "skipped 5 brat lines other than entities (# 1, A 1, E 1, N 1, R 1; first at a.ann:2)",
        "type map: 2 entities renamed (City 1 -> LOC, Person 1 -> PER)",
    ]


def test_brat_offsets_count_crlf_and_a_byte_order_mark(tmp_path):
    text = "\ufeffParis is big.\r\nRome too."
    d = brat(tmp_path, {"x": (text, "T1\tLOC 1 6\tParis\nT2\tLOC 16 20\tRome\n")})
    assert pairs(read_corpus(d)) == [(["Paris", "is", "big", "."], ["B-LOC", "O", "O", "O"]),
                                     (["Rome", "too", "."], ["B-LOC", "O", "O"])]


def test_brat_cp1252_text(tmp_path):
    d = brat(tmp_path, {"x": ("", "T1\tPER 5 8\tZo\xeb\n")})
    (d / "x.txt").write_bytes("Caf\xe9 Zo\xeb".encode("cp1252"))
    c = read_corpus(d)
    assert c.encoding == "cp1252" and pairs(c) == [(["Caf\xe9", "Zo\xeb"], ["O", "B-PER"])]
    assert c.notes == ["1 file not valid UTF-8, read as cp1252 (first at x.txt:1)"]


@pytest.mark.parametrize("ann, line, fragments", [
    ("T1\tPER 0 13\tAngela Merkel\nT2\tPER 7 20\tMerkel met Em\n", 2, ["overlap"]),
    ("T1\tPER 0 13\tAngela Merkle\n", 1, ["T1: its text 'Angela Merkle' is not the text at 0-13 ('Angela Merkel')",
                                         "encoding"]),
    ("T1\tPER 0 13\n\nT2 PER 0 3 Ang\n", 3, ["expected 'T1<TAB>TYPE START END<TAB>TEXT'"]),
    ("T1\tPER zero 13\tx\n", 1, ["offsets 'zero 13' are not 'START END'"]),
    ("T1\tPER 0 13;14\tx\n", 1, ["not 'START END'"]),
    ("T1\tPER 0 999\tx\n", 1, ["T1: offsets 0-999 are not a span of the text"]),
    ("T1\tP\u00a0R 0 13\tAngela Merkel\n", 1, ["not an entity type name"]),
])
def test_brat_errors_name_the_ann_file_and_line(tmp_path, ann, line, fragments):
    d = brat(tmp_path, {"a": (TEXT, ann)})
    error(d, *fragments, line=line, where=d / "a.ann")


def test_brat_strict_spans(tmp_path):
    d = brat(tmp_path, {"a": (TEXT, "T1\tPER 0 9\tAngela Me\n")})
    assert pairs(read_corpus(d))[0][1][:2] == ["B-PER", "I-PER"]
    error(d, "does not fall on token boundaries", line=1, where=d / "a.ann", strict_spans=True)


def test_brat_directory_problems(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    error(empty, "not a brat standoff directory")
    d = brat(tmp_path, {"a": (TEXT, "")})
    (d / "orphan.ann").write_text("")
    error(d, "no .txt file beside this .ann file", where=d / "orphan.ann")
    only_txt = brat(tmp_path, {"a": (TEXT, None)}, name="only_txt")
    error(only_txt, "no NAME.txt + NAME.ann files")
    f = jsonl(tmp_path, {"text": "a"})
    error(f, "the brat format reads a directory", fmt="brat")
    error(d, "is a directory", fmt="conll")


# --------------------------------------------------------------------- type map


def test_type_map_parse():
    assert TypeMap.parse(None) is None and TypeMap.parse("") is None and TypeMap.parse(" , ") is None
    assert TypeMap.parse(" A = B ,C=D,").mapping == {"A": "B", "C": "D"}
    assert TypeMap.parse({"A": "O"}).mapping == {"A": "O"}
    for bad in ("A", "A=", "=B", "A=B C", "O=B", "A=B,A=C", "A=B=C"):
        with pytest.raises(DataError) as e:
            TypeMap.parse(bad)
        assert "type map" in str(e.value)


def test_type_map_renames_merges_and_drops():
    m = TypeMap.parse("A=X,B=X,C=O,Never=Y")
    tags = ["B-A", "I-A", "B-B", "O", "B-C", "I-C", "B-D", "I-D"]
    out = m(tags)
    assert out == ["B-X", "I-X", "B-X", "O", "O", "O", "B-D", "I-D"]
    assert entity_spans(out) == [("X", 0, 2), ("X", 2, 3), ("D", 6, 8)]  # a merge keeps two entities two
    assert m.notes() == ["type map: 3 entities renamed (A 1 -> X, B 1 -> X, C 1 -> O)",
                         "type map: no entities of type Never (check the spelling)"]


def test_type_map_in_every_reader(tmp_path):
    conll = tmp_path / "c.conll"
    conll.write_text("Paris I-geo\nand O\nRome I-geo\nBerlin I-gpe\n\nx O\n")  # IOB1: repaired first, then mapped
    c = read_corpus(conll, type_map="geo=LOC,gpe=LOC")
    assert pairs(c)[0][1] == ["B-LOC", "O", "B-LOC", "B-LOC"]
    assert c.notes[-1] == "type map: 3 entities renamed (geo 2 -> LOC, gpe 1 -> LOC)"
    with iter_sentences(conll, type_map={"geo": "O"}) as stream:
        assert [s.tags for s in stream][0] == ["O", "O", "O", "B-gpe"]
    p = jsonl(tmp_path, {"text": TEXT, "label": [[0, 13, "per"], [37, 42, "geo"]]})
    assert pairs(read_corpus(p, type_map="per=PER,geo=LOC")) == EXPECTED
    with pytest.raises(DataError, match="type map"):
        read_corpus(p, type_map="per")


def test_dataset_loaders_pass_type_map_and_strict_spans(tmp_path):
    records = [{"text": f"Visit Paris number {i} now .", "label": [[6, 11, "geo"]]} for i in range(20)]
    p = jsonl(tmp_path, *records)
    data = load_dataset(str(p), type_map="geo=LOC")
    assert {t for s in data.train for t in s.tags} == {"O", "B-LOC"}
    assert data.info["train"]["type_map"] == "geo=LOC" and data.info["train"]["format"] == "jsonl"
    streamed = stream_dataset(str(p), type_map={"geo": "LOC"})
    assert [s.tags for s in streamed.train] == [s.tags for s in data.train]
    assert streamed.info["train"]["type_map"] == "geo=LOC"
    d = brat(tmp_path, {"a": (TEXT, "T1\tgeo 37 41\tPari\n")})
    sentences, info = select_split(str(d), "all", type_map="geo=LOC")
    assert sentences[0].tags[6] == "B-LOC" and info["format"] == "brat" and len(info["sha256"]) == 64
    with pytest.raises(DataError, match="token boundaries"):
        read_file(d, None, None, -1, None, None, True)
    (d / "a.txt").write_text(TEXT.replace("Merkel", "Merkle"))
    assert select_split(str(d), "all")[1]["sha256"] != info["sha256"]


# ------------------------------------------------------------ properties, round trip


_WORDS = st.sampled_from(["Paris", "New", "York", "U.S.", "is", "big", "Dr.", "Smith", "'s", "(", ")", ",", "10,000",
                          "well-known", "."])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(_WORDS, min_size=1, max_size=25), seps=st.lists(st.sampled_from(["", " ", "  ", "\n"]), max_size=25),
       picks=st.lists(st.tuples(st.integers(0, 24), st.integers(1, 3), st.sampled_from(["A", "B"])), max_size=5))
def test_jsonl_spans_on_token_boundaries_come_back_exactly(tmp_path, words, seps, picks):
    text = "".join(w + (seps[k] if k < len(seps) else " ") for k, w in enumerate(words))
    tokens = tokenize(text)
    taken, spans = set(), []
    for i, n, label in picks:  # non-overlapping token ranges, as character spans
        j = min(i + n, len(tokens))
        if i < len(tokens) and not taken.intersection(range(i, j)):
            taken.update(range(i, j))
            spans.append((tokens[i].start, tokens[j - 1].end, label))
    c = read_corpus(jsonl(tmp_path, {"text": text, "label": [list(s) for s in spans]}), strict_spans=True)
    assert [t for s in c for t in s.tokens] == [t.text for t in tokens]
    got = []
    offset = 0
    for s in c:
        got += [(tokens[offset + a].start, tokens[offset + b - 1].end, t) for t, a, b in entity_spans(s.tags)]
        offset += len(s.tokens)
    assert sorted(got) == sorted(spans)


@pytest.fixture(scope="module")
def shipped_tagger():
    from nerbilstm.predict import DEFAULT_MODEL_DIR, Tagger

    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL_DIR} (config.json missing)")
    return Tagger.load(None)


NEWS = ["Angela Merkel met Emmanuel Macron in Paris on Monday.",
        "The U.S. army left Baghdad.\nIraq's president, Jalal Talabani, spoke to reporters in Washington.",
        "Nothing happened.", "Officials from the European Union and NATO met in Brussels last week. "
        "They discussed Russia, China and the United Nations."]


def test_predicted_spans_read_back_as_the_same_entities(tmp_path, shipped_tagger):
    docs = shipped_tagger(NEWS)
    out = render_documents(docs, "spans")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == NEWS
    assert all(set(s) == {"start", "end", "label", "score"} for r in records for s in r["spans"])
    p = tmp_path / "pred.jsonl"
    p.write_text(out, encoding="utf-8")
    c = read_corpus(p, strict_spans=True)
    assert c.format == "jsonl" and c.notes == []
    predicted = Counter((e["label"], e["text"]) for d in docs for e in d["entities"])
    assert sum(predicted.values()) >= 10
    assert Counter((t, k.replace(" ", "")) for (t, k), n in entities(c).items() for _ in range(n)) == \
        Counter((t, k.replace(" ", "")) for (t, k), n in predicted.items() for _ in range(n))
    tagged = [tok["tag"] for d in docs for tok in d["tokens"]]
    assert [t for s in c for t in s.tags] == tagged  # the same tokens, the same tags


def test_cli_predict_spans_then_evaluate_on_them(tmp_path, shipped_tagger, capsys):
    from nerbilstm.cli import main

    assert main(["predict", "--output-format", "spans", *NEWS[:2]]) == 0
    out = capsys.readouterr().out
    assert out == render_documents(shipped_tagger(NEWS[:2]), "spans")
    p = tmp_path / "pred.jsonl"
    p.write_text(out, encoding="utf-8")
    assert main(["evaluate", "--data", str(p), "--split", "all", "--strict-spans", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entity_f1"] == 1.0  # its own predictions, read back
    assert main(["evaluate", "--data", str(p), "--split", "all", "--type-map", "geo=gpe,per", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nerbilstm evaluate: error: type map") and err.count("\n") == 1


# -------------------------------------------------------------------------- NCBI


@pytest.fixture(scope="module")
def ncbi() -> Path:
    value = os.environ.get(NCBI_ENV)
    if not value:
        pytest.skip(f"{NCBI_ENV} is not set: point it at the ncbi_disease folder (devel.tsv, standoff_devel/)")
    path = Path(value)
    if not (path / "devel.tsv").is_file() or not (path / "standoff_devel").is_dir():
        pytest.skip(f"{NCBI_ENV}={value} has no devel.tsv and standoff_devel/")
    return path


def test_ncbi_standoff_gives_the_entities_of_devel_tsv(ncbi):
    """The dev documents in brat form, merged into one type, against the CoNLL form of the same documents.

    Measured: 787 entities on both sides.  Compared as the tokens of each entity joined by a space, 665
    agree: devel.tsv splits hyphens and apostrophes ('Wiskott - Aldrich', "Addison ' s") and our tokenizer,
    GMB's, keeps them whole.  Compared without the spaces between tokens (the entity's characters), 785
    agree (0.997); the two others are the two spans that end inside a token ('HD' of 'HD-associated', 'VHL'
    of 'VHL-mediated'), snapped to the whole token, and noted as such.
    """
    b = read_corpus(ncbi / "standoff_devel", type_map=NCBI_TYPES)
    c = read_corpus(ncbi / "devel.tsv")
    eb, ec = entities(b), entities(c)
    total = sum(ec.values())
    assert sum(eb.values()) == total > 700
    assert {t for t, _ in eb} == {"Disease"}
    squeeze = lambda counter: Counter(k.replace(" ", "") for (_, k), n in counter.items() for _ in range(n))  # noqa: E731
    agree = sum((squeeze(eb) & squeeze(ec)).values())
    assert agree / total >= 0.99
    snapped = [n for n in b.notes if n.startswith("snapped")]
    assert len(snapped) == 1 and total - agree <= int(snapped[0].split()[1])
    assert any(n.startswith(f"type map: {total} entities renamed (CompositeMention") for n in b.notes)
    assert sum((eb & ec).values()) / total >= 0.8  # the rest differ by tokenization only (see the docstring)
