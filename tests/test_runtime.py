"""nerbilstm.runtime: the ONNX artefact tags like ``Tagger`` in a process where torch cannot be
imported. Tiny random models on made-up text; the shipped model on made-up text and, when
NERBILSTM_DATA names the GMB file, on its canonical test sentences."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nerbilstm
from nerbilstm.errors import ModelFileError
from nerbilstm.export import export_model
from nerbilstm.predict import DEFAULT_MODEL_DIR, Tagger

from test_export import ODD, tiny_model, write_model_dir  # noqa: F401  (fixtures below)
from synthetic import synthetic_sentences

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]
pytest.importorskip("onnx", reason="onnx is not installed: pip install -e '.[export]'")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install -e '.[export]'")

TEXTS = [
    "Angela Merkel visited Paris on Tuesday. The U.S. Army said 3,000 troops left Iraq.",
    "", "   ", "Zanzibar", "iPhone 3rd -- ½ ÉCOLE NATO a " + "x" * 40 + " Qwzx Brazzaville.",
    "Mr. Smith went to Washington in 2024 ( again ) ; Shi'ite rebels ' camp . . .",
]

# Runs with torch blocked before any import: every module the runtime pulls in must do without.
CHILD = r'''
import json
import sys

sys.modules["torch"] = None  # `import torch` raises ImportError from here on
from nerbilstm.runtime import OnnxTagger

job = json.loads(sys.stdin.read())
tagger = OnnxTagger(job["path"], pretrained=job["pretrained"], threads=1)
out = {"texts": tagger(job["texts"]), "tokens": tagger.tag_tokens(job["token_lists"]),
       "tags": tagger.tags(job["token_lists"]),
       "modules": sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in ("torch", "nerbilstm")),
       "torch_blocked": sys.modules["torch"] is None}
print(json.dumps(out))
'''


def run_without_torch(path: Path, texts, token_lists, pretrained=None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(nerbilstm.__file__).resolve().parents[1]))
    job = {"path": str(path), "texts": texts, "token_lists": token_lists, "pretrained": pretrained}
    proc = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(job), capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["torch_blocked"] and "nerbilstm.runtime" in out["modules"]
    assert not [m for m in out["modules"] if m.split(".")[0] == "torch"]
    return out


def split_probabilities(doc: dict) -> tuple[dict, list[float]]:
    """The document without its probabilities (token prob, entity score) and path scores (sentence
    score), and those apart."""
    doc = json.loads(json.dumps(doc))
    probs = []
    for key, field in (("tokens", "prob"), ("entities", "score"), ("sentences", "score")):
        for item in doc[key]:
            probs.append(item.pop(field))
    return doc, probs


def assert_same_documents(got: list[dict], expected: list[dict]):
    """Identical but for probabilities (float64 here, float32 in the tagger) and path scores
    (float32 in both, summed in another order): the 4th decimal may round the other way; they
    agree within 2e-4, and a path score (hundreds for a 45-token sentence, where one float32 step
    is 3e-5) also within a relative 1e-6."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        g_doc, g_probs = split_probabilities(g)
        e_doc, e_probs = split_probabilities(e)
        assert g_doc == e_doc
        assert len(g_probs) == len(e_probs) and None not in g_probs
        assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=2e-4) for a, b in zip(g_probs, e_probs))


@pytest.fixture(scope="module")
def corpus():
    return synthetic_sentences(40, seed=5)


@pytest.fixture(scope="module")
def vocab(corpus):
    from nerbilstm.data.vocab import Vocab

    return Vocab.build([s.tokens for s in corpus], [s.tags for s in corpus])


@pytest.mark.parametrize("decoder,constrained", [("crf", True), ("crf", False), ("softmax", True)])
def test_tiny_models_without_torch(tmp_path, corpus, vocab, decoder, constrained):
    model_dir = write_model_dir(tmp_path / "model", tiny_model(vocab, decoder, constrained), vocab)
    artefact = export_model(model_dir, tmp_path / "tagger.onnx", "onnx")
    token_lists = [s.tokens for s in corpus[:15]] + [ODD, [], ["Zanzibar"]]
    texts = TEXTS + [" ".join(s.tokens) for s in corpus[15:25]]
    got = run_without_torch(artefact, texts, token_lists)
    tagger = Tagger.load(model_dir, pretrained=None)
    assert got["tags"] == tagger.tags(token_lists)
    assert_same_documents(got["texts"], tagger(texts))
    assert_same_documents(got["tokens"], tagger.tag_tokens(token_lists))


def test_probabilities_are_exercised(tmp_path, vocab):
    """The comparison above would hide nothing: the tiny CRF's probabilities are far from 1."""
    model_dir = write_model_dir(tmp_path / "model", tiny_model(vocab), vocab)
    doc = Tagger.load(model_dir, pretrained=None)(TEXTS[0])
    assert min(t["prob"] for t in doc["tokens"]) < 0.9 and doc["entities"]


def shipped_or_skip():
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL_DIR} (config.json missing)")


def test_shipped_model_without_torch(tmp_path):
    shipped_or_skip()
    artefact = export_model(None, tmp_path / "tagger.onnx", "onnx")
    token_lists = [t.split() for t in TEXTS] + [ODD]
    got = run_without_torch(artefact, TEXTS, token_lists)
    tagger = Tagger.load(pretrained=None)
    assert_same_documents(got["texts"], tagger(TEXTS))
    assert_same_documents(got["tokens"], tagger.tag_tokens(token_lists))
    assert any(doc["entities"] for doc in got["texts"])


def test_shipped_model_on_gmb_test_sentences_without_torch(tmp_path):
    shipped_or_skip()
    value = os.environ.get("NERBILSTM_DATA")
    if not value or not Path(value).is_file():
        pytest.skip("NERBILSTM_DATA does not name the GMB ner_dataset.csv: GMB parity of the runtime skipped")
    from nerbilstm.data.dataset import split_canonical
    from nerbilstm.data.readers import read_corpus

    token_lists = [s.tokens for s in split_canonical(list(read_corpus(Path(value))))[2]]
    artefact = export_model(None, tmp_path / "tagger.onnx", "onnx")
    # With the GloVe table the model was trained with, as Tagger.load() uses it by default.
    got = run_without_torch(artefact, [], token_lists, pretrained="auto")
    tagger = Tagger.load()
    assert tagger.pretrained is not None
    assert got["tags"] == tagger.tags(token_lists)
    assert_same_documents(got["tokens"], tagger.tag_tokens(token_lists))


def test_bad_files_are_model_file_errors(tmp_path):
    from nerbilstm.runtime import OnnxTagger

    with pytest.raises(ModelFileError, match="not found"):
        OnnxTagger(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelFileError, match="cannot load"):
        OnnxTagger(tmp_path / "junk.onnx")
