"""The training config file (config_file.py): nerbilstm train --config, DIR/train.toml, init-config."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, fields

import pytest

from nerbilstm.cli import _add_train_parser, build_parser
from nerbilstm.config import DataConfig, ModelConfig, TrainConfig
from nerbilstm.config_file import ConfigFileError, merge, read_config, render

from synthetic import write_tiny_corpus

TINY = """\
[data]
data = "corpus.csv"
dev_data = "dev.conll"

[model]
hidden_size = 4
char_dim = 4
char_filters = 4
case_dim = 2

[train]
epochs = 2
batch_size = 16
threads = 1
seed = 3
embeddings = "emb.txt"
"""
RUN = ["--no-plots", "--no-progress"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("config_file")
    write_tiny_corpus(root)
    (root / "tiny.toml").write_text(TINY, encoding="utf-8")
    return root


def recipe(model_dir) -> dict:
    """What a run was: its model and training configs and the checksums of its data."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return {"model": config["model"], "training": {k: v for k, v in config["training"].items() if k != "embeddings"},
            "data": {split: part.get("sha256") for split, part in config["data"].items() if isinstance(part, dict)}}


def test_train_toml_repeats_the_run_from_another_folder(root, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the paths in the file are relative to its folder, not to here
    assert cli(["train", "--config", root / "tiny.toml", "--out", root / "runs" / "x", *RUN]).rc == 0
    x = root / "runs" / "x"
    written = (x / "train.toml").read_text(encoding="utf-8")
    assert 'data = "../../corpus.csv"' in written and 'dev_data = "../../dev.conll"' in written
    assert "# test_data = ..." in written  # None: commented out
    assert tomllib.loads(written)["model"]["hidden_size"] == 4
    assert cli(["train", "--config", x / "train.toml", "--out", root / "runs" / "y", *RUN]).rc == 0
    y = root / "runs" / "y"
    assert recipe(x) == recipe(y)
    assert recipe(x)["data"]["train"] and recipe(x)["data"]["dev"]
    assert (y / "train.toml").read_text(encoding="utf-8") == written  # same folder depth: same text
    assert read_config(x / "train.toml") == read_config(root / "tiny.toml") | {
        k: v for k, v in read_config(x / "train.toml").items() if k not in read_config(root / "tiny.toml")}
    example = json.loads((x / "config.json").read_text(encoding="utf-8"))["example"]
    assert isinstance(example, str) and example.split()[0]


def test_flags_override_the_file(root, tmp_path, cli):
    out = tmp_path / "m"
    run = cli(["train", "--config", root / "tiny.toml", "--seed", "13", "--epochs", "1", "--out", out, *RUN])
    assert run.rc == 0, run.err
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["seed"] == 13 and config["training"]["epochs"] == 1  # the flags
    assert config["model"]["hidden_size"] == 4 and config["training"]["batch_size"] == 16  # the file
    assert tomllib.loads((out / "train.toml").read_text(encoding="utf-8"))["train"]["seed"] == 13


def merged(path, *argv):
    argv = ["train", "--config", str(path), *argv]
    return merge(build_parser().parse_args(argv), _add_train_parser, argv)


def test_order_defaults_then_file_then_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nseed = 5\nepochs = 30\nlr = 1\n[model]\nhidden_size = 6\nconstrained = false\n'
                    '[data]\nformat = "conll"\n', encoding="utf-8")
    args = merged(path, "--seed", "13", "--hidden", "8", "--constrained")  # 13: the default, given on purpose
    assert (args.seed, args.hidden_size, args.constrained) == (13, 8, True)  # flags (an abbreviation too)
    assert (args.epochs, args.lr, args.format) == (30, 1.0, "conll") and isinstance(args.lr, float)  # the file
    assert (args.batch_size, args.layers) == (TrainConfig().batch_size, ModelConfig().layers)  # defaults
    args = merged(path, "--no-constrained", "--format", "gmb")
    assert args.constrained is False and args.format == "gmb"


