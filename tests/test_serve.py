"""The HTTP server: API shape and offsets, limits and errors, the page and its assets, offline
docs, concurrency and micro-batching. A tiny model trained on the made-up corpus serves."""

import json
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve,dev]'")
httpx = pytest.importorskip("httpx", reason="httpx is not installed: pip install -e '.[serve,dev]'")

with warnings.catch_warnings():
    # Newer Starlette prefers the httpx2 package for its test client and warns about httpx.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from nerbilstm.errors import NerError
from nerbilstm.serve.app import ENTITY_TYPES, STATIC_DIR, create_app

from offsets import check_entity_offsets
from servers import live_server, tiny_tagger


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return tiny_tagger(tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="module")
def client(tagger):
    with TestClient(create_app(tagger)) as c:
        yield c


class FakeTagger:
    """Wraps the tiny tagger: sleeps on texts containing SLOW, fails on BOOM, counts calls."""

    def __init__(self, inner, delay=1.5, each_call=0.0):
        self.inner, self.delay, self.each_call = inner, delay, each_call
        self.labels, self.config, self.info = inner.labels, inner.config, inner.info
        self.batches, self.nbests = [], []

    def __call__(self, texts, nbest=0):
        self.batches.append(list(texts))
        self.nbests.append(nbest)
        time.sleep(self.each_call)
        if any("SLOW" in t for t in texts):
            time.sleep(self.delay)
        if any("BOOM" in t for t in texts):
            raise RuntimeError("boom")
        if any("BADINPUT" in t for t in texts):
            raise NerError("this text cannot be tagged")
        return self.inner(texts, nbest)


