"""Smoke test of the benchmark: --quick sizes, synthetic data, in process. No timing assertions."""

import math
from dataclasses import asdict

import torch

from nerbilstm.bench import run_benchmark, synthetic_sentences
from nerbilstm.config import ModelConfig
from nerbilstm.data.vocab import Vocab
from nerbilstm.io import save_model_dir
from nerbilstm.model.tagger import BiLSTMTagger

RATIOS = ("train_speedup", "lstm_speedup", "infer_speedup", "crf_nll_speedup_len25", "crf_nll_speedup_len100",
          "viterbi_speedup_len25", "viterbi_speedup_len100", "crf_nll_speedup_len25_ragged",
          "viterbi_speedup_len100_ragged")
FIGURES = ("infer_sentences_per_s", "train_peak_rss_mb", "train_peak_rss_mb_reference", "train_tokens_per_s",
           "train_tokens_per_s_reference", "train_ms", "train_ms_reference", "lstm_ms", "lstm_ms_reference",
           "crf_nll_ms_len25", "crf_nll_ms_reference_len25", "viterbi_ms_len100", "viterbi_ms_reference_len100",
           "e2e_sentences_per_s")


def tiny_model_dir(path):
    """An untrained tiny model directory, for the end-to-end figure."""
    sentences = synthetic_sentences(20)
    vocab = Vocab.build([s.tokens for s in sentences], [s.tags for s in sentences])
    config = ModelConfig(word_dim=8, char_dim=4, char_filters=8, case_dim=4, hidden_size=8, layers=1)
    model = BiLSTMTagger(config, len(vocab.words), len(vocab.chars), vocab.labels)
    save_model_dir(path, model.state_dict(), {"model": asdict(config), "vocab": vocab.to_dict()})
    return path


def positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_quick_benchmark_reports_every_figure(tmp_path, monkeypatch):
    monkeypatch.delenv("NERBILSTM_DATA", raising=False)
    threads = torch.get_num_threads()
    result = run_benchmark(model=str(tiny_model_dir(tmp_path / "model")), threads=1, quick=True)
    assert torch.get_num_threads() == threads  # restored
    assert result["data"] == "synthetic" and result["threads"] == 1 and result["quick"] is True
    assert result["torch_version"] == torch.__version__
    assert result["repeats"] >= 1 and result["config"]["model"]["hidden_size"] > 0
    for key in RATIOS + FIGURES:
        assert positive_finite(result[key]), (key, result.get(key))
    checks = result["checks"]
    assert checks["lstm_max_abs_diff"] < 1e-4
    assert all(v for k, v in checks.items() if k.startswith("viterbi_paths_equal"))