@pytest.mark.parametrize("text, words", [
    ("[model]\nhiden_size = 4\n", ("hiden_size", "did you mean hidden_size")),
    ("[train]\nhidden_size = 4\n", ("hidden_size", "belongs under [model]")),
    ("[trian]\nepochs = 4\n", ("[trian]", "did you mean [train]")),
    ("[train]\nepochs = \"ten\"\n", ("[train] epochs", "an integer", '"ten"')),
    ("[train]\nepochs = 2.5\n", ("[train] epochs", "an integer")),
    ("[train]\nlr = true\n", ("[train] lr", "a number")),
    ("[model]\nconstrained = 1\n", ("[model] constrained", "true or false")),
    ("[model]\ndecoder = \"hmm\"\n", ("[model] decoder", "crf, softmax")),
    ("[data]\ndata = 3\n", ("[data] data", "a string")),
    ("[train]\nepochs = 2\nepochs = 3\n", ("not valid TOML", "line 3")),
    ("epochs = 2\n", ("epochs", "belongs under [train]")),
    ("[data]\ndata = \"c.csv\"\n[data.x]\n", ("[data] x", "unknown key")),
])
def test_a_bad_file_is_one_line_naming_the_key(tmp_path, cli, text, words):
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError) as err:
        read_config(path)
    for word in words:
        assert word in str(err.value)
    run = cli(["train", "--config", path, "--out", tmp_path / "m"])
    assert run.rc == 2 and len(run.err.strip().splitlines()) == 1 and str(path) in run.err
    assert not (tmp_path / "m").exists()


def test_a_missing_file_is_an_error(tmp_path, cli):
    run = cli(["train", "--config", tmp_path / "none.toml", "--out", tmp_path / "m"])
    assert run.rc == 2 and "none.toml" in run.err and "cannot read" in run.err
    (tmp_path / "latin1.toml").write_bytes('[data]\ntype_map = "Café=X"\n'.encode("latin-1"))
    run = cli(["train", "--config", tmp_path / "latin1.toml", "--out", tmp_path / "m"])
    assert run.rc == 2 and "not UTF-8" in run.err and len(run.err.strip().splitlines()) == 1


def test_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    path = tmp_path / "a" / "b" / "run.toml"
    path.write_text('[data]\ndata = "../c.csv"\ntest_data = "/abs/t.conll"\n'
                    '[train]\nembeddings = "glove-6b-50d"\ntensorboard = "tb"\n', encoding="utf-8")
    values = read_config(path)
    assert values["data"] == str((tmp_path / "a" / "c.csv").resolve())
    assert values["test_data"] == "/abs/t.conll"
    assert values["embeddings"] == "glove-6b-50d"  # the package: a name, not a path
    assert values["tensorboard"] == str((tmp_path / "a" / "b" / "tb").resolve())
    text = render({"data": {"data": values["data"]}, "model": {}, "train": {"tensorboard": values["tensorboard"]}},
                  folder=tmp_path / "a" / "b")
    assert 'data = "../c.csv"' in text and 'tensorboard = "tb"' in text


def test_strings_survive_the_writer(tmp_path):
    odd = 'a "quoted" \\ back\tslash ünï \x7f\x01 end'
    path = tmp_path / "run.toml"
    path.write_text(render({"data": {"type_map": odd}, "model": {}, "train": {"lr": 1e-5}}), encoding="utf-8")
    values = read_config(path)
    assert values["type_map"] == odd and values["lr"] == 1e-5


def test_init_config_writes_every_default_with_its_help(tmp_path, cli):
    out = tmp_path / "run.toml"
    assert cli(["init-config", "--out", out]).rc == 0
    text = out.read_text(encoding="utf-8")
    values = read_config(out)
    for cls in (DataConfig, ModelConfig, TrainConfig):
        for f in fields(cls):
            if f.name == "word_dim":
                assert f.name not in text
                continue
            assert f.metadata["help"] in text
            default = asdict(cls())[f.name]
            assert values.get(f.name) == default
            assert (f"# {f.name} = ..." in text) == (default is None)
    run = cli(["init-config", "--out", out])  # never over an existing file
    assert run.rc == 2 and "exists already" in run.err and out.read_text(encoding="utf-8") == text


def test_init_config_optimize_accuracy_sets_the_preset_and_nothing_else(tmp_path, cli):
    plain, accurate = tmp_path / "efficiency.toml", tmp_path / "accuracy.toml"
    assert cli(["init-config", "--out", plain]).rc == 0
    run = cli(["init-config", "--optimize", "accuracy", "--out", accurate])
    assert run.rc == 0 and "defaults (accuracy) written to" in run.out
    got, defaults = read_config(accurate), read_config(plain)
    assert {k: v for k, v in got.items() if defaults.get(k) != v} == {"layers": 2, "hidden_size": 256}
    assert "# --optimize accuracy: layers = 2, hidden_size = 256" in accurate.read_text(encoding="utf-8")
    assert "# --optimize efficiency: the defaults" in plain.read_text(encoding="utf-8")
    with pytest.raises(SystemExit):  # argparse: not a preset
        cli(["init-config", "--optimize", "fast", "--out", tmp_path / "x.toml"])
