"""Command line: argument parsing only; each command calls a library function.

Our errors (bad data, bad model files) become one line on stderr and exit code 2;
tracebacks are left for bugs.
"""

from __future__ import annotations

import argparse
import contextlib
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
    p.add_argument("--format", choices=("gmb", "text-labels", "conll"), default=None,
                   help="file format (default: detected from the content)")
    p.add_argument("--encoding", default=None, help="text encoding (default: UTF-8, else cp1252, with a note)")
    p.add_argument("--tag-column", type=int, default=-1, help="CoNLL column holding the tag (default: last)")
    p.add_argument("--max-sentences", type=int, default=None, help="use only the first N sentences of the file")


def _add_gold_options(p: argparse.ArgumentParser) -> None:
    """The gold sentences a model is scored on: a corpus file and one split of it."""
    _add_data_options(p)
    p.add_argument("--split", choices=("test", "dev", "train", "all"), default="test",
                   help="canonical split of the file, or all of it (default: test)")


def _gold_sentences(args) -> list:
    """The sentences that _add_gold_options' flags name, with the reader's notes logged."""
    from nerbilstm.data.dataset import select_split

    sentences, info = select_split(args.data, args.split, args.format, args.encoding, args.tag_column,
                                   args.max_sentences)
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
    p.add_argument("--output-format", choices=("inline", "conll", "json"), default="inline")
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

    p = sub.add_parser("bench", help="benchmark our LSTM and CRF against torch.nn.LSTM and pytorch-crf",
                       formatter_class=_formatter,
                       description="Speed of training, inference, the CRF and the LSTM, ours beside the "
                                   "references (torch.nn.LSTM, pytorch-crf) in one process, and peak memory "
                                   "of training; prints one JSON object (ratios: reference time / ours).",
                       epilog="examples:\n"
                              "  nerbilstm bench --data ner_dataset.csv --threads 2 --out bench.json\n"
                              "  nerbilstm bench --quick --threads 1    # tiny sizes: a smoke test\n")
    p.add_argument("--data", help="GMB corpus file (default: $NERBILSTM_DATA, else synthetic sentences)")
    p.add_argument("--model", help="model directory for the end-to-end figure (default: the shipped model)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (default: 7; 2 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    p.add_argument("--out", help="also write the JSON to this file")

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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "compare": cmd_compare, "info": cmd_info, "serve": cmd_serve, "bench": cmd_bench,
                "export": cmd_export}[args.command](args)
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
                  args.max_sentences)
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
    from nerbilstm.metrics import format_report

    for split in ("dev", "test"):
        if split in metrics:
            print(f"== {split} ==\n" + format_report(metrics[split]))
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
    from nerbilstm.metrics import format_report
    from nerbilstm.predict import Tagger

    tagger = Tagger.load(args.model)
    sentences = _gold_sentences(args)
    metrics, pred = evaluate_tagger(tagger, sentences, return_predictions=True)
    metrics["split"] = args.split
    if args.plots:
        from nerbilstm.evaluate import label_set
        from nerbilstm.plots import write_run_plots

        gold = [s.tags for s in sentences]
        write_run_plots(args.plots, tagger.config.get("history"), gold, pred, label_set(tagger.labels, gold))
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_report(metrics))
    return 0


def cmd_compare(args) -> int:
    from nerbilstm.evaluate import compare_taggers
    from nerbilstm.predict import Tagger

    if args.samples < 1:
        raise NerError(f"--samples must be at least 1, got {args.samples}")
    taggers = [Tagger.load(None if m == "default" and not Path(m).exists() else m)
               for m in (args.model_a, args.model_b)]
    result = compare_taggers(*taggers, _gold_sentences(args), samples=args.samples, seed=args.seed)
    result["split"] = args.split
    result["models"] = {"a": args.model_a, "b": args.model_b}
    print(json.dumps(result) if args.json else _render_comparison(result))
    return 0


