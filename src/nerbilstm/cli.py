"""Command line: argument parsing only; each command calls a library function.

Our errors (bad data, bad model files) become one line on stderr and exit code 2;
tracebacks are left for bugs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from nerbilstm import __version__
from nerbilstm.config import ModelConfig, TrainConfig
from nerbilstm.errors import NerError

EXIT_USER_ERROR = 2


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add_data_options(p: argparse.ArgumentParser, required_help: str = "") -> None:
    p.add_argument("--data", help="corpus file (default: $NERBILSTM_DATA)" + required_help)
    p.add_argument("--format", choices=("gmb", "text-labels", "conll", "jsonl", "brat"), default=None,
                   help="file format; brat: a directory of NAME.txt + NAME.ann (default: detected from the content)")
    p.add_argument("--encoding", default=None, help="text encoding (default: UTF-8, else cp1252, with a note)")
    p.add_argument("--tag-column", type=int, default=-1, help="CoNLL column holding the tag (default: last)")
    p.add_argument("--max-sentences", type=int, default=None, help="use only the first N sentences of the file")
    p.add_argument("--type-map", metavar="A=B,C=D", help="rename or merge entity types as read (TYPE=O drops a type)")
    p.add_argument("--strict-spans", action="store_true", help="jsonl, brat: refuse spans off token boundaries "
                   "(default: snap them to the tokens, with a note)")


def _add_gold_options(p: argparse.ArgumentParser) -> None:
    """The gold sentences a model is scored on: a corpus file and one split of it."""
    _add_data_options(p)
    p.add_argument("--split", choices=("test", "dev", "train", "all"), default="test",
                   help="canonical split of the file, or all of it (default: test)")


def _gold_sentences(args) -> list:
    """The sentences that _add_gold_options' flags name, with the reader's notes logged."""
    from nerbilstm.data.dataset import select_split

    sentences, info = select_split(args.data, args.split, args.format, args.encoding, args.tag_column,
                                   args.max_sentences, args.type_map, args.strict_spans)
    _log_notes({"data": info})
    return sentences


def _add_config_flags(p: argparse.ArgumentParser, cls, skip=()) -> None:
    """One flag per config dataclass field: --hidden-size maps onto hidden_size."""
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        text = f.metadata.get("help", "")
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction,
                           help=f"{text} (default: {default})".strip())
        else:
            kind = {int: int, float: float}.get(type(default), str)
            if f.name in ("max_sentences", "threads"):
                kind = int
            p.add_argument(flag, dest=f.name, type=kind, default=default, help=f"{text} (default: {default})".strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nerbilstm", formatter_class=_formatter,
        description="Named-entity recognition with a BiLSTM-CRF written from scratch in PyTorch.",
        epilog="examples:\n"
               "  nerbilstm predict \"Angela Merkel met Emmanuel Macron in Paris on Monday.\"\n"
               "  nerbilstm train --data ner_dataset.csv --out runs/crf\n"
               "  nerbilstm evaluate --model runs/crf --data ner_dataset.csv --split test --json\n")
    parser.add_argument("--version", action="version", version=f"nerbilstm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a tagger", formatter_class=_formatter,
                       description="Train a BiLSTM-CRF (or softmax) tagger; keeps the best epoch by dev entity F1.",
                       epilog="examples:\n"
                              "  nerbilstm train --data ner_dataset.csv --out runs/crf\n"
                              "  nerbilstm train --data ner_dataset.csv --decoder softmax --out runs/softmax\n"
                              "  nerbilstm train --data ner_dataset.csv --decoder crf --init-from runs/softmax "
                              "--out runs/softmax+crf\n"
                              "  nerbilstm train --resume runs/crf      # after a crash or Ctrl+C\n"
                              "  torchrun --nproc_per_node 2 -m nerbilstm train --distributed --data ner_dataset.csv "
                              "--out runs/ddp\n"
                              "  nerbilstm train --data train.conll --dev-data dev.conll --test-data test.conll "
                              "--out runs/conll\n")
    _add_data_options(p)
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots into the model directory")
    p.add_argument("--dev-data", help="separate dev file (then --data is the training file)")
    p.add_argument("--test-data", help="separate test file, scored once at the end")
    p.add_argument("--out", help="model directory to write")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run whose --out was DIR")
    p.add_argument("--init-from", metavar="MODEL_DIR", help="start from a trained model's weights and vocabulary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="one DistributedDataParallel process of a torchrun launch (gloo on CPU, NCCL on CUDA)")
    _add_config_flags(p, ModelConfig, skip=("word_dim",))
    _add_config_flags(p, TrainConfig, skip=("max_sentences",))

    p = sub.add_parser("evaluate", help="score a model on gold data", formatter_class=_formatter,
                       description="Entity F1 (CoNLL-eval and strict), token macro-F1 and the original's "
                                   "batch-of-8 figure on one split of a corpus.",
                       epilog="examples:\n"
                              "  nerbilstm evaluate --data ner_dataset.csv            # default model, test split\n"
                              "  nerbilstm evaluate --model runs/crf --data ner_dataset.csv --split dev --json\n"
                              "  nerbilstm evaluate --model runs/crf --data test.conll --split all\n")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    _add_gold_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", metavar="DIR", help="also write the tag confusion matrix as PNG into DIR")

    p = sub.add_parser("compare", help="is model B better than model A? a paired bootstrap test",
                       formatter_class=_formatter,
                       description="Score two models on the same split and test the difference of their entity "
                                   "F1 (CoNLL-eval) with a paired bootstrap over sentences: the 95%% interval of "
                                   "F1(B) - F1(A), how often each model wins on a resampled test set, and "
                                   "Berg-Kirkpatrick et al.'s p-value.",
                       epilog="examples:\n"
                              "  nerbilstm compare runs/crf runs/crf_seed14 --data ner_dataset.csv\n"
                              "  nerbilstm compare runs/softmax runs/crf --data ner_dataset.csv --split dev --json\n")
    for name, metavar in (("model_a", "A"), ("model_b", "B")):
        p.add_argument(name, metavar=metavar, help="model directory; 'default' for the shipped model")
    _add_gold_options(p)
    p.add_argument("--samples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("predict", help="tag text", formatter_class=_formatter,
                       description="Tag raw text (tokenized like GMB) or a CoNLL file's tokens.",
                       epilog="examples:\n"
                              "  nerbilstm predict \"The U.S. army left Baghdad on Friday.\"\n"
                              "  nerbilstm predict --input sentences.txt --output-format conll\n"
                              "  nerbilstm predict --output-format json --nbest 3 \"Obama visited Kenya.\"\n"
                              "  nerbilstm predict --model runs/crf --input test.conll --input-format conll "
                              "--output-format json\n")
    p.add_argument("texts", nargs="*", help="text to tag (each argument one text)")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--input", help="file: plain text, one sentence per line; or CoNLL with --input-format "
                   "conll; - for standard input, which is also read when no text is given")
    p.add_argument("--input-format", choices=("text", "conll"), default="text")
    p.add_argument("--encoding", default=None, help="encoding of --input (default: UTF-8, else cp1252)")
    p.add_argument("--output-format", choices=("inline", "conll", "json", "spans"), default="inline")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--nbest", type=int, default=0, metavar="K",
                   help="with --output-format json: the K best tag sequences of each sentence with their "
                        "probabilities (CRF models)")

    p = sub.add_parser("info", help="describe a model: network, size, labels, training, scores",
                       formatter_class=_formatter,
                       description="What a model directory holds: the network and its size, labels, vocabulary, "
                                   "embeddings, the training recipe and data, and the dev/test figures recorded "
                                   "when it was trained. Loads the model, so its weights are checked too.",
                       epilog="examples:\n"
                              "  nerbilstm info                       # the shipped model\n"
                              "  nerbilstm info --model runs/crf --json\n")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("serve", help="serve a model over HTTP: JSON API and web page", formatter_class=_formatter,
                       description="Serve a model over HTTP: POST /api/tag, GET /api/model, GET /healthz, "
                                   "a web page at / and API docs at /docs. Needs the serve extra "
                                   "(pip install 'nerbilstm[serve]').",
                       epilog="examples:\n"
                              "  nerbilstm serve                        # the shipped model on http://127.0.0.1:8000/\n"
                              "  nerbilstm serve --model runs/crf --port 8080\n"
                              "  curl -s http://127.0.0.1:8000/api/tag -H 'Content-Type: application/json' "
                              "-d '{\"text\": \"Obama visited Paris.\"}'\n")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="(default: 8000)")
    p.add_argument("--max-body-bytes", type=int, default=100_000,
                   help="larger request bodies get 413 (default: 100000)")
    p.add_argument("--max-tokens-per-request", type=int, help="more tokens get 413 (default: half the body limit)")
    p.add_argument("--max-connections", type=int, default=512, help="open connections; beyond: 503 (default: 512)")
    p.add_argument("--keep-alive", type=int, default=5, help="idle connections close after (default: 5 s)")
    p.add_argument("--any-host", action="store_true", help="on a loopback address, answer any Host header too "
                   "(default: only localhost, 127.x, [::1], against DNS rebinding)")

    p = sub.add_parser("export", help="export a model as one TorchScript or ONNX file", formatter_class=_formatter,
                       description="Write the tagger (emissions and Viterbi/argmax decoding) as one file that "
                                   "runs without nerbilstm: TorchScript (torch only) or ONNX (onnxruntime; "
                                   "needs the export extra). The vocabularies, labels and id rules travel "
                                   "inside it as nerbilstm.json.",
                       epilog="examples:\n"
                              "  nerbilstm export --out tagger.pt                  # the shipped model, TorchScript\n"
                              "  nerbilstm export --model runs/crf --format onnx --out tagger.onnx\n")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--format", choices=("torchscript", "onnx"), default=None,
                   help="(default: onnx if --out ends in .onnx, else torchscript)")
    p.add_argument("--out", required=True, help="file to write (replaced atomically)")

    _add_upgrade_parser(sub)
    return parser


def _add_upgrade_parser(sub) -> None:
    p = sub.add_parser("upgrade", help="re-save a model directory you trust in the current format",
                       formatter_class=_formatter,
                       description="Rewrite config.json of a model directory with the current format and the "
                                   "checksum of its own content (labels, vocabulary, architecture, ...); the "
                                   "weights file is not touched and must match the checksum config.json records, "
                                   "and config and weights must agree. For directories written before format 2.",
                       epilog="examples:\n"
                              "  nerbilstm upgrade --model runs/crf\n"
                              "  nerbilstm upgrade --model runs/crf --accept-edits   # after editing config.json "
                              "on purpose\n")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--accept-edits", action="store_true",
                   help="also re-seal a current-format config.json whose content was edited on purpose")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "compare": cmd_compare, "info": cmd_info, "serve": cmd_serve,
                "export": cmd_export, "upgrade": cmd_upgrade}[args.command](args)
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
    from nerbilstm.data.dataset import load_dataset
    from nerbilstm.train import train

    model_config = ModelConfig(**{f.name: getattr(args, f.name) for f in fields(ModelConfig) if f.name != "word_dim"})
    train_config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)
                                  if f.name != "max_sentences"}, max_sentences=args.max_sentences)
    model_config.validate()  # ConfigError: main names the flags (_as_flags)
    train_config.validate()
    if args.resume:
        args.out = args.resume
        args.data = args.data or _checkpoint_data_path(args.resume)
    if not args.out:
        raise NerError("--out DIR is required (or --resume DIR)")
    from nerbilstm.data.dataset import stream_dataset

    reader = stream_dataset if train_config.stream_chunk else load_dataset
    data = reader(args.data, args.dev_data, args.test_data, args.format, args.encoding, args.tag_column,
                  args.max_sentences, args.type_map, args.strict_spans)
    _log_notes(data.info)
    logging.getLogger("nerbilstm").info("sentences: %s train, %d dev, %d test",
                                        "streamed" if train_config.stream_chunk else len(data.train),
                                        len(data.dev), len(data.test))
    from nerbilstm.distributed import setup, teardown

    ctx = setup(train_config.device, args.distributed)
    if not ctx.is_main:
        logging.getLogger("nerbilstm").setLevel(logging.WARNING)  # rank 0 alone logs
    try:
        metrics = train(data.train, data.dev, model_config, train_config, args.out, test_sents=data.test,
                        init_from=args.init_from, data_info=data.info, progress=False if args.no_progress else None,
                        plots=not args.no_plots, resume=bool(args.resume), ctx=ctx)
    finally:
        teardown(ctx)
    if not ctx.is_main:
        return 0
    from nerbilstm.report import render_evaluation

    for split in ("dev", "test"):
        if split in metrics:
            print(f"== {split} ==\n" + render_evaluation(metrics[split]))
    print(f"model written to {args.out} (best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
          f"{metrics['train_wall_seconds']:.0f} s)")
    return 0


def _as_flags(err: NerError) -> str:
    """The error's message; a config field in it (ConfigError) written as the flag that sets it."""
    from nerbilstm.config import ConfigError

    if isinstance(err, ConfigError):
        return err.describe(lambda name: "--" + name.replace("_", "-"))
    return str(err)


