"""io.py: model directories (safetensors + JSON), atomic writes and checksums."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from nerbilstm.config import ModelConfig
from nerbilstm.errors import ModelFileError
from nerbilstm.io import (CONFIG, CONFIG_CHECKSUM, FORMAT_VERSION, WEIGHTS, atomic_write_bytes, atomic_write_json,
                          config_checksum, finite_json, read_config, read_weights, save_model_dir, seal_config,
                          sha256_file, tensor_shapes, upgrade_model_dir, verify_weights)
from nerbilstm.model.tagger import BiLSTMTagger, parameter_shapes


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


# --------------------------------------------------------------------------- format 2: checksums, shapes


def _saved(tmp_path, config=None):
    d = tmp_path / "m"
    save_model_dir(d, {"w": torch.zeros(2, 3)}, config or {"labels": ["O", "B-x"], "model": {"hidden_size": 4}})
    return d


def _rewrite(d, fn):
    config = json.loads((d / CONFIG).read_text())
    fn(config)
    (d / CONFIG).write_text(json.dumps(config))


def test_config_checksum_covers_content_not_layout(tmp_path):
    d = _saved(tmp_path)
    config = json.loads((d / CONFIG).read_text())
    assert config[CONFIG_CHECKSUM] == config_checksum(config) and config["format_version"] == 2
    # reformatted, keys in another order: same content, same checksum
    (d / CONFIG).write_text(json.dumps(dict(reversed(list(config.items()))), indent=4, sort_keys=True))
    assert read_config(d)["labels"] == ["O", "B-x"]
    for edit in (lambda c: c["labels"].reverse(), lambda c: c["model"].__setitem__("hidden_size", 5),
                 lambda c: c.__setitem__("extra", 1), lambda c: c.pop("labels")):
        changed = json.loads(json.dumps(config))
        edit(changed)
        assert config_checksum(changed) != config[CONFIG_CHECKSUM]


def test_seal_config_checksums_what_a_reader_parses(tmp_path):
    sealed = seal_config({"t": (1, 2), "d": {2: "a", 10: "b"}, "_path": "x"}, "abc")
    parsed = json.loads(json.dumps(sealed))
    assert config_checksum(parsed) == sealed[CONFIG_CHECKSUM] and "_path" not in sealed
    assert sealed["weights_sha256"] == "abc" and sealed["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["labels"].reverse(), "content differs from its checksum"),
    (lambda c: c.pop(CONFIG_CHECKSUM), "no config_sha256"),
    (lambda c: c.pop("weights_sha256"), "content differs from its checksum"),
    (lambda c: (c.pop("weights_sha256"), c.__setitem__(CONFIG_CHECKSUM, config_checksum(c))), "no weights_sha256"),
    (lambda c: (c.pop(CONFIG_CHECKSUM), c.__setitem__("format_version", 1)), "nerbilstm upgrade --model"),
])
def test_missing_or_differing_checksums_are_errors(tmp_path, edit, needle):
    d = _saved(tmp_path)
    _rewrite(d, edit)
    with pytest.raises(ModelFileError, match=needle) as err:
        read_config(d)
    assert str(d / CONFIG) in str(err.value) and "\n" not in str(err.value)


def test_verify_weights_without_a_checksum_is_an_error(tmp_path):
    """Checkpoints call it with the sha256 of their state.json: a missing one is no longer a skip."""
    d = _saved(tmp_path)
    with pytest.raises(ModelFileError, match="no sha256 recorded"):
        verify_weights(d, {"weights_sha256": None})
    assert verify_weights(d, read_config(d)) == d / WEIGHTS


def test_upgrade_seals_format_1_and_keeps_the_weights(tmp_path):
    d = _saved(tmp_path)
    weights = (d / WEIGHTS).read_bytes()
    _rewrite(d, lambda c: (c.pop(CONFIG_CHECKSUM), c.__setitem__("format_version", 1)))
    with pytest.raises(ModelFileError, match="format version 1"):
        read_config(d)
    assert read_config(d, old_formats=True)["format_version"] == 1
    refused = []

    def check(config, shapes):
        refused.append((config["format_version"], shapes))
        raise ModelFileError("no")

    with pytest.raises(ModelFileError, match="no"):
        upgrade_model_dir(d, check=check)
    assert refused == [(2, {"w": (2, 3)})] and json.loads((d / CONFIG).read_text())["format_version"] == 1
    assert upgrade_model_dir(d) is True and upgrade_model_dir(d) is False
    assert read_config(d)["labels"] == ["O", "B-x"] and (d / WEIGHTS).read_bytes() == weights
    _rewrite(d, lambda c: c["labels"].append("I-x"))
    with pytest.raises(ModelFileError, match="content differs"):
        upgrade_model_dir(d)
    assert upgrade_model_dir(d, accept_edits=True) is True and read_config(d)["labels"][-1] == "I-x"


def test_tensor_shapes_read_the_header_only(tmp_path, monkeypatch):
    d = _saved(tmp_path, {})
    import nerbilstm.io as io_module

    monkeypatch.setattr(io_module, "load_file", lambda *a, **k: pytest.fail("tensors were loaded"))
    assert tensor_shapes(d / WEIGHTS) == {"w": (2, 3)}
    (d / WEIGHTS).write_bytes((2**40).to_bytes(8, "little") + b"{}")  # a header length past the end of the file
    with pytest.raises(ModelFileError, match="cannot read safetensors"):
        tensor_shapes(d / WEIGHTS)


@pytest.mark.parametrize("kwargs", [{}, {"decoder": "softmax"}, {"layers": 3, "hidden_size": 5},
                                    {"char_dim": 0}, {"case_dim": 0, "char_kernel": 5, "char_filters": 7},
                                    {"word_dim": 3, "char_dim": 0, "case_dim": 0, "layers": 2}])
def test_parameter_shapes_are_those_of_the_model(kwargs):
    config = ModelConfig(**kwargs)
    model = BiLSTMTagger(config, 11, 7, ["O", "B-a", "I-a"])
    actual = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert dict(parameter_shapes(config, 11, 7, 3)) == actual


def test_symlink_loops_are_named(tmp_path):
    d = _saved(tmp_path)
    (d / CONFIG).unlink()
    (d / CONFIG).symlink_to(d / CONFIG)
    with pytest.raises(ModelFileError, match="config.json is a symlink loop"):
        read_config(d)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ModelFileError, match="model directory is a symlink loop"):
        read_config(loop)
    (tmp_path / "w").symlink_to(tmp_path / "w")
    with pytest.raises(ModelFileError, match="w is a symlink loop"):
        verify_weights(tmp_path, {"weights_sha256": "x"}, name="w")
