"""io.py: model directories (safetensors + JSON), atomic writes and checksums."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from nerbilstm.errors import ModelFileError
from nerbilstm.io import (CONFIG, FORMAT_VERSION, WEIGHTS, atomic_write_bytes, atomic_write_json, finite_json,
                          read_config, read_weights, save_model_dir, sha256_file)


def test_sha256_file_equals_hashlib(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk=1000) == hashlib.sha256(data).hexdigest()


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})

    class Boom:
        def __len__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, Boom())  # the write itself fails
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_finite_json_replaces_nan_and_infinities():
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": "x", "e": (2, 3.5)}
    assert finite_json(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": "x", "e": [2, 3.5]}


def test_model_directory_round_trip(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2])}
    save_model_dir(tmp_path / "m", state, {"labels": ["O"]})
    config = read_config(tmp_path / "m")
    assert config["format_version"] == FORMAT_VERSION and config["labels"] == ["O"]
    assert config["weights_sha256"] == sha256_file(tmp_path / "m" / WEIGHTS)
    loaded = read_weights(tmp_path / "m", config)
    assert set(loaded) == {"w", "b"} and all(torch.equal(loaded[k], state[k]) for k in state)


def test_weights_that_differ_from_the_config_are_refused(tmp_path):
    save_model_dir(tmp_path, {"w": torch.zeros(4)}, {})
    config = read_config(tmp_path)
    raw = bytearray((tmp_path / WEIGHTS).read_bytes())
    raw[-1] ^= 1  # flip a data byte: still a readable file
    (tmp_path / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum differs"):
        read_weights(tmp_path, config)


@pytest.mark.parametrize("content, needle", [("{", "not valid JSON"), ('{"format": "other"}', "not a nerbilstm"),
                                             ('{"format": "nerbilstm", "format_version": 99}', "newer"),
                                             ('{"format": "nerbilstm", "format_version": "1"}', "not a format")])
def test_bad_config_is_a_one_line_error(tmp_path, content, needle):
    (tmp_path / CONFIG).write_text(content)
    with pytest.raises(ModelFileError, match=needle) as err:
        read_config(tmp_path)
    assert "\n" not in str(err.value)


def test_pickle_file_is_refused_without_being_opened(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not even a pickle")
    with pytest.raises(ModelFileError, match="never unpickles"):
        read_config(path)
    with pytest.raises(ModelFileError, match="not found"):
        read_config(tmp_path / "missing")
