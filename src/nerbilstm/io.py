"""Model directories: ``model.safetensors`` + ``config.json``, written atomically, read without pickle.

A model directory holds
  model.safetensors  the weights (safetensors: tensors only, no code)
  config.json        format version, architecture, training recipe, labels, vocabulary,
                     embedding source and checksum, data checksum, metrics, the sha256 of
                     model.safetensors (``weights_sha256``) and the sha256 of its own content
                     (``config_sha256``, over canonical JSON of every other key)

The two checksums chain: ``config_sha256`` covers ``weights_sha256``, so together they cover
both files' content, and an edit of either file (labels swapped, a checksum deleted, a byte
flipped) is an error. Both are required. This is integrity against accidents and against
tampering with one file, not a signature: whoever edits a file can recompute the checksums.

Format history: 1 had ``weights_sha256`` only; 2 (current) adds ``config_sha256``. A format 1
directory is refused with the command that re-seals it (``nerbilstm upgrade --model DIR``).

Reading is header first: ``tensor_shapes`` reads the names and shapes of the tensors from the
safetensors header without allocating them, so that a config can be checked against the
weights before a model of the size it claims is built.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from nerbilstm.errors import ModelFileError

FORMAT_NAME = "nerbilstm"
FORMAT_VERSION = 2
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
CONFIG_CHECKSUM = "config_sha256"
UPGRADE_COMMAND = "nerbilstm upgrade --model"


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


@contextmanager
def _atomic_path(path: Path):
    """A temporary file in ``path``'s folder to write; renamed over ``path`` when the block ends
    well (after an fsync), removed when it fails: ``path`` is never half-written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    with _atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        f.write(data)


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
    with _atomic_path(Path(path)) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)


def config_checksum(config: dict) -> str:
    """sha256 of a config's content: canonical JSON (keys sorted, ASCII, no spaces) of every key
    but ``config_sha256`` itself and the in-memory ``_path``. Reformatting config.json or
    reordering its keys keeps the checksum; changing any value does not."""
    content = {k: v for k, v in config.items() if k not in (CONFIG_CHECKSUM, "_path")}
    text = json.dumps(content, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def seal_config(config: dict, weights_sha256: str) -> dict:
    """The config as written: format, format version, the weights' sha256 and the checksum of
    all that (``config_sha256``). The content is JSON round-tripped first, so that the checksum
    is that of what a reader will parse (tuples become lists, keys become strings)."""
    content = {k: v for k, v in config.items() if k not in (CONFIG_CHECKSUM, "_path")}
    content = json.loads(json.dumps(dict(content, format=FORMAT_NAME, format_version=FORMAT_VERSION,
                                         weights_sha256=weights_sha256)))
    content[CONFIG_CHECKSUM] = config_checksum(content)
    return content


def save_model_dir(directory: str | Path, state: dict[str, torch.Tensor], config: dict) -> None:
    """Write weights then config (which records the weights' sha256 and its own), each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / WEIGHTS, state)
    atomic_write_json(directory / CONFIG, seal_config(config, sha256_file(directory / WEIGHTS)))


def _unusable(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be opened (a symlink loop, a symlink to nowhere, no permission), or
    None when it can be stat'ed or simply does not exist."""
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"{what} is a symlink loop (it resolves to itself)"
        if err.errno == errno.ENOENT and path.is_symlink():
            return f"{what} is a symlink to {os.readlink(path)}, which does not exist"
        if err.errno in (errno.EACCES, errno.EPERM):
            return f"{what}: permission denied"
        if err.errno != errno.ENOENT:
            return f"{what}: {err.strerror}"
    return None


def _check_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    if directory.is_file() and directory.suffix in PICKLE_SUFFIXES:
        raise ModelFileError(
            "a pickle file: pickle files can run arbitrary code when loaded, so nerbilstm never unpickles; "
            "give a model directory (model.safetensors + config.json)", path=directory)
    if directory.is_file():
        raise ModelFileError("is a file, not a model directory (model.safetensors + config.json)", path=directory)
    raise ModelFileError(_unusable(directory, "model directory") or "model directory not found", path=directory)


def _parse_config(directory: Path) -> dict:
    cfg_path = directory / CONFIG
    if not cfg_path.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelFileError(
                f"holds {', '.join(pickles)} but no {CONFIG}: pickle files can run arbitrary code when "
                "loaded, so nerbilstm never unpickles; it reads only safetensors + JSON model directories",
                path=directory)
        raise ModelFileError(_unusable(cfg_path, CONFIG) or f"missing {CONFIG}", path=directory)
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        line = getattr(err, "lineno", None)
        raise ModelFileError(f"not valid JSON ({err.__class__.__name__}: {getattr(err, 'msg', err)})",
                             path=cfg_path, line=line) from None
    except OSError as err:
        raise ModelFileError(f"cannot read: {err.strerror}", path=cfg_path) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise ModelFileError(f"not a {FORMAT_NAME} model config (no \"format\": \"{FORMAT_NAME}\")", path=cfg_path)
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"format_version {version!r} is not a format version (1, 2, ...)", path=cfg_path)
    if version > FORMAT_VERSION:
        raise ModelFileError(f"format version {version!r} is newer than this nerbilstm reads "
                             f"({FORMAT_VERSION}); upgrade nerbilstm", path=cfg_path)
    return config