def _checkpoint_data_path(out_dir: str) -> str | None:
    from nerbilstm.checkpoint import CHECKPOINT_DIR, STATE_JSON

    path = Path(out_dir) / CHECKPOINT_DIR / STATE_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))["data"]["train"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cmd_evaluate(args) -> int:
    from nerbilstm.evaluate import evaluate_tagger
    from nerbilstm.predict import Tagger
    from nerbilstm.report import render_evaluation

    tagger = Tagger.load(args.model)
    sentences = _gold_sentences(args)
    metrics, pred = evaluate_tagger(tagger, sentences, return_predictions=True)
    metrics["split"] = args.split
    if args.plots:
        from nerbilstm.evaluate import label_set
        from nerbilstm.plots import write_run_plots

        gold = [s.tags for s in sentences]
        write_run_plots(args.plots, tagger.config.get("history"), gold, pred, label_set(tagger.labels, gold))
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
    result = compare_taggers(*taggers, _gold_sentences(args), samples=args.samples, seed=args.seed)
    result["split"] = args.split
    result["models"] = {"a": args.model_a, "b": args.model_b}
    print(json.dumps(result) if args.json else render_comparison(result))
    return 0


def cmd_predict(args) -> int:
    from nerbilstm.data.readers import decode_argument, read_conll_tokens, read_text_lines, readable_path
    from nerbilstm.predict import Tagger
    from nerbilstm.report import render_documents

    if not args.texts and not args.input:
        if sys.stdin is None or sys.stdin.isatty():
            raise NerError("nothing to tag: give text arguments, --input FILE, or text on standard input")
        args.input = "-"
    if args.batch_size < 1:
        raise NerError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.nbest < 0:
        raise NerError("--nbest must be >= 0")
    tagger = Tagger.load(args.model)
    tagger.batch_size = args.batch_size
    if args.nbest and tagger.model.config.decoder != "crf":
        raise NerError("--nbest needs a CRF model (this one decodes with softmax)")
    if args.input and args.input_format == "conll":
        with readable_path(args.input) as path:
            sentences = read_conll_tokens(path, encoding=args.encoding)
        docs = tagger.tag_tokens(sentences, nbest=args.nbest)
    else:
        texts = [decode_argument(t, k, args.encoding) for k, t in enumerate(args.texts, start=1)]
        if args.input:
            texts += read_text_lines(args.input, args.encoding)
        docs = tagger(texts, nbest=args.nbest)
    sys.stdout.write(render_documents(docs, args.output_format))
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
    serve(args.model, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes, any_host=args.any_host,
          max_tokens_per_request=args.max_tokens_per_request, max_connections=args.max_connections,
          keep_alive_s=args.keep_alive)
    return 0


def cmd_export(args) -> int:
    from nerbilstm.export import export_model

    fmt = args.format or ("onnx" if args.out.lower().endswith(".onnx") else "torchscript")
    out = export_model(args.model, args.out, fmt)
    print(f"{fmt} model written to {out}")
    return 0


def cmd_upgrade(args) -> int:
    from nerbilstm.io import FORMAT_VERSION, upgrade_model_dir
    from nerbilstm.predict import build_model

    def check(config, shapes):
        build_model(config, shapes)  # refuses a config that does not match the weights

    if upgrade_model_dir(args.model, accept_edits=args.accept_edits, check=check):
        print(f"{args.model}: config.json re-saved in format {FORMAT_VERSION} (weights unchanged)")
    else:
        print(f"{args.model}: already in format {FORMAT_VERSION}, checksums intact; nothing to do")
    return 0


def _log_notes(info: dict) -> None:
    log = logging.getLogger("nerbilstm")
    for part in info.values():
        if isinstance(part, dict):
            for note in part.get("notes", []):
                log.info("%s: %s", part.get("path"), note)


if __name__ == "__main__":
    sys.exit(main())
