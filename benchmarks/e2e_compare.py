"""End-to-end tagging speed of model directories on the GMB test split, in one process.

Each model tags the 4,796 test sentences as raw text (tokenize, tag, marginals, entity
probabilities) 5 times, the models interleaved; prints the median sentences/s of each.

    python benchmarks/e2e_compare.py runs/crf src/nerbilstm/default_model
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from nerbilstm.data.dataset import load_dataset
from nerbilstm.predict import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model directories")
    parser.add_argument("--data", default=os.environ.get("NERBILSTM_DATA"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.data:
        sys.exit("give --data or set NERBILSTM_DATA")
    torch.set_num_threads(args.threads)
    texts = [" ".join(s.tokens) for s in load_dataset(args.data).test]
    taggers = {d: Tagger.load(d) for d in args.models}
    for tagger in taggers.values():
        tagger(texts[:500])  # warm-up
    samples: dict[str, list[float]] = {d: [] for d in taggers}
    for r in range(args.repeats):
        order = list(taggers) if r % 2 == 0 else list(taggers)[::-1]
        for d in order:
            start = time.perf_counter()
            taggers[d](texts)
            samples[d].append(time.perf_counter() - start)
    for d, times in samples.items():
        seconds = statistics.median(times)
        print(f"{d}: {len(texts) / seconds:.0f} sentences/s ({seconds:.2f} s for {len(texts)} sentences)")


if __name__ == "__main__":
    main()
