"""Bad input end to end: one clear line (file, line, problem) and exit 2, or a documented skip
that is counted and reported; never a traceback, never a half-written model directory.
Odd text to tag keeps correct character offsets. Model files are read without pickle.

The reader's own error messages are tested in detail in tests/test_readers.py; here the same
kinds of bad files go through the command line (train, evaluate, predict).
"""

import io
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nerbilstm.cli import main
from nerbilstm.data.batching import collate, encode
from nerbilstm.data.readers import Sentence, write_conll, write_gmb_csv, write_text_labels_csv
from nerbilstm.errors import DataError, ModelFileError
import nerbilstm.predict
from nerbilstm.io import CONFIG_CHECKSUM, config_checksum, sha256_file
from nerbilstm.predict import DEFAULT_MODEL_DIR, Tagger

from offsets import check_entity_offsets
from synthetic import synthetic_sentences

GMB_HEADER = "Sentence #,Word,POS,Tag\n"
LONG = 5000  # tokens in the long sentence


# --------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("robust")


@pytest.fixture(scope="module")
def emb(root):
    """A tiny GloVe-style text table (4 dims), so no large embedding table is loaded."""
    words = sorted({w.lower() for s in synthetic_sentences(50, 1) for w in s.tokens})
    rng = np.random.default_rng(0)
    path = root / "emb.txt"
    with open(path, "w", encoding="utf-8") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=4)) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny(emb):
    return ["--epochs", "1", "--hidden-size", "4", "--layers", "1", "--char-dim", "4", "--char-filters", "4",
            "--case-dim", "2", "--batch-size", "16", "--threads", "1", "--no-plots", "--no-progress",
            "--embeddings", str(emb), "--seed", "3"]


def corpus_with_long_sentence(n=40, seed=1):
    """The synthetic corpus with a 5,000-token sentence at index 2 (a training sentence under
    the canonical split) and one at index 0 (a test sentence)."""
    sents = synthetic_sentences(n, seed)
    rng = random.Random(seed)
    vocab = [w for s in sents for w in s.tokens]
    long = []
    for k in range(2):
        tokens = [rng.choice(vocab) for _ in range(LONG)]
        tags = ["O"] * LONG
        tags[100:102] = ["B-geo", "I-geo"]
        tags[LONG - 1] = "B-per"
        long.append(Sentence(tokens, tags))
    return [long[0], sents[0], long[1]] + sents[1:]


@pytest.fixture(scope="module")
def corpus_file(root):
    path = root / "tiny.csv"
    write_gmb_csv(synthetic_sentences(40, seed=1), path)
    return path


@pytest.fixture(scope="module")
def model_dir(root, tiny):
    """A tiny model trained through the CLI on a corpus holding a 5,000-token training sentence."""
    data = root / "long.conll"
    write_conll(corpus_with_long_sentence(), data)
    out = root / "model"
    assert main(["train", "--data", str(data), "--out", str(out), *tiny]) == 0
    shutil.copy(root / "emb.txt", out)  # config.json names the table; Tagger.load finds it beside the model
    return out


@pytest.fixture(scope="module")
def tagger(model_dir):
    return Tagger.load(model_dir)


def put(directory: Path, name: str, content) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def assert_one_line_error(run, path, line=None, *needles):
    assert run.rc == 2, (run.rc, run.err)
    assert "Traceback" not in run.err
    assert len(run.err_lines) == 1, run.err
    msg = run.err_lines[0]
    assert str(path) in msg, msg
    if line is not None:
        assert f"{path}:{line}: " in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def assert_no_model_written(out: Path):
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    if out.exists():
        assert not list(out.glob(".*.tmp"))


# --------------------------------------------------------------------------- data files

_MIXED_LINE = 3  # the line of the cp1252 byte in _mixed()


def _mixed() -> bytes:
    """UTF-8 on line 2, a cp1252 byte (0xe9, 'é') on line 3."""
    return (GMB_HEADER + "Sentence: 1,Zürich,NNP,B-geo\n").encode("utf-8") + \
        "Sentence: 2,Montréal,NNP,B-geo\n".encode("cp1252")