def _render_comparison(result: dict) -> str:
    """The text form of evaluate.compare_taggers' result: both models' figures, then the test."""
    boot = result["bootstrap"]
    rows = [("", "entity F1", "token macro-F1", "batch-of-8", "model")]
    for key in ("a", "b"):
        m = result[key]
        rows.append((key.upper(), f"{m['entity_f1']:.4f}", f"{m['token_macro_f1']:.4f}",
                     f"{m['seed_batch_macro_f1']:.4f}", result["models"][key]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lo, hi = boot["ci95"]
    return "\n".join([
        f"{result['split']} split: {boot['sentences']:,} sentences; paired bootstrap over sentences, "
        f"{boot['samples']:,} resamples (seed {boot['seed']})",
        *("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows),
        f"entity F1, B - A: {boot['delta']:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}]; B higher in "
        f"{boot['b_better']:.1%} of resamples, A in {boot['a_better']:.1%}; p = {boot['p_value']:.3f}",
    ])


def cmd_predict(args) -> int:
    from nerbilstm.predict import Tagger

    if not args.texts and not args.input:
        if sys.stdin is None or sys.stdin.isatty():
            raise NerError("nothing to tag: give text arguments, --input FILE, or text on standard input")
        args.input = "-"
    if args.batch_size < 1:
        raise NerError(f"--batch-size must be at least 1, got {args.batch_size}")
    tagger = Tagger.load(args.model)
    tagger.batch_size = args.batch_size
    if args.input and args.input_format == "conll":
        from nerbilstm.data.readers import read_conll_tokens

        with _input_path(args.input) as path:
            sentences = read_conll_tokens(path, encoding=args.encoding)
        tags = tagger.tags(sentences)
        docs = [_tokens_doc(tokens, sent_tags) for tokens, sent_tags in zip(sentences, tags)]
    else:
        texts = [_arg_text(t, k, args.encoding) for k, t in enumerate(args.texts, start=1)]
        if args.input:
            texts += _input_lines(args.input, args.encoding)
        if args.nbest < 0:
            raise NerError("--nbest must be >= 0")
        if args.nbest and tagger.model.config.decoder != "crf":
            raise NerError("--nbest needs a CRF model (this one decodes with softmax)")
        docs = tagger(texts, nbest=args.nbest)
    sys.stdout.write(_render(docs, args.output_format))
    return 0


def cmd_info(args) -> int:
    from nerbilstm.predict import Tagger

    info = Tagger.load(args.model).info()
    print(json.dumps(info) if args.json else _render_info(info))
    return 0


def _render_info(info: dict) -> str:
    """The text form of Tagger.info(): one line per aspect of the model."""
    net = info.get("model") or {}
    train = info.get("training") or {}
    metrics = info.get("metrics") or {}
    data = info.get("data") or {}
    emb = info.get("embeddings") or {}
    decoder = "CRF" + (" (IOB2-constrained)" if net.get("constrained") else "") if net.get("decoder") == "crf" \
        else str(net.get("decoder", "?"))
    chars = (f"char CNN {net.get('char_filters')} filters of width {net.get('char_kernel')} over "
             f"{net.get('char_dim')}-dim chars" if net.get("char_dim") else "no char features")
    size = info["weights"]["bytes"]
    rows = [
        ("model", f"{info.get('path')} (format {info.get('format_version')}, "
                  f"written by nerbilstm {info.get('trained_with')})"),
        ("network", f"{net.get('layers')} BiLSTM layer(s) x {net.get('hidden_size')} units per direction, "
                    f"{decoder}; {net.get('word_dim')}-dim words, {chars}, {net.get('case_dim')}-dim casing; "
                    f"dropout {net.get('dropout')}"),
        ("parameters", f"{info['parameters']:,}" + (f" (model.safetensors {size / 1e6:.1f} MB)" if size else "")),
        ("labels", f"{len(info['labels'])} ({len(info['entity_types'])} entity types: "
                   f"{' '.join(info['entity_types'])})"),
        ("vocabulary", f"{info['vocabulary']['words']:,} words, {info['vocabulary']['chars']:,} chars"),
        ("embeddings", f"{emb.get('source') or 'none'}" + (f" ({emb.get('dim')}-dim, "
                       f"{'loaded' if emb.get('loaded') else 'not found here: unseen words get no vector'})"
                       if emb.get("source") else "")),
        ("training", f"{train.get('epochs')} epochs (best {metrics.get('best_epoch')} of "
                     f"{metrics.get('epochs_run')} run), batch {train.get('batch_size')}, Adam lr {train.get('lr')} "
                     f"x {train.get('lr_decay')} per epoch, word dropout {train.get('word_dropout')}, "
                     f"seed {train.get('seed')}; {metrics.get('train_wall_seconds')} s"),
        ("data", f"{data.get('file')} ({data.get('format')}, {data.get('encoding')}, "
                 f"{data.get('sentences')} sentences, sha256 {str(data.get('sha256'))[:12]}...); "
                 f"split: {data.get('split')}"),
    ]
    for split in ("dev", "test"):
        m = metrics.get(split)
        if isinstance(m, dict):
            figures = [("entity F1", "entity_f1"), ("token macro-F1", "token_macro_f1"),
                       ("batch-of-8 figure", "seed_batch_macro_f1")]
            rows.append((split, ", ".join(f"{name} {m[key]:.4f}" for name, key in figures
                                          if isinstance(m.get(key), float))))
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k:<{width}}{v}" for k, v in rows)


def cmd_serve(args) -> int:
    try:
        from nerbilstm.serve.app import serve
    except ImportError as err:
        raise NerError(f"serving needs the serve extra ({err}): pip install 'nerbilstm[serve]'") from None
    serve(args.model, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes)
    return 0


def cmd_bench(args) -> int:
    from nerbilstm.bench import run_benchmark, write_report

    write_report(run_benchmark(args.data, args.model, args.repeats, args.threads, args.quick), args.out)
    return 0


def cmd_export(args) -> int:
    from nerbilstm.export import export_model

    fmt = args.format or ("onnx" if args.out.lower().endswith(".onnx") else "torchscript")
    out = export_model(args.model, args.out, fmt)
    print(f"{fmt} model written to {out}")
    return 0


def _tokens_doc(tokens, tags) -> dict:
    """A predicted pre-tokenized sentence in the same shape as Tagger output (offsets into the
    space-joined tokens)."""
    from nerbilstm.metrics import entity_spans

    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t) + 1
    text = " ".join(tokens)
    return {"text": text,
            "tokens": [{"text": t, "start": s, "end": s + len(t), "tag": g} for t, s, g in zip(tokens, starts, tags)],
            "entities": [{"text": text[starts[s]:starts[e - 1] + len(tokens[e - 1])], "label": lab,
                          "start": starts[s], "end": starts[e - 1] + len(tokens[e - 1])}
                         for lab, s, e in entity_spans(tags)]}


def _arg_text(text: str, k: int, encoding: str | None) -> str:
    """A text argument: bytes that were not valid in the locale's encoding reach Python as lone
    surrogates, which cannot be printed; decode those bytes as --encoding, else cp1252 (with a note)."""
    import os

    from nerbilstm.errors import DataError

    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # not from the command line: a str with lone surrogates
        return text.encode("utf-8", "replace").decode("utf-8")
    try:
        if encoding:
            from nerbilstm.data.readers import _check_encoding

            return raw.decode(_check_encoding(encoding, f"text argument {k}"))
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        if encoding:
            raise DataError(f"text argument {k} is not valid {encoding}: {err.reason}") from None
    logging.getLogger("nerbilstm").warning("text argument %d: not valid UTF-8; read as cp1252", k)
    return raw.decode("cp1252", errors="replace")


STDIN_NAME = "<stdin>"


@contextlib.contextmanager
def _input_path(name: str):
    """The path for a reader of files (CoNLL ``--input``): the file itself, or for ``-`` standard
    input copied to a temporary file (removed afterwards); errors name ``<stdin>`` instead of it."""
    if name != "-":
        yield name
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nerbilstm-stdin-") as tmp:
        path = Path(tmp) / "stdin"
        path.write_bytes(sys.stdin.buffer.read())
        try:
            yield str(path)
        except NerError as err:
            if err.path == str(path):
                raise type(err)(err.message, path=STDIN_NAME, line=err.line) from None
            raise


def _input_lines(name: str, encoding: str | None) -> list[str]:
    """The non-blank lines of a text ``--input``: a file, or standard input for ``-``."""
    from nerbilstm.errors import DataError

    if name == "-":
        return _text_lines(sys.stdin.buffer.read(), encoding, STDIN_NAME)
    p = Path(name)
    if not p.is_file():
        raise DataError("input file not found", path=p)
    return _text_lines(p.read_bytes(), encoding, str(p))


def _text_lines(raw: bytes, encoding: str | None, name: str) -> list[str]:
    """The non-blank lines of ``raw`` (UTF-8, else cp1252 with a note; or ``encoding``);
    ``name`` says where the bytes came from in messages."""
    from nerbilstm.errors import DataError

    if encoding is not None:
        from nerbilstm.data.readers import _check_encoding

        encoding = _check_encoding(encoding, name)
    if b"\x00" in raw[:4096]:
        raise DataError("looks like a binary file, expected text", path=name)
    try:
        text = raw.decode(encoding or "utf-8")
    except UnicodeDecodeError as err:
        if encoding:
            line = raw[: err.start].count(b"\n") + 1
            raise DataError(f"not valid {encoding}: {err.reason}", path=name, line=line) from None
        text = raw.decode("cp1252", errors="replace")
        logging.getLogger("nerbilstm").warning("%s: not valid UTF-8; read as cp1252", name)
    return [line for line in text.splitlines() if line.strip()]


_JSON_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _render(docs: list[dict], fmt: str) -> str:
    if not docs:
        return ""
    if fmt == "json":  # JSON lines: escape the line breaks json.dumps leaves raw (str.splitlines splits on them)
        return "".join(json.dumps(d, ensure_ascii=False).translate(_JSON_LINE_BREAKS) + "\n" for d in docs)
    if fmt == "conll":
        return "".join("".join(f"{t['text']}\t{t['tag']}\n" for t in d["tokens"]) + "\n" for d in docs)
    lines = []
    for d in docs:
        text, out, pos = d["text"], [], 0
        for e in d["entities"]:
            out.append(text[pos:e["start"]] + f"[{e['text']}]{{{e['label']}}}")
            pos = e["end"]
        lines.append("".join(out) + text[pos:])
    return "\n".join(lines) + "\n"


def _log_notes(info: dict) -> None:
    log = logging.getLogger("nerbilstm")
    for part in info.values():
        if isinstance(part, dict):
            for note in part.get("notes", []):
                log.info("%s: %s", part.get("path"), note)


if __name__ == "__main__":
    sys.exit(main())
