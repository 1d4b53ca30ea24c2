"""Model directories: ``model.safetensors`` + ``config.json``, written atomically, read without pickle.

A model directory holds
  model.safetensors  the weights (safetensors: tensors only, no code)
  config.json        format version, architecture, training recipe, labels, vocabulary,
                     embedding source and checksum, data checksum, metrics, and the sha256
                     of model.safetensors (so a truncated or edited weight file is caught)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nerbilstm.errors import ModelFileError

FORMAT_NAME = "nerbilstm"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _publish(tmp: str, path: Path) -> None:
    """Give the temporary file the permissions a plain open() would have, then rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_json(value: Any) -> Any:
    """A copy of config values fit for strict JSON: NaN and infinities (an F1 never computed,
    say) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model_dir(directory: str | Path, state: dict[str, torch.Tensor], config: dict) -> None:
    """Write weights then config (which records the weights' sha256), each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / WEIGHTS, state)
    config = dict(config, format=FORMAT_NAME, format_version=FORMAT_VERSION,
                  weights_sha256=sha256_file(directory / WEIGHTS))
    atomic_write_json(directory / CONFIG, config)


def read_config(directory: str | Path) -> dict:
    """Read and check ``config.json`` of a model directory."""
    directory = Path(directory)
    if not directory.is_dir():
        if directory.is_file() and directory.suffix in PICKLE_SUFFIXES:
            raise ModelFileError(
                "a pickle file: pickle files can run arbitrary code when loaded, so nerbilstm never unpickles; "
                "give a model directory (model.safetensors + config.json)", path=directory)
        if directory.is_file():
            raise ModelFileError("is a file, not a model directory (model.safetensors + config.json)", path=directory)
        raise ModelFileError("model directory not found", path=directory)
    cfg_path = directory / CONFIG
    if not cfg_path.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelFileError(
                f"holds {', '.join(pickles)} but no {CONFIG}: pickle files can run arbitrary code when "
                "loaded, so nerbilstm never unpickles; it reads only safetensors + JSON model directories",
                path=directory)
        raise ModelFileError(f"missing {CONFIG}", path=directory)
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        line = getattr(err, "lineno", None)
        raise ModelFileError(f"not valid JSON ({err.__class__.__name__}: {getattr(err, 'msg', err)})",
                             path=cfg_path, line=line) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise ModelFileError(f"not a {FORMAT_NAME} model config (no \"format\": \"{FORMAT_NAME}\")", path=cfg_path)
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"format_version {version!r} is not a format version (1, 2, ...)", path=cfg_path)
    if version > FORMAT_VERSION:
        raise ModelFileError(f"format version {version!r} is newer than this nerbilstm reads "
                             f"({FORMAT_VERSION}); upgrade nerbilstm", path=cfg_path)
    return config


def read_weights(directory: str | Path, config: dict, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors``, after checking it is the file the config was written with."""
    path = Path(directory) / name
    if not path.is_file():
        raise ModelFileError(f"missing {name}", path=directory)
    expected = config.get("weights_sha256")
    if expected and sha256_file(path) != expected:
        raise ModelFileError("checksum differs from the one in config.json: the file is truncated, "
                             "edited or from another model", path=path)
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"cannot read safetensors: {err}", path=path) from None