# (id, file name, content, extra flags, expected line or None, substrings of the message)
BAD_FILES = [
    ("empty", "e.csv", "", [], None, ["empty file"]),
    ("whitespace-only", "w.csv", "\n  \n\t\r\n", [], None, ["empty file"]),
    ("empty-conll", "e.conll", "", ["--format", "conll"], None, ["empty file"]),
    ("missing-header", "h.csv", "Sentence: 1,a,DT,O\n,b,NN,O\n", [], 1, ["cannot tell the format"]),
    ("missing-header-gmb", "h.csv", "Sentence: 1,a,DT,O\n,b,NN,O\n", ["--format", "gmb"], 1,
     ["wrong header", "Sentence #,Word,POS,Tag"]),
    ("wrong-header", "h.csv", "\nSentence,Token,POS,Label\nSentence: 1,a,DT,O\n", ["--format", "gmb"], 2,
     ["wrong header", "missing: sentence #, word, tag"]),
    ("wrong-header-text-labels", "h.csv", "text,tags\nhello,O\n", ["--format", "text-labels"], 1,
     ["wrong header", "missing: labels"]),
    ("header-only", "h.csv", GMB_HEADER, [], None, ["no sentences found"]),
    ("too-few-columns", "c.csv", GMB_HEADER + "Sentence: 1,a,DT,O\n\n,b\n", [], 4, ["2 columns", "expected 4"]),
    ("too-few-columns-text-labels", "c.csv", "text,labels\nhello,O\nworld\n", [], 3, ["1 column", "expected 2"]),
    ("unterminated-quote", "q.csv", GMB_HEADER + 'Sentence: 1,"a,DT,O\n,b,NN,O\n', [], 2, ["columns"]),
    ("continuation-first", "c.csv", GMB_HEADER + ",b,NN,O\n", [], 2, ["before any 'Sentence: N'"]),
    ("tag-not-iob", "t.csv", GMB_HEADER + "Sentence: 1,a,DT,O\n,b,NN,X-geo\n", [], 3, ["'X-geo'", "B-TYPE"]),
    ("tag-not-iob-conll", "t.conll", "a O\nb X-geo\n", [], 2, ["'X-geo'"]),
    ("tag-not-iob-text-labels", "t.csv", "text,labels\na b,O O\nc d,O T-per\n", [], 3, ["'T-per'"]),
    ("conll-one-column", "o.conll", "a O\nlonely\n", ["--format", "conll"], 2, ["one column"]),
    ("conll-tag-column", "o.conll", "a O\n", ["--tag-column", "5"], 1, ["no tag column 5"]),
    ("binary", "b.csv", bytes(range(256)) * 4, [], 1, ["binary"]),
    ("binary-after-header", "b.csv", GMB_HEADER.encode() + b"\x00\x01\x02\xff", [], 2, ["binary"]),
    ("utf-16", "u.csv", (GMB_HEADER + "Sentence: 1,a,DT,O\n").encode("utf-16"), [], 1, ["binary"]),
    ("random-bytes-no-nul", "r.bin", bytes(b for b in random.Random(0).randbytes(4000) if b), [], 1,
     ["cannot tell the format"]),
    ("mixed-encoding-explicit-utf8", "m.csv", _mixed(), ["--encoding", "utf-8"], _MIXED_LINE,
     ["cannot be decoded as utf-8", "0xe9"]),
    ("neither-utf8-nor-cp1252", "n.csv", GMB_HEADER.encode() + b"Sentence: 1,a\x81b,NN,O\n", [], 2,
     ["neither UTF-8 nor cp1252", "0x81"]),
    ("unknown-encoding", "m.csv", _mixed(), ["--encoding", "no-such-codec"], None, ["unknown encoding"]),
    ("not-a-text-encoding", "m.csv", _mixed(), ["--encoding", "rot13"], None, ["not a text encoding"]),
    ("one-sentence-no-train-split", "one.csv", GMB_HEADER + "Sentence: 1,a,DT,O\n", [], None,
     ["train split is empty", "1 sentence"]),
]


@pytest.mark.parametrize("name,content,flags,line,needles", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_train_on_bad_file(tmp_path, cli, tiny, name, content, flags, line, needles):
    path = put(tmp_path, name, content)
    out = tmp_path / "out"
    run = cli(["train", "--data", path, "--out", out, *tiny, *flags])
    assert_one_line_error(run, path, line, *needles)
    assert run.err_lines[0].startswith("nerbilstm train: error: ")
    assert_no_model_written(out)


_EVAL_CASES = ["empty", "header-only", "too-few-columns", "tag-not-iob", "binary", "mixed-encoding-explicit-utf8",
               "unknown-encoding", "random-bytes-no-nul"]


@pytest.mark.parametrize("name,content,flags,line,needles",
                         [c[1:] for c in BAD_FILES if c[0] in _EVAL_CASES], ids=_EVAL_CASES)
def test_evaluate_on_bad_file(tmp_path, cli, model_dir, name, content, flags, line, needles):
    path = put(tmp_path, name, content)
    run = cli(["evaluate", "--model", model_dir, "--data", path, "--split", "all", *flags])
    assert_one_line_error(run, path, line, *needles)
    assert run.out == ""


def test_bad_dev_and_test_files_are_named(tmp_path, cli, tiny, corpus_file):
    bad = put(tmp_path, "dev.conll", "a O\nb X-geo\n")
    out = tmp_path / "out"
    assert_one_line_error(cli(["train", "--data", corpus_file, "--dev-data", bad, "--out", out, *tiny]), bad, 2,
                          "'X-geo'")
    missing = tmp_path / "nope.conll"
    assert_one_line_error(cli(["train", "--data", corpus_file, "--test-data", missing, "--out", out, *tiny]),
                          missing, None, "no such file")
    assert_no_model_written(out)


def test_evaluate_empty_split_is_an_error(tmp_path, cli, model_dir):
    path = tmp_path / "few.conll"
    write_conll(synthetic_sentences(1, seed=2), path)  # sentence 0 is test; dev is empty
    assert_one_line_error(cli(["evaluate", "--model", model_dir, "--data", path, "--split", "dev"]), path, None,
                          "dev split is empty")


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--epochs", "0"), ("--patience", "0"),
                                        ("--dropout", "1.5"), ("--word-dropout", "2")])
def test_train_bad_numbers_are_one_line_errors(tmp_path, cli, tiny, corpus_file, flag, value):
    out = tmp_path / "out"
    run = cli(["train", "--data", corpus_file, "--out", out, *tiny, flag, value])
    assert run.rc == 2 and len(run.err_lines) == 1 and "Traceback" not in run.err, run.err
    assert_no_model_written(out)


# ---- documented skips and repairs: exit 0, counted, reported


def _train_ok(cli, tiny, path, out, *flags):
    run = cli(["train", "--data", path, "--out", out, *tiny, *flags])
    assert run.rc == 0, run.err
    assert "Traceback" not in run.err
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    return run, config


