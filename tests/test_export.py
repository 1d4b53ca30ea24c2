"""Export: the TorchScript (and ONNX) artefact tags exactly as the eager model does, runs
without our package, and the CLI writes it. Tiny random models on the made-up corpus; the
shipped model on a GMB sample when both are available."""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from nerbilstm.cli import main
from nerbilstm.config import ModelConfig
from nerbilstm.data.batching import collate, encode
from nerbilstm.data.vocab import Vocab
from nerbilstm.export import METADATA_NAME, ExportedTagger, export_tagger
from nerbilstm.io import save_model_dir
from nerbilstm.model.tagger import BiLSTMTagger
from nerbilstm.predict import DEFAULT_MODEL_DIR, Tagger

from synthetic import synthetic_sentences

# torch 2.13 marks TorchScript deprecated; it is what this export is about.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

VARIANTS = [("crf", True), ("crf", False), ("softmax", True)]
# Tokens that exercise the id mapping: unknown words and characters, every casing class,
# a token longer than MAX_WORD_CHARS.
ODD = ["U.S.", "2024", "3rd", "iPhone", "--", "Zanzibar", "ÉCOLE", "x" * 40, "NATO", "a", "½"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus():
    return synthetic_sentences(40, seed=5)


@pytest.fixture(scope="module")
def vocab(corpus):
    return Vocab.build([s.tokens for s in corpus], [s.tags for s in corpus])


def tiny_model(vocab, decoder="crf", constrained=True, seed=0):
    torch.manual_seed(seed)
    model = BiLSTMTagger(ModelConfig(word_dim=8, char_dim=6, char_filters=5, hidden_size=7, layers=2,
                                     decoder=decoder, constrained=constrained),
                         len(vocab.words), len(vocab.chars), vocab.labels).eval()
    with torch.no_grad():  # larger scores than the init's, so that paths vary and constraints bite
        model.emission.weight.mul_(6)
        if model.crf is not None:
            model.crf.transitions.normal_(0, 2)
            model.crf.start_scores.normal_(0, 1)
        model.char_cnn.embed.weight[0] = 1.0  # the padding id's row: no path may read it
    return model


def batches(corpus, vocab):
    """Padded batches of mixed lengths (1 token up to whole sentences), plus odd tokens."""
    token_lists = [s.tokens[: 1 + (i * 3) % len(s.tokens)] for i, s in enumerate(corpus)]
    token_lists += [ODD, ODD[:1], ODD[3:] + corpus[0].tokens]
    items = [encode(t, vocab) for t in token_lists]
    return [collate(items[i: i + 8]) for i in range(0, len(items), 8)] + [collate(items[:1])]


def no_pretrained(batch, dim):
    B, T = batch.words.shape
    return torch.zeros(B, T, dim), torch.zeros(B, T, dtype=torch.bool)


def inputs(batch, dim):
    if batch.pretrained is None:
        pre, pre_mask = no_pretrained(batch, dim)
    else:
        pre, pre_mask = batch.pretrained, batch.pretrained_mask
    return batch.words, batch.chars, batch.cases, batch.mask, pre, pre_mask


def assert_same(tags, scores, ref):
    assert torch.equal(torch.as_tensor(tags), ref.tags)
    torch.testing.assert_close(torch.as_tensor(scores), ref.score, rtol=0, atol=1e-4)


class Table:
    """A stand-in pretrained table that knows a few words outside the vocabulary."""

    dim = 8

    def vectors_for(self, words):
        rng = np.random.default_rng(len(words))
        return rng.normal(size=(len(words), 8)).astype(np.float32), np.array([w[:1].isupper() for w in words])


@pytest.mark.parametrize("decoder,constrained", VARIANTS)
def test_scripted_module_matches_eager(corpus, vocab, decoder, constrained):
    model = tiny_model(vocab, decoder, constrained)
    scripted = torch.jit.script(ExportedTagger(model))
    for batch in batches(corpus, vocab):
        with torch.no_grad():
            ref = model.decode(batch)
            assert_same(*scripted(*inputs(batch, 8)), ref)


@pytest.mark.parametrize("decoder", ["crf", "softmax"])
def test_without_char_and_case_features(corpus, vocab, decoder):
    torch.manual_seed(1)
    model = BiLSTMTagger(ModelConfig(word_dim=8, char_dim=0, case_dim=0, hidden_size=5, layers=1, decoder=decoder),
                         len(vocab.words), len(vocab.chars), vocab.labels).eval()
    scripted = torch.jit.script(ExportedTagger(model))
    for batch in batches(corpus, vocab):
        with torch.no_grad():
            assert_same(*scripted(*inputs(batch, 8)), model.decode(batch))


def test_pretrained_vectors_input(corpus, vocab):
    model = tiny_model(vocab)
    scripted = torch.jit.script(ExportedTagger(model))
    items = [encode(ODD, vocab), encode(corpus[1].tokens + ["Qwzx", "Brazzaville"], vocab)]
    batch = collate(items, pretrained=Table())
    assert batch.pretrained_mask is not None and batch.pretrained_mask.any()
    with torch.no_grad():
        assert_same(*scripted(*inputs(batch, 8)), model.decode(batch))
        # Without the table: zeros and an all-False mask, broadcast, as the tagger without it.
        plain = collate(items)
        out = scripted(plain.words, plain.chars, plain.cases, plain.mask, torch.zeros(1, 1, 8),
                       torch.zeros(1, 1, dtype=torch.bool))
        assert_same(*out, model.decode(plain))


@pytest.mark.parametrize("decoder,constrained", VARIANTS)
def test_torchscript_file_matches_eager(tmp_path, corpus, vocab, decoder, constrained):
    model = tiny_model(vocab, decoder, constrained)
    out = export_tagger(model, vocab, tmp_path / "tagger.pt", "torchscript")
    assert [p.name for p in tmp_path.iterdir()] == ["tagger.pt"]  # atomic: no temporary left
    extra = {METADATA_NAME: ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[METADATA_NAME])
    assert meta["labels"] == vocab.labels and meta["words"] == vocab.words and meta["chars"] == vocab.chars
    assert meta["decoder"] == decoder and meta["max_word_chars"] == 30
    for batch in batches(corpus, vocab):
        with torch.no_grad():
            assert_same(*loaded(*inputs(batch, 8)), model.decode(batch))


# Runs in a fresh interpreter that cannot import nerbilstm: torch + json only. Reads
# whitespace-tokenized sentences from stdin, prints JSON with the ids it made and the tags.
STANDALONE = r'''
import json
import sys

sys.modules["nerbilstm"] = None  # importing our package would fail from here on
import torch

torch.set_num_threads(1)


def casing(word, cases):
    """The casing rule of the artefact's metadata (casing_rule): the first that holds wins."""
    if word.isdigit():
        name = "numeric"
    elif any(ch.isdigit() for ch in word):
        name = "has_digit"
    elif word.islower():
        name = "lower"
    elif word.isupper():
        name = "upper"
    elif word[:1].isupper() and (len(word) == 1 or word[1:].islower()):
        name = "title"
    elif any(ch.isalpha() for ch in word):
        name = "mixed"
    elif word and all(not ch.isalnum() for ch in word):
        name = "punct"
    else:
        name = "other"
    return cases.index(name)


extra = {"nerbilstm.json": ""}
module = torch.jit.load(sys.argv[1], _extra_files=extra)
meta = json.loads(extra["nerbilstm.json"])
word_ids = {w: i for i, w in enumerate(meta["words"])}
char_ids = {c: i for i, c in enumerate(meta["chars"])}
unk, n_chars = meta["unknown_id"], meta["max_word_chars"]
sentences = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
B, T = len(sentences), max(len(s) for s in sentences)
L = max(len(tok[:n_chars]) for s in sentences for tok in s)
words = torch.zeros(B, T, dtype=torch.long)
chars = torch.zeros(B, T, L, dtype=torch.long)
cases = torch.zeros(B, T, dtype=torch.long)
mask = torch.zeros(B, T, dtype=torch.bool)
for b, sentence in enumerate(sentences):
    for t, tok in enumerate(sentence):
        words[b, t] = word_ids.get(tok.lower(), unk)
        for k, ch in enumerate(tok[:n_chars]):
            chars[b, t, k] = char_ids.get(ch, unk)
        cases[b, t] = casing(tok, meta["cases"])
        mask[b, t] = True
E = meta["word_dim"]
with torch.no_grad():
    tags, scores = module(words, chars, cases, mask, torch.zeros(1, 1, E), torch.zeros(1, 1, dtype=torch.bool))
assert not [m for m in sys.modules if m.split(".")[0] == "nerbilstm" and sys.modules[m] is not None]
labels = meta["labels"]
print(json.dumps({
    "words": [words[b, : len(s)].tolist() for b, s in enumerate(sentences)],
    "cases": [cases[b, : len(s)].tolist() for b, s in enumerate(sentences)],
    "chars": [[chars[b, t, : len(tok[:n_chars])].tolist() for t, tok in enumerate(s)] for b, s in enumerate(sentences)],
    "tags": [[labels[i] for i in tags[b, : len(s)].tolist()] for b, s in enumerate(sentences)],
}))
'''


def write_model_dir(path: Path, model: BiLSTMTagger, vocab: Vocab) -> Path:
    save_model_dir(path, model.state_dict(), {"model": asdict(model.config), "vocab": vocab.to_dict(),
                                              "labels": vocab.labels})
    return path


@pytest.mark.parametrize("decoder", ["crf", "softmax"])
def test_artefact_runs_without_our_package(tmp_path, corpus, vocab, decoder):
    model_dir = write_model_dir(tmp_path / "model", tiny_model(vocab, decoder), vocab)
    artefact = tmp_path / "tagger.pt"
    assert main(["export", "--model", str(model_dir), "--format", "torchscript", "--out", str(artefact)]) == 0
    sentences = [" ".join(s.tokens) for s in corpus[:12]] + [" ".join(ODD), "Zanzibar", "iPhone 3rd --"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    proc = subprocess.run([sys.executable, "-I", "-c", STANDALONE, str(artefact)], input="\n".join(sentences),
                          capture_output=True, text=True, encoding="utf-8", env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    token_lists = [s.split() for s in sentences]
    encoded = [encode(t, vocab) for t in token_lists]
    assert got["words"] == [e.words for e in encoded]
    assert got["cases"] == [e.cases for e in encoded]
    assert got["chars"] == [[list(c) for c in e.chars] for e in encoded]
    tagger = Tagger.load(model_dir, pretrained=None)
    assert got["tags"] == tagger.tags(token_lists)


def test_cli_errors_are_one_line(tmp_path, corpus, vocab, capsys):
    model_dir = write_model_dir(tmp_path / "model", tiny_model(vocab), vocab)
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "missing" / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nerbilstm export: error:") and "missing" in err and "\n" not in err
    assert main(["export", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "\n" not in capsys.readouterr().err.strip()
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path)]) == 2  # a directory
    assert "directory" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def _onnx_session(data: bytes):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install -e '.[export]'")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _onnx_feeds(args):
    names = ["words", "chars", "cases", "mask", "pretrained", "pretrained_mask"]
    return {n: a.numpy() for n, a in zip(names, args)}


@pytest.mark.parametrize("decoder,constrained", VARIANTS)
def test_onnx_matches_eager(tmp_path, corpus, vocab, decoder, constrained):
    pytest.importorskip("onnx", reason="onnx is not installed: pip install -e '.[export]'")
    model = tiny_model(vocab, decoder, constrained)
    out = tmp_path / "tagger.onnx"
    assert main(["export", "--model", str(write_model_dir(tmp_path / "m", model, vocab)), "--format", "onnx",
                 "--out", str(out)]) == 0
    import onnx

    proto = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_NAME])
    assert meta["labels"] == vocab.labels and meta["decoder"] == decoder
    session = _onnx_session(out.read_bytes())
    for batch in batches(corpus, vocab):
        with torch.no_grad():
            assert_same(*session.run(["tags", "scores"], _onnx_feeds(inputs(batch, 8))), model.decode(batch))
            # The emissions output (what nerbilstm.runtime's probabilities come from), on real tokens.
            em = torch.as_tensor(session.run(["emissions"], _onnx_feeds(inputs(batch, 8)))[0])
            torch.testing.assert_close(em[batch.mask], model.emissions(batch)[batch.mask], rtol=0, atol=1e-4)
    # Pretrained vectors in, as the eager tagger with a table.
    batch = collate([encode(ODD, vocab), encode(corpus[2].tokens + ["Brazzaville"], vocab)], pretrained=Table())
    with torch.no_grad():
        assert_same(*session.run(["tags", "scores"], _onnx_feeds(inputs(batch, 8))), model.decode(batch))


