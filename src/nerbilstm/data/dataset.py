"""Loading the train / dev / test sentences a command asks for, with what to record about them."""

from __future__ import annotations

import logging
import os
from itertools import islice
from dataclasses import dataclass, field
from pathlib import Path

from nerbilstm.errors import DataError

log = logging.getLogger("nerbilstm")

DATA_ENV = "NERBILSTM_DATA"
WHERE_TO_GET = ("get the Kaggle corpus 'Annotated Corpus for Named Entity Recognition' (ner_dataset.csv) "
                f"and pass --data PATH or set {DATA_ENV}")


CANONICAL_SPLIT = "canonical i%10: 0 test, 1 dev, rest train"  # recorded in config.json as the split
SPLIT_RULE = "i % 10 == 0 for test, == 1 for dev, the rest for train"  # said in messages


def canonical_split_of(index: int) -> str:
    """The project's fixed split of one file, by 0-based sentence index in file order:
    ``index % 10 == 0`` test, ``== 1`` dev, the rest train."""
    r = index % 10
    return "test" if r == 0 else "dev" if r == 1 else "train"


def split_canonical(sentences: list) -> tuple[list, list, list]:
    """-> ``(train, dev, test)`` by :func:`canonical_split_of`."""
    parts: dict[str, list] = {"train": [], "dev": [], "test": []}
    for i, s in enumerate(sentences):
        parts[canonical_split_of(i)].append(s)
    return parts["train"], parts["dev"], parts["test"]


@dataclass
class Dataset:
    train: list
    dev: list
    test: list
    info: dict = field(default_factory=dict)  # paths, checksums, formats, reader notes


def resolve_data_path(path: str | None) -> Path:
    """--data, else $NERBILSTM_DATA; a clear error when neither names a file (or a brat directory)."""
    chosen = path or os.environ.get(DATA_ENV)
    if not chosen:
        raise DataError(f"no corpus given: {WHERE_TO_GET}")
    p = Path(chosen)
    if not (p.is_file() or p.is_dir()):
        raise DataError(f"corpus file not found ({WHERE_TO_GET})", path=p)
    return p


def corpus_sha256(path) -> str:
    """The sha256 of a corpus file, or of a brat directory's documents."""
    from nerbilstm.io import sha256_file

    if os.path.isdir(path):
        from nerbilstm.data.spans import brat_sha256

        return brat_sha256(str(path))
    return sha256_file(path)


def _info(path, stream, sentences: int, type_map) -> dict:
    info = {"path": str(path), "sha256": corpus_sha256(path), "format": stream.format, "encoding": stream.encoding,
            "sentences": sentences, "notes": list(stream.notes)}
    if type_map:
        info["type_map"] = type_map if isinstance(type_map, str) else ",".join(f"{a}={b}" for a, b in
                                                                                dict(type_map).items())
    return info


def read_file(path, fmt=None, encoding=None, tag_column=-1, max_sentences=None, type_map=None, strict_spans=False):
    """-> (sentences, info) for one file, with its sha256 and the reader's notes."""
    from nerbilstm.data.readers import read_corpus

    corpus = read_corpus(path, fmt=fmt, encoding=encoding, tag_column=tag_column, max_sentences=max_sentences,
                         type_map=type_map, strict_spans=strict_spans)
    return corpus.sentences, _info(path, corpus, len(corpus.sentences), type_map)


class StreamedTrain:
    """The training sentences of a file, read afresh on every iteration (constant memory).

    With ``canonical`` the sentences the canonical split gives to dev and test are left out.
    """

    def __init__(self, path, fmt=None, encoding=None, tag_column=-1, max_sentences=None, canonical=True,
                 type_map=None, strict_spans=False):
        self.args = (path, fmt, encoding, tag_column, True, type_map, strict_spans)
        self.max_sentences, self.canonical = max_sentences, canonical

    def __iter__(self):
        from nerbilstm.data.readers import iter_sentences

        with iter_sentences(*self.args) as stream:
            for i, sentence in enumerate(islice(stream, self.max_sentences)):
                if not self.canonical or canonical_split_of(i) == "train":
                    yield sentence


