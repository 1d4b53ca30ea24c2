"""Command line: argument parsing only; each command calls a library function.

Our errors (bad data, bad model files) become one line on stderr and exit code 2; tracebacks are left for bugs.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from nerbilstm import __version__
from nerbilstm.config import PRESETS, DataConfig, ModelConfig, ServeConfig, TrainConfig
from nerbilstm.config_file import merge, write_defaults
from nerbilstm.errors import NerError
from nerbilstm.tagging import INPUT_FORMATS, ScaleOptions

EXIT_USER_ERROR = 2


_formatter = functools.partial(argparse.RawDescriptionHelpFormatter, max_help_position=32)


def _add_data_options(p: argparse.ArgumentParser, train: bool = False) -> None:
    """The DataConfig flags: a corpus and how to read it (train also takes dev and test files)."""
    _add_config_flags(p, DataConfig, skip=() if train else ("dev_data", "test_data"))


def _add_gold_options(p: argparse.ArgumentParser) -> None:
    """The gold sentences a model is scored on (a corpus file, one split of it), and --json."""
    _add_data_options(p)
    p.add_argument("--split", choices=("test", "dev", "train", "all"), default=None, help="canonical split of "
                   "the file, or all (default: test of the model's own training corpus, all of another file)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _gold_sentences(args, tagger) -> tuple[list, str]:
    """The sentences that _add_gold_options' flags name, and which they are in words."""
    from nerbilstm.data.dataset import select_split

    own = ((tagger.config.get("data") or {}).get("train") or {}).get("sha256")
    sentences, info = select_split(args.data, args.split, args.format, args.encoding, args.tag_column,
                                   args.max_sentences, args.type_map, args.strict_spans, training_sha256=own)
    args.split = info["split"]
    return sentences, info["scored"]


def _add_config_flags(p: argparse.ArgumentParser, cls, skip=()) -> None:
    """One flag per config dataclass field: --hidden-size maps onto hidden_size."""
    for f in fields(cls):
        if f.name in skip:
            continue
        default, meta = f.default, f.metadata
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        text = meta.get("help", "")
        if "default" not in text:
            text = f"{text} (default: {default})".strip()
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction, help=text)
        else:
            kind = meta.get("kind") or {int: int, float: float}.get(type(default), str)
            p.add_argument(flag, dest=f.name, type=kind, default=default, choices=meta.get("choices"), help=text)


def _command(sub, name: str, help: str, description: str, *examples: str) -> argparse.ArgumentParser:
    """A subcommand with its help line, description and examples."""
    return sub.add_parser(name, help=help, description=description, formatter_class=_formatter,
                          epilog="examples:\n" + "".join(f"  {e}\n" for e in examples))


def _add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: the shipped model)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nerbilstm", formatter_class=_formatter,
        description="Named-entity recognition with a BiLSTM-CRF written from scratch in PyTorch.",
        epilog="examples:\n  nerbilstm predict \"Angela Merkel met Emmanuel Macron in Paris on Monday.\"\n"
               "  nerbilstm train --data ner_dataset.csv --out runs/crf\n")
    parser.add_argument("--version", action="version", version=f"nerbilstm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_train_parser, _add_scoring_parsers, _add_predict_parser, _add_model_parsers):
        add(sub)
    return parser


def _add_train_parser(sub) -> None:
    p = _command(sub, "train", "train a tagger",
                 "Train a BiLSTM-CRF (or softmax) tagger; keeps the best epoch by dev entity F1.",
                 "nerbilstm train --data ner_dataset.csv --out runs/crf",
                 "nerbilstm train --data train.conll --dev-data dev.conll --test-data test.conll --out runs/conll",
                 "nerbilstm train --data ner_dataset.csv --decoder crf --init-from runs/softmax --out runs/sm+crf",
                 "nerbilstm train --resume runs/crf      # after a crash or Ctrl+C, on the run's own data",
                 "nerbilstm train --config runs/crf/train.toml --seed 14 --out runs/crf14   # file < flags",
                 "torchrun --nproc_per_node 2 -m nerbilstm train --distributed --data ner_dataset.csv --out runs/ddp")
    p.add_argument("--config", metavar="FILE", help="TOML file of train options (see init-config); flags win")
    _add_data_options(p, train=True)
    p.add_argument("--out", metavar="DIR", help="model directory to write (required, unless --resume DIR)")
    p.add_argument("--overwrite", action="store_true", help="replace the run (model, checkpoint, log) in --out")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run whose --out was DIR, on its data")
    p.add_argument("--init-from", metavar="MODEL_DIR", help="start from a trained model's weights and vocabulary")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots into the model directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="one DistributedDataParallel process of a torchrun launch (gloo on CPU, NCCL on CUDA)")
    _add_config_flags(p, ModelConfig, skip=("word_dim",))
    _add_config_flags(p, TrainConfig)


