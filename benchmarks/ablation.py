"""Dev-set ablation of the default configuration's choices, on a reduced budget.

Trains the default configuration and one variant per choice (each with that choice switched
off) on the first N sentences of the corpus (canonical split), and prints one JSON line per
run with its dev figures. Dev only: the test split is never looked at here.

    python benchmarks/ablation.py --data ner_dataset.csv --max-sentences 10000 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from nerbilstm.cli import main as cli

VARIANTS = {
    "default": [],
    "no char CNN": ["--char-dim", "0"],
    "no casing feature": ["--case-dim", "0"],
    "no word dropout": ["--word-dropout", "0"],
    "no IOB2 constraints": ["--no-constrained"],
    "no lr decay": ["--lr-decay", "1.0"],
    "softmax decoder": ["--decoder", "softmax"],
}


def run(data: str, max_sentences: int, epochs: int, extra: list[str], only: list[str] | None) -> None:
    for name, flags in VARIANTS.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            rc = cli(["train", "--data", data, "--out", out, "--max-sentences", str(max_sentences), "--epochs",
                      str(epochs), "--no-progress", "--no-plots", *extra, *flags])
            if rc != 0:
                print(json.dumps({"variant": name, "error": rc}), flush=True)
                continue
            with open(os.path.join(out, "metrics.json")) as f:
                dev = json.load(f)["dev"]
        print(json.dumps({"variant": name, "flags": flags, "dev_entity_f1": round(dev["entity_f1"], 4),
                          "dev_token_macro_f1": round(dev["token_macro_f1"], 4),
                          "dev_seed_batch_macro_f1": round(dev["seed_batch_macro_f1"], 4),
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("NERBILSTM_DATA"))
    parser.add_argument("--max-sentences", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="variant names to run")
    args, extra = parser.parse_known_args()
    if not args.data:
        sys.exit("give --data or set NERBILSTM_DATA")
    run(args.data, args.max_sentences, args.epochs, extra, args.only)
