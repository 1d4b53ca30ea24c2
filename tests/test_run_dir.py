"""run_dir.py and the own-data fixes: resume on the run's own data, run ids, --out that holds a
run, checkpoints that survive a kill, evaluate on another file, unknown gold types."""

from __future__ import annotations

import json
import shutil

import pytest

from nerbilstm import train as train_module
from nerbilstm.checkpoint import CHECKPOINT_DIR, STATE_JSON, read_checkpoint
from nerbilstm.cli import main
from nerbilstm.data.readers import Sentence, write_conll

from synthetic import synthetic_sentences, write_tiny_corpus

TINY = ["--epochs", "2", "--hidden-size", "4", "--layers", "1", "--char-dim", "4", "--char-filters", "4",
        "--case-dim", "2", "--batch-size", "16", "--threads", "1", "--no-plots", "--no-progress", "--seed", "3"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_dir")
    write_tiny_corpus(root)
    return root


def tiny(root):
    return [*TINY, "--embeddings", str(root / "emb.txt")]


def interrupted_run(root, out, *flags):
    """A run stopped after its last epoch's checkpoint, before its model is written."""
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "finish_run", stop)
    try:
        assert main(["train", "--data", str(root / "corpus.csv"), *tiny(root), "--out", str(out), *flags]) == 130
    finally:
        mp.undo()
    assert (out / CHECKPOINT_DIR / STATE_JSON).is_file()


def test_resume_restores_every_data_option(root, tmp_path, cli):
    out = tmp_path / "run"
    interrupted_run(root, out, "--max-sentences", "60", "--dev-data", str(root / "dev.conll"))
    run = cli(["train", "--resume", out])  # no data flags: all come from the checkpoint
    assert run.rc == 0, run.err
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["train"]["sentences"] == 60 and config["data"]["split"] == "files"
    assert config["data"]["dev"]["path"] == "dev.conll" and config["data"]["train"]["path"] == "corpus.csv"
    assert str(tmp_path) not in json.dumps(config)  # file names, never this machine's folders


def test_resume_with_a_differing_flag_names_both_values(root, tmp_path, cli):
    out = tmp_path / "run"
    interrupted_run(root, out, "--max-sentences", "60")
    run = cli(["train", "--resume", out, "--max-sentences", "100"])
    assert run.rc == 2 and len(run.err_lines) == 1 and "--max-sentences 100" in run.err and "60" in run.err
    run = cli(["train", "--resume", out, "--max-sentences", "60"])  # the same value again is fine
    assert run.rc == 0, run.err


def test_resuming_a_finished_run_says_so_before_reading_data(root, tmp_path, cli):
    out = tmp_path / "done"
    assert cli(["train", "--data", root / "corpus.csv", *tiny(root), "--out", out]).rc == 0
    run = cli(["train", "--resume", out, "--data", tmp_path / "missing.csv"])
    assert run.rc == 2 and "finished run" in run.err and "missing.csv" not in run.err


def test_a_checkpoint_from_another_run_is_refused(root, tmp_path, cli):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(["train", "--data", root / "corpus.csv", *tiny(root), "--out", a]).rc == 0
    interrupted_run(root, b, "--hidden-size", "6")
    shutil.copytree(b / CHECKPOINT_DIR, a / CHECKPOINT_DIR)
    before = (a / "model.safetensors").read_bytes()
    run = cli(["train", "--resume", a])
    assert run.rc == 2 and "another run" in run.err and len(run.err_lines) == 1
    assert (a / "model.safetensors").read_bytes() == before


def test_out_holding_a_run_is_refused_unless_overwrite(root, tmp_path, cli):
    out = tmp_path / "run"
    assert cli(["train", "--data", root / "corpus.csv", *tiny(root), "--out", out]).rc == 0
    before = (out / "model.safetensors").read_bytes()
    log = (out / "train_log.jsonl").read_text()
    run = cli(["train", "--data", tmp_path / "no-such.csv", *tiny(root), "--out", out])
    assert run.rc == 2 and "already holds a run" in run.err and "--overwrite" in run.err
    assert (out / "model.safetensors").read_bytes() == before and (out / "train_log.jsonl").read_text() == log
    run = cli(["train", "--data", root / "corpus.csv", *tiny(root), "--seed", "4", "--out", out, "--overwrite"])
    assert run.rc == 0 and (out / "model.safetensors").read_bytes() != before


