"""A training run's directory, settled before any data is read or any epoch trained.

- ``claim_out_dir``: ``--out`` can be written, and holds no other run's model, checkpoint or
  log unless ``overwrite`` (then they are removed).
- ``resume_point``: for ``--resume``, the directory holds an unfinished run's checkpoint; that
  run's data options (``DataConfig``) come back from it, and an option given again that differs
  is refused, naming both values.
- Run ids: every run gets one, written in its checkpoint, its log lines and its config.json, so
  that a checkpoint copied from another run is refused instead of being continued.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, fields
from pathlib import Path

from nerbilstm.checkpoint import CHECKPOINT_DIR, STATE_JSON
from nerbilstm.config import DataConfig
from nerbilstm.errors import NerError
from nerbilstm.io import CONFIG, WEIGHTS

TRAIN_LOG = "train_log.jsonl"
RUN_FILES = (CONFIG, WEIGHTS, TRAIN_LOG, CHECKPOINT_DIR)  # what makes a directory a run's


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def claim_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Make sure a fresh run can write ``out_dir``: not a file, its parent a writable folder,
    and no other run's files in it unless ``overwrite`` (which removes them)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NerError("is a file, not a directory: --out names the model directory to write", path=out_dir)
    taken = [name for name in RUN_FILES if (out_dir / name).exists()]
    if taken and not overwrite:
        raise NerError(f"already holds a run ({', '.join(taken)}): give --overwrite to replace it, --resume "
                       f"{out_dir} to continue it, or another --out", path=out_dir)
    _check_writable(out_dir)
    for name in taken:
        target = out_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def _check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` and a file in it (removed again): the way to know it can be written."""
    parent = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NerError(f"cannot be created: {parent} is a file", path=out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise NerError(f"cannot be written: {err.strerror or err}", path=out_dir) from None


def resume_point(out_dir: Path, given: DataConfig) -> tuple[dict, DataConfig]:
    """The checkpoint state of the unfinished run in ``out_dir`` and its data options; flags in
    ``given`` (those that differ from their defaults) must agree with them."""
    state_path = out_dir / CHECKPOINT_DIR / STATE_JSON
    if not out_dir.is_dir():
        raise NerError("no such run directory to resume", path=out_dir)
    if not state_path.is_file():
        if (out_dir / CONFIG).is_file():
            raise NerError("holds a finished run (its model is written and its checkpoint removed): nothing to "
                           "resume; train again with another --out, or --overwrite", path=out_dir)
        raise NerError(f"no checkpoint to resume from (expected {CHECKPOINT_DIR}/{STATE_JSON})", path=out_dir)
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NerError(f"damaged checkpoint state: {err}", path=state_path) from None
    if not isinstance(state, dict) or "data_config" not in state:
        raise NerError("not a checkpoint state this version can resume (no recorded data options)", path=state_path)
    check_run_id(out_dir, state.get("run_id"))
    saved = DataConfig(**{f.name: state["data_config"].get(f.name, getattr(DataConfig(), f.name))
                          for f in fields(DataConfig)})
    for name, value in given.given().items():
        if name in ("data", "dev_data", "test_data"):
            value = str(Path(value).resolve())
        if value != getattr(saved, name):
            raise NerError(f"--{name.replace('_', '-')} {value} differs from the run being resumed, which has "
                           f"{getattr(saved, name)}: resume with the run's own data options", path=out_dir)
    return state, saved


def check_run_id(out_dir: Path, run_id: str | None) -> None:
    """The checkpoint's run id must be the one of the run whose files are in ``out_dir``."""
    for owner in _run_ids(out_dir):
        if owner != run_id:
            raise NerError(f"the checkpoint is of another run (run id {run_id}) than the one in this directory "
                           f"(run id {owner}): it may have been copied here; refusing to resume", path=out_dir)


def _run_ids(out_dir: Path) -> set:
    """Run ids in the directory's config.json and training log (None: a file without one)."""
    ids = set()
    config = out_dir / CONFIG
    if config.is_file():
        try:
            ids.add(json.loads(config.read_text(encoding="utf-8")).get("run_id"))
        except (OSError, ValueError, AttributeError):
            ids.add(None)
    log = out_dir / TRAIN_LOG
    if log.is_file():
        with open(log, encoding="utf-8") as f:
            first = f.readline()
        try:
            ids.add(json.loads(first).get("run_id") if first.strip() else None)
        except (ValueError, AttributeError):
            ids.add(None)
    return ids


def absolute_paths(data: DataConfig) -> DataConfig:
    """``data`` with its files as absolute paths (a resumed run may start in another folder)."""
    from nerbilstm.data.dataset import DATA_ENV

    values = asdict(data)
    values["data"] = values["data"] or os.environ.get(DATA_ENV)
    for name in ("data", "dev_data", "test_data"):
        if values[name] is not None:
            values[name] = str(Path(values[name]).resolve())
    return DataConfig(**values)
