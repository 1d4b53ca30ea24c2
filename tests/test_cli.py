"""End to end through the command line on a tiny made-up corpus: train, evaluate, predict."""

import json

import pytest
from seqeval.metrics import f1_score

from nerbilstm.cli import main
from nerbilstm.data.readers import write_gmb_csv

from synthetic import synthetic_sentences


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "tiny.csv"
    write_gmb_csv(synthetic_sentences(300, seed=1), data)
    out = root / "model"
    rc = main(["train", "--data", str(data), "--out", str(out), "--epochs", "4", "--hidden-size", "16",
               "--layers", "1", "--batch-size", "16", "--lr", "0.01", "--no-progress", "--seed", "7"])
    assert rc == 0
    return data, out


def test_train_writes_model_directory(trained):
    _, out = trained
    assert (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["format_version"] == 2 and config["labels"][0] == "O"
    assert config["data"]["train"]["sha256"]
    lines = (out / "train_log.jsonl").read_text().splitlines()
    assert len(lines) >= 1 and "dev_entity_f1" in json.loads(lines[0])
    assert not list(out.glob("*.tmp"))


def test_evaluate_json_matches_seqeval(trained, capsys):
    data, out = trained
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("entity_f1", "entity_precision", "entity_recall", "entity_f1_strict", "token_macro_f1",
                "seed_batch_macro_f1", "per_type", "per_tag", "n_sentences", "n_tokens"):
        assert key in report
    assert report["n_sentences"] == 30
    from nerbilstm.data.dataset import split_canonical
    from nerbilstm.data.readers import read_corpus
    from nerbilstm.predict import Tagger

    _, _, test = split_canonical(read_corpus(data).sentences)
    pred = Tagger.load(out).tags([s.tokens for s in test])
    assert report["entity_f1"] == pytest.approx(f1_score([s.tags for s in test], pred))
    assert report["entity_f1"] > 0.5  # the made-up entities are easy to learn


def test_predict_formats(trained, capsys):
    _, out = trained
    text = "Mary Jones visited Tokyo on Friday."
    assert main(["predict", "--model", str(out), "--output-format", "json", text]) == 0
    doc = json.loads(capsys.readouterr().out)
    for tok in doc["tokens"]:
        assert text[tok["start"]:tok["end"]] == tok["text"]
    for ent in doc["entities"]:
        assert text[ent["start"]:ent["end"]] == ent["text"]
        assert 0.0 <= ent["score"] <= 1.0
    assert main(["predict", "--model", str(out), "--output-format", "conll", text]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0].split("\t")[0] == "Mary" and lines[-1] == "" and lines[-2] == ""


def test_missing_corpus_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NERBILSTM_DATA", raising=False)
    rc = main(["train", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "NERBILSTM_DATA" in err
    rc = main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path / "x.csv")])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_help_has_examples(capsys):
    for cmd in ("train", "evaluate", "predict"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_info_describes_the_model(trained, capsys, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from nerbilstm.io import seal_config
    from nerbilstm.predict import Tagger

    _, out = trained
    assert main(["info", "--model", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    config = json.loads((out / "config.json").read_text())
    weights = load_file(out / "model.safetensors")
    buffers = dict(Tagger.load(out).model.named_buffers())  # saved too (class weights), not parameters
    assert info["parameters"] == sum(t.numel() for name, t in weights.items() if name not in buffers) > 0
    assert info["weights"] == {"bytes": (out / "model.safetensors").stat().st_size,
                               "sha256": config["weights_sha256"]}
    assert info["labels"] == config["labels"]
    assert info["entity_types"] == sorted({lab[2:] for lab in config["labels"] if lab != "O"})
    assert info["model"] == config["model"] and info["training"] == config["training"]
    assert info["data"]["file"] == "tiny.csv" and info["data"]["sentences"] == 300
    assert info["metrics"]["dev"]["entity_f1"] == config["metrics"]["dev"]["entity_f1"]
    assert main(["info", "--model", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"parameters  {info['parameters']:,}" in text
    assert f"entity F1 {config['metrics']['test']['entity_f1']:.4f}" in text
    training = config["training"]
    assert f"patience {training['patience']}, min gain {training['min_gain']})" in text  # the stopping rule
    from nerbilstm.report import render_info

    older = dict(info, training={k: v for k, v in training.items() if k != "min_gain"})  # saved before the field
    assert f"patience {training['patience']}, min gain 0.0)" in render_info(older)

    # a NaN figure is null in strict JSON; a damaged weight file is refused in one line
    broken = tmp_path / "model"
    shutil.copytree(out, broken)
    config["metrics"]["dev"]["entity_f1"] = float("nan")
    (broken / "config.json").write_text(json.dumps(seal_config(config, config["weights_sha256"])))
    assert main(["info", "--model", str(broken), "--json"]) == 0
    assert json.loads(capsys.readouterr().out, parse_constant=pytest.fail)["metrics"]["dev"]["entity_f1"] is None
    weights_file = broken / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-10] ^= 0xFF  # a byte of a tensor: the file still reads, only the checksum can tell
    weights_file.write_bytes(bytes(data))
    assert main(["info", "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors" in err and "checksum" in err


def test_compare_a_model_with_itself(trained, capsys):
    data, out = trained
    assert main(["compare", str(out), str(out), "--data", str(data), "--samples", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["a"]["entity_f1"] == result["b"]["entity_f1"] > 0.5
    boot = result["bootstrap"]
    assert boot["delta"] == 0 and boot["ci95"] == [0.0, 0.0] and boot["samples"] == 200
    assert boot["sentences"] == result["a"]["n_sentences"] == 30 and result["split"] == "test"
    assert main(["compare", str(out), str(out), "--data", str(data), "--samples", "50"]) == 0
    text = capsys.readouterr().out
    assert "B - A: +0.0000, 95% interval [+0.0000, +0.0000]" in text and "50 resamples" in text
    assert main(["compare", str(out), str(out / "nope"), "--data", str(data)]) == 2
    assert main(["compare", str(out), str(out), "--data", str(data), "--samples", "0"]) == 2
