"""The server under hostile use: memory that cannot grow without bound, heavy requests that
cannot starve light ones, work for clients that left, a token budget, connection limits, the
Host check against DNS rebinding, and odd bodies that must not give 500. All traffic goes to
127.0.0.1 and is bounded in count and time."""

import asyncio
import json
import socket
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve,dev]'")
httpx = pytest.importorskip("httpx", reason="httpx is not installed: pip install -e '.[serve,dev]'")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from nerbilstm.serve.app import create_app, is_loopback, server_config

from offsets import check_entity_offsets
from servers import live_server, tiny_tagger


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return tiny_tagger(tmp_path_factory.mktemp("serve-limits") / "model")


@pytest.fixture(scope="module")
def client(tagger):
    with TestClient(create_app(tagger)) as c:
        yield c


class SlowTagger:
    """Wraps the tiny tagger: texts with SLOW take ``delay`` seconds; records what it tagged."""

    def __init__(self, inner, delay=1.5):
        self.inner, self.delay = inner, delay
        self.labels, self.config, self.info = inner.labels, inner.config, inner.info
        self.batches = []

    def __call__(self, texts):
        self.batches.append(list(texts))
        if any("SLOW" in t for t in texts):
            time.sleep(self.delay)
        return self.inner(texts)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# ----------------------------------------------------------------------------- memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc (Linux only)")
def test_distinct_huge_tokens_do_not_grow_memory(tagger):
    """3,000 requests each with one distinct 100 KB token: the token cache must not keep them."""
    with TestClient(create_app(tagger)) as c:
        for i in range(20):  # warm up allocator and caches
            assert c.post("/api/tag", json={"text": f"{i:05d}" + "x" * 99_950}).status_code == 200
        before = _rss_mb()
        for i in range(3_000):
            r = c.post("/api/tag", json={"text": f"{i + 100:05d}" + "y" * 99_950})
            assert r.status_code == 200
        grown = _rss_mb() - before
    assert grown < 50, f"RSS grew by {grown:.0f} MB"


# ----------------------------------------------------------------------------- fairness


def test_small_requests_are_not_queued_behind_big_ones(tagger):
    slow = SlowTagger(tagger, delay=1.5)
    big = "SLOW " + "Anna Berg visited London on Friday. " * 100  # > 2,000 characters
    with TestClient(create_app(slow, workers=2)) as c, ThreadPoolExecutor(4) as pool:
        bigs = [pool.submit(c.post, "/api/tag", json={"text": big}) for _ in range(4)]
        time.sleep(0.3)  # the big ones are queued or running
        waits = []
        for i in range(3):
            t0 = time.monotonic()
            r = c.post("/api/tag", json={"text": f"Li Wei visited Paris {i}."})
            waits.append(time.monotonic() - t0)
            assert r.status_code == 200 and r.json()["results"][0]["text"] == f"Li Wei visited Paris {i}."
        assert not all(f.done() for f in bigs)
        assert all(f.result().status_code == 200 for f in bigs)
    assert max(waits) < 1.0, waits


def test_work_for_a_client_that_left_is_dropped_before_tagging(tagger):
    slow = SlowTagger(tagger, delay=2.0)
    with live_server(create_app(slow, workers=1)) as url, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(httpx.post, url + "/api/tag", json={"text": "SLOW first"}, timeout=30, trust_env=False)
        time.sleep(0.3)
        with pytest.raises(httpx.TimeoutException):  # waits behind SLOW, gives up and disconnects
            httpx.post(url + "/api/tag", json={"text": "Nobody waits for this text."}, timeout=0.5,
                       trust_env=False)
        assert busy.result().status_code == 200
        after = httpx.post(url + "/api/tag", json={"text": "Mary Jones visited Tokyo."}, timeout=30,
                           trust_env=False)
        assert after.status_code == 200
    tagged = [t for batch in slow.batches for t in batch]
    assert "SLOW first" in tagged and "Mary Jones visited Tokyo." in tagged
    assert "Nobody waits for this text." not in tagged


# ----------------------------------------------------------------------------- token budget


def test_token_budget_is_413_with_a_message(tagger):
    with TestClient(create_app(tagger, max_tokens_per_request=10)) as c:
        ok = c.post("/api/tag", json={"text": "one two three four five six seven eight nine ten"})
        assert ok.status_code == 200 and len(ok.json()["results"][0]["tokens"]) == 10
        over = c.post("/api/tag", json={"text": "one two three four five six seven eight nine ten ."})
        assert over.status_code == 413
        assert "11 tokens" in over.json()["error"] and "10 tokens" in over.json()["error"]
        split = c.post("/api/tag", json={"texts": ["one two three four five six", "seven eight nine ten ."]})
        assert split.status_code == 413  # the budget is per request, over all its texts
        assert c.get("/api/model").json()["server"]["max_tokens_per_request"] == 10