@pytest.mark.parametrize("make", ["file", "under-a-file"])
def test_unusable_out_is_an_error_before_any_data_is_read(root, tmp_path, cli, make):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if make == "file" else blocker / "run"
    run = cli(["train", "--data", tmp_path / "no-such.csv", *tiny(root), "--out", out])
    assert run.rc == 2 and len(run.err_lines) == 1 and str(blocker) in run.err and "no-such" not in run.err


def test_checkpoint_survives_a_kill_while_it_is_written(root, tmp_path, monkeypatch):
    """A kill between writing the new tensors and the new state.json leaves the previous
    checkpoint whole: its state.json names tensors that are still there and match."""
    from nerbilstm import checkpoint

    out = tmp_path / "run"
    interrupted_run(root, out)
    state, _ = read_checkpoint(out)

    def killed(*args, **kwargs):
        raise SystemExit("killed")

    import torch

    monkeypatch.setattr(checkpoint, "atomic_write_json", killed)
    with pytest.raises(SystemExit):
        checkpoint.save_checkpoint(out, torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), 0.1),
                                   None, {"progress": {}})
    again, tensors = read_checkpoint(out)
    assert again == state and "model.emission.weight" in tensors


def test_a_checkpoint_state_of_nothing_names_the_problem(root, tmp_path, cli):
    out = tmp_path / "run"
    interrupted_run(root, out)
    (out / CHECKPOINT_DIR / STATE_JSON).write_text("{}")
    run = cli(["train", "--resume", out])
    assert run.rc == 2 and "differs" not in run.err and "data options" in run.err


# ---- evaluate on someone else's file


@pytest.fixture(scope="module")
def model_dir(root):
    out = root / "model"
    assert main(["train", "--data", str(root / "corpus.csv"), *tiny(root), "--out", str(out)]) == 0
    shutil.copy(root / "emb.txt", out)
    return out


def test_evaluate_scores_all_of_another_file_and_says_which(root, model_dir, cli):
    run = cli(["evaluate", "--model", model_dir, "--data", root / "dev.conll", "--json"])
    assert run.rc == 0, run.err
    metrics = json.loads(run.out)
    assert metrics["n_sentences"] == 30 and metrics["split"] == "all"
    assert metrics["scored"] == "all 30 sentences of dev.conll"
    run = cli(["evaluate", "--model", model_dir, "--data", root / "dev.conll"])
    assert run.out.splitlines()[0] == "scored: all 30 sentences of dev.conll"
    run = cli(["evaluate", "--model", model_dir, "--data", root / "corpus.csv", "--json"])  # its own corpus
    metrics = json.loads(run.out)
    assert metrics["split"] == "test" and metrics["scored"] == "canonical test split: 12 of 120 sentences of corpus.csv"


def test_evaluate_warns_of_unknown_gold_types_and_refuses_when_none_is_known(root, model_dir, cli, tmp_path):
    known = synthetic_sentences(20, seed=5)
    foreign = [Sentence(["Ann", "Lee", "runs", "Acme"], ["B-PER", "I-PER", "O", "B-ORG"]),
               Sentence(["Bob", "Smith"], ["B-PER", "I-PER"])]
    write_conll(known + foreign, tmp_path / "mixed.conll")
    run = cli(["evaluate", "--model", model_dir, "--data", tmp_path / "mixed.conll"])
    assert run.rc == 0, run.err
    warning = "gold entity types the model does not know, counted as misses: ORG (1 gold entity), PER (2 gold entities)"
    assert run.out.splitlines()[1] == f"warning: {warning}"
    run = cli(["evaluate", "--model", model_dir, "--data", tmp_path / "mixed.conll", "--json"])
    assert json.loads(run.out)["warnings"] == [warning]
    write_conll(foreign, tmp_path / "foreign.conll")
    run = cli(["evaluate", "--model", model_dir, "--data", tmp_path / "foreign.conll"])
    assert run.rc == 2 and len(run.err_lines) == 1 and "knows none" in run.err
    assert "ORG, PER" in run.err and "per" in run.err and run.out == ""
