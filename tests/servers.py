"""Test helpers shared by the server tests: a tiny trained tagger and a live uvicorn server."""

import contextlib
import socket
import threading
import time

from nerbilstm.config import ModelConfig, TrainConfig
from nerbilstm.predict import Tagger
from nerbilstm.train import train

from synthetic import synthetic_sentences


def tiny_tagger(out, seed: int = 13) -> Tagger:
    """A small model trained for seconds on the made-up corpus, loaded from ``out``."""
    sents = synthetic_sentences(300, seed=1)
    train(sents[:240], sents[240:], ModelConfig(hidden_size=16, layers=1),
          TrainConfig(epochs=3, batch_size=16, lr=0.01, seed=seed), out, progress=False, plots=False)
    return Tagger.load(out)


@contextlib.contextmanager
def live_server(app, config=None):
    """uvicorn on a free 127.0.0.1 port in a thread; yields the base URL. config: a
    uvicorn.Config for ``app`` (its host and port are not used), default uvicorn's defaults."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(config or uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