def _check_config_checksum(config: dict, cfg_path: Path) -> None:
    recorded = config.get(CONFIG_CHECKSUM)
    if not isinstance(recorded, str):
        raise ModelFileError(f"no {CONFIG_CHECKSUM}: the checksum of the labels, vocabulary and architecture is "
                             "missing, so an edit would go unnoticed; a missing checksum is an error", path=cfg_path)
    if config_checksum(config) != recorded:
        raise ModelFileError(f"content differs from its checksum ({CONFIG_CHECKSUM}): config.json was edited "
                             "after the model was saved (labels, vocabulary, architecture or another field)",
                             path=cfg_path)


def read_config(directory: str | Path, old_formats: bool = False, accept_edits: bool = False) -> dict:
    """Read and check ``config.json`` of a model directory: format, version, its own checksum,
    and that it records the weights' checksum.

    old_formats: read a format 1 config (no checksum of its own) instead of refusing it;
    accept_edits: skip the config's own checksum (both for ``upgrade``, which re-seals)."""
    directory = Path(directory)
    _check_directory(directory)
    config = _parse_config(directory)
    cfg_path = directory / CONFIG
    if config["format_version"] < FORMAT_VERSION and not old_formats:
        raise ModelFileError(
            f"format version {config['format_version']}: its config.json carries no checksum of its own, so "
            f"edited labels, vocabulary or architecture would go unnoticed; if you trust this directory, "
            f"re-save it with: {UPGRADE_COMMAND} {directory}", path=cfg_path)
    if config["format_version"] >= 2 and not accept_edits:
        _check_config_checksum(config, cfg_path)
    if not isinstance(config.get("weights_sha256"), str):
        raise ModelFileError(f"no weights_sha256: the checksum of {WEIGHTS} is missing, so its weights cannot "
                             "be checked; a missing checksum is an error", path=cfg_path)
    return config


def verify_weights(directory: str | Path, config: dict, name: str = WEIGHTS) -> Path:
    """-> the path of the weights file, after checking it is the file the config was written with
    (its sha256 is ``config["weights_sha256"]``; a missing checksum is an error)."""
    path = Path(directory) / name
    if not path.is_file():
        raise ModelFileError(_unusable(path, name) or f"missing {name}", path=directory)
    expected = config.get("weights_sha256")
    if not isinstance(expected, str):
        raise ModelFileError("no sha256 recorded for this file, so it cannot be checked; "
                             "a missing checksum is an error", path=path)
    if sha256_file(path) != expected:
        raise ModelFileError("checksum differs from the one in config.json: the file is truncated, "
                             "edited or from another model", path=path)
    return path


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, read from its header: no tensor is
    allocated (the header is JSON at the start of the file; safetensors caps its size)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"cannot read safetensors: {err}", path=path) from None


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"cannot read safetensors: {err}", path=path) from None


def read_weights(directory: str | Path, config: dict, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors``, after checking it is the file the config was written with."""
    return load_tensors(verify_weights(directory, config, name))


def upgrade_model_dir(directory: str | Path, accept_edits: bool = False,
                      check: Callable[[dict, dict[str, tuple[int, ...]]], None] | None = None) -> bool:
    """Re-seal a model directory whose files you trust in the current format: its config.json is
    rewritten (atomically) with format_version and ``config_sha256``; the weights file is left
    as it is, byte for byte, and must still match the ``weights_sha256`` the config records.

    A format 1 directory is upgraded; a current one only with accept_edits (a config.json
    edited on purpose), else nothing is written. ``check(config, tensor_shapes)`` may refuse
    (raise) before anything is written. -> whether config.json was rewritten."""
    directory = Path(directory)
    config = read_config(directory, old_formats=True, accept_edits=accept_edits)
    sealed = seal_config(config, config["weights_sha256"])
    if config["format_version"] == FORMAT_VERSION and config.get(CONFIG_CHECKSUM) == sealed[CONFIG_CHECKSUM]:
        return False
    weights = verify_weights(directory, config)
    if check is not None:
        check(dict(sealed, _path=str(directory / CONFIG)), tensor_shapes(weights))
    atomic_write_json(directory / CONFIG, sealed)
    return True
