"""tagging.py and `nerbilstm predict`: inputs streamed, CoNLL told from text, one record per line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nerbilstm.data.readers import TextLines, looks_like_conll
from nerbilstm.tagging import open_input

from servers import tiny_tagger

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tagging") / "model"
    tiny_tagger(out)
    return out


@pytest.mark.parametrize("lines, conll", [
    (["-DOCSTART- -X- O O", "", "EU B-ORG"], True),
    (["EU NNP B-ORG", "rejects VBZ O", "", "German JJ B-MISC"], True),
    (["EU\tB-ORG", "rejects\tO"], True),
    (["Paris\tS-LOC"], True),  # IOBES tags are tags
    (["Fans sang O Canada."], False),  # ends in a word, not a tag
    (["Fans sang O", "Canada won ."], False),  # one line ending in a tag is not enough
    (["He said O"], True),  # ... but every line of the head ending in one is CoNLL
    (["John B-PER", "Smith"], False),  # a line with one column
    ([], False), (["", "  "], False),
])
def test_looks_like_conll(lines, conll):
    assert looks_like_conll(lines) is conll


def test_text_lines_keep_blank_lines_and_decode_each_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"Paris\r\n\nMontr\xe9al\nZ\xc3\xbcrich\n\nlast")
    lines = TextLines(str(path))
    assert list(lines) == ["Paris", "", "Montréal", "Zürich", "", "last"]
    assert lines.bytes_read == path.stat().st_size
    assert lines.notes == ["not valid UTF-8; read as cp1252 (1 line, the first at line 3)"]
    assert list(TextLines(str(path), "cp1252"))[3] == "ZÃ¼rich"  # an explicit encoding is obeyed


def test_text_lines_in_utf16(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes("Paris\nZürich\n".encode("utf-16"))
    assert list(TextLines(str(path), "utf-16")) == ["Paris", "Zürich"]


def test_open_input_detects_and_is_overridden(tmp_path):
    conll = tmp_path / "a.conll"
    conll.write_text("EU B-ORG\nrejects O\n\nGerman B-MISC\n")
    prose = tmp_path / "b.txt"
    prose.write_text("Fans sang O Canada.\n\nThen they left.\n")
    inp = open_input([], str(conll))
    assert inp.kind == "conll" and list(inp.records) == [["EU", "rejects"], ["German"]]
    inp = open_input([], str(prose))
    assert inp.kind == "text" and list(inp.records) == ["Fans sang O Canada.", "", "Then they left."]
    inp = open_input([], str(conll), "text")
    assert inp.kind == "text" and list(inp.records)[0] == "EU B-ORG"


def test_predict_one_record_per_input_line(tmp_path, cli, model_dir):
    path = tmp_path / "in.txt"
    path.write_text("John Smith visited Paris .\n\n   \nThe World Bank met in London .\n", encoding="utf-8")
    for fmt in ("inline", "jsonl", "conll"):
        run = cli(["predict", "--model", model_dir, "--input", path, "--output-format", fmt])
        assert run.rc == 0, run.err
        if fmt == "inline":
            assert len(run.out.split("\n")) - 1 == 4 and run.out.split("\n")[1:3] == ["", "   "]
        elif fmt == "jsonl":
            docs = [json.loads(line) for line in run.out.splitlines()]
            assert [d["text"] for d in docs] == ["John Smith visited Paris .", "", "   ",
                                                 "The World Bank met in London ."]
            assert docs[1]["tokens"] == [] and docs[2]["tokens"] == []
        else:  # a record per input line: a blank line after each, nothing else for an empty one
            first, last = run.out.split("\n\n\n\n")
            assert first.startswith("John\t") and first.count("\n") == 4 and last.startswith("The\t")


def test_predict_detects_conll_and_keeps_prose_as_text(tmp_path, cli, model_dir):
    conll = tmp_path / "x.conll"
    conll.write_text("-DOCSTART- O\n\nJohn B-per\nSmith I-per\n\nParis B-geo\n")
    run = cli(["predict", "--model", model_dir, "--input", conll, "--output-format", "jsonl"])
    assert run.rc == 0, run.err
    docs = [json.loads(line) for line in run.out.splitlines()]
    assert [d["text"] for d in docs] == ["John Smith", "Paris"]  # no -DOCSTART- record, tags not tokens
    prose = tmp_path / "p.txt"
    prose.write_text("Fans sang O Canada.\n")
    run = cli(["predict", "--model", model_dir, "--input", prose, "--output-format", "jsonl"])
    assert [t["text"] for t in json.loads(run.out)["tokens"]] == ["Fans", "sang", "O", "Canada", "."]
    run = cli(["predict", "--model", model_dir, "--input", conll, "--input-format", "text",
               "--output-format", "jsonl"])
    assert json.loads(run.out.splitlines()[0])["text"] == "-DOCSTART- O"


def test_nbest_needs_jsonl_and_json_is_jsonl(cli, model_dir):
    run = cli(["predict", "--model", model_dir, "--nbest", "2", "Paris ."])
    assert run.rc == 2 and "--nbest needs --output-format jsonl" in run.err and run.out == ""
    a = cli(["predict", "--model", model_dir, "--nbest", "2", "--output-format", "jsonl", "Paris ."])
    b = cli(["predict", "--model", model_dir, "--nbest", "2", "--output-format", "json", "Paris ."])
    assert a.rc == b.rc == 0 and a.out == b.out and "nbest" in json.loads(a.out)["sentences"][0]


def test_pipe_is_lazy_and_in_order(model_dir):
    from nerbilstm.predict import Tagger

    tagger = Tagger.load(model_dir)
    pulled = []

    def texts():
        for k in range(10):
            pulled.append(k)
            yield f"Text {k} about Paris ."

    docs = tagger.pipe(texts(), batch_size=3)
    first = next(docs)
    assert first["text"] == "Text 0 about Paris ." and pulled == [0, 1, 2]  # one batch read, no more
    assert [d["text"] for d in docs] == [f"Text {k} about Paris ." for k in range(1, 10)]


def _peak_rss_kb(args, cwd) -> int:
    """Peak RSS of a `nerbilstm predict` child process, measured with resource.getrusage."""
    code = textwrap.dedent(f"""
        import resource, subprocess, sys
        with open({str(cwd / 'out.txt')!r}, "w") as out:
            rc = subprocess.call([sys.executable, "-m", "nerbilstm", "predict", *{args!r}], stdout=out)
        assert rc == 0, rc
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return int(subprocess.check_output([sys.executable, "-c", code], env=env, cwd=cwd, text=True))


