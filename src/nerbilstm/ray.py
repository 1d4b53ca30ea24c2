"""Tagging on a Ray cluster: ``RayTagger``, the callable class for Ray Data's ``map_batches``,
and ``predict_on_ray``, which runs a file through it for ``nerbilstm predict --ray``.

>>> import ray
>>> from nerbilstm.ray import RayTagger
>>> ds = ray.data.read_json("docs.jsonl")                     # a "text" column, and any others
>>> ds.map_batches(RayTagger, fn_constructor_kwargs={"model": "runs/crf"}, concurrency=8,
...                batch_size=1024).write_json("tagged/")

Needs the ray extra (``pip install 'nerbilstm[ray]'``); ``ray`` itself is imported only where
used, so this module loads without it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TextIO

from nerbilstm.errors import NerError
from nerbilstm.report import render_documents

log = logging.getLogger("nerbilstm")

# The predict flags predict_on_ray takes, by name (cli.py passes them through as they are).
PREDICT_ARGS = ("input", "texts", "model", "ray_address", "input_format", "output_format", "batch_size",
                "workers", "nbest")
OUTPUT_COLUMNS = ("tokens", "tags", "entities")


class RayTagger:
    """Tags a batch of Ray Data rows: reads the ``text`` column, adds ``tokens`` and ``tags``
    (lists of str per row) and ``entities`` (per row a list of {text, label, start, end, score},
    character offsets into the text); every other column is carried through. The model is loaded
    once, when Ray builds the actor.

    model: a model directory (None: the shipped model); threads: torch threads per actor (None:
    torch's default); batch_size: sentences per forward pass.
    """

    def __init__(self, model: str | None = None, threads: int | None = None, batch_size: int = 256):
        from nerbilstm.predict import Tagger

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.tagger = Tagger.load(model)
        self.tagger.batch_size = batch_size

    def __call__(self, batch):
        """batch: a dict of columns (numpy arrays; Ray's default batch format) or a pandas
        DataFrame -> the same kind, with the three columns added."""
        if "text" not in batch:
            raise NerError(f"RayTagger needs a 'text' column; the batch has {', '.join(map(str, batch.keys()))}")
        texts = ["" if t is None else str(t) for t in batch["text"]]
        docs = self.tagger.tag_documents(texts)
        columns = {"tokens": [[t["text"] for t in d["tokens"]] for d in docs],
                   "tags": [[t["tag"] for t in d["tokens"]] for d in docs],
                   "entities": [d["entities"] for d in docs]}
        if hasattr(batch, "assign"):  # pandas
            return batch.assign(**columns)
        out = dict(batch)
        for name, values in columns.items():
            out[name] = _object_column(values)
        return out


def _object_column(values: list):
    """A numpy object array with one element per row (np.array would try to stack the lists)."""
    import numpy as np

    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _plain(value):
    """A value of a Ray row as JSON can hold it (numpy arrays and scalars become lists and numbers)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_predict_options(input: str | None, texts: list[str], input_format: str, output_format: str,
                           nbest: int) -> None:
    if texts or input in (None, "-"):
        raise NerError("--ray tags one file: give --input FILE (text arguments and standard input stay local)")
    if not Path(input).is_file():
        raise NerError(f"no such file: {input}")
    if input_format == "conll":
        raise NerError("--ray reads text (a record per line) or JSON Lines with a 'text' field, not CoNLL")
    if output_format not in ("inline", "jsonl", "json"):
        raise NerError(f"--ray writes JSON Lines; --output-format {output_format} is not available with it")
    if nbest:
        raise NerError("--nbest is not available with --ray")


def predict_on_ray(out: TextIO, *, input: str | None, texts: list[str], model: str | None, ray_address: str | None,
                   input_format: str, output_format: str, batch_size: int, workers: int, nbest: int) -> int:
    """Tag ``input`` on Ray -> JSON Lines on ``out``, one object per input line in input order:
    its columns (text, or a JSON Lines record's fields) and tokens, tags, entities. A ``.jsonl``
    / ``.json`` input is read as JSON Lines, anything else as text (``drop_empty_lines=False``:
    a blank line gets its record). ``workers``: actors (each loads the model once)."""
    _check_predict_options(input, texts, input_format, output_format, nbest)
    try:
        import ray
    except ImportError:
        raise NerError("--ray needs Ray: pip install 'nerbilstm[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        path = str(Path(input).resolve())  # the workers may run elsewhere: the file must be there too
        jsonl = Path(input).suffix.lower() in (".jsonl", ".json")
        ds = ray.data.read_json(path) if jsonl else ray.data.read_text(path, drop_empty_lines=False)
        model_dir = None if model in (None, "default") else str(Path(model).resolve())
        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=workers)  # from 1: a CPU is left to read the file
        ds = ds.map_batches(RayTagger, fn_constructor_kwargs={"model": model_dir, "batch_size": batch_size},
                            compute=pool, batch_size=1024)
        written = 0
        for row in ds.iter_rows():
            out.write(render_documents([_plain(row)], "jsonl"))
            written += 1
        out.flush()
        log.info("%s: %d records tagged on Ray", input, written)
    finally:
        if started:
            ray.shutdown()
    return 0