def test_i_after_o_is_repaired_counted_and_logged(tmp_path, cli, tiny):
    sents = synthetic_sentences(40, seed=1)
    sents[5] = Sentence(["in", "Quuxville", "today"], ["O", "I-geo", "O"])  # I- after O
    sents[7] = Sentence(["New", "York", "and", "Zedtown"], ["B-geo", "I-geo", "O", "I-geo"])
    path = tmp_path / "iob.conll"
    write_conll(sents, path)
    text = path.read_text(encoding="utf-8")
    start_line = text[: text.index("in O\nQuuxville")].count("\n") + 1  # where that sentence starts
    run, config = _train_ok(cli, tiny, path, tmp_path / "out")
    note = f"repaired 2 I- tags that started an entity (after O, another type or at sentence start) into B- " \
           f"(first at line {start_line})"
    assert any(note in line and str(path) in line for line in run.err_lines), run.err
    assert note in config["data"]["train"]["notes"]
    assert "I-geo" in config["labels"] and "B-geo" in config["labels"]


def test_text_labels_count_mismatch_is_skipped_and_counted(tmp_path, cli, tiny):
    path = tmp_path / "tl.csv"
    write_text_labels_csv(synthetic_sentences(40, seed=1), path)
    with open(path, "a", encoding="utf-8") as f:
        f.write("three tokens here,O O\n")  # line 42
        f.write("two tokens,O O O\n")
    run, config = _train_ok(cli, tiny, path, tmp_path / "out")
    note = "skipped 2 rows whose token and tag counts differ (first at line 42)"
    assert any(note in line for line in run.err_lines), run.err
    assert config["data"]["train"]["notes"] == [note]
    assert config["data"]["train"]["sentences"] == 40


def test_mixed_encoding_falls_back_to_cp1252_with_a_note(tmp_path, cli, tiny):
    path = tmp_path / "mixed.csv"
    write_gmb_csv(synthetic_sentences(40, seed=1), path)
    raw = path.read_bytes()
    lines = raw.count(b"\n")
    path.write_bytes(raw + "Sentence: 41,Zürich,NNP,B-geo\n".encode("utf-8")
                     + "Sentence: 42,Montréal,NNP,B-geo\n".encode("cp1252"))
    run, config = _train_ok(cli, tiny, path, tmp_path / "out")
    note = f"not valid UTF-8 (byte 0xe9 at line {lines + 2}); read as cp1252"
    assert any(note in line for line in run.err_lines), run.err
    info = config["data"]["train"]
    assert info["encoding"] == "cp1252" and note in info["notes"]
    # The whole file is read as cp1252 (documented): the cp1252 word is right, the UTF-8 one is mojibake.
    from nerbilstm.data.readers import read_corpus

    tokens = [t for s in read_corpus(path).sentences[-2:] for t in s.tokens]
    assert tokens == ["ZÃ¼rich", "Montréal"]
    # Told the truth, it reads the file with no note; told UTF-8, it stops at the cp1252 byte (tested above).
    run, config = _train_ok(cli, tiny, path, tmp_path / "out2", "--encoding", "cp1252")
    assert config["data"]["train"]["notes"] == []


def test_blank_lines_and_stray_whitespace_are_tolerated(tmp_path, cli, tiny):
    sents = synthetic_sentences(40, seed=1)
    clean = tmp_path / "clean.csv"
    write_gmb_csv(sents, clean)
    lines = clean.read_text(encoding="utf-8").splitlines()
    messy = ["", "   "] + [lines[0]] + [f" {ln.replace(',O', ', O ')}\t \r" if i % 3 else ln + "\n\n  "
                                        for i, ln in enumerate(lines[1:])] + ["", "\t", ""]
    path = tmp_path / "messy.csv"
    path.write_text("\n".join(messy) + "\n", encoding="utf-8", newline="")
    run, config = _train_ok(cli, tiny, path, tmp_path / "out")
    assert config["data"]["train"]["sentences"] == 40 and config["data"]["train"]["notes"] == []
    _, clean_config = _train_ok(cli, tiny, clean, tmp_path / "out2")
    assert config["vocab"] == clean_config["vocab"]  # same tokens and tags, whitespace stripped
    assert config["history"][0]["train_loss"] == pytest.approx(clean_config["history"][0]["train_loss"])


def test_unseen_dev_and_test_tags_count_as_misses(tmp_path, cli, tiny, model_dir):
    sents = synthetic_sentences(30, seed=2)
    train_path, dev_path = tmp_path / "train.conll", tmp_path / "dev.conll"
    write_conll(sents, train_path)
    dev = sents[:3] + [Sentence(["Zorg", "attacked", "Big", "Ben"], ["B-art", "O", "B-art", "I-art"])]
    write_conll(dev, dev_path)
    out = tmp_path / "out"
    _train_ok(cli, tiny, train_path, out, "--dev-data", dev_path, "--test-data", dev_path)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for split in ("dev", "test"):
        assert metrics[split]["unseen_gold_tags"] == ["B-art", "I-art"]
    run = cli(["evaluate", "--model", out, "--data", dev_path, "--split", "all", "--json"])
    assert run.rc == 0, run.err
    report = json.loads(run.out)
    assert report["unseen_gold_tags"] == ["B-art", "I-art"]
    assert report["per_type"]["art"]["recall"] == 0.0 and report["per_type"]["art"]["support"] == 2


# ---- a sentence of 5,000 tokens


