"""How much the spaCy component costs: ``nlp.pipe`` through it against our tagger called directly.

The shipped model (``Tagger.load()``) on the GMB test sentences of the canonical split, as
pre-tokenized input in every variant, so that all of them tag the very same tokens:

* ``tagged_sentences``: ``Tagger.tagged_sentences(tokens, with_confidence=True)``: the decoder
  output the component builds its entities from (no document dicts);
* ``tag_tokens``: ``Tagger.tag_tokens(tokens)``: documents with offsets, entities and scores;
* ``spacy_pipe``: ``nlp.pipe(docs, batch_size=N)`` over ``Doc(nlp.vocab, words=tokens)`` in a
  ``spacy.blank("en")`` pipeline with the ``nerbilstm`` component (the Docs are built outside
  the timing; the component sets ``doc.ents`` and the score extensions);
* ``spacy_one_at_a_time``: the same through ``nlp.pipe(docs, batch_size=1)``: one tagging call
  per sentence, what a component without its own ``pipe`` would cost;
* ``spacy_text``: ``nlp.pipe(texts)`` on the tokens joined by spaces, spaCy's tokenizer
  included (its tokens may differ a little from GMB's).

Each variant runs once as a warm-up, then ``--repeats`` times interleaved; the median is
reported. The result is ONE JSON object, the last line of standard output. Needs the spacy
extra (``pip install -e '.[spacy]'``) and the GMB corpus (``--data`` or $NERBILSTM_DATA).

    python benchmarks/spacy_pipe.py --threads 2 --data ner_dataset.csv
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import spacy
import torch
from spacy.tokens import Doc

from nerbilstm.data.dataset import split_canonical
from nerbilstm.data.readers import read_corpus
from nerbilstm.predict import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("NERBILSTM_DATA"), help="GMB ner_dataset.csv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000, help="docs per nlp.pipe batch")
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set NERBILSTM_DATA")
    torch.set_num_threads(args.threads)
    sentences = [s.tokens for s in split_canonical(list(read_corpus(args.data)))[2]]
    tagger = Tagger.load()
    nlp = spacy.blank("en")
    nlp.add_pipe("nerbilstm")
    nlp.get_pipe("nerbilstm")._tagger = tagger  # the same loaded model in every variant
    texts = [" ".join(tokens) for tokens in sentences]

    def spacy_pipe(batch_size):
        def run():
            docs = [Doc(nlp.vocab, words=tokens) for tokens in sentences]
            started = time.perf_counter()
            n = sum(len(d.ents) for d in nlp.pipe(docs, batch_size=batch_size))
            return time.perf_counter() - started, n
        return run

    def timed(fn):
        def run():
            started = time.perf_counter()
            n = fn()
            return time.perf_counter() - started, n
        return run

    variants = {
        "tagged_sentences": timed(lambda: sum(len(r.entity_probs) for r in
                                              tagger.tagged_sentences(sentences, with_confidence=True))),
        "tag_tokens": timed(lambda: sum(len(d["entities"]) for d in tagger.tag_tokens(sentences))),
        "spacy_pipe": spacy_pipe(args.batch_size),
        "spacy_one_at_a_time": spacy_pipe(1),
        "spacy_text": timed(lambda: sum(len(d.ents) for d in nlp.pipe(texts, batch_size=args.batch_size))),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    entities = {}
    for name, fn in variants.items():  # warm-up
        entities[name] = fn()[1]
    for _ in range(args.repeats):
        for name, fn in variants.items():
            seconds[name].append(fn()[0])
    n_tokens = sum(map(len, sentences))
    result = {"sentences": len(sentences), "tokens": n_tokens, "threads": args.threads,
              "batch_size": args.batch_size, "repeats": args.repeats, "spacy": spacy.__version__,
              "torch": torch.__version__, "entities": entities,
              "median_seconds": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
              "sentences_per_s": {k: round(len(sentences) / statistics.median(v)) for k, v in seconds.items()}}
    base = statistics.median(seconds["tag_tokens"])
    result["relative_to_tag_tokens"] = {k: round(statistics.median(v) / base, 3) for k, v in seconds.items()}
    for name in variants:
        print(f"{name:20s} {result['median_seconds'][name]:7.3f} s  {result['sentences_per_s'][name]:6d} sent/s  "
              f"{entities[name]} entities")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
