"""Document context at tagging time: does a document-level memory of confident entities help?

The memory (Krishnan & Manning 2006 in spirit, as a rule instead of a second CRF): after every
sentence of a document is tagged, each entity predicted with a score (its span's probability,
from the CRF marginals) of at least --confident is remembered by its token string and label. Then
every other occurrence of a remembered string in the same document that overlaps no prediction
gets that entity too ("add"), and with --relabel an occurrence predicted with another label and a
lower score takes the remembered label. Both dev sets are scored with and without the memory, with
the same code (our entity F1), for each model given.

Documents:
- NCBI disease: ``devel.tsv`` has no ``-DOCSTART-`` lines; its sentences are in document order,
  and the brat copy (``standoff_devel/PMID.txt``) tells where each document starts: a sentence
  starts a new document when its characters (whitespace removed) begin one of the brat texts.
- GMB: the CSV has no document marks, but keeps a document's sentences together in file order;
  the canonical split puts file sentence i in dev when i % 10 == 1. A dev sentence's "document" is
  the --window file sentences before it and after it (all splits: the memory uses predictions,
  never gold tags), a stand-in that may cross a document boundary.

    python benchmarks/doc_memory.py --corpus ncbi --models runs/ncbi13 runs/ncbi14 runs/ncbi15
    python benchmarks/doc_memory.py --corpus gmb --models src/nerbilstm/default_model runs/s14 runs/s15

Prints one JSON object per model and the mean gain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from nerbilstm.data.readers import read_corpus
from nerbilstm.metrics import entity_scores
from nerbilstm.predict import Tagger


def ncbi_documents(root: Path) -> tuple[list, list[list[int]]]:
    """devel.tsv's sentences and, per brat document, the indices of its sentences (file order)."""
    sentences = read_corpus(root / "devel.tsv").sentences
    starts = {"".join(p.read_text(encoding="utf-8").split())[:30] for p in (root / "standoff_devel").glob("*.txt")}
    documents: list[list[int]] = []
    for i, s in enumerate(sentences):
        if not documents or "".join(s.tokens)[:30] in starts:
            documents.append([])
        documents[-1].append(i)
    if len(documents) != len(starts):
        raise SystemExit(f"found {len(documents)} document starts in devel.tsv for {len(starts)} brat documents")
    return sentences, documents


def gmb_windows(path: str, window: int) -> tuple[list, list[list[int]], list[int]]:
    """All of the file's sentences, for each dev sentence its window (indices), and the dev indices."""
    sentences = read_corpus(path).sentences
    dev = [i for i in range(len(sentences)) if i % 10 == 1]
    windows = [list(range(max(0, i - window), min(len(sentences), i + window + 1))) for i in dev]
    return sentences, windows, dev


def predicted_spans(tagger: Tagger, sentences) -> list[list[tuple[str, int, int, float]]]:
    """Per sentence, (label, first token, end token, score) of each predicted entity."""
    out = []
    for sentence, doc in zip(sentences, tagger([s.tokens for s in sentences])):
        token_at = {t["start"]: k for k, t in enumerate(doc["tokens"])}
        token_end = {t["end"]: k + 1 for k, t in enumerate(doc["tokens"])}
        out.append([(e["label"], token_at[e["start"]], token_end[e["end"]], e["score"]) for e in doc["entities"]])
    return out


def with_memory(tokens: list[list[str]], spans: list[list[tuple]], members: list[int], confident: float,
                relabel: bool) -> dict[int, list[tuple]]:
    """The spans of the sentences ``members`` after the document memory -> {sentence: spans}."""
    memory: dict[tuple[str, ...], tuple[str, float]] = {}
    for i in members:
        for label, a, b, score in spans[i]:
            key = tuple(tokens[i][a:b])
            if score >= confident and score > memory.get(key, ("", -1.0))[1]:
                memory[key] = (label, score)
    out = {}
    for i in members:
        current = list(spans[i])
        for key, (label, score) in sorted(memory.items(), key=lambda kv: -len(kv[0])):
            n = len(key)
            for a in range(len(tokens[i]) - n + 1):
                if tuple(tokens[i][a:a + n]) != key:
                    continue
                overlapping = [s for s in current if s[1] < a + n and a < s[2]]
                if not overlapping:
                    current.append((label, a, a + n, 0.0))
                elif relabel and len(overlapping) == 1 and overlapping[0][1:3] == (a, a + n) \
                        and overlapping[0][0] != label and overlapping[0][3] < score:
                    current[current.index(overlapping[0])] = (label, a, a + n, overlapping[0][3])
        out[i] = current
    return out


def as_tags(length: int, spans) -> list[str]:
    tags = ["O"] * length
    for label, a, b, _ in spans:
        tags[a] = "B-" + label
        for k in range(a + 1, b):
            tags[k] = "I-" + label
    return tags


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", choices=("ncbi", "gmb"), required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--confident", type=float, default=0.9, help="least score of a remembered entity")
    p.add_argument("--window", type=int, default=5, help="GMB: file sentences either side of a dev sentence")
    p.add_argument("--relabel", action="store_true", help="also relabel less confident exact spans")
    args = p.parse_args(argv)
    if args.corpus == "ncbi":
        sentences, documents = ncbi_documents(Path(os.environ.get("NERBILSTM_NCBI", "../shared/data/ncbi_disease")))
        scored = [(doc, doc) for doc in documents]  # (members, the sentences scored)
    else:
        sentences, windows, dev = gmb_windows(os.environ.get("NERBILSTM_DATA", "../shared/data/gmb/ner_dataset.csv"),
                                              args.window)
        scored = [(w, [i]) for w, i in zip(windows, dev)]
    tokens = [s.tokens for s in sentences]
    gains = []
    for model in args.models:
        tagger = Tagger.load(model)
        spans = predicted_spans(tagger, sentences)
        gold, before, after = [], [], []
        for members, targets in scored:
            remembered = with_memory(tokens, spans, members, args.confident, args.relabel)
            for i in targets:
                gold.append(sentences[i].tags)
                before.append(as_tags(len(tokens[i]), spans[i]))
                after.append(as_tags(len(tokens[i]), remembered[i]))
        plain, memo = entity_scores(gold, before), entity_scores(gold, after)
        gains.append(memo["f1"] - plain["f1"])
        print(json.dumps({"model": model, "corpus": args.corpus, "documents": len(scored),
                          "sentences_scored": len(gold), "confident": args.confident, "relabel": args.relabel,
                          "f1": round(plain["f1"], 4), "f1_with_memory": round(memo["f1"], 4),
                          "precision": [round(plain["precision"], 4), round(memo["precision"], 4)],
                          "recall": [round(plain["recall"], 4), round(memo["recall"], 4)]}))
    print(json.dumps({"mean_gain": round(statistics.mean(gains), 4), "gains": [round(g, 4) for g in gains]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
