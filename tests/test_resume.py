"""Interrupted training: SIGKILL mid-epoch, resume, and end with the weights of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from nerbilstm.data.readers import write_gmb_csv

from synthetic import synthetic_sentences

ARGS = ["--epochs", "3", "--hidden-size", "12", "--layers", "1", "--batch-size", "8", "--char-dim", "8",
        "--char-filters", "8", "--no-progress", "--no-plots", "--seed", "5", "--threads", "1", "--patience", "5"]


def run_cli(*args, wait=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "nerbilstm", *args]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    # SIGINT back to its default in the child: a shell's background job (CI started with `&`)
    # inherits it ignored, and Python then never raises KeyboardInterrupt.
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "tiny.csv"
    write_gmb_csv(synthetic_sentences(400, seed=2), path)
    return path


def wait_for_checkpoint(folder, epoch, timeout=120):
    state = folder / "checkpoint" / "state.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            progress = json.loads(state.read_text())["progress"]
            if progress["epoch"] == epoch and progress["step"] > 0:
                return progress
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    raise AssertionError("no mid-epoch checkpoint appeared")


# Killed in epoch 2; and, with weight averaging from epoch 2, in epoch 3 (the average is then
# part of the checkpoint).
@pytest.mark.parametrize("extra, kill_epoch", [([], 2), (["--average-from", "2"], 3)], ids=["plain", "averaged"])
def test_sigkill_then_resume_equals_uninterrupted(corpus, tmp_path, extra, kill_epoch):
    full = tmp_path / "full"
    done = run_cli("train", "--data", str(corpus), "--out", str(full), *ARGS, *extra)
    assert done.returncode == 0, done.stderr

    cut = tmp_path / "cut"
    proc = run_cli("train", "--data", str(corpus), "--out", str(cut), *ARGS, *extra, "--checkpoint-every", "7",
                   wait=False)
    wait_for_checkpoint(cut, epoch=kill_epoch)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "model.safetensors").exists()  # nothing final was written by the killed run

    resumed = run_cli("train", "--resume", str(cut), "--data", str(corpus))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at epoch {kill_epoch}" in resumed.stderr
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not (cut / "checkpoint").exists()
    hist_a = [json.loads(x)["train_loss"] for x in (full / "train_log.jsonl").read_text().splitlines()]
    hist_b = [json.loads(x)["train_loss"] for x in (cut / "train_log.jsonl").read_text().splitlines()]
    assert hist_a == hist_b
    if extra:
        records = [json.loads(x) for x in (full / "train_log.jsonl").read_text().splitlines()]
        assert [r.get("averaged_epochs") for r in records] == [None, 1, 2]


def test_ctrl_c_saves_checkpoint_and_exits_cleanly(corpus, tmp_path):
    out = tmp_path / "int"
    proc = run_cli("train", "--data", str(corpus), "--out", str(out), *ARGS, "--checkpoint-every", "3", wait=False)
    wait_for_checkpoint(out, epoch=1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    assert (out / "checkpoint" / "state.json").is_file()
    resumed = run_cli("train", "--resume", str(out))  # the data path comes from the checkpoint
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "model.safetensors").is_file()


def test_a_checkpoint_from_before_a_field_resumes_with_the_value_runs_had_then():
    """A training field added later (min_gain, repeat_threshold) missing from a checkpoint means
    the run was started without it: resuming must not switch to today's default."""
    from nerbilstm.config import FIELDS_BEFORE_THEY_EXISTED, TrainConfig
    from nerbilstm.train import ResumePoint

    old = ResumePoint(state={"model": {}, "training": {"epochs": 7}}, tensors={})
    _, training = old.configs()
    assert training.epochs == 7
    for name, value in FIELDS_BEFORE_THEY_EXISTED.items():
        assert getattr(training, name) == value
    assert FIELDS_BEFORE_THEY_EXISTED["min_gain"] != TrainConfig().min_gain  # the default moved on since
    new = ResumePoint(state={"model": {}, "training": {"min_gain": 0.01}}, tensors={})
    assert new.configs()[1].min_gain == 0.01