def stream_dataset(data: str | None, dev_data: str | None = None, test_data: str | None = None, fmt=None,
                   encoding=None, tag_column: int = -1, max_sentences: int | None = None, type_map=None,
                   strict_spans: bool = False) -> Dataset:
    """Like load_dataset, but the training sentences stay on disk (StreamedTrain); one pass here
    keeps the canonical dev and test sentences (or reads the separate dev/test files)."""
    from nerbilstm.data.readers import iter_sentences

    path = resolve_data_path(data)
    more = (type_map, strict_spans)  # for every reading
    canonical = dev_data is None and test_data is None
    dev, test, n = [], [], 0
    with iter_sentences(path, fmt, encoding, tag_column, True, *more) as stream:
        for n, sentence in enumerate(islice(stream, max_sentences), 1):
            split = canonical_split_of(n - 1) if canonical else "train"
            if split != "train":
                (test if split == "test" else dev).append(sentence)
        info = _info(path, stream, n, type_map) | {"streamed": True}
    if n < (3 if canonical else 1):
        raise DataError(_none_in("train", n) if canonical else "no sentences found: nothing to train on", path=path)
    train = StreamedTrain(path, fmt, encoding, tag_column, max_sentences, canonical, *more)
    if canonical:
        return Dataset(train, dev, test, {"train": info, "split": CANONICAL_SPLIT})
    dev, dev_info = read_file(dev_data, fmt, encoding, tag_column, None, *more) if dev_data else ([], None)
    test, test_info = read_file(test_data, fmt, encoding, tag_column, None, *more) if test_data else ([], None)
    return Dataset(train, dev, test, {"train": info, "dev": dev_info, "test": test_info, "split": "files"})


def load_dataset(data: str | None, dev_data: str | None = None, test_data: str | None = None, fmt=None,
                 encoding=None, tag_column: int = -1, max_sentences: int | None = None, type_map=None,
                 strict_spans: bool = False) -> Dataset:
    """One file: the canonical 80/10/10 split by sentence index (i % 10 == 0 test, == 1 dev).
    Separate files: --data is train, --dev-data dev, --test-data test (CoNLL-2003 style).
    ``type_map`` and ``strict_spans`` apply to every file (see :func:`readers.read_corpus`)."""
    path = resolve_data_path(data)
    more = (type_map, strict_spans)
    sentences, info = read_file(path, fmt, encoding, tag_column, max_sentences, *more)
    if dev_data is None and test_data is None:
        train, dev, test = split_canonical(sentences)
        if not train:
            raise DataError(_none_in("train", len(sentences)), path=path)
        return Dataset(train, dev, test, {"train": info, "split": CANONICAL_SPLIT})
    if not sentences:
        raise DataError("no sentences found: nothing to train on", path=path)
    dev, dev_info = read_file(dev_data, fmt, encoding, tag_column, None, *more) if dev_data else ([], None)
    test, test_info = read_file(test_data, fmt, encoding, tag_column, None, *more) if test_data else ([], None)
    return Dataset(sentences, dev, test, {"train": info, "dev": dev_info, "test": test_info, "split": "files"})


def select_split(data: str | None, split: str | None, fmt=None, encoding=None, tag_column=-1, max_sentences=None,
                 type_map=None, strict_spans=False, training_sha256: str | None = None):
    """Sentences of one split of a file (``all``: every sentence) -> (sentences, info).

    ``split`` None: the canonical test split of the corpus a model was trained on (the file whose
    sha256 is ``training_sha256``), all of any other file. ``info["scored"]`` says in words which
    sentences were taken ("all 1,885 sentences of dev.conll")."""
    path = resolve_data_path(data)
    sentences, info = read_file(path, fmt, encoding, tag_column, max_sentences, type_map, strict_spans)
    if split is None:
        split = "test" if training_sha256 is not None and info["sha256"] == training_sha256 else "all"
    name, n = Path(path).name, len(sentences)
    if split == "all":
        if not sentences:
            raise DataError("no sentences found: nothing to evaluate", path=path)
        log_notes({"data": info})
        return sentences, dict(info, split="all", scored=f"all {n:,} sentences of {name}")
    chosen = dict(zip(("train", "dev", "test"), split_canonical(sentences)))[split]
    if not chosen:
        raise DataError(_none_in(split, n), path=path)
    log_notes({"data": info})
    return chosen, dict(info, split=split, scored=f"canonical {split} split: {len(chosen):,} of {n:,} sentences "
                                                 f"of {name}")


def log_notes(info: dict) -> None:
    """Log what the readers noted (repairs, skipped rows, encoding) for each file of ``info``."""
    for part in info.values():
        if isinstance(part, dict):
            for note in part.get("notes", []):
                log.info("%s: %s", part.get("path"), note)


def _none_in(split: str, n: int) -> str:
    if not n:
        return "no sentences found"
    return (f"the {split} split is empty: the file has only {n} sentence{'s' if n != 1 else ''} and the "
            f"canonical split takes {SPLIT_RULE}")


def load_from_config(config, streamed: bool = False) -> Dataset:
    """The train / dev / test sentences a DataConfig names (``streamed``: see stream_dataset)."""
    loader = stream_dataset if streamed else load_dataset
    data = loader(config.data, config.dev_data, config.test_data, config.format, config.encoding, config.tag_column,
                  config.max_sentences, config.type_map, config.strict_spans)
    log_notes(data.info)
    return data