def test_long_sentence_trains_evaluates_and_predicts(tmp_path, cli, model_dir, tagger):
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["data"]["train"]["sentences"] == 42  # the long training sentence was read and used
    long = corpus_with_long_sentence()[0]
    # tensors: one row of 5,000 words, characters capped per word
    batch = collate([encode(long.tokens, tagger.vocab)])
    assert batch.words.shape == (1, LONG) and batch.chars.shape[:2] == (1, LONG) and batch.chars.shape[2] <= 30
    assert batch.mask.all()
    tags = tagger.tags([long.tokens])[0]
    assert len(tags) == LONG and set(tags) <= set(tagger.labels)
    # evaluate: the long test sentence (index 0) is scored whole
    data = tmp_path / "long.conll"
    write_conll(corpus_with_long_sentence(), data)
    run = cli(["evaluate", "--model", model_dir, "--data", data, "--split", "test", "--json"])
    assert run.rc == 0, run.err
    assert json.loads(run.out)["n_tokens"] >= LONG
    # predict: as CoNLL tokens (one sentence of 5,000) and as raw text (split into chunks)
    one = tmp_path / "one.conll"
    write_conll([long], one)
    run = cli(["predict", "--model", model_dir, "--input", one, "--input-format", "conll", "--output-format", "json"])
    assert run.rc == 0, run.err
    doc = json.loads(run.out)
    assert len(doc["tokens"]) == LONG
    text = " ".join(long.tokens)
    run = cli(["predict", "--model", model_dir, "--output-format", "json", text])
    assert run.rc == 0, run.err
    doc = json.loads(run.out)
    assert len(doc["tokens"]) == LONG
    check_offsets(text, doc)


# --------------------------------------------------------------------------- predict input

ODD_TEXTS = {
    "empty": "",
    "space": " ",
    "whitespace-only": "\n\t \u3000\xa0\r\n",
    "emoji": "🙂🙃 emoji👍🏽 and 👨‍👩‍👧 family, 🏳️‍🌈 flags 🇩🇪!",
    "arabic": "زار محمد باريس يوم الاثنين، مع الأمم المتحدة.",
    "chinese": "李伟星期一访问了东京。中文文本，还有标点！",
    "devanagari": "अंजलि ने सोमवार को पेरिस का दौरा किया।",
    "combining": "Zu\u0308rich e\u0301te\u0301 a\u0308\u0308\u0308 \u0301start Z\u0351\u0352\u0353algo",
    "zwj-and-bidi": "a\u200db \u200e\u200fright\u202eleft\u202c \ufeffbom",
    "control": "".join(chr(i) for i in range(32))
               + "\x7f Mary\x00Jones \x1b[31m visited\x0bParis\u2028on\u2029Monday\x85.",
    "no-punctuation": "John Smith visited Paris on Monday with the United Nations and nobody stopped",
    "punctuation-only": "...!!!???,,,;;;\"\"\"''''((()))---",
    "private-use-and-noncharacters": "\ue000\uf8ff \U000f0000 \ufffe\uffff \U0010ffff",
    "lone-surrogate": "\ud800 lone \udfff surrogates",
}


def check_offsets(text, doc):
    assert doc["text"] == text
    prev = 0
    for tok in doc["tokens"]:
        assert text[tok["start"]:tok["end"]] == tok["text"], tok
        assert prev <= tok["start"] < tok["end"]
        prev = tok["end"]
    check_entity_offsets(text, doc)


@pytest.mark.parametrize("text", list(ODD_TEXTS.values()), ids=list(ODD_TEXTS))
def test_tagger_on_odd_text(tagger, text):
    doc = tagger(text)
    check_offsets(text, doc)
    if not text.strip():
        assert doc["tokens"] == [] and doc["entities"] == [] and doc["sentences"] == []
    for tok in doc["tokens"]:
        assert 0.0 <= tok["prob"] <= 1.0 and tok["tag"] in tagger.labels
    # the same text inside a batch of texts gives the same answer
    docs = tagger(["Mary Jones visited Tokyo.", text, ""])
    assert docs[1]["tokens"] == doc["tokens"] and docs[1]["entities"] == doc["entities"]


@pytest.mark.parametrize("text", [t for k, t in ODD_TEXTS.items() if k != "lone-surrogate"],
                         ids=[k for k in ODD_TEXTS if k != "lone-surrogate"])
def test_predict_cli_on_odd_text(cli, model_dir, text):
    run = cli(["predict", "--model", model_dir, "--output-format", "json", text])
    assert run.rc == 0 and run.err == "", run.err
    docs = [json.loads(line) for line in run.out.splitlines()]
    assert len(docs) == 1
    check_offsets(text, docs[0])
    for fmt in ("inline", "conll"):
        run = cli(["predict", "--model", model_dir, "--output-format", fmt, text])
        assert run.rc == 0 and run.err == "", run.err


@pytest.mark.parametrize("text", [
    ("John Smith visited Paris on Monday. " * 2800)[:100_000],
    "x" * 100_000,
    ("日本語 " * 25_000)[:100_000],
    "\x00" * 100_000,
], ids=["sentences", "one-token", "cjk", "nul"])
def test_hundred_thousand_characters(tagger, text):
    assert len(text) == 100_000
    doc = tagger(text)
    check_offsets(text, doc)
    if text.strip("\x00"):
        assert doc["tokens"]


def test_predict_cli_hundred_thousand_characters(cli, model_dir):
    text = ("Mary Jones visited Tokyo on Friday. " * 2800)[:100_000]
    run = cli(["predict", "--model", model_dir, "--output-format", "json", text])
    assert run.rc == 0, run.err
    check_offsets(text, json.loads(run.out))


def test_predict_input_file_with_odd_lines(tmp_path, cli, model_dir):
    lines = [t for k, t in ODD_TEXTS.items() if k not in ("lone-surrogate", "control", "empty", "space",
                                                             "whitespace-only")]
    path = tmp_path / "in.txt"
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    run = cli(["predict", "--model", model_dir, "--input", path, "--output-format", "json"])
    assert run.rc == 0 and run.err == "", run.err
    docs = [json.loads(line) for line in run.out.splitlines()]
    assert [d["text"] for d in docs] == "\n\n".join(lines).split("\n")  # one record per line, blank ones too
    for d in docs:
        check_offsets(d["text"], d)