def test_default_budget_admits_ordinary_text_up_to_the_body_limit(tagger):
    sentence = "Mary Jones visited Tokyo on Friday with a small delegation of ministers. "
    text = (sentence * (100_000 // len(sentence)))[:99_900]
    body = json.dumps({"text": text}).encode()
    assert len(body) <= 100_000
    with TestClient(create_app(tagger)) as c:
        r = c.post("/api/tag", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text[:300]
        assert len(r.json()["results"][0]["tokens"]) > 15_000
        words = json.dumps({"text": ("a " * 50_000)[:99_980]}).encode()  # the most tokens in the body limit
        assert len(words) <= 100_000
        assert c.post("/api/tag", content=words, headers={"Content-Type": "application/json"}).status_code == 200


# ----------------------------------------------------------------------------- connections and Host


def _raw_get(sock, host="127.0.0.1"):
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
    while len(rest) < length:
        rest += sock.recv(4096)
    return int(head.split()[1])


def _connect(url):
    host, port = url.rsplit("/", 1)[-1].split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_idle_keep_alive_connections_are_closed(tagger):
    app = create_app(tagger)
    with live_server(app, server_config(app, keep_alive_s=1, log_level="warning")) as url:
        with _connect(url) as sock:
            assert _raw_get(sock) == 200
            t0 = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server
            assert time.monotonic() - t0 < 5


def test_concurrent_connections_are_capped(tagger):
    app = create_app(tagger)
    with live_server(app, server_config(app, max_connections=2, log_level="warning")) as url:
        first, second = _connect(url), _connect(url)
        try:
            assert _raw_get(first) == 200 and _raw_get(second) == 200
            with _connect(url) as third:
                assert _raw_get(third) == 503
            second.close()
            time.sleep(0.3)
            with _connect(url) as again:
                assert _raw_get(again) == 200
        finally:
            first.close()
            second.close()


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1", True), ("localhost", True), ("127.0.0.1:8000", True), ("localhost:8000", True),
    ("127.3.2.1", True), ("[::1]", True), ("[::1]:8000", True),
    ("evil.example", False), ("evil.example:8000", False), ("localhost.evil.example", False),
    ("10.0.0.1", False), ("[::2]", False), ("", False), ("[::1", False),
])
def test_is_loopback(host, allowed):
    assert is_loopback(host) is allowed


def test_loopback_server_answers_only_loopback_host_headers(tagger):
    with live_server(create_app(tagger)) as url, httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
        port = url.rsplit(":", 1)[1]
        assert http.get("/healthz").status_code == 200
        assert http.get("/healthz", headers={"Host": f"localhost:{port}"}).status_code == 200
        assert http.get("/healthz", headers={"Host": f"[::1]:{port}"}).status_code == 200
        for evil in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}"):
            r = http.post("/api/tag", json={"text": "Paris"}, headers={"Host": evil})
            assert r.status_code == 403 and "loopback" in r.json()["error"], evil
    with live_server(create_app(tagger, check_host=False)) as url:
        r = httpx.get(url + "/healthz", headers={"Host": "evil.example"}, timeout=30, trust_env=False)
        assert r.status_code == 200
    with TestClient(create_app(tagger, check_host=True)) as c:  # its Host is "testserver"
        assert c.get("/healthz").status_code == 403


def test_cli_serve_passes_the_limits(monkeypatch):
    import nerbilstm.serve.app as app_module
    from nerbilstm.cli import main

    seen = {}
    monkeypatch.setattr(app_module, "serve", lambda *a, **kw: seen.update(kw))
    assert main(["serve", "--max-tokens-per-request", "500", "--max-connections", "8", "--keep-alive", "2",
                 "--any-host"]) == 0
    assert (seen["max_tokens_per_request"], seen["max_connections"], seen["keep_alive_s"], seen["any_host"]) == \
        (500, 8, 2, True)


# ----------------------------------------------------------------------------- odd bodies


def _post(client, body: bytes):
    return client.post("/api/tag", content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("body, reason", [
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    (b'{"text": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "nested too deeply"),
    (b'{"text": "caf\xe9"}', "not UTF-8"),
    (b'\xff\xfe{"text": "Paris"}', "not UTF-8"),
    (b'{"text": ' + b"1" * 5_000 + b"}", "too many digits"),
])
def test_malformed_json_is_422_with_a_reason(client, body, reason):
    r = _post(client, body)
    assert r.status_code == 422, r.text[:300]
    assert reason in r.json()["error"] and "not valid JSON" in r.json()["error"]
    assert isinstance(r.json()["detail"], list)


@pytest.mark.parametrize("body", [b'{"text": NaN}', b'{"text": Infinity}', b'{"texts": [-Infinity]}',
                                  b'{"text": "a", "extra": NaN}'])
def test_non_finite_numbers_are_422(client, body):
    r = _post(client, body)
    assert r.status_code == 422, r.text[:300]
    json.loads(r.content, parse_constant=pytest.fail)  # strict JSON back


def test_lone_surrogates_are_tagged_with_exact_offsets(client):
    body = b'{"texts": ["\\ud800 Paris", "Mary Jones visited \\udfff Tokyo on Friday.", "\\ud83d\\ude42 ok"]}'
    r = _post(client, body)
    assert r.status_code == 200, r.text[:300]
    texts = ["\ud800 Paris", "Mary Jones visited \udfff Tokyo on Friday.", "\U0001F642 ok"]
    docs = json.loads(r.content)["results"]
    assert [d["text"] for d in docs] == texts
    for text, doc in zip(texts, docs):
        check_entity_offsets(text, doc)
    assert docs[0]["tokens"][0] == {**docs[0]["tokens"][0], "text": "\ud800", "start": 0, "end": 1}
    assert docs[0]["tokens"][1]["start"] == 2 and docs[0]["tokens"][1]["end"] == 7
    r = _post(client, b'{"texts": ["\\ud800", 3], "x": "\\udc00"}')  # surrogates echoed in the 422
    assert r.status_code == 422 and "texts.1" in r.json()["error"]


# ----------------------------------------------------------------------------- ASGI level


def test_content_length_over_the_limit_is_refused_before_the_body_is_read(tagger):
    """Content-Length alone decides: receive() is never called."""
    app = create_app(tagger, max_body_bytes=1000)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/tag", "raw_path": b"/api/tag", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"content-length", b"1001")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    sent = []

    async def receive():
        pytest.fail("the body was read although Content-Length is over the limit")

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert "1000" in json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]