# ----------------------------------------------------------------------------- shipped model


def _gmb_sample(path: Path, n: int = 300):
    from nerbilstm.data.dataset import split_canonical
    from nerbilstm.data.readers import read_corpus

    test = split_canonical(list(read_corpus(path)))[2]
    step = max(1, len(test) // n)
    return [s.tokens for s in test[::step][:n]]


def check_model_on_sentences(model_dir, token_lists, tmp_path, formats=("torchscript", "onnx")):
    """Export the model directory and compare tags with its eager Tagger (with its pretrained
    table, fed to the artefact as its pretrained inputs). -> {format: artefact bytes}."""
    from nerbilstm.export import export_model

    tagger = Tagger.load(model_dir)
    model = tagger.model
    items = [encode(t, tagger.vocab) for t in token_lists]
    expected = tagger.tags(token_lists)
    E = model.config.word_dim
    sizes = {}
    for fmt in formats:
        if fmt == "onnx":
            try:
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError:
                continue
        out = export_model(model_dir, tmp_path / f"tagger.{fmt}", fmt)
        sizes[fmt] = out.stat().st_size
        run = torch.jit.load(str(out)) if fmt == "torchscript" else None
        session = _onnx_session(out.read_bytes()) if fmt == "onnx" else None
        got = []
        for i in range(0, len(items), 64):
            batch = collate(items[i: i + 64], tagger.pretrained)
            args = inputs(batch, E)
            with torch.no_grad():
                tags = run(*args)[0] if run is not None else torch.as_tensor(session.run(None, _onnx_feeds(args))[0])
            got += [[tagger.labels[k] for k in tags[b, : len(items[i + b].words)].tolist()]
                    for b in range(len(batch.words))]
        assert got == expected, fmt
    return sizes


def test_shipped_model_on_gmb_sample(tmp_path):
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL_DIR} (config.json missing)")
    value = os.environ.get("NERBILSTM_DATA")
    if not value or not Path(value).is_file():
        pytest.skip("NERBILSTM_DATA does not name the GMB ner_dataset.csv: GMB parity of the shipped model skipped")
    check_model_on_sentences(DEFAULT_MODEL_DIR, _gmb_sample(Path(value)), tmp_path)


