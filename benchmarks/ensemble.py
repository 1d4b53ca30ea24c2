"""What averaging several trained CRF models would gain, on one split.

The models' emission scores are averaged token by token, their CRF transition, start and end
scores too, and the average is Viterbi-decoded by a copy of the first model's CRF (so with its
constraints); the models themselves are left unchanged. Each
model alone and the ensemble are scored with the same metrics as `nerbilstm evaluate`.

    python benchmarks/ensemble.py runs/a runs/b runs/c --split dev
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import torch

from nerbilstm.data.batching import collate, encode
from nerbilstm.data.dataset import select_split
from nerbilstm.evaluate import score_predictions
from nerbilstm.predict import Tagger

KEYS = ("entity_f1", "token_macro_f1", "seed_batch_macro_f1")


def ensemble_tags(taggers: list[Tagger], sentences: list[list[str]], batch_size: int = 256) -> list[list[str]]:
    """Tags of the averaged models (all must share one label list and use a CRF)."""
    labels = taggers[0].labels
    if any(t.labels != labels or t.model.crf is None for t in taggers):
        raise SystemExit("every model must be a CRF model with the same labels")
    crf = copy.deepcopy(taggers[0].model.crf)
    with torch.no_grad():
        for name in ("transitions", "start_scores", "end_scores"):
            getattr(crf, name).copy_(torch.stack([getattr(t.model.crf, name) for t in taggers]).mean(0))
        out: list[list[str]] = []
        for i in range(0, len(sentences), batch_size):
            chunk = sentences[i:i + batch_size]
            total = None
            for t in taggers:
                batch = collate([encode(tokens, t.vocab) for tokens in chunk], t.pretrained)
                scores = t.model.eval().emissions(batch)
                total = scores if total is None else total + scores
            tags, _ = crf.viterbi_decode(total / len(taggers), batch.mask)
            out.extend([labels[k] for k in tags[row, :len(tokens)].tolist()] for row, tokens in enumerate(chunk))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model directories (CRF decoder, same labels)")
    parser.add_argument("--data", default=os.environ.get("NERBILSTM_DATA"))
    parser.add_argument("--split", default="dev", choices=("dev", "test"))
    args = parser.parse_args()
    if not args.data:
        sys.exit("give --data or set NERBILSTM_DATA")
    sentences, _ = select_split(args.data, args.split)
    tokens, gold = [s.tokens for s in sentences], [s.tags for s in sentences]
    taggers = [Tagger.load(d) for d in args.models]
    for d, t in zip(args.models, taggers):
        m = score_predictions(gold, t.tags(tokens), t.labels)
        print(json.dumps({"model": d, **{k: round(m[k], 4) for k in KEYS}}))
    m = score_predictions(gold, ensemble_tags(taggers, tokens), taggers[0].labels)
    print(json.dumps({"model": "ensemble", **{k: round(m[k], 4) for k in KEYS}}))


if __name__ == "__main__":
    main()
