"""train.py's steps: weight averaging, building the tagger (fresh or --init-from), and the
config checks as the command line reports them (flags) and as Python sees them (fields)."""

import copy
from dataclasses import fields

import numpy as np
import pytest
import torch

from nerbilstm.cli import main
from nerbilstm.config import ConfigError, ModelConfig, TrainConfig
from nerbilstm.data.readers import write_gmb_csv
from nerbilstm.data.sources import scan
from nerbilstm.errors import NerError
from nerbilstm.train import build_tagger, inherit_architecture, running_average

from synthetic import synthetic_sentences

pytestmark = pytest.mark.usefixtures("one_thread")


def test_running_average_is_the_mean():
    states = [{"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}, {"w": torch.tensor([3.0, 0.0]), "n": torch.tensor(4)},
              {"w": torch.tensor([5.0, 1.0]), "n": torch.tensor(5)}]
    average = None
    for count, state in enumerate(states, 1):
        average = running_average(average, state, count)
    assert torch.allclose(average["w"], torch.tensor([3.0, 1.0]))
    assert int(average["n"]) == 5  # integers are not averaged: the latest value
    assert torch.equal(states[0]["w"], torch.tensor([1.0, 2.0]))  # inputs untouched


class SixDimTable:
    """A stand-in pretrained table: 6 dims, every word found."""

    dim = 6
    source, checksum = "test", "none"

    def vectors_for(self, words):
        rng = np.random.default_rng(0)
        return rng.normal(size=(len(words), 6)).astype(np.float32), np.ones(len(words), bool)


def test_build_tagger_does_not_mutate_the_config():
    sents = synthetic_sentences(20, seed=4)
    vocab = scan(sents).vocab
    config = ModelConfig(hidden_size=5, char_dim=0, case_dim=0)
    before = copy.deepcopy(config)
    model, _, used = build_tagger(sents, vocab, config, TrainConfig(), SixDimTable(), None)
    assert config == before and config.word_dim == 50
    assert used.word_dim == 6 and model.config is used and model.word_embed.weight.shape[1] == 6


def test_inherit_architecture_keeps_the_model_and_takes_the_decoder():
    base = ModelConfig(word_dim=6, hidden_size=8, layers=2, char_dim=0, dropout=0.3)
    got = inherit_architecture(base, ModelConfig(decoder="softmax", lstm_backend="torch", constrained=False), "m")
    assert got == ModelConfig(word_dim=6, hidden_size=8, layers=2, char_dim=0, dropout=0.3, decoder="softmax",
                              lstm_backend="torch", constrained=False)
    assert base.decoder == "crf"  # the loaded model's config is left alone
    # A given value equal to the model's is no conflict.
    assert inherit_architecture(base, ModelConfig(hidden_size=8, layers=2), "m") == base


@pytest.mark.parametrize("field,value", [("hidden_size", 16), ("layers", 3), ("char_dim", 10), ("char_filters", 7),
                                         ("char_kernel", 5), ("case_dim", 3), ("dropout", 0.1), ("word_dim", 100)])
def test_inherit_architecture_refuses_a_differing_architecture(field, value):
    base = ModelConfig(word_dim=6, hidden_size=8, layers=2, char_dim=0, char_filters=4, char_kernel=3, case_dim=2,
                       dropout=0.3)
    with pytest.raises(ConfigError) as info:
        inherit_architecture(base, ModelConfig(**{field: value}), "runs/a")
    err = info.value
    assert isinstance(err, NerError) and isinstance(err, ValueError)
    assert str(err).startswith(f"{field} {value} differs from the model of init_from (runs/a), which has "
                               f"{getattr(base, field)};")
    flag = "--" + field.replace("_", "-")
    assert err.describe(lambda f: "--" + f.replace("_", "-")).startswith(f"{flag} {value} differs from the model "
                                                                         f"of --init-from (runs/a)")


@pytest.mark.parametrize("config,message", [
    (TrainConfig(epochs=0), "epochs must be at least 1, got 0"),
    (TrainConfig(batch_size=0), "batch_size must be at least 1, got 0"),
    (TrainConfig(word_dropout=2.0), "word_dropout must be in [0, 1], got 2.0"),
    (TrainConfig(amp="fp8"), "amp must be none or bf16, got 'fp8'"),
    (TrainConfig(checkpoint_every=-1), "stream_chunk, checkpoint_every and average_from must be >= 0"),
    (ModelConfig(layers=0), "hidden_size and layers must be positive"),
    (ModelConfig(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
    (ModelConfig(decoder="hmm"), "decoder must be 'crf' or 'softmax', got 'hmm'"),
    (ModelConfig(char_kernel=0), "char_kernel must be an odd width (1, 3, 5, ...), got 0"),
])
def test_validate_names_fields(config, message):
    with pytest.raises(ValueError) as info:
        config.validate()
    assert str(info.value) == message


# ---- through the command line


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_gmb_csv(synthetic_sentences(40, seed=1), root / "tiny.csv")
    words = sorted({w.lower() for s in synthetic_sentences(40, 1) for w in s.tokens})
    rng = np.random.default_rng(0)
    with open(root / "emb.txt", "w", encoding="utf-8") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=4)) + "\n")
    return root