def tag(client, **body):
    r = client.post("/api/tag", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# ----------------------------------------------------------------------------- /api/tag


def test_single_text_entities_and_offsets(client):
    text = "John Smith visited Paris on Monday with NATO."
    body = tag(client, text=text)
    assert list(body) == ["results"] and len(body["results"]) == 1
    doc = body["results"][0]
    assert doc["text"] == text
    for tok in doc["tokens"]:
        assert text[tok["start"]:tok["end"]] == tok["text"]
        assert 0.0 <= tok["prob"] <= 1.0 and tok["tag"] in client.app.state.tagger.labels
    check_entity_offsets(text, doc)
    for ent in doc["entities"]:
        assert 0.0 <= ent["score"] <= 1.0
    found = {(e["text"], e["label"]) for e in doc["entities"]}
    assert {("John Smith", "per"), ("Paris", "geo"), ("Monday", "tim")} <= found


def test_offsets_count_code_points(client):
    text = "Zoë 🙂 said so. Mary Jones visited Tokyo on Friday.\nAnna Berg visited New York on Sunday."
    doc = tag(client, text=text)["results"][0]
    assert doc["entities"], doc
    check_entity_offsets(text, doc)
    assert ("New York", "geo") in {(e["text"], e["label"]) for e in doc["entities"]}


def test_texts_list_keeps_order_and_shape(client):
    texts = ["Mary Jones visited Tokyo on Friday.", "", "Ahmed Ali visited London on Sunday.", "   "]
    body = tag(client, texts=texts)
    assert [d["text"] for d in body["results"]] == texts
    for text, doc in zip(texts, body["results"]):
        assert set(doc) >= {"text", "tokens", "entities", "sentences"}
        check_entity_offsets(text, doc)
    assert body["results"][1]["tokens"] == [] and body["results"][1]["entities"] == []
    assert {"Tokyo", "Mary Jones"} <= {e["text"] for e in body["results"][0]["entities"]}


@pytest.mark.parametrize("text", ["", " ", "\n\t "])
def test_empty_text_gives_empty_result(client, text):
    doc = tag(client, text=text)["results"][0]
    assert doc["text"] == text and doc["tokens"] == [] and doc["entities"] == []


def test_empty_texts_list(client):
    assert tag(client, texts=[]) == {"results": []}


# ----------------------------------------------------------------------------- errors and limits


@pytest.mark.parametrize("body, fragment", [
    (b'{"text": "unterminated', "not valid JSON"),
    (b"{bad json}", "not valid JSON"),
    (b'{"text": 5}', "text"),
    (b'{"text": null}', "exactly one"),
    (b"{}", "exactly one"),
    (b'{"text": "a", "texts": ["b"]}', "exactly one"),
    (b'{"texts": "not a list"}', "texts"),
    (b'{"texts": ["fine", 3]}', "texts.1"),
    (b'{"txt": "typo"}', "txt"),
    (b'["a list"]', "JSON object"),
    (b'"a string"', "JSON object"),
    (b"null", "JSON object"),
    (b"", "missing"),
])
def test_malformed_or_wrong_shape_is_422(client, body, fragment):
    r = client.post("/api/tag", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and fragment in error
    assert isinstance(r.json()["detail"], list)


def test_missing_content_type_is_422_with_hint(client):
    r = client.post("/api/tag", content=b'{"text": "Paris"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 422
    assert "application/json" in r.json()["error"]


def test_body_over_limit_is_413_by_content_length(client):
    body = json.dumps({"text": "a" * 100_000}).encode()
    assert len(body) > 100_000
    r = client.post("/api/tag", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "100000" in r.json()["error"]


def test_body_over_limit_is_413_when_streamed(tagger):
    """No Content-Length (chunked): the bytes actually received are counted."""
    app = create_app(tagger, max_body_bytes=1000)
    sent = []

    def chunks():
        for _ in range(50):
            sent.append(1)
            yield b" " * 100

    with TestClient(app) as c:
        r = c.post("/api/tag", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "1000" in r.json()["error"]


def test_body_at_limit_is_accepted(tagger):
    limit = 1000
    head, tail = b'{"text": "', b'"}'
    body = head + b"Paris " * 200
    body = body[:limit - len(tail)] + tail
    assert len(body) == limit
    over = body[:-len(tail)] + b"s" + tail
    with TestClient(create_app(tagger, max_body_bytes=limit)) as c:
        assert c.post("/api/tag", content=body, headers={"Content-Type": "application/json"}).status_code == 200
        assert c.post("/api/tag", content=over, headers={"Content-Type": "application/json"}).status_code == 413


def test_413_over_a_real_socket(tagger):
    with live_server(create_app(tagger, max_body_bytes=2000)) as url:
        r = httpx.post(url + "/api/tag", content=json.dumps({"text": "x" * 5000}),
                       headers={"Content-Type": "application/json"}, timeout=30, trust_env=False)
        assert r.status_code == 413
        streamed = httpx.post(url + "/api/tag", content=iter([b'{"text": "', b"y" * 3000, b'"}']),
                              headers={"Content-Type": "application/json"}, timeout=30, trust_env=False)
        assert streamed.status_code == 413
        ok = httpx.post(url + "/api/tag", json={"text": "Li Wei visited Baghdad."}, timeout=30,
                        trust_env=False)
        assert ok.status_code == 200


def test_bug_in_tagger_gives_json_500_and_is_logged(tagger, caplog):
    with TestClient(create_app(FakeTagger(tagger))) as c:
        r = c.post("/api/tag", json={"text": "BOOM goes the tagger"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error"}
    assert "boom" in caplog.text and "Traceback" in caplog.text


def test_tagger_user_error_is_422(tagger):
    with TestClient(create_app(FakeTagger(tagger))) as c:
        r = c.post("/api/tag", json={"text": "BADINPUT"})
    assert r.status_code == 422 and "cannot be tagged" in r.json()["error"]


def test_unknown_path_and_method(client):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "error" in r.json()
    assert client.get("/api/tag").status_code == 405


# ----------------------------------------------------------------------------- info endpoints


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def _keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def test_model_info_has_config_and_metrics_but_no_vocab(client, tagger):
    r = client.get("/api/model")
    assert r.status_code == 200
    info = r.json()
    assert info["labels"] == tagger.labels
    assert info["model"]["hidden_size"] == 16 and info["training"]["epochs"] == 3
    assert "dev" in info["metrics"]
    assert info["entity_types"] == tagger.info()["entity_types"] and "per" in info["entity_types"]
    assert "O" not in info["entity_types"] and "path" not in info
    assert info["entity_descriptions"]["per"] == "Person"
    assert info["server"]["max_body_bytes"] == 100_000
    assert "vocab" not in set(_keys(info))
    assert len(r.content) < 20_000


def test_model_info_gives_the_example_stored_at_training(client, tagger):
    """train() keeps the first dev sentence with the most entity types (all four of the made-up
    corpus: one with an organisation) as the page's example; older models have none."""
    from nerbilstm.tags import entity_type

    from synthetic import synthetic_sentences

    example = client.get("/api/model").json()["example"]
    dev = synthetic_sentences(300, seed=1)[240:]
    first = next(s for s in dev if len({entity_type(t) for t in s.tags} - {None}) == 4)
    assert example == " ".join(first.tokens) == tagger.config["example"]
    fake = FakeTagger(tagger)
    fake.config = {k: v for k, v in tagger.config.items() if k != "example"}
    with TestClient(create_app(fake)) as c:
        assert c.get("/api/model").json()["example"] is None


def test_known_descriptions_cover_gmb_and_conll_types():
    assert [ENTITY_TYPES[t] for t in ("PER", "LOC", "ORG", "MISC")] == ["Person", "Location", "Organization",
                                                                        "Miscellaneous entity"]
    assert len(ENTITY_TYPES) == 12


def test_nbest_gives_the_k_best_tag_sequences(client, tagger):
    text = "John Smith visited Paris on Monday. Mary Jones visited Tokyo on Friday."
    plain = tag(client, text=text)["results"][0]
    doc = tag(client, text=text, nbest=3)["results"][0]
    assert doc["entities"] == plain["entities"] and len(doc["sentences"]) == 2
    assert all("nbest" not in s for s in plain["sentences"])
    assert doc["sentences"] == tagger(text, nbest=3)["sentences"]
    tags = [t["tag"] for t in doc["tokens"]]
    i = 0
    for sentence in doc["sentences"]:
        paths = sentence["nbest"]
        assert 1 <= len(paths) <= 3
        probs = [p["prob"] for p in paths]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        n = len(paths[0]["tags"])
        assert paths[0]["tags"] == tags[i:i + n]  # the best path is the Viterbi path
        i += n
    assert i == len(tags)


@pytest.mark.parametrize("nbest", [-1, 101, "two", 1.5])
def test_nbest_out_of_range_is_422(client, nbest):
    r = client.post("/api/tag", json={"text": "Paris", "nbest": nbest})
    assert r.status_code == 422 and "nbest" in r.json()["error"]


def test_nbest_needs_a_crf_model(tagger):
    fake = FakeTagger(tagger)
    fake.info = lambda: {**tagger.info(), "model": {**tagger.info()["model"], "decoder": "softmax"}}
    with TestClient(create_app(fake)) as c:
        r = c.post("/api/tag", json={"text": "Paris", "nbest": 2})
        assert r.status_code == 422 and "CRF" in r.json()["error"]
        assert c.post("/api/tag", json={"text": "Paris"}).status_code == 200
    assert fake.nbests == [0]


def test_nbest_requests_are_batched_only_with_their_like(tagger):
    fake = FakeTagger(tagger, each_call=0.2)
    app = create_app(fake, workers=1, batch_window_ms=50)
    asks = [(f"Anna Berg visited London, number {i}.", (0, 2, 3)[i % 3]) for i in range(9)]
    with TestClient(app) as c, ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(lambda a: c.post("/api/tag", json={"text": a[0], "nbest": a[1]}), asks))
    assert all(r.status_code == 200 for r in answers)
    for (text, k), r in zip(asks, answers):
        sentence = r.json()["results"][0]["sentences"][0]
        assert ("nbest" in sentence) == (k > 0) and len(sentence.get("nbest", [])) <= k
    assert sorted(n for n, b in zip(fake.nbests, fake.batches) for _ in b) == sorted(k for _, k in asks)
    assert len(fake.batches) < len(asks)


# ----------------------------------------------------------------------------- page, assets, docs


def _local_refs(html):
    return re.findall(r'(?:src|href)="(/[^"]*)"', html)


def test_page_and_its_assets_are_served_locally(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert 'id="text"' in html and 'id="tag-button"' in html and 'id="legend"' in html
    for kind, name in ENTITY_TYPES.items():  # the legend comes from the model (app.js), not from the page
        assert f'data-type="{kind}"' not in html and name not in html
    refs = _local_refs(html)
    assert "/static/app.js" in refs and "/static/style.css" in refs
    types = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for ref in refs:
        if ref.startswith("/static/"):
            asset = client.get(ref)
            assert asset.status_code == 200, ref
            assert types[ref[ref.rfind("."):]] in asset.headers["content-type"]
    for name in ("index.html", "app.js", "style.css"):
        source = (STATIC_DIR / name).read_text()
        assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", source), name  # no CDN
    assert "innerHTML" not in (STATIC_DIR / "app.js").read_text()  # user text goes in as text nodes


def test_docs_work_offline(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert "cdn" not in r.text.lower() and "https://" not in r.text
    refs = _local_refs(r.text)
    assert "/static/swagger-ui-bundle.js" in refs and "/static/swagger-ui.css" in refs
    for ref in refs:
        assert client.get(ref).status_code == 200, ref
    spec = client.get("/openapi.json").json()
    assert "/api/tag" in spec["paths"] and "/api/model" in spec["paths"] and "/healthz" in spec["paths"]
    assert client.get("/redoc").status_code == 404  # its page would load from a CDN


# ----------------------------------------------------------------------------- concurrency


def test_parallel_requests_all_succeed_with_their_own_results(tagger):
    people = ["John Smith", "Mary Jones", "Ahmed Ali", "Li Wei", "Anna Berg"]
    places = ["Paris", "London", "Tokyo", "Baghdad"]
    texts = [f"{people[i % 5]} visited {places[i % 4]} on Monday. Item {i}." for i in range(32)]
    with live_server(create_app(tagger)) as url, \
            httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
        def one(text):
            r = http.post("/api/tag", json={"text": text})
            return r.status_code, r.json()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, texts))
    for text, (status, body) in zip(texts, answers):
        assert status == 200
        doc = body["results"][0]
        assert doc["text"] == text
        check_entity_offsets(text, doc)


def test_slow_request_does_not_hold_up_others(tagger):
    with live_server(create_app(FakeTagger(tagger, delay=2.0), workers=2)) as url:
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as http, ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            slow = pool.submit(http.post, "/api/tag", json={"text": "SLOW text"})
            time.sleep(0.3)
            for i in range(5):
                r = http.post("/api/tag", json={"text": f"Li Wei visited Paris {i}."})
                assert r.status_code == 200
            fast_done = time.monotonic() - started
            assert not slow.done(), "the fast requests should finish while the slow one still runs"
            assert slow.result().status_code == 200
    assert fast_done < 2.0


def test_concurrent_requests_are_micro_batched(tagger):
    fake = FakeTagger(tagger, each_call=0.3)
    app = create_app(fake, workers=1, batch_window_ms=50)
    texts = [f"Anna Berg visited London on Friday, number {i}." for i in range(8)]
    with TestClient(app) as c, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: c.post("/api/tag", json={"text": t}), texts))
    assert all(r.status_code == 200 for r in answers)
    assert [r.json()["results"][0]["text"] for r in answers] == texts
    assert len(fake.batches) < len(texts)
    assert sum(len(b) for b in fake.batches) == len(texts)


def test_failing_request_in_a_batch_fails_alone(tagger):
    fake = FakeTagger(tagger, each_call=0.2)
    app = create_app(fake, workers=1, batch_window_ms=50)
    texts = ["Mary Jones visited Paris.", "BOOM", "Li Wei visited Tokyo.", "Ahmed Ali visited London."]
    with TestClient(app) as c, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda t: c.post("/api/tag", json={"text": t}), texts))
    statuses = [r.status_code for r in answers]
    assert statuses == [200, 500, 200, 200]
    for text, r in zip(texts, answers):
        if r.status_code == 200:
            assert r.json()["results"][0]["text"] == text


# ----------------------------------------------------------------------------- command line


def test_cli_serve_defaults_and_help(capsys):
    from nerbilstm.cli import build_parser, main

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.max_body_bytes, args.model) == ("127.0.0.1", 8000, 100_000, None)
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    assert "nerbilstm serve --model" in capsys.readouterr().out


def test_cli_serve_reports_a_missing_model(tmp_path, capsys):
    from nerbilstm.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing-here"), "--port", "0"]) == 2
    assert "nerbilstm serve: error:" in capsys.readouterr().err
