"""Text reports, one home: the evaluation report, a model's description (``nerbilstm info``),
the comparison of two models, and the output formats of tagged documents.

Library functions return dicts; the functions here turn them into text for people (or JSON
Lines for programs). Only the CLI prints them.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from nerbilstm.config import FIELDS_BEFORE_THEY_EXISTED
from nerbilstm.metrics import ERROR_KINDS


def _table(title: str, key_name: str, rows: dict, columns: list[tuple[str, str]]) -> list[str]:
    """Aligned text table; ``columns`` are (dict key, header)."""
    if not rows:
        return [f"{title}: (none)"]
    width = max(len(key_name), *(len(str(k)) for k in rows))
    col_w = [max(9, len(h)) for _, h in columns]
    head = f"{key_name:<{width}}" + "".join(f"  {h:>{w}}" for (_, h), w in zip(columns, col_w))
    lines = [title, head, "-" * len(head)]
    for name, row in rows.items():
        cells = []
        for (k, _), w in zip(columns, col_w):
            v = row.get(k, "")
            if isinstance(v, int):
                cells.append(f"  {v:>{w}d}")
            elif isinstance(v, float):
                cells.append(f"  {v:>{w}.4f}")
            else:
                cells.append(f"  {str(v):>{w}}")
        lines.append(f"{str(name):<{width}}" + "".join(cells))
    return lines


def render_evaluation(metrics: dict) -> str:
    """A readable multi-line report of :func:`metrics.evaluate_tags` output."""
    m = metrics
    lines = [f"scored: {m['scored']}"] if m.get("scored") else []
    lines += [f"warning: {w}" for w in m.get("warnings", [])]
    lines += [
        f"sentences: {m.get('n_sentences', 0)}   tokens: {m.get('n_tokens', 0)}"
        f"   gold entities: {m.get('entity_support', 0)}",
        "",
        f"{'':<22}{'precision':>10}{'recall':>10}{'F1':>10}",
        f"{'entities (conll)':<22}{m['entity_precision']:>10.4f}"
        f"{m['entity_recall']:>10.4f}{m['entity_f1']:>10.4f}",
        f"{'entities (strict)':<22}{m['entity_precision_strict']:>10.4f}"
        f"{m['entity_recall_strict']:>10.4f}{m['entity_f1_strict']:>10.4f}",
        "",
        f"{'token accuracy':<22}{m['token_accuracy']:>10.4f}",
        f"{'token macro-F1':<22}{m['token_macro_f1']:>10.4f}",
        f"{'batch-of-8 macro-F1':<22}{m['seed_batch_macro_f1']:>10.4f}",
        "",
    ]
    type_cols = [("precision", "precision"), ("recall", "recall"), ("f1", "F1")]
    if any("f1_strict" in r for r in m.get("per_type", {}).values()):
        type_cols.append(("f1_strict", "F1 strict"))
    type_cols.append(("support", "support"))
    lines += _table("Per entity type (conll):", "type", m.get("per_type", {}), type_cols)
    lines.append("")
    tag_cols = [("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("support", "support")]
    lines += _table("Per tag (tokens):", "tag", m.get("per_tag", {}), tag_cols)
    errors = m.get("entity_errors")
    if errors:
        lines.append("")
        rows = {t: dict(k, spurious=errors["spurious"].get(t, 0)) for t, k in errors["per_type"].items()}
        for t, n in errors["spurious"].items():
            rows.setdefault(t, dict.fromkeys(ERROR_KINDS, 0) | {"spurious": n})
        error_cols = [("correct", "correct"), ("wrong_type", "wrong type"), ("wrong_span", "wrong span"),
                      ("wrong_span_and_type", "span+type"), ("missed", "missed"), ("spurious", "spurious")]
        lines += _table("Gold entities by outcome, and predictions overlapping no gold entity (conll):",
                        "type", dict(sorted(rows.items())), error_cols)
        top = list(errors["confusions"].items())[:8]
        if top:
            lines.append("Most frequent type confusions (gold>predicted, same span): "
                         + ", ".join(f"{k} {n}" for k, n in top))
    return "\n".join(lines) + "\n"


def render_info(info: dict) -> str:
    """The text form of Tagger.info(): one line per aspect of the model."""
    net = info.get("model") or {}
    train = {**FIELDS_BEFORE_THEY_EXISTED, **(info.get("training") or {})}
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
                     f"{metrics.get('epochs_run')} run; patience {train.get('patience')}, min gain "
                     f"{train.get('min_gain')}), batch {train.get('batch_size')}, Adam lr {train.get('lr')} "
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
                       ("batch-of-8 macro-F1", "seed_batch_macro_f1")]
            rows.append((split, ", ".join(f"{name} {m[key]:.4f}" for name, key in figures
                                          if isinstance(m.get(key), float))))
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k:<{width}}{v}" for k, v in rows)


def render_comparison(result: dict) -> str:
    """The text form of evaluate.compare_taggers' result: both models' figures, then the test."""
    boot = result["bootstrap"]
    rows = [("", "entity F1", "token macro-F1", "batch-of-8 macro-F1", "model")]
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


_JSON_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def render_documents(docs: Iterable[dict], fmt: str) -> str:
    """Tagged documents (``Tagger`` output) as ``inline`` text (``[Paris]{geo}``), ``conll``
    (token TAB tag, a blank line after each document), ``jsonl`` (JSON Lines; ``json`` too) or ``spans``
    (JSON Lines in the shape annotation tools read, Prodigy's: ``{"text", "spans": [{"start",
    "end", "label", "score"}]}``; the ``jsonl`` reader reads it back)."""
    if fmt == "spans":
        docs = ({"text": d["text"], "spans": [{"start": e["start"], "end": e["end"], "label": e["label"],
                                               "score": e.get("score")} for e in d["entities"]]} for d in docs)
        fmt = "jsonl"
    if fmt in ("jsonl", "json"):
        return "".join(_json_line(_json(d)) + "\n" for d in docs)
    if fmt == "conll":
        return "".join("".join(f"{t['text']}\t{t['tag']}\n" for t in d["tokens"]) + "\n" for d in docs)
    lines = []
    for d in docs:
        text, out, pos = d["text"], [], 0
        for e in d["entities"]:
            out.append(text[pos:e["start"]] + f"[{e['text']}]{{{e['label']}}}")
            pos = e["end"]
        lines.append("".join(out) + text[pos:])
    return "\n".join(lines) + "\n" if lines else ""


def render_document_parts(text: str, parts: Iterable[dict], fmt: str) -> Iterator[str]:
    """One document given as its text and its parts (``Tagger.tag_in_parts``: dicts of tokens,
    entities, sentences), rendered as ``render_documents`` renders the whole document, in pieces:
    the tokens of each part as it comes (``jsonl``, ``conll``), the rest once all have come."""
    entities, sentences = [], []
    if fmt in ("jsonl", "json"):
        yield _json_line('{"text": ' + _json(text) + ', "tokens": [')
        first = True
        for part in parts:
            if part["tokens"]:
                yield _json_line(("" if first else ", ") + ", ".join(_json(t) for t in part["tokens"]))
                first = False
            entities.extend(_json(e) for e in part["entities"])
            sentences.extend(_json(s) for s in part["sentences"])
        yield _json_line('], "entities": [' + ", ".join(entities) + '], "sentences": [' + ", ".join(sentences)
                         + "]}") + "\n"
    elif fmt == "conll":
        for part in parts:
            yield "".join(f"{t['text']}\t{t['tag']}\n" for t in part["tokens"])
        yield "\n"
    else:  # inline, spans: the text and its entities
        for part in parts:
            entities.extend(part["entities"])
        yield render_documents([{"text": text, "tokens": [], "entities": entities, "sentences": []}], fmt)


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_line(text: str) -> str:
    """``text`` with the line breaks json.dumps leaves raw escaped (str.splitlines splits on them)."""
    return text.translate(_JSON_LINE_BREAKS)