def _add_scoring_parsers(sub) -> None:
    p = _command(sub, "evaluate", "score a model on gold data",
                 "Entity F1 (CoNLL-eval and strict), token macro-F1 and the batch-of-8 macro-F1 on a corpus file "
                 "or one split of it. The batch-of-8 macro-F1 is the original notebook's metric, for comparison "
                 "only: token macro-F1 over the tags present in each batch of 8 sentences, averaged over batches.",
                 "nerbilstm evaluate --data ner_dataset.csv            # shipped model, its test split",
                 "nerbilstm evaluate --model runs/crf --data ner_dataset.csv --split dev --json",
                 "nerbilstm evaluate --model runs/crf --data test.conll  # all of another file")
    _add_model_option(p)
    _add_gold_options(p)
    p.add_argument("--plots", metavar="DIR", help="also write the tag confusion matrix as PNG into DIR")
    p = _command(sub, "compare", "is model B better than model A? a paired bootstrap test",
                 "Test the difference of two models' entity F1 (CoNLL-eval) on the same sentences with a paired "
                 "bootstrap: the 95%% interval of F1(B) - F1(A), wins per model and Berg-Kirkpatrick's p-value.",
                 "nerbilstm compare runs/crf runs/crf_seed14 --data ner_dataset.csv",
                 "nerbilstm compare runs/softmax runs/crf --data ner_dataset.csv --split dev --json")
    for name, metavar in (("model_a", "A"), ("model_b", "B")):
        p.add_argument(name, metavar=metavar, help="model directory; 'default' for the shipped model")
    _add_gold_options(p)
    p.add_argument("--samples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: 0)")


def _add_predict_parser(sub) -> None:
    p = _command(sub, "predict", "tag text",
                 "Tag raw text (tokenized like GMB), one record per input line, or a CoNLL file's sentences; "
                 "streamed: output appears as each batch is done.",
                 "nerbilstm predict \"The U.S. army left Baghdad on Friday.\"",
                 "nerbilstm predict --input sentences.txt --output-format conll",
                 "nerbilstm predict --output-format jsonl --nbest 3 \"Obama visited Kenya.\"",
                 "nerbilstm predict --model runs/crf --input test.conll --output-format jsonl")
    p.add_argument("texts", nargs="*", help="text to tag (each argument one text)")
    _add_model_option(p)
    p.add_argument("--input", help="file to tag; - for standard input, which is also read when no text is given")
    p.add_argument("--input-format", choices=INPUT_FORMATS, default="auto", help="text: a record per line; conll: "
                   "tokens in column 1; auto (default): conll if it starts with -DOCSTART- or 20 lines end in a tag")
    p.add_argument("--encoding", default=None, help="encoding of --input (default: UTF-8, else cp1252 per line)")
    p.add_argument("--output-format", choices=("inline", "conll", "jsonl", "json", "spans"), default="inline",
                   help="inline: [Paris]{geo}; conll: token TAB tag; jsonl (or json): a JSON object per record; "
                        "spans: Prodigy-style JSON Lines for annotation tools (default: inline)")
    p.add_argument("--batch-size", type=int, default=256, help="sentences per forward pass (default: 256)")
    p.add_argument("--nbest", type=int, default=0, metavar="K", help="jsonl: each sentence's K best tag paths (CRF)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown for a file input on a terminal)")
    _add_config_flags(p, ScaleOptions)