def test_predict_memory_stays_flat_on_a_big_input(tmp_path, model_dir):
    """200,000 input lines (four in five blank, to keep it quick): peak memory within a fixed
    bound of a one-line input, and exactly one output record per input line (the code before
    streaming held every line and document, and dropped blank lines)."""
    one = tmp_path / "one.txt"
    one.write_text("Angela Merkel visited Paris on Monday .\n")
    big = tmp_path / "big.txt"
    words = ["Paris", "London", "Merkel", "Monday", "the", "bank", "."]
    with open(big, "w") as f:
        for i in range(200_000):
            f.write(" ".join(words[(i + j) % 7] for j in range(1 + i % 3)) if i % 5 == 0 else "")
            f.write("\n")
    base = _peak_rss_kb(["--model", str(model_dir), "--input", str(one), "--no-progress"], tmp_path)
    peak = _peak_rss_kb(["--model", str(model_dir), "--input", str(big), "--output-format", "jsonl",
                         "--no-progress"], tmp_path)
    with open(tmp_path / "out.txt", encoding="utf-8") as f:
        n = sum(1 for _ in f)
    assert n == 200_000
    assert peak - base < 60_000, (base, peak)  # KB


def test_a_long_conll_sentence_is_written_in_parts_as_a_whole_document(tmp_path, model_dir, monkeypatch):
    """A sentence over LONG_RECORD_TOKENS is tagged and written a part at a time: the same
    bytes as its whole document in every output format, and no part much over part_tokens."""
    import io

    import nerbilstm.tagging as tagging
    from nerbilstm.predict import Tagger
    from nerbilstm.report import render_document_parts, render_documents

    tagger = Tagger.load(model_dir)
    words = ["Paris", "London", "Merkel", "Monday", "the", "bank", ".", "visited", "Angela", "in"]
    tokens = [words[(i * 7 + i // 3) % len(words)] for i in range(2_345)]  # pieces of 200, the last of 145
    conll = tmp_path / "long.conll"
    conll.write_text("".join(f"{t}\tO\n" for t in tokens) + "\nParis\tB-LOC\n")
    whole = tagger.tag_documents([tokens], nbest=2)
    for fmt in ("jsonl", "conll", "inline", "spans"):
        text, parts = tagger.tag_in_parts(tokens, nbest=2, part_tokens=450)
        parts = list(parts)
        assert text == whole[0]["text"] and [len(p["tokens"]) for p in parts] == [600, 600, 600, 545]
        assert "".join(render_document_parts(text, iter(parts), fmt)) == render_documents(whole, fmt)
    outputs = {}
    for long_tokens in (10**9, 1_000):  # tagged whole; in parts (the second record stays whole)
        monkeypatch.setattr(tagging, "LONG_RECORD_TOKENS", long_tokens)
        out = io.StringIO()
        assert tagging.write_tagged(tagger, open_input([], str(conll)), out, "jsonl", nbest=2) == 2
        outputs[long_tokens] = out.getvalue()
    assert outputs[1_000] == outputs[10**9] == render_documents(whole + tagger.tag_documents([["Paris"]], 2), "jsonl")
