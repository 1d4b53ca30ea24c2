"""nerbilstm.ray on a local Ray instance started here: RayTagger in map_batches and predict --ray
give what Tagger gives."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nerbilstm[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")

from nerbilstm.errors import NerError
from nerbilstm.ray import RayTagger, predict_on_ray
from servers import tiny_tagger

WORDS = "John Smith visited Paris on Monday . The army of Iraq left Baghdad , said Mary from New York".split()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return tiny_tagger(tmp_path_factory.mktemp("tiny") / "model")


def sentences(n: int) -> list[str]:
    rng = random.Random(7)
    return ["" if rng.random() < 0.05 else " ".join(rng.choices(WORDS, k=rng.randint(1, 40))) for _ in range(n)]


def expected(tagger, texts):
    docs = tagger.tag_documents(texts)
    return ([[t["text"] for t in d["tokens"]] for d in docs], [[t["tag"] for t in d["tokens"]] for d in docs],
            [d["entities"] for d in docs])


def plain(value):
    return value.tolist() if hasattr(value, "tolist") else value


def test_map_batches_equals_tagger_and_carries_columns(local_ray, tagger):
    texts = sentences(300)
    model = str(Path(tagger.config["_path"]).parent)
    ds = ray.data.from_items([{"id": k, "text": t} for k, t in enumerate(texts)])
    pool = ray.data.ActorPoolStrategy(size=2)
    rows = ds.map_batches(RayTagger, fn_constructor_kwargs={"model": model}, compute=pool, batch_size=64).take_all()
    rows.sort(key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(300))
    assert [r["text"] for r in rows] == texts
    tokens, tags, entities = expected(tagger, texts)
    assert [[str(t) for t in plain(r["tokens"])] for r in rows] == tokens
    assert [[str(t) for t in plain(r["tags"])] for r in rows] == tags
    assert [[{k: plain(v) for k, v in e.items()} for e in plain(r["entities"])] for r in rows] == entities
    assert any(entities)


def test_pandas_batches_too(tagger):
    pandas = pytest.importorskip("pandas")
    model = str(Path(tagger.config["_path"]).parent)
    frame = pandas.DataFrame({"text": ["John visited Paris .", ""], "id": ["a", "b"]})
    out = RayTagger(model)(frame)
    assert list(out["id"]) == ["a", "b"]
    assert list(out["tags"]) == expected(tagger, list(frame["text"]))[1]


def test_predict_on_ray_keeps_order_one_record_per_line(local_ray, tagger, tmp_path):
    texts = sentences(200)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = io.StringIO()
    model = str(Path(tagger.config["_path"]).parent)
    predict_on_ray(out, input=str(source), texts=[], model=model, ray_address=None, input_format="auto",
                   output_format="jsonl", batch_size=256, workers=2, nbest=0)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["text"] for r in rows] == texts
    tokens, tags, entities = expected(tagger, texts)
    assert [r["tokens"] for r in rows] == tokens
    assert [r["tags"] for r in rows] == tags
    assert [r["entities"] for r in rows] == entities


def test_predict_on_ray_refuses_what_it_cannot_do(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("John visited Paris .\n", encoding="utf-8")
    args = dict(input=str(source), texts=[], model=None, ray_address=None, input_format="auto",
                output_format="jsonl", batch_size=256, workers=1, nbest=0)
    for change, message in (({"texts": ["x"]}, "--input FILE"), ({"input": "-"}, "--input FILE"),
                            ({"input_format": "conll"}, "not CoNLL"), ({"output_format": "conll"}, "JSON Lines"),
                            ({"nbest": 2}, "--nbest")):
        with pytest.raises(NerError, match=message):
            predict_on_ray(io.StringIO(), **{**args, **change})
