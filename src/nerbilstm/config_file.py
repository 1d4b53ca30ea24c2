"""The training config file (TOML): read, check, merge with the command line, and write.

A file holds the ``nerbilstm train`` options as keys under ``[data]``, ``[model]`` and
``[train]``, named as the fields of DataConfig, ModelConfig and TrainConfig (``--hidden-size``
is ``hidden_size`` under ``[model]``). The run flags (--out, --overwrite, --resume, --init-from,
--no-plots, --no-progress, --distributed) are flags only, so one file can be run into several
directories. Paths are relative to the file's folder, both as read and as written. A key
without a value (None: the default, e.g. no dev file) is written commented out.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import tomllib
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from nerbilstm.config import PRESETS, DataConfig, ModelConfig, TrainConfig
from nerbilstm.errors import NerError

TABLES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
SKIP = {"model": ("word_dim",)}  # set from the pretrained vectors, as it has no flag
PATH_KEYS = ("data", "dev_data", "test_data", "embeddings", "tensorboard")
NOT_PATHS = ("glove-6b-50d",)  # embeddings: the GloVe package is a name, not a file
TYPES = {"int": int, "float": float, "str": str, "bool": bool}
HEADER = ("# nerbilstm train configuration: nerbilstm train --config FILE (flags given with it win).\n"
          "# Paths are relative to this file's folder; a commented-out key keeps its default.\n")


class ConfigFileError(NerError):
    """A config file that cannot be used: bad TOML, an unknown key, a value of the wrong type."""


def keys(table: str) -> list:
    """The dataclass fields a table takes, in declaration order."""
    return [f for f in fields(TABLES[table]) if f.name not in SKIP.get(table, ())]


def _kind(f) -> type:
    """The Python type a field's values have (``int | None`` -> int)."""
    if f.metadata.get("kind") or isinstance(f.type, type):
        return f.metadata.get("kind") or f.type
    return TYPES[str(f.type).split("|")[0].strip()]


def read_config(path: str | Path) -> dict:
    """The file's values as {field name: value}, paths made absolute against its folder.
    Raises ConfigFileError (one line, naming the file and the key) for anything unusable."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as err:
        raise ConfigFileError(f"cannot read the config file: {err.strerror}", path=path) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(f"not valid TOML: {err}", path=path) from None
    except UnicodeDecodeError as err:
        raise ConfigFileError(f"not UTF-8 text, as TOML must be (byte {err.start})", path=path) from None
    values = {}
    for table, content in raw.items():
        if not isinstance(content, dict) and _misplaced("", table):
            raise ConfigFileError(_misplaced("", table) + " (keys go under a table)", path=path)
        if table not in TABLES:
            raise ConfigFileError(_unknown(f"[{table}]", table, list(TABLES), "[%s]"), path=path)
        if not isinstance(content, dict):
            raise ConfigFileError(f"{table} must be a table ([{table}]), not a value", path=path)
        known = {f.name: f for f in keys(table)}
        for key, value in content.items():
            if key not in known:
                raise ConfigFileError(_misplaced(table, key) or _unknown(f"[{table}] {key}", key, list(known)),
                                      path=path)
            values[key] = _checked(known[key], table, value, path)
    for key in PATH_KEYS:
        if isinstance(values.get(key), str) and values[key] not in NOT_PATHS:
            values[key] = str((path.parent / os.path.expanduser(values[key])).resolve())
    return values


def _unknown(what: str, name: str, valid: list, form: str = "%s") -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean {form % close[0]}?" if close else "valid: " + ", ".join(form % v for v in valid)
    return f"unknown key {what}; {hint}"


def _misplaced(table: str, key: str) -> str | None:
    for other in TABLES:
        if other != table and key in {f.name for f in keys(other)}:
            return f"key {key} belongs under [{other}]" + (f", not [{table}]" if table else "")
    return None


def _checked(f, table: str, value, path: Path):
    """``value`` if it has the field's type (an int is a float too), else ConfigFileError."""
    kind = _kind(f)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigFileError(f"[{table}] {f.name} must be {_article(kind)}, got {_toml(value)}", path=path)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigFileError(f"[{table}] {f.name} must be one of {', '.join(choices)}; got {_toml(value)}",
                              path=path)
    return value