@pytest.fixture(scope="module")
def tiny(root):
    return ["--data", str(root / "tiny.csv"), "--epochs", "1", "--hidden-size", "4", "--layers", "1", "--char-dim",
            "4", "--char-filters", "4", "--case-dim", "2", "--batch-size", "16", "--threads", "1", "--no-plots",
            "--no-progress", "--embeddings", str(root / "emb.txt"), "--seed", "3"]


@pytest.fixture(scope="module")
def model_dir(root, tiny):
    assert main(["train", *tiny, "--out", str(root / "model")]) == 0
    return root / "model"


def error_lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("flags,message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--patience", "0"], "--patience must be at least 1, got 0"),
    (["--word-dropout", "2"], "--word-dropout must be in [0, 1], got 2.0"),
    (["--min-gain", "-0.1"], "--min-gain must be in [0, 1), got -0.1"),
    (["--repeat-threshold", "1.5"], "--repeat-threshold must be in [0, 1], got 1.5"),
    (["--stream-chunk", "-1"], "--stream-chunk, --checkpoint-every and --average-from must be >= 0"),
    (["--hidden-size", "0"], "--hidden-size and --layers must be positive"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--char-kernel", "4"], "--char-kernel must be an odd width (1, 3, 5, ...), got 4"),
    (["--amp", "bf16", "--device", "cpu"], "--amp bf16 needs a CUDA device (--device cuda)"),
])
def test_config_errors_name_the_flags(tmp_path, capsys, tiny, flags, message):
    assert main(["train", *tiny, "--out", str(tmp_path / "out"), *flags]) == 2
    assert error_lines(capsys) == [f"nerbilstm train: error: {message}"]
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("flags,message,field_message", [
    (["--class-weighting", "inverse"], "argument --class-weighting: invalid choice: 'inverse' (choose from "
     "'balanced', 'none')", "class_weighting must be balanced or none, got 'inverse'"),
    (["--lstm-backend", "cudnn"], "argument --lstm-backend: invalid choice: 'cudnn' (choose from 'ours', 'torch')",
     "lstm_backend must be 'ours' or 'torch', got 'cudnn'"),
])
def test_flags_with_choices_list_them(tmp_path, capsys, tiny, flags, message, field_message):
    """The parser refuses a value outside a flag's choices (and --help lists them); from Python,
    validate() says the same of the field."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *tiny, "--out", str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2 and error_lines(capsys)[-1].endswith(message)
    name, value = flags[0][2:].replace("-", "_"), flags[1]
    config = (TrainConfig if name in {f.name for f in fields(TrainConfig)} else ModelConfig)(**{name: value})
    with pytest.raises(ValueError) as err:
        config.validate()
    assert str(err.value) == field_message


def test_init_from_with_a_differing_architecture_flag_is_an_error(tmp_path, capsys, tiny, model_dir):
    # The last --hidden-size wins: 6, where the model has 4.
    assert main(["train", *tiny, "--hidden-size", "6", "--init-from", str(model_dir), "--out", str(tmp_path / "out")]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert lines[0] == (f"nerbilstm train: error: --hidden-size 6 differs from the model of --init-from "
                        f"({model_dir}), which has 4; only --decoder, --lstm-backend and --constrained can change")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_init_from_changes_the_decoder_and_keeps_the_architecture(tmp_path, capsys, root, model_dir):
    from nerbilstm.predict import Tagger

    out = tmp_path / "softmax"
    # No architecture flags: every field comes from the model, the decoder from --decoder.
    assert main(["train", "--data", str(root / "tiny.csv"), "--epochs", "1", "--threads", "1", "--no-plots",
                 "--no-progress", "--embeddings", str(root / "emb.txt"), "--init-from", str(model_dir),
                 "--decoder", "softmax", "--out", str(out)]) == 0
    base, tuned = Tagger.load(model_dir).model.config, Tagger.load(out).model.config
    assert tuned.decoder == "softmax" and tuned.hidden_size == base.hidden_size == 4
    assert (tuned.char_dim, tuned.case_dim, tuned.word_dim) == (base.char_dim, base.case_dim, base.word_dim)


def test_training_from_python_logs_progress_without_logging_configured(tmp_path):
    """A script that calls train() and configures no logging still sees each epoch on stderr, as
    the CLI shows it (the nerbilstm logger gets a stderr handler only where none is configured)."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from synthetic import synthetic_sentences, write_tiny_vectors
        from nerbilstm.config import ModelConfig, TrainConfig
        from nerbilstm.train import train
        sents = synthetic_sentences(40, seed=1)
        write_tiny_vectors(sents, {str(tmp_path / 'emb.txt')!r})
        train(sents[:30], sents[30:], ModelConfig(hidden_size=4, char_dim=4, char_filters=4, case_dim=2),
              TrainConfig(epochs=2, batch_size=16, threads=1, embeddings={str(tmp_path / 'emb.txt')!r}),
              {str(tmp_path / 'run')!r}, plots=False, progress=False)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "INFO nerbilstm.train: epoch 1: loss" in run.stderr and "epoch 2: loss" in run.stderr


@pytest.mark.parametrize("min_gain, stale_after, best_epoch", [
    (0.0, [0, 0, 0, 1, 0, 1, 0], 7),      # every new best resets the count
    (0.001, [0, 0, 1, 2, 0, 1, 2], 7),    # gains of 0.0005 do not, yet the best epoch is kept
])
def test_min_gain_resets_patience_only_on_a_real_gain(min_gain, stale_after, best_epoch):
    from types import SimpleNamespace

    import torch

    from nerbilstm.config import TrainConfig
    from nerbilstm.train import Progress, keep_best

    model = torch.nn.Linear(1, 1)
    run = SimpleNamespace(progress=Progress(), cfg=TrainConfig(min_gain=min_gain, patience=5), model=model,
                          best_state=None)
    seen = []
    for epoch, f1 in enumerate([0.80, 0.81, 0.8105, 0.8100, 0.8130, 0.8125, 0.8135], start=1):
        run.progress.epoch = epoch
        with torch.no_grad():
            model.bias.fill_(epoch)
        keep_best(run, f1)
        seen.append(run.progress.stale)
    assert seen == stale_after
    assert run.progress.best_epoch == best_epoch and run.progress.best_f1 == 0.8135
    assert float(run.best_state["bias"]) == best_epoch
