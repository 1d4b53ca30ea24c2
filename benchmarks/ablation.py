"""Dev-set ablation of the default configuration's choices, on a reduced budget.

Trains the default configuration and one variant per choice (each with that choice switched
off) on the first N sentences of the corpus (canonical split; 0: all of it) for a given number
of epochs, and prints one JSON line per run with its dev figures. Dev only: no test sentences
are given to training. Weight averaging is measured by the training log itself (with
``--average-from``, each epoch's record also has the unaveraged weights' dev figures).

    python benchmarks/ablation.py --data ner_dataset.csv --max-sentences 0 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

from nerbilstm.config import ModelConfig, TrainConfig
from nerbilstm.data.dataset import load_dataset
from nerbilstm.train import train

VARIANTS = {
    "default": ({}, {}),
    "no char CNN": ({"char_dim": 0}, {}),
    "no casing feature": ({"case_dim": 0}, {}),
    "no word dropout": ({}, {"word_dropout": 0.0}),
    "no IOB2 constraints": ({"constrained": False}, {}),
    "no lr decay": ({}, {"lr_decay": 1.0}),
    "softmax decoder, unweighted": ({"decoder": "softmax"}, {"class_weighting": "none"}),
    "softmax decoder, class-weighted (original)": ({"decoder": "softmax"}, {}),
}


def run(data: str, max_sentences: int, epochs: int, only: list[str] | None) -> None:
    dataset = load_dataset(data, max_sentences=max_sentences or None)
    for name, (model_changes, train_changes) in VARIANTS.items():
        if only and name not in only:
            continue
        model_config = replace(ModelConfig(), **model_changes)
        train_config = replace(TrainConfig(epochs=epochs, average_from=0), **train_changes)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            dev = train(dataset.train, dataset.dev, model_config, train_config, out, progress=False,
                        plots=False)["dev"]
        print(json.dumps({"variant": name, "model": model_changes, "training": train_changes,
                          "dev_entity_f1": round(dev["entity_f1"], 4),
                          "dev_token_macro_f1": round(dev["token_macro_f1"], 4),
                          "dev_seed_batch_macro_f1": round(dev["seed_batch_macro_f1"], 4),
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("NERBILSTM_DATA"))
    parser.add_argument("--max-sentences", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="variant names to run")
    args = parser.parse_args()
    if not args.data:
        sys.exit("give --data or set NERBILSTM_DATA")
    run(args.data, args.max_sentences, args.epochs, args.only)
