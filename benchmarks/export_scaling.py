"""How the exported artefacts' run time grows with sentence length.

Exports a model directory (default: the shipped model) to ONNX (and with ``--torchscript``
also to TorchScript) in a temporary folder, then times one sentence of N tokens at each
length (default 500, 1000, 2000, 5000): best of ``--repeats`` runs after one warm-up, one
thread. A linear artefact takes about 10x at 5,000 tokens what it takes at 500; a quadratic
one about 100x. Prints ONE JSON object (the last line of standard output):

    {"model": ..., "threads": 1, "lengths": [...], "onnx": {"500": s, ...},
     "onnx_ratio_max_min": ..., "torchscript": {...}}

    python benchmarks/export_scaling.py
    python benchmarks/export_scaling.py --lengths 500 1000 2000 3000 5000 --torchscript

The tokens are the shipped model's own vocabulary words in a fixed pseudo-random order
(the figures depend on the length, not on the words). Needs the export extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def inputs_for(meta: dict, n: int, seed: int = 0) -> dict:
    """One sentence of n tokens as the artefact's inputs (numpy), from the metadata only."""
    rng = np.random.default_rng(seed)
    words = np.asarray(rng.integers(2, len(meta["words"]), n), dtype=np.int64)[None, :]
    L = 8
    chars = np.asarray(rng.integers(2, len(meta["chars"]), (1, n, L)), dtype=np.int64)
    cases = np.asarray(rng.integers(0, len(meta["cases"]), (1, n)), dtype=np.int64)
    E = meta["word_dim"]
    return {"words": words, "chars": chars, "cases": cases, "mask": np.ones((1, n), dtype=bool),
            "pretrained": np.zeros((1, 1, E), np.float32), "pretrained_mask": np.zeros((1, 1), dtype=bool)}


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best, 4)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torchscript", action="store_true", help="time the TorchScript artefact too")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from nerbilstm.export import METADATA_NAME, export_model

    torch.set_num_threads(1)
    result: dict = {"model": args.model or "shipped", "threads": 1, "lengths": args.lengths,
                    "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(args.model, Path(tmp) / "tagger.onnx", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_NAME])
        result["onnx"] = {str(n): best_time(lambda f=inputs_for(meta, n): session.run(["tags"], f), args.repeats)
                          for n in args.lengths}
        times = list(result["onnx"].values())
        result["onnx_ratio_max_min"] = round(times[-1] / times[0], 2)
        if args.torchscript:
            path = export_model(args.model, Path(tmp) / "tagger.pt", "torchscript")
            module = torch.jit.load(str(path))

            def run(f):
                with torch.no_grad():
                    module(*(torch.from_numpy(f[k]) for k in ("words", "chars", "cases", "mask", "pretrained",
                                                                "pretrained_mask")))

            result["torchscript"] = {str(n): best_time(lambda f=inputs_for(meta, n): run(f), args.repeats)
                                     for n in args.lengths}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
