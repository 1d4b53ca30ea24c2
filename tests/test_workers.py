"""predict --workers N and Tagger.pipe(workers=N): N processes, the same bytes as one."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from nerbilstm.cli import main
from nerbilstm.errors import NerError
from nerbilstm.predict import Tagger
from nerbilstm.tagging import open_input, write_tagged
from nerbilstm.workers import WorkerSpec, chunked, tag_in_workers, threads_per_worker
from servers import tiny_tagger

WORDS = ("John Smith visited Paris on Monday . The army of Iraq left Baghdad in 2004 , said Mary Jones "
         "from the United Nations in New York").split()


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return tiny_tagger(tmp_path_factory.mktemp("tiny") / "model")


def made_up_lines(n: int, seed: int = 3) -> list[str]:
    """n lines of shuffled words, a blank line now and then, lengths 0..60 tokens."""
    rng = random.Random(seed)
    return ["" if rng.random() < 0.05 else " ".join(rng.choices(WORDS, k=rng.randint(1, 60))) for _ in range(n)]


def test_threads_keep_workers_times_threads_within_the_cores():
    assert threads_per_worker(1, cores=8) == 8
    assert threads_per_worker(3, cores=8) == 2
    assert threads_per_worker(4, cores=2) == 1
    for workers in range(1, 9):
        assert workers * threads_per_worker(workers, cores=8) <= max(8, workers)


@pytest.mark.parametrize("fmt", ["inline", "jsonl"])
def test_predict_workers_output_is_byte_identical(tagger, tmp_path, capsys, fmt):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(made_up_lines(700)) + "\n", encoding="utf-8")
    model = str(Path(tagger.config["_path"]).parent)
    outputs = []
    for workers in ("1", "2"):
        assert main(["predict", "--model", model, "--input", str(source), "--output-format", fmt,
                     "--no-progress", "--workers", workers]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") >= 700
    if fmt == "inline":
        assert len(outputs[1].splitlines()) == 700


def test_write_tagged_workers_small_chunks_keep_order_and_count(tagger):
    lines = made_up_lines(300, seed=5)
    one, two = io.StringIO(), io.StringIO()
    assert write_tagged(tagger, open_input(lines, None), one, "jsonl", read_ahead=7) == 300
    assert write_tagged(tagger, open_input(lines, None), two, "jsonl", read_ahead=7, workers=2) == 300
    assert one.getvalue() == two.getvalue()


def test_pipe_workers_equals_pipe(tagger):
    lines = made_up_lines(400, seed=9)
    items = lines[:200] + [line.split() for line in lines[200:]]  # texts and token lists
    expected = list(tagger.pipe(items, batch_size=32))
    got = list(tagger.pipe(iter(items), batch_size=32, workers=2, threads=1))
    assert got == expected
    assert len(got) == 400


def test_in_flight_chunks_are_bounded(tagger):
    """The reader runs at most workers x 2 chunks ahead of the writer."""
    spec = WorkerSpec.of(tagger, 2, threads=1)
    read = []
    chunks = (read.append(k) or [f"John visited Paris {k} ."] for k in range(50))
    results = tag_in_workers(spec, 2, chunks)
    first = next(results)
    assert first[0]["text"] == "John visited Paris 0 ."
    assert len(read) <= 2 * 2 + 1
    rest = list(results)
    assert [d[0]["text"] for d in rest] == [f"John visited Paris {k} ." for k in range(1, 50)]


def test_a_tagger_built_in_memory_cannot_have_workers(tagger):
    memory = Tagger(tagger.model, tagger.vocab, {k: v for k, v in tagger.config.items() if k != "_path"})
    with pytest.raises(NerError, match="model directory"):
        list(memory.pipe(["John visited Paris ."], workers=2))


def test_bad_worker_counts_are_one_line_errors(tagger, capsys):
    assert main(["predict", "--workers", "0", "John visited Paris ."]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    with pytest.raises(NerError):
        list(chunked([1, 2], 0))
