"""--tensorboard DIR (extra ``tensorboard``): the event files, read back with TensorBoard's own
reader, hold every per-epoch scalar of train_log.jsonl and the final hparams; rank 0 alone
writes them; without the package the flag is a one-line error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from nerbilstm.cli import main
from nerbilstm.config import ModelConfig, TrainConfig
from nerbilstm.data.readers import write_gmb_csv
from nerbilstm.distributed import Context
from nerbilstm.tensorboard_log import SCALARS
from nerbilstm.train import train

from synthetic import synthetic_sentences

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(hidden_size=4, char_dim=4, char_filters=4, case_dim=2)


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    path = tmp_path_factory.mktemp("tb") / "emb.txt"
    words = sorted({w.lower() for s in synthetic_sentences(80, 1) for w in s.tokens})
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=4)) + "\n")
    return str(path)


def read_events(directory):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
    events = accumulator.EventAccumulator(str(directory), size_guidance={accumulator.SCALARS: 0})
    events.Reload()
    return events


def test_event_files_hold_every_scalar_and_the_hparams(tmp_path, embeddings):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    sents = synthetic_sentences(80, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=16, threads=1, seed=3, embeddings=embeddings, average_from=3,
                      tensorboard=str(tmp_path / "tb"))
    metrics = train(sents[:60], sents[60:70], ModelConfig(**SMALL), cfg, tmp_path / "run", test_sents=sents[70:],
                    progress=False, plots=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3

    events = read_events(tmp_path / "tb")
    tags = set(events.Tags()["scalars"])
    for key, tag in SCALARS.items():
        present = [r for r in log if key in r]
        if present:
            assert tag in tags, tag
            got = [(e.step, e.value) for e in events.Scalars(tag)]
            assert [s for s, _ in got] == [r["epoch"] for r in present]
            assert [v for _, v in got] == pytest.approx([r[key] for r in present], rel=1e-6), tag
    for tag in ("train/loss", "train/lr", "train/tokens_per_s", "dev/entity_f1", "dev/token_macro_f1",
                "dev/unaveraged_entity_f1"):
        assert tag in tags
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs == pytest.approx([cfg.lr * cfg.lr_decay ** k for k in (1, 2, 3)], rel=1e-6)

    for split in ("dev", "test"):
        for key in ("entity_f1", "token_macro_f1"):
            [final] = events.Scalars(f"final/{split}/{key}")
            assert final.value == pytest.approx(metrics[split][key], rel=1e-6)
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["training.epochs"].number_value == 3
    assert start.hparams["training.lr"].number_value == pytest.approx(cfg.lr)
    assert start.hparams["model.decoder"].string_value == "crf"
    assert start.hparams["model.hidden_size"].number_value == 4
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"final/dev/entity_f1", "final/test/entity_f1",
                                                             "final/best_epoch"}


def test_only_rank_0_writes(tmp_path, embeddings):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
    sents = synthetic_sentences(40, seed=1)
    cfg = TrainConfig(epochs=1, batch_size=16, threads=1, embeddings=embeddings, tensorboard=str(tmp_path / "tb"))
    out = tmp_path / "run"
    out.mkdir()
    assert train(sents[:30], sents[30:], ModelConfig(**SMALL), cfg, out, progress=False, plots=False,
                 ctx=Context(rank=1, world_size=1)) == {}
    assert not (tmp_path / "tb").exists()


def test_from_the_command_line(tmp_path, embeddings):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
    data = tmp_path / "tiny.csv"
    write_gmb_csv(synthetic_sentences(40, seed=1), data)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "2", "--hidden-size", "4",
                 "--char-dim", "4", "--char-filters", "4", "--batch-size", "16", "--threads", "1", "--no-plots",
                 "--no-progress", "--embeddings", embeddings, "--tensorboard", str(tmp_path / "tb")]) == 0
    events = read_events(tmp_path / "tb")
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert "final/best_epoch" in events.Tags()["scalars"]


def test_without_the_package_the_flag_is_a_one_line_error(tmp_path, embeddings, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    data = tmp_path / "tiny.csv"
    write_gmb_csv(synthetic_sentences(40, seed=1), data)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-plots",
                 "--no-progress", "--embeddings", embeddings, "--tensorboard", str(tmp_path / "tb")])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nerbilstm train: error: --tensorboard needs the tensorboard package: pip install 'nerbilstm[tensorboard]'"]
    assert not (tmp_path / "tb").exists()