def _article(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]


def merge(args: argparse.Namespace, add_train_parser, argv: list) -> argparse.Namespace:
    """``args`` of ``nerbilstm train`` with the values of ``args.config`` wherever no flag was given:
    defaults < the file < the command line. ``add_train_parser(sub)`` declares train's flags (as
    cli.py does); ``argv`` the whole command line (its part after ``train`` is train's)."""
    given = explicit_flags(add_train_parser, argv[argv.index("train") + 1:])
    for name, value in read_config(args.config).items():
        if name not in given:
            setattr(args, name, value)
    return args


def explicit_flags(add_train_parser, argv: list) -> set:
    """The dests of the flags ``argv`` gives: parsed by train's own parser into a namespace that
    holds a marker for each (argparse leaves it where no flag sets it), so a flag given with its
    default value still counts, and abbreviations are understood."""
    made = []

    class Sub:
        def add_parser(self, name, help=None, **kwargs):
            made.append(argparse.ArgumentParser(prog=name, **kwargs))
            return made[-1]

    add_train_parser(Sub())
    unset = object()
    names = [f.name for cls in TABLES.values() for f in fields(cls)]
    given = made[0].parse_known_args(argv, argparse.Namespace(**{name: unset for name in names}))[0]
    return {name for name in names if getattr(given, name) is not unset}


# ----------------------------------------------------------------------------- writing


def _toml(value) -> str:
    """A TOML value: str, int, float or bool."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def render(configs: dict, folder: str | Path | None = None, comments: bool = False, note: str = "") -> str:
    """The TOML text of ``configs`` ({table: {field: value}}); paths written relative to
    ``folder`` (the file's); None values commented out; ``comments``: each key's help above it."""
    lines = [(HEADER + note).rstrip("\n")]
    for table in TABLES:
        lines.append(f"\n[{table}]")
        if table not in configs:
            lines.append("# not recorded (trained through the Python API)")
            continue
        for f in keys(table):
            value = configs[table].get(f.name, f.default if f.default is not MISSING else None)
            if comments:
                lines += ["", "# " + f.metadata.get("help", "")]
            if value is None:
                lines.append(f"# {f.name} = ...")
                continue
            if f.name in PATH_KEYS and folder is not None and str(value) not in NOT_PATHS:
                value = _relative(value, folder)
            lines.append(f"{f.name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _relative(value: str, folder: str | Path) -> str:
    target = Path(value).expanduser().resolve()
    try:
        return Path(os.path.relpath(target, Path(folder).resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(target)


def write_config(path: str | Path, configs: dict, comments: bool = False, note: str = "") -> Path:
    """Write ``configs`` (see render) as TOML to ``path`` atomically. -> the path."""
    from nerbilstm.io import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, render(configs, path.parent, comments, note).encode("utf-8"))
    return path


def write_defaults(path: str | Path, optimize: str = "efficiency") -> Path:
    """``nerbilstm init-config``: every key at its default (the model's as the preset ``optimize``
    of PRESETS sets it), with its help text as a comment. An existing file is left alone
    (ConfigFileError)."""
    if Path(path).exists():
        raise ConfigFileError("exists already: remove it or name another file with --out", path=path)
    configs = {table: asdict(cls()) for table, cls in TABLES.items()}
    configs["model"].update(PRESETS[optimize])
    note = f"# --optimize {optimize}: " + (", ".join(f"{k} = {v}" for k, v in PRESETS[optimize].items())
                                           or "the defaults") + "\n"
    return write_config(path, configs, comments=True, note=note)


def run_configs(data: DataConfig | dict | None, model: ModelConfig | dict, train: TrainConfig | dict) -> dict:
    """{table: {field: value}} of a run's effective configuration (``data`` None: not recorded)."""
    def as_dict(c):
        return dict(c) if isinstance(c, dict) else asdict(c)

    out = {"model": as_dict(model), "train": as_dict(train)}
    if data is not None:
        out["data"] = as_dict(data)
    return out