@pytest.mark.parametrize("content,flags,line,needle", [
    (b"", [], None, None),  # an empty input file: nothing to tag, nothing printed, exit 0
    (bytes(range(256)), [], None, "binary"),
    ("Zürich\n".encode() + "Montréal\n".encode("cp1252"), ["--encoding", "utf-8"], 2, "not valid utf-8"),
    (b"Paris\n", ["--encoding", "no-such-codec"], None, "unknown encoding"),
    (b"Paris\n", ["--encoding", "rot13"], None, "not a text encoding"),
    (bytes(range(256)), ["--input-format", "conll"], 1, "binary"),
    (b"", ["--input-format", "conll"], None, "empty file"),
], ids=["empty", "binary", "bad-utf8", "unknown-encoding", "rot13", "binary-conll", "empty-conll"])
def test_predict_bad_input_file(tmp_path, cli, model_dir, content, flags, line, needle):
    path = put(tmp_path, "in.txt", content)
    run = cli(["predict", "--model", model_dir, "--input", path, *flags])
    if needle is None:
        assert run.rc == 0 and run.err == "" and run.out == "", (run.err, run.out)
    else:
        assert_one_line_error(run, path, line, needle)
        assert run.out == ""


def test_predict_cp1252_input_file_falls_back_with_a_note(tmp_path, cli, model_dir):
    path = put(tmp_path, "in.txt", "Montréal is cold\n".encode("cp1252"))
    run = cli(["predict", "--model", model_dir, "--input", path, "--output-format", "json"])
    assert run.rc == 0, run.err
    assert len(run.err_lines) == 1 and "not valid UTF-8; read as cp1252" in run.err and str(path) in run.err
    assert json.loads(run.out)["text"] == "Montréal is cold"


class FakeStdin:
    """Standard input for main(): bytes on ``buffer``; a terminal or a pipe."""

    def __init__(self, data: bytes, tty: bool = False):
        self.buffer, self.tty = io.BytesIO(data), tty

    def isatty(self) -> bool:
        return self.tty


def test_predict_reads_standard_input(cli, model_dir, monkeypatch):
    text = "Angela Merkel visited Paris on Monday ."
    expected = cli(["predict", "--model", model_dir, "--output-format", "json", text]).out
    for argv in (["predict"], ["predict", "--input", "-"]):  # piped text without --input, or --input -
        monkeypatch.setattr(sys, "stdin", FakeStdin((text + "\n\n").encode()))
        run = cli([*argv, "--model", model_dir, "--output-format", "json"])
        assert run.rc == 0 and run.out.splitlines()[0] + "\n" == expected, run.err
        assert json.loads(run.out.splitlines()[1])["tokens"] == []  # the blank line: an empty record
    tokens = text.split()
    monkeypatch.setattr(sys, "stdin", FakeStdin(("\n".join(tokens) + "\n").encode()))
    run = cli(["predict", "--model", model_dir, "--input", "-", "--input-format", "conll", "--output-format",
               "json"])
    assert run.rc == 0, run.err
    tagged = [(t["text"], t["tag"]) for t in json.loads(run.out)["tokens"]]
    assert tagged == [(t["text"], t["tag"]) for t in json.loads(expected)["tokens"]]


def test_predict_standard_input_errors_name_stdin(cli, model_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeStdin("Zürich\n".encode() + "Montréal\n".encode("cp1252")))
    run = cli(["predict", "--model", model_dir, "--encoding", "utf-8"])
    assert_one_line_error(run, "<stdin>", 2, "not valid utf-8")
    assert run.out == ""
    monkeypatch.setattr(sys, "stdin", FakeStdin(bytes(range(256))))
    assert_one_line_error(cli(["predict", "--model", model_dir, "--input", "-", "--input-format", "conll"]),
                          "<stdin>", 1, "binary")
    monkeypatch.setattr(sys, "stdin", FakeStdin("Montréal is cold\n".encode("cp1252")))
    run = cli(["predict", "--model", model_dir, "--output-format", "json"])
    assert run.rc == 0 and run.err_lines == [
        "WARNING nerbilstm: <stdin>: not valid UTF-8; read as cp1252 (1 line, the first at line 1)"]
    assert json.loads(run.out)["text"] == "Montréal is cold"
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"Paris\n", tty=True))  # a terminal: not waited on
    run = cli(["predict", "--model", model_dir])
    assert run.rc == 2 and len(run.err_lines) == 1 and "nothing to tag" in run.err and run.out == ""


def test_predict_bad_numbers(cli, model_dir):
    for flags in (["--batch-size", "0"], ["--nbest", "-1"]):
        run = cli(["predict", "--model", model_dir, *flags, "Paris"])
        assert run.rc == 2 and len(run.err_lines) == 1 and "Traceback" not in run.err, run.err


