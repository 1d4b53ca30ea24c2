"""Tagging on all cores of one machine: N worker processes, each with its own copy of the model.

Chunks of records are handed out in input order and their results come back in that order,
with at most ``IN_FLIGHT_PER_WORKER`` chunks per worker in flight, so memory stays bounded
whatever the input's length. The workers are started with ``spawn`` (a fresh interpreter: no
OpenMP thread pool inherited from a parent that has tagged already), load the model from its
directory once, and use ``torch.set_num_threads`` so that workers x threads <= cores.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from nerbilstm.errors import NerError

log = logging.getLogger("nerbilstm")

IN_FLIGHT_PER_WORKER = 2  # one chunk being tagged, one queued: a worker never waits for the reader


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads for each of ``workers`` processes: as many as keep workers x threads <= cores
    (at least 1)."""
    return max(1, (cores or available_cores()) // workers)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to load the same tagger: its model directory, the pretrained
    table as ``Tagger.load`` takes it, the batch size, torch threads and device."""

    model_dir: str
    pretrained: str | None = "auto"
    batch_size: int = 256
    threads: int = 1
    device: str = "cpu"

    @classmethod
    def of(cls, tagger, workers: int, threads: int | None = None) -> "WorkerSpec":
        """The spec that reloads ``tagger`` in a worker; a NerError for a tagger built in memory
        (without a model directory: there is nothing a worker could load)."""
        path = tagger.config.get("_path")
        if not path or not Path(path).is_file():
            raise NerError("tagging with workers > 1 needs a tagger loaded from a model directory "
                           "(Tagger.load(DIR)); this one was built in memory: save it first")
        if threads is not None and threads < 1:
            raise NerError(f"threads must be at least 1, got {threads}")
        device = str(next(tagger.model.parameters()).device)
        return cls(str(Path(path).parent), getattr(tagger, "pretrained_source", "auto"), tagger.batch_size,
                   threads or threads_per_worker(workers), device)


_TAGGER = None  # the worker process's tagger, loaded once by _load


def _load(spec: WorkerSpec) -> None:
    """Worker initializer: set torch's threads and load the model."""
    global _TAGGER
    import torch

    from nerbilstm.predict import Tagger

    torch.set_num_threads(spec.threads)
    _TAGGER = Tagger.load(spec.model_dir, pretrained=spec.pretrained, device=spec.device)
    _TAGGER.batch_size = spec.batch_size


def _tag_chunk(chunk: list, nbest: int, fmt: str | None):
    """Run in a worker: the chunk's documents, or with ``fmt`` their rendering (a str: cheaper
    to send back than the documents)."""
    docs = _TAGGER.tag_documents(chunk, nbest)
    if fmt is None:
        return docs
    from nerbilstm.report import render_documents

    return render_documents(docs, fmt)


def chunked(records: Iterable, size: int) -> Iterator[list]:
    """``records`` in lists of ``size`` (the last one shorter)."""
    if size < 1:
        raise NerError(f"the chunk size must be at least 1, got {size}")
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


def tag_in_workers(spec: WorkerSpec, workers: int, chunks: Iterable[list], nbest: int = 0,
                   fmt: str | None = None, on_chunk: Callable[[], None] | None = None) -> Iterator:
    """Tag each chunk (a list of records) of ``chunks`` in one of ``workers`` processes -> per
    chunk, in input order, its documents (a list) or with ``fmt`` their rendering
    (``report.render_documents``). ``on_chunk`` is called after each chunk is read (a progress
    bar's hook). At most workers x IN_FLIGHT_PER_WORKER chunks are read ahead."""
    if workers < 1:
        raise NerError(f"workers must be at least 1, got {workers}")
    it = iter(chunks)
    pending: deque[Future] = deque()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_load,
                             initargs=(spec,)) as pool:
        try:
            while True:
                while len(pending) < workers * IN_FLIGHT_PER_WORKER and (chunk := next(it, None)) is not None:
                    pending.append(pool.submit(_tag_chunk, chunk, nbest, fmt))
                    if on_chunk is not None:
                        on_chunk()
                if not pending:
                    break
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def pipe_in_workers(tagger, items: Iterable[str | Sequence[str]], chunk_size: int, nbest: int, workers: int,
                    threads: int | None = None) -> Iterator[dict]:
    """``Tagger.pipe`` over ``workers`` processes: documents one by one, in input order."""
    spec = WorkerSpec.of(tagger, workers, threads)
    for docs in tag_in_workers(spec, workers, chunked(items, chunk_size), nbest):
        yield from docs