def test_onnx_without_onnx_package_is_one_line_error(tmp_path, vocab, monkeypatch, capsys):
    model_dir = write_model_dir(tmp_path / "model", tiny_model(vocab), vocab)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "t.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'nerbilstm[export]'" in err and "\n" not in err
    assert not (tmp_path / "t.onnx").exists()


# ----------------------------------------------------------------------------- linear time


def _onnx_graph_ops(proto):
    def walk(graph):
        for node in graph.node:
            yield node.op_type
            for a in node.attribute:
                if a.HasField("g"):
                    yield from walk(a.g)

    return list(walk(proto.graph))


def test_onnx_loops_grow_no_sequence(tmp_path, vocab):
    """Every time loop collects its steps as Loop scan outputs: no sequence is grown (ONNX
    Runtime copies a sequence on every insert, which made the artefact quadratic)."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed: pip install -e '.[export]'")
    for decoder in ("crf", "softmax"):
        out = export_tagger(tiny_model(vocab, decoder), vocab, tmp_path / f"{decoder}.onnx", "onnx")
        ops = _onnx_graph_ops(onnx.load(str(out)))
        assert "Loop" in ops
        assert not [op for op in ops if op.startswith("Sequence") or op == "ConcatFromSequence"], decoder


def test_onnx_time_grows_linearly_with_length(tmp_path, vocab):
    """5,000 tokens take less than 20x the time of 500 (best of 3 each; quadratic code: ~100x).
    A model of the shipped model's sizes, random weights."""
    pytest.importorskip("onnx", reason="onnx is not installed: pip install -e '.[export]'")
    import time

    torch.manual_seed(0)
    model = BiLSTMTagger(ModelConfig(word_dim=50, char_dim=30, char_filters=50, hidden_size=128, layers=1),
                         len(vocab.words), len(vocab.chars), vocab.labels).eval()
    session = _onnx_session(export_tagger(model, vocab, tmp_path / "t.onnx", "onnx").read_bytes())
    rng = np.random.default_rng(0)

    def best_of_3(n):
        feeds = {"words": rng.integers(2, len(vocab.words), (1, n)), "chars": rng.integers(2, len(vocab.chars), (1, n, 6)),
                 "cases": rng.integers(0, 8, (1, n)), "mask": np.ones((1, n), dtype=bool),
                 "pretrained": np.zeros((1, 1, 50), np.float32), "pretrained_mask": np.zeros((1, 1), dtype=bool)}
        session.run(["tags"], feeds)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            session.run(["tags"], feeds)
            times.append(time.perf_counter() - start)
        return min(times)

    short, long = best_of_3(500), best_of_3(5000)
    assert long < 20 * short, f"500 tokens: {short:.3f} s, 5000 tokens: {long:.3f} s ({long / short:.0f}x)"