def test_real_command_line_non_utf8_argument_and_bad_file(tmp_path, model_dir):
    """In a real process: a text argument that is not UTF-8 (a cp1252 terminal) reaches Python as
    lone surrogates; it must be tagged (or refused) rather than crash when printed. And a bad
    corpus gives exactly one line on stderr with the real logging set-up."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8:strict")  # as under en_US.UTF-8
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "nerbilstm", "predict", "--model", str(model_dir)]
    proc = subprocess.run([*cmd, "--output-format", "json", os.fsdecode(b"caf\xe9 in Paris")], env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert json.loads(proc.stdout.decode("utf-8"))["text"] == "café in Paris"
    assert b"Traceback" not in proc.stderr and b"read as cp1252" in proc.stderr
    proc = subprocess.run([*cmd, "--encoding", "utf-8", os.fsdecode(b"caf\xe9")], env=env, capture_output=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.decode().count("\n") == 1 and b"Traceback" not in proc.stderr
    bad = put(tmp_path, "bad.csv", GMB_HEADER + "Sentence: 1,a,DT,O\n,b,NN,X-geo\n")
    proc = subprocess.run([sys.executable, "-m", "nerbilstm", "train", "--data", str(bad), "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err == f"nerbilstm train: error: {bad}:3: invalid tag 'X-geo': expected O, " \
                                           f"B-TYPE or I-TYPE (IOB/IOB2; IOBES and BILOU tags are converted)\n", err


# --------------------------------------------------------------------------- model directories


def _config(d):
    return json.loads((d / "config.json").read_text(encoding="utf-8"))


def _write_config(d, c):
    (d / "config.json").write_text(json.dumps(c), encoding="utf-8")


def _edit(fn, resign=False, seal=True):
    """Edit config.json. resign: record the weights' current sha256; seal: record the config's
    own checksum over the edited content, as a consistent writer (a bug, or someone who
    recomputes the checksums) would, so that the checks behind the checksums are what is
    tested; seal=False is an edit by hand."""
    def edit(d):
        c = _config(d)
        fn(c)
        if resign:
            c["weights_sha256"] = sha256_file(d / "model.safetensors")
        if seal:
            c[CONFIG_CHECKSUM] = config_checksum(c)
        _write_config(d, c)
    return edit


def _swap_labels(a, b):
    def swap(c):
        for labels in (c["vocab"]["labels"], c["labels"]):
            i, j = labels.index(a), labels.index(b)
            labels[i], labels[j] = labels[j], labels[i]
    return swap


def _symlink_loop(name):
    def loop(d):
        (d / name).unlink()
        (d / name).symlink_to(d / name)
    return loop


def _flip(at):
    def flip(d):
        b = bytearray((d / "model.safetensors").read_bytes())
        b[at] ^= 0xFF
        (d / "model.safetensors").write_bytes(bytes(b))
    return flip


def _truncate(d):
    b = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(b[: len(b) // 2])


def _both(*fns):
    def run(d):
        for fn in fns:
            fn(d)
    return run


def _set(section, key, value):
    return _edit(lambda c: c[section].__setitem__(key, value))


# (id, corruption, file the message names, substring)
BAD_MODELS = [
    ("weights-missing", lambda d: (d / "model.safetensors").unlink(), "model.safetensors", "missing"),
    ("config-missing", lambda d: (d / "config.json").unlink(), "config.json", "missing"),
    ("byte-flipped-in-data", _flip(-10), "model.safetensors", "checksum differs"),
    ("byte-flipped-in-header", _flip(20), "model.safetensors", "checksum differs"),
    ("truncated", _truncate, "model.safetensors", "checksum differs"),
    ("emptied", lambda d: (d / "model.safetensors").write_bytes(b""), "model.safetensors", "checksum differs"),
    ("truncated-checksum-recomputed", _both(_truncate, _edit(lambda c: None, resign=True)),
     "model.safetensors", "cannot read safetensors"),
    ("header-flipped-checksum-recomputed", _both(_flip(9), _edit(lambda c: None, resign=True)),
     "model.safetensors", "cannot read safetensors"),
    # a missing checksum is an error, not a skip
    ("weights-checksum-removed", _edit(lambda c: c.pop("weights_sha256")), "config.json", "no weights_sha256"),
    ("weights-checksum-removed-by-hand", _both(_truncate, _edit(lambda c: c.pop("weights_sha256"), seal=False)),
     "config.json", "content differs from its checksum"),
    ("config-checksum-removed", _edit(lambda c: c.pop(CONFIG_CHECKSUM), seal=False), "config.json",
     "no config_sha256"),
    # labels, vocabulary and architecture are covered by config_sha256
    ("labels-swapped-by-hand", _edit(_swap_labels("B-geo", "B-per"), seal=False), "config.json",
     "content differs from its checksum"),
    ("word-renamed-by-hand", _edit(lambda c: c["vocab"]["words"].__setitem__(5, "zzz"), seal=False), "config.json",
     "content differs from its checksum"),
    ("hidden-size-changed-by-hand", _edit(lambda c: c["model"].__setitem__("hidden_size", 5), seal=False),
     "config.json", "content differs from its checksum"),
    ("format-1", _edit(lambda c: c.__setitem__("format_version", 1)), "config.json", "nerbilstm upgrade --model"),
    # sizes are checked against the weights' header before anything is built
    ("layers-a-million", _set("model", "layers", 10**6), "model.safetensors", "lacks"),
    ("hidden-size-1e9", _set("model", "hidden_size", 10**9), "model.safetensors", "implies [2, 4000000000,"),
    ("word-dim-changed", _set("model", "word_dim", 51), "model.safetensors", "do not match config.json"),
    ("char-dim-zero", _set("model", "char_dim", 0), "model.safetensors", "do not match config.json"),
    ("decoder-softmax-extra-tensors", _set("model", "decoder", "softmax"), "model.safetensors",
     "the file holds crf.end_scores, crf.start_scores, crf.transitions, which config.json does not imply"),
    # symlink loops are named as such
    ("config-symlink-loop", _symlink_loop("config.json"), "config.json", "symlink loop"),
    ("weights-symlink-loop", _symlink_loop("model.safetensors"), "model.safetensors", "symlink loop"),
    ("hidden-size-changed", _set("model", "hidden_size", 5), "model.safetensors", "do not match config.json"),
    ("layers-changed", _set("model", "layers", 2), "model.safetensors", "do not match config.json"),
    ("decoder-changed", _set("model", "decoder", "softmax"), "model.safetensors", "do not match config.json"),
    ("label-removed", _edit(lambda c: c["vocab"]["labels"].pop()), "model.safetensors", "do not match config.json"),
    ("word-removed", _edit(lambda c: c["vocab"]["words"].pop()), "model.safetensors", "do not match config.json"),
    ("decoder-unknown", _set("model", "decoder", "hmm"), "config.json", "does not describe a model"),
    ("hidden-size-string", _set("model", "hidden_size", "big"), "config.json", "does not describe a model"),
    ("hidden-size-negative", _set("model", "hidden_size", -3), "config.json", "does not describe a model"),
    ("model-not-an-object", _edit(lambda c: c.__setitem__("model", [1])), "config.json", "does not describe a model"),
    ("vocab-missing", _edit(lambda c: c.pop("vocab")), "config.json", "does not describe a model"),
    ("vocab-null", _edit(lambda c: c.__setitem__("vocab", None)), "config.json", "does not describe a model"),
    ("invalid-json", lambda d: (d / "config.json").open("a").write("}{"), "config.json", "not valid JSON"),
    ("json-not-an-object", lambda d: (d / "config.json").write_text("[1, 2]"), "config.json", "not a nerbilstm"),
    ("json-binary", lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00garbage"), "config.json",
     "not valid JSON"),
    ("format-missing", _edit(lambda c: c.pop("format")), "config.json", "not a nerbilstm"),
    ("newer-format-version", _edit(lambda c: c.__setitem__("format_version", 3)), "config.json",
     "newer than this nerbilstm reads"),
    ("format-version-string", _edit(lambda c: c.__setitem__("format_version", "1")), "config.json",
     "not a format version"),
    ("format-version-zero", _edit(lambda c: c.__setitem__("format_version", 0)), "config.json",
     "not a format version"),
    ("config-is-a-folder", lambda d: ((d / "config.json").unlink(), (d / "config.json").mkdir()), "config.json",
     "missing"),
]


@pytest.mark.parametrize("corrupt,names,needle", [c[1:] for c in BAD_MODELS], ids=[c[0] for c in BAD_MODELS])
def test_bad_model_directory(tmp_path, cli, model_dir, corrupt, names, needle):
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    corrupt(d)
    with pytest.raises(ModelFileError) as err:
        Tagger.load(d)
    assert str(d) in str(err.value) and names in str(err.value) and needle in str(err.value)
    assert "\n" not in str(err.value)
    for argv in (["predict", "--model", d, "Paris"],
                 ["evaluate", "--model", d, "--data", model_dir.parent / "long.conll"]):
        run = cli(argv)
        msg = assert_one_line_error(run, d, None, names, needle)
        assert msg.startswith(f"nerbilstm {argv[0]}: error: ")
        assert run.out == ""


def test_model_path_that_is_a_file_or_missing(tmp_path, cli, model_dir):
    for path, needle in ((model_dir / "config.json", "is a file, not a model directory"),
                         (tmp_path / "nowhere", "model directory not found")):
        assert_one_line_error(cli(["predict", "--model", path, "Paris"]), path, None, needle)


def test_model_path_that_is_a_symlink_loop_or_dangling(tmp_path, cli):
    loop, dangling = tmp_path / "loop", tmp_path / "dangling"
    loop.symlink_to(loop)
    dangling.symlink_to(tmp_path / "gone")
    for path, needle in ((loop, "model directory is a symlink loop"),
                         (dangling, f"symlink to {tmp_path / 'gone'}, which does not exist")):
        with pytest.raises(ModelFileError, match="symlink"):
            Tagger.load(path)
        msg = assert_one_line_error(cli(["predict", "--model", path, "Paris"]), path, None, needle)
        assert "not found" not in msg


@pytest.fixture
def shipped(tmp_path):
    """A copy of the shipped model, to damage."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip("the shipped model is not installed")
    d = tmp_path / "shipped"
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    return d


