"""Bounded load test of ``nerbilstm serve``: latency percentiles and throughput of POST /api/tag.

Starts a server on a free 127.0.0.1 port (the shipped model, or --model DIR), or targets a
running one with --url (127.0.0.1 or localhost only), sends N requests (default 1000) from C
concurrent clients (default 16) with GMB-like news sentences, and prints one JSON object:

    {"n": 1000, "concurrency": 16, "completed": ..., "errors": ..., "p50_ms": ..., "p95_ms": ...,
     "p99_ms": ..., "throughput_rps": ..., ...}

Hard bounds: at most 100,000 requests, 256 clients and 1,800 s in all (--time-limit); the
script stops where a bound is hit and says so ("timed_out"). A few warm-up requests go first
and are not counted. Exit status 1 when any request failed or the time ran out.

    python benchmarks/load_test.py                              # shipped model, 1000 x 16
    python benchmarks/load_test.py --model runs/crf -n 2000 -c 32
    python benchmarks/load_test.py --url http://127.0.0.1:8000  # a server you started
    python benchmarks/load_test.py -n 200 -c 4 --heavy 20       # small requests beside 20 heavy ones

With --heavy H, H more clients keep one heavy request each in flight for the whole run (a body
of about 98 KB, about 49,000 short tokens: within the server's default limits), each giving up
after --heavy-timeout seconds (default 5) and posting again; the latency figures are those of
the small requests, and "heavy" reports how many heavy ones were answered and abandoned.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

MAX_REQUESTS = 100_000
MAX_CONCURRENCY = 256
MAX_HEAVY = 64
MAX_SECONDS = 1800.0
STARTUP_SECONDS = 180.0
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "src" / "nerbilstm" / "default_model"

SENTENCES = [
    "Several hundred farmers drove their tractors into Lyon on Thursday to protest new water rules "
    "announced by the regional government.",
    "Mining officials in Chile say rescuers expect to reach the trapped workers by Sunday, after a "
    "second drill broke through the rock.",
    "Coast guard boats on Monday searched the waters off northern Norway, where a fishing trawler lost "
    "contact with the port of Tromso during a storm.",
    "The U.N. Security Council is expected to vote Friday on a resolution extending the mandate of "
    "peacekeepers in Sudan's Darfur region.",
    "Prime Minister Gordon Brown met U.S. President Barack Obama in London on Tuesday to discuss the "
    "Afghan war.",
    "Venezuelan President Hugo Chavez says his government will nationalize the country's largest "
    "telecommunications company.",
    "The European Union's foreign policy chief Javier Solana arrived in Tehran on Sunday for talks on "
    "Iran's nuclear program.",
    "Officials in Indonesia say a powerful earthquake struck off the coast of Sumatra early Monday, "
    "killing at least 12 people.",
    "Hurricane Katrina devastated New Orleans in August 2005, flooding most of the city.",
    "Russian President Vladimir Putin has said Moscow will not interfere in Ukraine's election.",
    "Chinese state media say police in Xinjiang have arrested 10 people suspected of plotting attacks "
    "before the Beijing Olympics.",
    "The World Bank says economic growth in East Asia will slow next year because of weaker demand in "
    "the United States.",
    "Pakistan's army says troops have killed 25 militants in fighting near the Afghan border.",
    "Israeli Prime Minister Ehud Olmert met Palestinian President Mahmoud Abbas in Jerusalem on "
    "Monday.",
    "The Nobel Peace Prize was awarded to former U.S. Vice President Al Gore and the U.N. climate "
    "panel.",
    "NATO foreign ministers gathered in Brussels on Thursday to discuss the alliance's mission in "
    "Afghanistan.",
    "Japan's Toyota Motor Corporation reported a sharp drop in quarterly profits on Wednesday.",
    "German Chancellor Angela Merkel said Berlin would support the Greek rescue plan.",
    "Mexican authorities have captured a suspected leader of the Gulf drug cartel in the northern "
    "state of Tamaulipas.",
    "A suicide bomber struck a police checkpoint in Baghdad on Saturday, killing at least eight "
    "people.",
    "The Olympic torch arrived in Paris on Monday amid protests over China's policy in Tibet.",
    "Brazil's President Luiz Inacio Lula da Silva will visit Cuba next month.",
    "The International Monetary Fund approved a $2 billion loan for Pakistan on Friday.",
    "Typhoon Morakot hit Taiwan in August, leaving hundreds of people dead or missing.",
]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def heavy_text(max_bytes: int = 98_000) -> str:
    """Ordinary-looking text of short tokens, about 2 bytes a token: the most work a body can ask for."""
    unit = "I a 5 , A b . "
    return (unit * (max_bytes // len(unit)))[:max_bytes].strip()


async def heavy_client(base: str, timeout: float, stop: asyncio.Event, counts: dict) -> None:
    """Keep one heavy request in flight until ``stop``; give up on each after ``timeout`` seconds."""
    body = {"text": heavy_text()}
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=timeout) as client:
        while not stop.is_set():
            try:
                r = await client.post("/api/tag", json=body)
                counts["answered" if r.status_code == 200 else f"http_{r.status_code}"] += 1
            except httpx.TimeoutException:
                counts["abandoned"] += 1
            except httpx.HTTPError as err:
                counts[type(err).__name__] += 1


def check_local_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ALLOWED_HOSTS:
        raise SystemExit(f"load_test: refusing {url!r}: only http://127.0.0.1 or http://localhost targets")
    if parts.username or parts.password:
        raise SystemExit("load_test: refusing a URL with credentials")
    return f"http://{parts.netloc}".rstrip("/")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nerbilstm", "serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port)]
    log = open(log_path, "wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_until_up(base: str, proc: subprocess.Popen | None, log_path: Path | None) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:] if log_path else ""
                raise SystemExit(f"load_test: the server exited with {proc.returncode}:\n{tail}")
            try:
                if client.get(base + "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"load_test: {base}/healthz did not answer within {STARTUP_SECONDS:.0f} s")


async def run_load(base: str, n: int, concurrency: int, time_limit: float, warmup: int,
                   heavy: int = 0, heavy_timeout: float = 5.0) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    entities = 0
    next_index = 0
    async with httpx.AsyncClient(base_url=base, limits=limits, trust_env=False, timeout=60.0) as client:
        for i in range(warmup):
            await client.post("/api/tag", json={"text": SENTENCES[i % len(SENTENCES)]})

        async def worker() -> None:
            nonlocal next_index, entities
            while next_index < n:
                i = next_index
                next_index += 1
                text = SENTENCES[i % len(SENTENCES)]
                t0 = time.perf_counter()
                try:
                    r = await client.post("/api/tag", json={"text": text})
                    elapsed = time.perf_counter() - t0
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                    doc = r.json()["results"][0]
                    if doc["text"] != text:
                        errors.append("answer for another text")
                        continue
                    entities += len(doc["entities"])
                    latencies.append(elapsed)
                except (httpx.HTTPError, ValueError, KeyError) as err:
                    errors.append(f"{type(err).__name__}: {err}"[:200])

        stop, counts = asyncio.Event(), collections.Counter()
        heavy_tasks = [asyncio.create_task(heavy_client(base, heavy_timeout, stop, counts)) for _ in range(heavy)]
        if heavy:
            await asyncio.sleep(1.0)  # let them reach the server
        started = time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=time_limit)
        stop.set()
        for task in [*pending, *heavy_tasks]:
            task.cancel()
        await asyncio.gather(*pending, *heavy_tasks, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                errors.append(f"client error: {task.exception()!r}"[:200])
        wall = time.perf_counter() - started

    latencies.sort()
    ms = [x * 1000.0 for x in latencies]

    def r2(x):
        return None if x is None else round(x, 2)

    return {
        "n": n, "concurrency": concurrency, "completed": len(latencies), "errors": len(errors),
        "p50_ms": r2(percentile(ms, 50)), "p95_ms": r2(percentile(ms, 95)), "p99_ms": r2(percentile(ms, 99)),
        "mean_ms": r2(sum(ms) / len(ms)) if ms else None, "max_ms": r2(ms[-1]) if ms else None,
        "throughput_rps": round(len(latencies) / wall, 1) if wall > 0 else None,
        "wall_s": round(wall, 2), "timed_out": bool(pending), "entities_found": entities,
        "error_samples": errors[:5], "warmup_requests": warmup,
        **({"heavy": {"clients": heavy, "body_bytes": len(json.dumps({"text": heavy_text()})),
                      "tokens_about": len(heavy_text().split()), "timeout_s": heavy_timeout, **counts}}
           if heavy else {}),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="target a running server (http://127.0.0.1:PORT or http://localhost:PORT)")
    p.add_argument("--model", help="model directory for the server this script starts (default: the shipped model)")
    p.add_argument("-n", "--requests", type=int, default=1000,
                   help=f"requests to send (default 1000, max {MAX_REQUESTS})")
    p.add_argument("-c", "--concurrency", type=int, default=16,
                   help=f"concurrent clients (default 16, max {MAX_CONCURRENCY})")
    p.add_argument("--time-limit", type=float, default=300.0,
                   help=f"seconds for the measured run (default 300, max {MAX_SECONDS:.0f})")
    p.add_argument("--warmup", type=int, default=16, help="uncounted requests sent first (default 16, max 1000)")
    p.add_argument("--heavy", type=int, default=0,
                   help=f"heavy requests kept in flight beside the measured ones (default 0, max {MAX_HEAVY})")
    p.add_argument("--heavy-timeout", type=float, default=5.0,
                   help="seconds a heavy client waits before it gives up and posts again (default 5)")
    args = p.parse_args(argv)
    if not 0 <= args.heavy <= MAX_HEAVY:
        p.error(f"--heavy must be within 0..{MAX_HEAVY}")
    if not 0 < args.heavy_timeout <= 600:
        p.error("--heavy-timeout must be within (0, 600]")
    if not 1 <= args.requests <= MAX_REQUESTS:
        p.error(f"--requests must be within 1..{MAX_REQUESTS}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        p.error(f"--concurrency must be within 1..{MAX_CONCURRENCY}")
    if not 0 < args.time_limit <= MAX_SECONDS:
        p.error(f"--time-limit must be within (0, {MAX_SECONDS:.0f}]")
    if not 0 <= args.warmup <= 1000:
        p.error("--warmup must be within 0..1000")

    proc = log_path = None
    model = None
    if args.url:
        if args.model:
            p.error("--model is for the server this script starts; not with --url")
        base = check_local_url(args.url)
    else:
        model = Path(args.model) if args.model else DEFAULT_MODEL
        if not (model / "config.json").is_file():
            p.error(f"no model at {model}: pass --model DIR (a trained model directory) or --url")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log_path = Path(tempfile.gettempdir()) / f"nerbilstm-load-test-{os.getpid()}.log"
        proc = start_server(model, port, log_path)
    try:
        wait_until_up(base, proc, log_path)
        result = asyncio.run(run_load(base, args.requests, args.concurrency, args.time_limit, args.warmup,
                                      args.heavy, args.heavy_timeout))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    result = {"url": base, "server": "started" if proc is not None else "external",
              "model": str(model) if model else None, "cpu_count": os.cpu_count(), **result}
    print(json.dumps(result))
    return 1 if result["errors"] or result["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())
