"""Tagging throughput of ``predict --workers N``: sentences per second for 1 and 2 worker
processes and 1 or 2 torch threads each, on a text file of one record per line (written from
the GMB test split with ``--data``, or given with ``--text``). Prints one JSON line per setting,
with the machine's load average beside it (other jobs share the cores).

    python benchmarks/workers.py --data ner_dataset.csv                  # GMB test sentences
    python benchmarks/workers.py --text big.txt --settings 1x1,1x2,2x1    # any text file

Each figure is the wall time of ``write_tagged`` over the whole file (worker start-up and model
loading included) into a sink that discards the output.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from nerbilstm.data.dataset import read_file, split_canonical
from nerbilstm.data.tokenizer import text_and_sentences
from nerbilstm.predict import Tagger
from nerbilstm.tagging import open_input, write_tagged


class Sink:
    """A text stream that only counts what it is given."""

    def __init__(self):
        self.chars = 0

    def write(self, text: str) -> None:
        self.chars += len(text)

    def flush(self) -> None:
        pass


def gmb_test_file(data: str, out: Path) -> Path:
    sentences, _ = read_file(data)
    _, _, test = split_canonical(sentences)
    out.write_text("".join(" ".join(s.tokens) + "\n" for s in test), encoding="utf-8")
    return out


def run(path: Path, settings: list[tuple[int, int]], model: str | None) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    sentences = sum(len(text_and_sentences(line, k)[1]) for k, line in enumerate(lines))
    tagger = Tagger.load(model)
    for workers, threads in settings:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        if workers == 1:
            records = write_tagged(tagger, open_input([], str(path), "text"), Sink(), "inline")
        else:
            records = sum(1 for _ in tagger.pipe(iter(lines), batch_size=2048, workers=workers, threads=threads))
        wall = time.perf_counter() - start
        print(json.dumps({"file": path.name, "records": records, "sentences": sentences, "workers": workers,
                          "threads": threads, "seconds": round(wall, 2),
                          "sentences_per_s": round(sentences / wall, 1), "cores": os.cpu_count(),
                          "load_average_1m": round(os.getloadavg()[0], 2)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="GMB CSV: tag its canonical test split, one sentence per line")
    p.add_argument("--text", help="a text file to tag, one record per line")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--settings", default="1x1,1x2,2x1", help="WORKERSxTHREADS, comma-separated")
    args = p.parse_args()
    settings = [tuple(int(x) for x in s.split("x")) for s in args.settings.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.text) if args.text else gmb_test_file(args.data, Path(tmp) / "gmb_test.txt")
        run(path, settings, args.model)


if __name__ == "__main__":
    main()