def _add_model_parsers(sub) -> None:
    p = _command(sub, "info", "describe a model: network, size, labels, training, scores",
                 "What a model directory holds: network, size, labels, vocabulary, embeddings, training recipe "
                 "and data, dev/test figures. Loads the model, so its weights are checked too.",
                 "nerbilstm info                       # the shipped model", "nerbilstm info --model runs/crf --json")
    _add_model_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = _command(sub, "serve", "serve a model over HTTP: JSON API and web page",
                 "Serve a model over HTTP: POST /api/tag, GET /api/model, GET /healthz, a web page at / and API "
                 "docs at /docs. Needs the serve extra (pip install 'nerbilstm[serve]').",
                 "nerbilstm serve                        # the shipped model on http://127.0.0.1:8000/",
                 "nerbilstm serve --model runs/crf --port 8080",
                 "curl -s http://127.0.0.1:8000/api/tag -H 'Content-Type: application/json' "
                 "-d '{\"text\": \"Obama visited Paris.\"}'")
    _add_model_option(p)
    _add_config_flags(p, ServeConfig)
    p = _command(sub, "export", "export a model as one TorchScript or ONNX file",
                 "Write the tagger (emissions and decoding) as one file that runs without nerbilstm: TorchScript "
                 "or ONNX (the export extra), with vocabularies, labels and id rules inside as nerbilstm.json.",
                 "nerbilstm export --out tagger.pt                  # the shipped model, TorchScript",
                 "nerbilstm export --model runs/crf --format onnx --out tagger.onnx")
    _add_model_option(p)
    p.add_argument("--format", choices=("torchscript", "onnx"), default=None,
                   help="(default: onnx if --out ends in .onnx, else torchscript)")
    p.add_argument("--out", required=True, help="file to write (replaced atomically)")
    p = _command(sub, "upgrade", "re-save a model directory you trust in the current format",
                 "Rewrite config.json of a model directory (before format 2) with the checksum of its content; "
                 "the weights are not touched, and must match their recorded checksum and the config.",
                 "nerbilstm upgrade --model runs/crf",
                 "nerbilstm upgrade --model runs/crf --accept-edits   # after editing config.json on purpose")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--accept-edits", action="store_true", help="also re-seal a current config.json edited on purpose")
    p = _command(sub, "init-config", "write a train config file (TOML) with every default, each key with its help",
                 "Write train's options at their defaults as TOML, each with its help as a comment.",
                 "nerbilstm init-config --out run.toml && nerbilstm train --config run.toml --out runs/mine")
    p.add_argument("--out", default="train.toml", help="file to write (default: train.toml)")
    p.add_argument("--optimize", choices=list(PRESETS), default="efficiency", help="accuracy: 2 x 256 units, slower")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "compare": cmd_compare, "info": cmd_info, "serve": cmd_serve,
                "export": cmd_export, "upgrade": cmd_upgrade, "init-config": cmd_init_config}[args.command](args)
    except NerError as err:
        from nerbilstm.train import TrainingInterrupted

        if isinstance(err, TrainingInterrupted):
            print(f"nerbilstm {args.command}: {err}", file=sys.stderr)
            return 130
        print(f"nerbilstm {args.command}: error: {_as_flags(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"nerbilstm {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_train(args) -> int:
    from nerbilstm.report import render_evaluation
    from nerbilstm.train import train_files

    if args.config:
        merge(args, _add_train_parser, args.argv)
    data, model, training = (cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
                             for cls in (DataConfig, ModelConfig, TrainConfig))
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise NerError("--resume continues the run in its own directory: leave out --out, or give the same one")
    out = args.resume or args.out
    if not out:
        raise NerError("--out DIR is required (or --resume DIR)")
    metrics = train_files(data, model, training, out, resume=bool(args.resume), overwrite=args.overwrite,
                          init_from=args.init_from, distributed=args.distributed,
                          progress=False if args.no_progress else None, plots=not args.no_plots)
    if not metrics:  # another rank of a distributed run
        return 0
    print("".join(f"== {s} ==\n{render_evaluation(metrics[s])}\n" for s in ("dev", "test") if s in metrics), end="")
    print(f"model written to {out} (best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
          f"{metrics['train_wall_seconds']:.0f} s)")
    return 0


def _as_flags(err: NerError) -> str:
    """The error's message; a config field in it (ConfigError) written as the flag that sets it."""
    from nerbilstm.config import ConfigError

    if isinstance(err, ConfigError):
        return err.describe(lambda name: "--" + name.replace("_", "-"))
    return str(err)


def cmd_evaluate(args) -> int:
    from nerbilstm.evaluate import evaluate_on, write_evaluation_plots
    from nerbilstm.predict import Tagger
    from nerbilstm.report import render_evaluation

    tagger = Tagger.load(args.model)
    sentences, scored = _gold_sentences(args, tagger)
    metrics, pred = evaluate_on(tagger, sentences, scored, return_predictions=True)
    metrics["split"] = args.split
    if args.plots:
        write_evaluation_plots(args.plots, tagger, sentences, pred)
    print(json.dumps(metrics) if args.json else render_evaluation(metrics))
    return 0


def cmd_compare(args) -> int:
    from nerbilstm.evaluate import compare_taggers
    from nerbilstm.predict import Tagger
    from nerbilstm.report import render_comparison

    if args.samples < 1:
        raise NerError(f"--samples must be at least 1, got {args.samples}")
    taggers = [Tagger.load(None if m == "default" and not Path(m).exists() else m)
               for m in (args.model_a, args.model_b)]
    sentences, scored = _gold_sentences(args, taggers[0])
    result = compare_taggers(*taggers, sentences, samples=args.samples, seed=args.seed)
    result.update(scored=scored, split=args.split, models={"a": args.model_a, "b": args.model_b})
    print(json.dumps(result) if args.json else render_comparison(result))
    return 0


def cmd_predict(args) -> int:
    from nerbilstm.predict import Tagger
    from nerbilstm.tagging import check_options, default_source, open_input, write_tagged

    args.input = default_source(args.texts, args.input, sys.stdin)
    check_options(args.batch_size, args.nbest, args.output_format, workers=args.workers)
    if args.ray:
        from nerbilstm.ray import PREDICT_ARGS, predict_on_ray

        return predict_on_ray(sys.stdout, **{name: getattr(args, name) for name in PREDICT_ARGS})
    tagger = Tagger.load(args.model)
    check_options(args.batch_size, args.nbest, args.output_format, tagger)
    tagger.batch_size = args.batch_size
    inp = open_input(args.texts, args.input, args.input_format, args.encoding)
    write_tagged(tagger, inp, sys.stdout, args.output_format, nbest=args.nbest,
                 progress=not args.no_progress and sys.stderr.isatty(), workers=args.workers)
    return 0


def cmd_info(args) -> int:
    from nerbilstm.predict import Tagger
    from nerbilstm.report import render_info

    info = Tagger.load(args.model).info()
    print(json.dumps(info) if args.json else render_info(info))
    return 0


def cmd_serve(args) -> int:
    try:
        from nerbilstm.serve.app import serve
    except ImportError as err:
        raise NerError(f"serving needs the serve extra ({err}): pip install 'nerbilstm[serve]'") from None
    serve(args.model, **{f.name: getattr(args, f.name) for f in fields(ServeConfig)})
    return 0


def cmd_export(args) -> int:
    from nerbilstm.export import export_model

    fmt = args.format or ("onnx" if args.out.lower().endswith(".onnx") else "torchscript")
    print(f"{fmt} model written to {export_model(args.model, args.out, fmt)}")
    return 0


def cmd_init_config(args) -> int:
    print(f"defaults ({args.optimize}) written to {write_defaults(args.out, args.optimize)}")
    return 0


def cmd_upgrade(args) -> int:
    from nerbilstm.io import FORMAT_VERSION, upgrade_model_dir
    from nerbilstm.predict import build_model

    if upgrade_model_dir(args.model, accept_edits=args.accept_edits, check=build_model):  # shapes must match
        print(f"{args.model}: config.json re-saved in format {FORMAT_VERSION} (weights unchanged)")
    else:
        print(f"{args.model}: already in format {FORMAT_VERSION}, checksums intact; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
