"""A 2-process gloo run (torchrun) against a 1-process run with the same global batch size."""

import json
import os
import subprocess
import sys


from nerbilstm.data.readers import write_gmb_csv

from synthetic import synthetic_sentences

FLAGS = ["--epochs", "3", "--hidden-size", "16", "--layers", "1", "--batch-size", "16", "--char-dim", "8",
         "--char-filters", "8", "--lr", "0.01", "--no-progress", "--no-plots", "--seed", "3", "--threads", "1", "--device", "cpu"]


def run(args, nproc=None, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
               "-m", "nerbilstm", "train", "--distributed", *args]
    else:
        cmd = [sys.executable, "-m", "nerbilstm", "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def compare(data, tmp_path, extra=()):
    one = run(["--data", str(data), "--out", str(tmp_path / "one"), *FLAGS, *extra])
    assert one.returncode == 0, one.stderr[-2000:]
    two = run(["--data", str(data), "--out", str(tmp_path / "two"), *FLAGS, *extra], nproc=2)
    assert two.returncode == 0, two.stderr[-2000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["world_size"] == 2
    sums = m2["rank_weight_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # every rank ends with identical weights
    assert two.stdout.count("model written to") == 1  # rank 0 alone reports and writes
    return m1, m2


def test_two_processes_match_one_on_made_up_data(tmp_path):
    data = tmp_path / "tiny.csv"
    write_gmb_csv(synthetic_sentences(400, seed=4), data)
    m1, m2 = compare(data, tmp_path)
    assert abs(m1["dev"]["entity_f1"] - m2["dev"]["entity_f1"]) <= 0.05


def test_two_processes_on_a_gmb_slice(gmb_path, tmp_path):
    m1, m2 = compare(gmb_path, tmp_path, ["--max-sentences", "2000", "--epochs", "2"])
    # Same global batches, different dropout draws per rank: equal within noise.
    assert abs(m1["dev"]["entity_f1"] - m2["dev"]["entity_f1"]) <= 0.05
