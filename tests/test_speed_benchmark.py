"""Smoke test of the speed benchmark (benchmarks/speed.py): --quick sizes, synthetic data.
No timing assertions."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from nerbilstm.cli import main as cli_main
from nerbilstm.config import ModelConfig
from nerbilstm.data.vocab import Vocab
from nerbilstm.io import save_model_dir
from nerbilstm.model.tagger import BiLSTMTagger

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"

RATIOS = ("train_speedup", "lstm_speedup", "infer_speedup", "crf_nll_speedup_len25", "crf_nll_speedup_len100",
          "viterbi_speedup_len25", "viterbi_speedup_len100", "crf_nll_speedup_len25_ragged",
          "viterbi_speedup_len100_ragged", "char_cnn_speedup")
FIGURES = ("infer_sentences_per_s", "train_peak_rss_mb", "train_peak_rss_mb_reference", "train_tokens_per_s",
           "train_tokens_per_s_reference", "train_ms", "train_ms_reference", "lstm_ms", "lstm_ms_reference",
           "crf_nll_ms_len25", "crf_nll_ms_reference_len25", "viterbi_ms_len100", "viterbi_ms_reference_len100",
           "e2e_sentences_per_s", "one_text_calls_per_s", "one_text_calls_per_s_batched_path", "one_text_speedup")


def load_speed():
    """benchmarks/speed.py as a module (it is a script, not part of the package), loaded once."""
    name = "benchmarks_speed"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def tiny_model_dir(path, speed):
    """An untrained tiny model directory, for the end-to-end figure."""
    sentences = speed.synthetic_sentences(20)
    vocab = Vocab.build([s.tokens for s in sentences], [s.tags for s in sentences])
    config = ModelConfig(word_dim=8, char_dim=4, char_filters=8, case_dim=4, hidden_size=8, layers=1)
    model = BiLSTMTagger(config, len(vocab.words), len(vocab.chars), vocab.labels)
    save_model_dir(path, model.state_dict(), {"model": asdict(config), "vocab": vocab.to_dict()})
    return path


def positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def check_every_figure(result: dict) -> None:
    assert result["data"] == "synthetic" and result["threads"] == 1 and result["quick"] is True
    assert result["torch_version"] == torch.__version__
    assert result["repeats"] >= 1 and result["config"]["model"]["hidden_size"] > 0
    for key in RATIOS + FIGURES:
        assert positive_finite(result[key]), (key, result.get(key))
    checks = result["checks"]
    assert checks["lstm_max_abs_diff"] < 1e-4
    assert checks["char_cnn_max_abs_diff"] < 1e-4
    assert all(v for k, v in checks.items() if k.startswith("viterbi_paths_equal"))


def test_quick_benchmark_reports_every_figure(tmp_path, monkeypatch):
    monkeypatch.delenv("NERBILSTM_DATA", raising=False)
    speed = load_speed()
    threads = torch.get_num_threads()
    result = speed.run_benchmark(model=str(tiny_model_dir(tmp_path / "model", speed)), threads=1, quick=True)
    assert torch.get_num_threads() == threads  # restored
    check_every_figure(result)


def test_script_prints_the_json_as_its_last_line(tmp_path):
    """The script as README runs it: the JSON object is the last line of stdout and the --out file."""
    env = {k: v for k, v in os.environ.items() if k != "NERBILSTM_DATA"}
    model = tiny_model_dir(tmp_path / "model", load_speed())
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--threads", "1", "--quick", "--repeats", "1",
                           "--model", str(model), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    check_every_figure(result)
    assert json.loads(out.read_text(encoding="utf-8")) == result


def test_the_cli_has_no_bench_command(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "bench" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["bench", "--quick"])
    assert "invalid choice" in capsys.readouterr().err
