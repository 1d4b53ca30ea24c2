"""How consistently the corpus labels the same word, near by and far apart.

For the most frequent words that the corpus gives more than one tag, prints the share of
their occurrences under each tag, and how often two successive occurrences at most --window
sentences apart (in the file's order, which keeps a document's sentences together) carry
the same tag, against the agreement two random occurrences would have (sum of squared
shares). A near-pair agreement well above chance means the tag follows the document (its
annotation), not only the sentence a tagger sees.

Then, for the sentences whose exact token sequence occurs more than once in the corpus, how
well the copies' annotations agree (entity F1, CoNLL-eval, of each later copy against the
first, over the pairs where either copy has an entity): the corpus scored against itself, a
ceiling that a tagger, which gives identical sentences identical tags, cannot pass on them.
With it, the median length of the repeated texts and of all sentences.

    python benchmarks/label_consistency.py --top 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import Counter, defaultdict

from nerbilstm.data.dataset import select_split
from nerbilstm.metrics import entity_scores


def consistency(sentences, top: int, window: int, min_share: float) -> list[dict]:
    """-> one row per ambiguous word, the most frequent first."""
    occurrences: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, sentence in enumerate(sentences):
        for word, tag in zip(sentence.tokens, sentence.tags):
            if tag != "O":
                occurrences[word].append((i, tag))
    rows = []
    for word, occ in sorted(occurrences.items(), key=lambda kv: -len(kv[1])):
        counts = Counter(tag for _, tag in occ)
        if len(counts) < 2 or counts.most_common(2)[1][1] < min_share * len(occ):
            continue
        pairs = [(a, b) for (i, a), (j, b) in zip(occ, occ[1:]) if j - i <= window]
        chance = sum((c / len(occ)) ** 2 for c in counts.values())
        rows.append({
            "word": word, "n": len(occ),
            "tags": {t: round(c / len(occ), 3) for t, c in counts.most_common(4)},
            "near_pairs": len(pairs),
            "near_agreement": round(sum(a == b for a, b in pairs) / len(pairs), 3) if pairs else None,
            "chance_agreement": round(chance, 3),
        })
        if len(rows) == top:
            break
    return rows


def duplicate_agreement(sentences) -> dict:
    """Agreement of the annotations of repeated sentences (see the module's docstring)."""
    copies: dict[tuple, list[int]] = defaultdict(list)
    for i, sentence in enumerate(sentences):
        copies[tuple(sentence.tokens)].append(i)
    first, later = [], []
    repeated = [ids for ids in copies.values() if len(ids) > 1]
    for ids in repeated:
        for j in ids[1:]:
            a, b = list(sentences[ids[0]].tags), list(sentences[j].tags)
            if any(t != "O" for t in a + b):
                first.append(a)
                later.append(b)
    scores = entity_scores(first, later, "conll") if first else None
    return {"repeated_texts": len(repeated), "sentences_in_them": sum(map(len, repeated)),
            "median_tokens": statistics.median(len(sentences[ids[0]].tokens) for ids in repeated) if repeated
            else None,
            "corpus_median_tokens": statistics.median(len(s.tokens) for s in sentences) if sentences else None,
            "pairs_with_entities": len(first), "identical_pairs": sum(a == b for a, b in zip(first, later)),
            "entities": scores["support"] if scores else 0,
            "entity_f1": round(scores["f1"], 4) if scores else None,
            "per_type_f1": {t: round(v["f1"], 3) for t, v in scores["per_type"].items() if v["support"]}
            if scores else {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("NERBILSTM_DATA"))
    parser.add_argument("--top", type=int, default=10, help="ambiguous words to show")
    parser.add_argument("--window", type=int, default=3, help="sentences apart that count as near")
    parser.add_argument("--min-share", type=float, default=0.1,
                        help="the second tag must hold at least this share of a word's entity occurrences")
    args = parser.parse_args()
    if not args.data:
        sys.exit("give --data or set NERBILSTM_DATA")
    sentences, _ = select_split(args.data, "all")
    rows = consistency(sentences, args.top, args.window, args.min_share)
    for row in rows:
        print(json.dumps(row))
    pairs = sum(r["near_pairs"] for r in rows)
    agree = sum(r["near_agreement"] * r["near_pairs"] for r in rows if r["near_pairs"])
    chance = sum(r["chance_agreement"] * r["near_pairs"] for r in rows)
    print(json.dumps({"words": len(rows), "near_pairs": pairs, "near_agreement": round(agree / pairs, 3),
                      "chance_agreement": round(chance / pairs, 3)}))
    print(json.dumps({"duplicates": duplicate_agreement(sentences)}))


if __name__ == "__main__":
    main()