@pytest.mark.parametrize("key, value, needle", [("layers", 10**6, "lstm.layers.1.weight_ih"),
                                                ("hidden_size", 10**9, "implies [2, 4000000000, "),
                                                ("hidden_size", 129, "implies [2, 516, ")])
def test_config_sizes_are_checked_before_the_model_is_built(shipped, cli, monkeypatch, key, value, needle):
    """A config claiming a million layers used to grow `nerbilstm info` past 6 GB: now the sizes
    are compared with the weights' header first, and no model is built at all."""
    _set("model", key, value)(shipped)  # checksums recomputed: only the sizes disagree

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before its sizes were checked against the weights")

    monkeypatch.setattr(nerbilstm.predict, "BiLSTMTagger", refuse)
    start = time.perf_counter()
    run = cli(["info", "--model", shipped])
    elapsed = time.perf_counter() - start
    assert_one_line_error(run, shipped / "model.safetensors", None, "weights do not match config.json", needle)
    assert elapsed < 5.0, elapsed  # a guard against allocating what the config claims (about 0.03 s)


def test_swapped_labels_in_the_shipped_model_are_refused(shipped, cli):
    """Swapping per and geo in config.json made the model call Angela Merkel a place, exit 0."""
    text = "Angela Merkel visited Paris."
    assert "[Angela Merkel]{per}" in cli(["predict", "--model", shipped, text]).out
    _edit(_swap_labels("B-per", "B-geo"), seal=False)(shipped)
    _edit(_swap_labels("I-per", "I-geo"), seal=False)(shipped)
    assert_one_line_error(cli(["predict", "--model", shipped, text]), shipped / "config.json", None,
                          "content differs from its checksum")
    _edit(lambda c: c.pop("weights_sha256"), seal=False)(shipped)  # no longer switches a check off
    assert_one_line_error(cli(["info", "--model", shipped]), shipped / "config.json", None, "differs")


def _as_format_1(d):
    c = _config(d)
    c.pop(CONFIG_CHECKSUM)
    c["format_version"] = 1
    _write_config(d, c)


def test_format_1_directories_are_refused_until_upgraded(shipped, cli):
    text = "Angela Merkel visited Paris."
    expected = cli(["predict", "--model", shipped, "--output-format", "json", text]).out
    weights = (shipped / "model.safetensors").read_bytes()
    _as_format_1(shipped)
    assert_one_line_error(cli(["predict", "--model", shipped, text]), shipped / "config.json", None,
                          "format version 1", f"re-save it with: nerbilstm upgrade --model {shipped}")
    run = cli(["upgrade", "--model", shipped])
    assert run.rc == 0 and "re-saved in format 2" in run.out, run.err
    assert (shipped / "model.safetensors").read_bytes() == weights  # byte for byte
    assert _config(shipped)["format_version"] == 2
    assert cli(["predict", "--model", shipped, "--output-format", "json", text]).out == expected
    assert "nothing to do" in cli(["upgrade", "--model", shipped]).out


def test_upgrade_refuses_what_it_cannot_vouch_for(shipped, cli):
    # a format 1 config whose sizes disagree with the weights: refused, nothing written
    _as_format_1(shipped)
    _edit(lambda c: c["model"].__setitem__("layers", 10**6), seal=False)(shipped)
    before = (shipped / "config.json").read_bytes()
    assert_one_line_error(cli(["upgrade", "--model", shipped]), shipped / "model.safetensors", None,
                          "do not match config.json")
    assert (shipped / "config.json").read_bytes() == before
    # weights that differ from the recorded checksum: refused
    _edit(lambda c: c["model"].__setitem__("layers", 1), seal=False)(shipped)
    _flip(-10)(shipped)
    assert_one_line_error(cli(["upgrade", "--model", shipped]), shipped / "model.safetensors", None,
                          "checksum differs")
    _flip(-10)(shipped)
    # a format 2 config edited by hand: only with --accept-edits
    assert cli(["upgrade", "--model", shipped]).rc == 0
    _edit(lambda c: c["training"].__setitem__("note", "renamed"), seal=False)(shipped)
    assert_one_line_error(cli(["upgrade", "--model", shipped]), shipped / "config.json", None,
                          "content differs from its checksum")
    assert cli(["upgrade", "--model", shipped, "--accept-edits"]).rc == 0
    assert Tagger.load(shipped, pretrained=None).tags([["Paris"]])


def test_config_mismatch_that_loads_anyway(tmp_path, model_dir, tagger):
    """Fields load does not need may be odd or missing: an embedding source that moved away or
    is null only costs unseen words their vectors."""
    for value in (None, {"source": str(tmp_path / "moved.txt")}, "nonsense"):
        d = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(model_dir, d)
        _edit(lambda c: c.__setitem__("embeddings", value))(d)
        t = Tagger.load(d)
        assert t.pretrained is None
        known = ["Mary", "Jones", "visited", "Paris", "."]  # in the vocabulary: no pretrained vector needed
        assert t.tags([known]) == tagger.tags([known])


# --------------------------------------------------------------------------- trust: no pickle


class _Payload:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_bytes(marker: Path, kind: str) -> bytes:
    if kind == "torch":
        import io

        buf = io.BytesIO()
        torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Payload(marker)}, buf)
        return buf.getvalue()
    return pickle.dumps(_Payload(marker), protocol=2)


def test_payload_really_runs_when_unpickled(tmp_path):
    """The crafted pickle is live (so the tests below mean something)."""
    marker = tmp_path / "ran"
    pickle.loads(_evil_bytes(marker, "pickle"))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_pickle_files_are_never_loaded(tmp_path, cli, model_dir, kind):
    marker = tmp_path / "PWNED"
    evil = _evil_bytes(marker, kind)
    cases = []
    # 1. a directory holding only model.pth (and other pickle names)
    d1 = tmp_path / "pth_only"
    d1.mkdir()
    (d1 / "model.pth").write_bytes(evil)
    (d1 / "model.pkl").write_bytes(evil)
    cases.append((d1, d1, ("model.pth", "pickle", "arbitrary code")))
    # 2. --model pointing at the .pth file itself
    cases.append((d1 / "model.pth", d1 / "model.pth", ("pickle", "arbitrary code")))
    # 3. the pickle saved as model.safetensors, with config.json's checksum made to match it
    d3 = tmp_path / "as_safetensors"
    shutil.copytree(model_dir, d3)
    (d3 / "model.safetensors").write_bytes(evil)
    _edit(lambda c: None, resign=True)(d3)
    cases.append((d3, d3 / "model.safetensors", ("cannot read safetensors",)))
    # 4. the pickle saved as config.json
    d4 = tmp_path / "as_config"
    shutil.copytree(model_dir, d4)
    (d4 / "config.json").write_bytes(evil)
    cases.append((d4, d4 / "config.json", ("not valid JSON",)))
    for target, named, needles in cases:
        with pytest.raises(ModelFileError) as err:
            Tagger.load(target)
        assert str(named) in str(err.value) and all(n in str(err.value) for n in needles), str(err.value)
        run = cli(["predict", "--model", target, "Paris"])
        assert_one_line_error(run, named, None, *needles)
        assert not marker.exists(), f"a pickle was executed loading {target}"
    # 5. a valid model directory with a stray model.pth beside it: loads, the .pth is never opened
    d5 = tmp_path / "stray"
    shutil.copytree(model_dir, d5)
    (d5 / "model.pth").write_bytes(evil)
    assert Tagger.load(d5).tags([["Paris"]])
    assert cli(["predict", "--model", d5, "Paris"]).rc == 0
    assert not marker.exists()


def test_reader_refuses_pickle_as_corpus(tmp_path, cli, tiny):
    """A pickle given as --data is read as bytes (binary: refused), never unpickled."""
    marker = tmp_path / "PWNED"
    path = put(tmp_path, "data.pkl", _evil_bytes(marker, "torch"))
    run = cli(["train", "--data", path, "--out", tmp_path / "out", *tiny])
    assert_one_line_error(run, path, None)
    with pytest.raises(DataError):
        from nerbilstm.data.readers import read_corpus

        read_corpus(path)
    assert not marker.exists()
