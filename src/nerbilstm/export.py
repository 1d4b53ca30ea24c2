"""Export a trained tagger as one self-contained artefact: TorchScript or ONNX.

The artefact computes emissions *and* decodes them (Viterbi for the CRF, argmax for the
softmax decoder); running it needs torch (TorchScript) or onnxruntime (ONNX), never this
package. ``ExportedTagger`` copies the trained weights into an inference-only module
written for ``torch.jit.script``: plain loops, no autograd Functions, no Python objects.

Inputs, all batch first, padded and left-aligned like ``nerbilstm.data.batching.Batch``:

  words           (B, T)    int64  word ids (lowercased token, 0 padding, 1 unknown)
  chars           (B, T, L) int64  char ids of each token's first ``max_word_chars``
                                    characters (0 padding, 1 unknown)
  cases           (B, T)    int64  casing class of each token (index into ``cases``)
  mask            (B, T)    bool   True on real tokens; every row a non-empty prefix of Trues
  pretrained      (B, T, E) float  pretrained vectors of out-of-vocabulary words, E = word_dim
  pretrained_mask (B, T)    bool   where ``pretrained`` replaces the word embedding

Outputs: tags (B, T) int64 (0 past each sentence's length) and scores (B,) float32 (the
Viterbi path score for the CRF, the path log-probability for softmax), as ``model.decode``.

Linear time: each step of a time loop reads its row of a time-major tensor (``xp[t]``, one
Gather; never a slice over leading axes, which copies the whole tensor), and the ONNX graph's
Loops collect their per-step results as scan outputs (``_linear_loops`` rewrites the exporter's
growing sequences, which ONNX Runtime copies on every insert). benchmarks/export_scaling.py
measures it.

Pretrained vectors: the shipped tagger looks words outside its vocabulary up in the
pretrained table it was trained with (GloVe). The table (400k words) is not bundled; the
artefact takes those vectors as the optional ``pretrained`` / ``pretrained_mask`` inputs.
A caller without the table passes zeros and an all-False mask (shapes may broadcast, e.g.
``zeros(1, 1, E)`` and ``zeros(1, 1, dtype=bool)``): unknown words then get the trained
unknown-word vector, exactly as ``Tagger.load(dir, pretrained=None)`` does.

The archive's metadata (``nerbilstm.json``: TorchScript extra file, ONNX metadata_props)
holds what a user needs to map tokens to ids with plain Python: labels, word and char
vocabularies, casing classes and the casing rule, ``max_word_chars`` and the lowercasing rule.
Read it with ``torch.jit.load(path, _extra_files={"nerbilstm.json": ""})`` (the dict is filled
in) or from ``onnx.load(path).metadata_props``; tests/test_export.py has a torch-only client.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from nerbilstm.errors import NerError
from nerbilstm.model.crf import CRF

__all__ = ["ExportedTagger", "OnnxExportedTagger", "export_model", "export_tagger", "export_metadata", "METADATA_NAME",
           "EXPORT_FORMAT_VERSION", "FORMATS"]

METADATA_NAME = "nerbilstm.json"
EXPORT_FORMAT_VERSION = 1
FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17

# The casing rule of nerbilstm.data.vocab.casing, in words: the first rule that holds wins.
CASING_RULE = [
    ["numeric", "word.isdigit()"],
    ["has_digit", "any(ch.isdigit() for ch in word)"],
    ["lower", "word.islower()"],
    ["upper", "word.isupper()"],
    ["title", "word[:1].isupper() and (len(word) == 1 or word[1:].islower())"],
    ["mixed", "any(ch.isalpha() for ch in word)"],
    ["punct", "word and all(not ch.isalnum() for ch in word)"],
    ["other", "otherwise"],
]


class _LSTMLayer(nn.Module):
    """One bidirectional layer of our BiLSTM (nerbilstm.model.lstm.BiLSTMLayer), inference only."""

    def __init__(self, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor):
        super().__init__()
        self.register_buffer("weight_ih", weight_ih.detach().float().clone())  # (2, 4H, D)
        self.register_buffer("weight_hh", weight_hh.detach().float().clone())  # (2, 4H, H)
        self.register_buffer("bias", bias.detach().float().clone())  # (2, 4H)

    def forward(self, x: Tensor, mask: Tensor, rev_index: Tensor) -> Tensor:
        """x (B, T, D), mask (B, T) bool, rev_index (B, T) -> (B, T, 2H), zero on padding."""
        B = x.shape[0]
        T = x.shape[1]
        x_rev = x.gather(1, rev_index.unsqueeze(2).expand(x.shape))
        both = torch.stack([x, x_rev])  # (2, B, T, D): the backward direction reads reversed rows
        xp = torch.baddbmm(self.bias.unsqueeze(1), both.reshape(2, B * T, x.shape[2]),
                           self.weight_ih.transpose(1, 2)).view(2, B, T, -1)
        # Time-major, so that each step reads xp[t] (one Gather in ONNX; a slice over the leading
        # axes would copy the whole tensor at every step).
        xp = xp.permute(2, 0, 1, 3).contiguous()  # (T, 2, B, 4H)
        w_hh_t = self.weight_hh.transpose(1, 2)  # (2, H, 4H)
        H = w_hh_t.shape[1]
        h = torch.zeros(2, B, H, dtype=x.dtype, device=x.device)
        c = torch.zeros(2, B, H, dtype=x.dtype, device=x.device)
        step_mask = mask.t().reshape(T, 1, B, 1)
        outs: list[Tensor] = []
        for t in range(T):
            gates = torch.baddbmm(xp[t], h, w_hh_t)  # (2, B, 4H), gate order i, f, g, o
            i = torch.sigmoid(gates[:, :, 0:H])
            f = torch.sigmoid(gates[:, :, H:2 * H])
            g = torch.tanh(gates[:, :, 2 * H:3 * H])
            o = torch.sigmoid(gates[:, :, 3 * H:4 * H])
            c_new = torch.addcmul(f * c, i, g)
            h_new = o * torch.tanh(c_new)
            m = step_mask[t]
            # State carried unchanged over padding: a sentence's result never depends on its batch.
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c)
            outs.append(h)
        hs = torch.stack(outs, 2) * mask.view(1, B, T, 1)  # (2, B, T, H)
        back = hs[1].gather(1, rev_index.unsqueeze(2).expand(hs[1].shape))
        return torch.cat([hs[0], back], 2)


class ExportedTagger(nn.Module):
    """Inference-only copy of a BiLSTMTagger: features -> BiLSTM -> emissions -> decoder.

    forward(words, chars, cases, mask, pretrained, pretrained_mask) -> (tags (B,T), scores (B,));
    see the module docstring for the inputs. Runs in float32; dropout is the identity.
    """

    # Constants to TorchScript: the branches of absent parts are compiled away.
    __constants__ = ["has_chars", "has_case", "has_crf", "conv_padding"]

    def __init__(self, model):
        super().__init__()

        def copy(x: Tensor) -> Tensor:
            return x.detach().float().cpu().clone()

        self.register_buffer("word_weight", copy(model.word_embed.weight))  # (V, E)
        self.has_chars = model.char_cnn is not None
        if model.char_cnn is not None:
            conv = model.char_cnn.conv
            char_weight = copy(model.char_cnn.embed.weight)
            char_weight[0] = 0.0  # the padding id: zero outside a word, as CharCNN
            self.register_buffer("char_weight", char_weight)
            self.register_buffer("conv_weight", copy(conv.weight))  # (F, C, k)
            self.register_buffer("conv_bias", copy(conv.bias))
            self.conv_padding = int(conv.padding[0])
        else:
            self.register_buffer("char_weight", torch.zeros(1, 1))
            self.register_buffer("conv_weight", torch.zeros(1, 1, 1))
            self.register_buffer("conv_bias", torch.zeros(1))
            self.conv_padding = 0
        self.has_case = model.case_embed is not None
        self.register_buffer("case_weight", copy(model.case_embed.weight) if model.case_embed is not None
                             else torch.zeros(1, 1))
        self.layers = nn.ModuleList(_LSTMLayer(layer.weight_ih, layer.weight_hh, layer.bias)
                                    for layer in model.lstm.layers)
        self.register_buffer("emission_weight", copy(model.emission.weight))  # (K, 2H)
        self.register_buffer("emission_bias", copy(model.emission.bias))
        decoder = model.decoder
        self.has_crf = isinstance(decoder, CRF)
        K = model.emission.weight.shape[0]
        if isinstance(decoder, CRF):
            # Exactly the potentials the CRF decodes with: parameters plus the IOB2
            # constraint penalties (CRF._potentials), computed once here in float32.
            trans, start, end = decoder._potentials(torch.float32, torch.device("cpu"))
            self.register_buffer("transitions", copy(trans))  # [from, to]
            self.register_buffer("start_scores", copy(start))
            self.register_buffer("end_scores", copy(end))
        else:
            self.register_buffer("transitions", torch.zeros(K, K))
            self.register_buffer("start_scores", torch.zeros(K))
            self.register_buffer("end_scores", torch.zeros(K))
        self.eval()

    def emissions(self, words: Tensor, chars: Tensor, cases: Tensor, mask: Tensor, pretrained: Tensor,
                  pretrained_mask: Tensor) -> Tensor:
        """-> (B, T, K) emission scores (rows past a sentence's length are meaningless)."""
        x = nn.functional.embedding(words, self.word_weight)
        x = torch.where(pretrained_mask.unsqueeze(-1), pretrained.to(x.dtype), x)
        parts = [x]
        if self.has_chars:
            B = chars.shape[0]
            T = chars.shape[1]
            L = chars.shape[2]
            flat = chars.reshape(B * T, L)
            ce = nn.functional.embedding(flat, self.char_weight).transpose(1, 2)  # (B*T, C, L)
            feats = nn.functional.conv1d(ce, self.conv_weight, self.conv_bias, 1, self.conv_padding)
            # Padding characters never win the max; words without characters get zeros.
            feats = feats.masked_fill((flat == 0).unsqueeze(1), float("-inf")).amax(2)
            feats = torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats))
            parts.append(feats.view(B, T, -1))
        if self.has_case:
            parts.append(nn.functional.embedding(cases, self.case_weight))
        out = torch.cat(parts, -1)
        B = mask.shape[0]
        T = mask.shape[1]
        # Reverse each row within its own length (the index map is its own inverse).
        steps = torch.arange(T, device=mask.device).unsqueeze(0).expand(B, T)
        last = (mask.sum(1) - 1).unsqueeze(1)
        rev_index = torch.where(steps <= last, last - steps, steps)
        for layer in self.layers:
            out = layer(out, mask, rev_index)
        return nn.functional.linear(out, self.emission_weight, self.emission_bias)

    def viterbi(self, em: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """em (B, T, K), mask (B, T) -> best paths (B, T) (0 past each length) and scores (B,)."""
        B = em.shape[0]
        T = em.shape[1]
        K = em.shape[2]
        em = torch.where(mask.unsqueeze(2), em, torch.zeros_like(em))
        trans = self.transitions.unsqueeze(0)  # (1, from, to)
        identity = torch.arange(K, device=em.device).unsqueeze(0).expand(B, K)
        em_t = em.transpose(0, 1).contiguous()  # (T, B, K): time-major, as xp in _LSTMLayer
        mask_t = mask.t().unsqueeze(2)  # (T, B, 1)
        v = self.start_scores.unsqueeze(0) + em_t[0]  # (B, K)
        pointers: list[Tensor] = [identity]  # pointers[t] (B, K): best tag at t-1 for each tag at t
        for t in range(1, T):
            best, arg = (v.unsqueeze(2) + trans).max(1)
            m = mask_t[t]
            v = torch.where(m, best + em_t[t], v)
            pointers.append(torch.where(m, arg, identity))  # padding points to itself
        score, tag = (v + self.end_scores.unsqueeze(0)).max(1)
        bp = torch.stack(pointers, 0)  # (T, B, K)
        # Backtrace, vectorised over the batch: padding's identity pointers carry each row's
        # final tag back to its own last token.
        tags: list[Tensor] = [tag]
        for s in range(T - 1):
            t = T - 1 - s
            tag = bp[t].gather(1, tag.unsqueeze(1)).squeeze(1)
            tags.append(tag)
        path = torch.stack(tags, 1).flip([1])  # tags[s] is the tag at T-1-s
        return path.masked_fill(~mask, 0), score

    def forward(self, words: Tensor, chars: Tensor, cases: Tensor, mask: Tensor, pretrained: Tensor,
                pretrained_mask: Tensor) -> tuple[Tensor, Tensor]:
        em = self.emissions(words, chars, cases, mask, pretrained, pretrained_mask)
        return self.decode(em, mask)

    def decode(self, em: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """em (B, T, K), mask (B, T) -> tags (B, T) and scores (B,)."""
        if self.has_crf:
            return self.viterbi(em, mask)
        log_probs = torch.log_softmax(em, -1)
        best, tags = log_probs.max(-1)
        tags = tags.masked_fill(~mask, 0)
        return tags, (best * mask.to(best.dtype)).sum(1)


class OnnxExportedTagger(ExportedTagger):
    """The ONNX artefact's module: ExportedTagger's outputs plus the emission scores (B, T, K)
    float32, from which nerbilstm.runtime computes marginals and entity probabilities."""

    def forward(self, words: Tensor, chars: Tensor, cases: Tensor, mask: Tensor, pretrained: Tensor,
                pretrained_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        em = self.emissions(words, chars, cases, mask, pretrained, pretrained_mask)
        tags, scores = self.decode(em, mask)
        return tags, scores, em


# ----------------------------------------------------------------------------- metadata


def export_metadata(model, vocab, config: dict | None = None) -> dict:
    """The JSON stored with the artefact: everything needed to turn tokens into its inputs."""
    from nerbilstm.data.batching import MAX_WORD_CHARS
    from nerbilstm.data.vocab import CASES

    config = config or {}
    mc = model.config
    embeddings = config.get("embeddings") if isinstance(config.get("embeddings"), dict) else None
    return {
        "format": "nerbilstm-export",
        "format_version": EXPORT_FORMAT_VERSION,
        "decoder": mc.decoder,
        "constrained": bool(mc.decoder == "crf" and mc.constrained),
        "labels": list(vocab.labels),
        "words": list(vocab.words),
        "chars": list(vocab.chars),
        "pad_id": 0,
        "unknown_id": 1,
        "word_lookup": "lowercase: words[i] == token.lower() (Python str.lower); not found: unknown_id",
        "char_lookup": "each of the token's first max_word_chars characters, case kept; not found: unknown_id",
        "max_word_chars": MAX_WORD_CHARS,
        "cases": list(CASES),
        "casing_rule": CASING_RULE,
        "word_dim": mc.word_dim,
        "pretrained": {
            "dim": mc.word_dim,
            "source": embeddings.get("source") if embeddings else None,
            "note": "optional: vectors of tokens whose word id is unknown_id, looked up in this table by "
                    "the tagger; pass zeros and an all-False pretrained_mask to go without",
        },
        "inputs": ["words (B,T) int64", "chars (B,T,L) int64", "cases (B,T) int64",
                   "mask (B,T) bool, left-aligned, mask[:,0] all True",
                   "pretrained (B,T,E) float32", "pretrained_mask (B,T) bool"],
        "outputs": ["tags (B,T) int64, 0 past each length", "scores (B,) float32",
                    "emissions (B,T,K) float32 (ONNX only)"],
        "potentials": _potentials(model),
    }


def _potentials(model) -> dict | None:
    """The CRF's transitions [from][to], start and end scores as it decodes with them (IOB2
    penalties included), float32 values as JSON numbers; None for the softmax decoder."""
    if not isinstance(model.decoder, CRF):
        return None
    trans, start, end = (x.detach().float().cpu() for x in model.decoder._potentials(torch.float32,
                                                                                     torch.device("cpu")))
    return {"transitions": trans.tolist(), "start": start.tolist(), "end": end.tolist()}


# ----------------------------------------------------------------------------- export


@contextlib.contextmanager
def _quiet():
    """torch 2.13 marks TorchScript and the TorchScript-based ONNX exporter deprecated; they
    are still what makes one artefact, loop included, that needs no Python code of ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", module=r"torch\.onnx")
        yield


def _script(module: ExportedTagger):
    try:
        return torch.jit.script(module)
    except RuntimeError as err:  # a bug of ours, but say what failed in one line
        raise NerError(f"cannot script the tagger for export: {str(err).strip().splitlines()[0]}") from None


def _torchscript_bytes(module: ExportedTagger, metadata: dict) -> bytes:
    buf = io.BytesIO()
    with _quiet():
        torch.jit.save(_script(module), buf,
                       _extra_files={METADATA_NAME: json.dumps(metadata, ensure_ascii=False)})
    return buf.getvalue()


def example_inputs(B: int = 2, T: int = 3, L: int = 4, E: int = 1) -> tuple[Tensor, ...]:
    """Dummy inputs of the artefact's signature (row 0 full length, row 1 one token)."""
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0] = True
    mask[:, 0] = True
    words = torch.where(mask, 2, 0).long()
    chars = torch.zeros(B, T, L, dtype=torch.long)
    chars[..., 0] = words
    return words, chars, words.clone(), mask, torch.zeros(B, T, E), torch.zeros(B, T, dtype=torch.bool)


# ----------------------------------------------------------------------------- linear ONNX loops


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return a
    return default


def _tensor_info(graph, name: str):
    """(elem_type, rank or None) of a tensor value of ``graph`` (after shape inference)."""
    for vi in list(graph.value_info) + list(graph.output) + list(graph.input):
        if vi.name == name and vi.type.HasField("tensor_type"):
            tt = vi.type.tensor_type
            return tt.elem_type, (len(tt.shape.dim) if tt.HasField("shape") else None)
    return None, None


def _scan_output(loop, k: int, producers: dict, consumers: dict) -> list:
    """Turn the k-th loop-carried *sequence* of ``loop`` (grown by one SequenceInsert per step,
    read once by a ConcatFromSequence after the loop) into a scan output of the Loop.

    ONNX Runtime copies a sequence on every insert, so T steps cost O(T^2); a scan output is
    collected once per step and concatenated at the end: O(T). Returns the nodes that replace
    the ConcatFromSequence (the caller removes it and the sequence's initial value)."""
    from onnx import TensorProto, helper

    body = _attr(loop, "body").g
    seq_in, seq_out = body.input[2 + k].name, body.output[1 + k].name
    insert = [n for n in body.node if seq_out in n.output]
    readers = [n for n in body.node if seq_in in n.input]
    concat = consumers.get(loop.output[k], [])
    init = producers.get(loop.input[2 + k])
    if (len(insert) != 1 or insert[0].op_type != "SequenceInsert" or len(insert[0].input) != 2
            or readers != insert or len(concat) != 1 or concat[0].op_type != "ConcatFromSequence"
            or init is None or init.op_type not in ("SequenceEmpty", "SequenceConstruct")
            or _attr(concat[0], "new_axis") is None or _attr(concat[0], "new_axis").i != 1):
        raise NerError("ONNX export: a time loop has a shape this export cannot make linear (a bug of ours)")
    insert, concat = insert[0], concat[0]
    x = insert.input[1]
    elem, rank = _tensor_info(body, x)
    if elem is None and init.op_type == "SequenceEmpty":
        elem = _attr(init, "dtype").i
    axis = _attr(concat, "axis").i
    if elem is None or (axis != 0 and rank is None):
        raise NerError("ONNX export: no type for a time loop's step output (a bug of ours)")
    base = f"{loop.name}/scan{k}"
    body.node.remove(insert)
    body.node.append(helper.make_node("Identity", [x], [f"{base}/step"]))
    del body.input[2 + k]
    del body.output[1 + k]
    body.output.append(helper.make_tensor_value_info(f"{base}/step", elem, None))
    del loop.input[2 + k]
    del loop.output[k]
    loop.output.append(f"{base}/stacked")  # (steps, *step shape)
    nodes, stacked = [], f"{base}/stacked"
    prefix = list(init.input) if init.op_type == "SequenceConstruct" else []
    if prefix:
        # Zero steps give a scan output of shape (0,): reshape it to (0, *prefix element shape).
        nodes += [helper.make_node("Shape", [prefix[0]], [f"{base}/shape"]),
                  helper.make_node("Constant", [], [f"{base}/minus1"],
                                   value=helper.make_tensor(f"{base}/minus1", TensorProto.INT64, [1], [-1])),
                  helper.make_node("Concat", [f"{base}/minus1", f"{base}/shape"], [f"{base}/newshape"], axis=0),
                  helper.make_node("Reshape", [stacked, f"{base}/newshape"], [f"{base}/steps"]),
                  helper.make_node("Constant", [], [f"{base}/zero"],
                                   value=helper.make_tensor(f"{base}/zero", TensorProto.INT64, [1], [0]))]
        parts = []
        for i, p in enumerate(prefix):
            nodes.append(helper.make_node("Unsqueeze", [p, f"{base}/zero"], [f"{base}/first{i}"]))
            parts.append(f"{base}/first{i}")
        nodes.append(helper.make_node("Concat", parts + [f"{base}/steps"], [f"{base}/all"], axis=0))
        stacked = f"{base}/all"
    # ConcatFromSequence(new_axis=1, axis=a) stacks at axis a: move the step axis 0 there.
    perm = list(range(1, axis + 1)) + [0] + list(range(axis + 1, (rank or 0) + 1))
    nodes.append(helper.make_node("Transpose", [stacked], [concat.output[0]], perm=perm) if axis
                 else helper.make_node("Identity", [stacked], [concat.output[0]]))
    return nodes


def _linear_loops(proto):
    """Rewrite every top-level Loop of an exported graph so that no sequence grows inside it
    (see _scan_output); every time loop of the artefact then runs in linear time."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(proto)
    graph = proto.graph
    for loop in [n for n in graph.node if n.op_type == "Loop"]:
        body = _attr(loop, "body").g
        for k in reversed(range(len(loop.input) - 2)):
            if not body.input[2 + k].type.HasField("sequence_type"):
                continue
            producers = {o: n for n in graph.node for o in n.output}
            consumers: dict = {}
            for n in graph.node:
                for i in n.input:
                    consumers.setdefault(i, []).append(n)
            init = producers[loop.input[2 + k]]
            concat = consumers[loop.output[k]][0]
            new = _scan_output(loop, k, producers, consumers)
            at = list(graph.node).index(concat)
            graph.node.remove(concat)
            for i, n in enumerate(new):
                graph.node.insert(at + i, n)
            if not consumers.get(init.output[0], [])[1:]:
                graph.node.remove(init)
    left = [n.op_type for n in _all_nodes(graph) if n.op_type.startswith("Sequence")]
    if left:
        raise NerError(f"ONNX export: sequence operations left in the graph ({', '.join(left)}; a bug of ours)")
    for g in _all_graphs(graph):
        del g.value_info[:]  # stale entries of renamed values; onnxruntime infers its own
    return proto


def _all_graphs(graph):
    yield graph
    for n in graph.node:
        for a in n.attribute:
            if a.HasField("g"):
                yield from _all_graphs(a.g)


def _all_nodes(graph):
    for g in _all_graphs(graph):
        yield from g.node


def _onnx_bytes(module: OnnxExportedTagger, metadata: dict) -> bytes:
    try:
        import onnx
    except ImportError as err:
        raise NerError(f"ONNX export needs the export extra ({err}): pip install 'nerbilstm[export]'") from None
    names = ["words", "chars", "cases", "mask", "pretrained", "pretrained_mask"]
    axes = {"words": {0: "batch", 1: "time"}, "chars": {0: "batch", 1: "time", 2: "chars"},
            "cases": {0: "batch", 1: "time"}, "mask": {0: "batch", 1: "time"},
            "pretrained": {0: "batch", 1: "time"}, "pretrained_mask": {0: "batch", 1: "time"},
            "tags": {0: "batch", 1: "time"}, "scores": {0: "batch"}, "emissions": {0: "batch", 1: "time"}}
    E = int(module.word_weight.shape[1])
    buf = io.BytesIO()
    scripted = _script(module)
    try:
        with _quiet():
            # The TorchScript-based exporter (dynamo=False): the scripted time loops become ONNX
            # Loops over the dynamic time axis.
            torch.onnx.export(scripted, example_inputs(E=E), buf, input_names=names,
                              output_names=["tags", "scores", "emissions"], dynamic_axes=axes, opset_version=ONNX_OPSET,
                              dynamo=False)
    except (RuntimeError, TypeError, ValueError, ImportError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise NerError(f"ONNX export failed with torch {torch.__version__}: {first}") from None
    proto = _linear_loops(onnx.load_from_string(buf.getvalue()))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, json.dumps(metadata, ensure_ascii=False)
    return proto.SerializeToString()


def export_tagger(model, vocab, out: str | Path, fmt: str = "torchscript", config: dict | None = None) -> Path:
    """Write ``model`` (a BiLSTMTagger) with ``vocab`` as one artefact at ``out`` (atomically)."""
    from nerbilstm.io import atomic_write_bytes

    if fmt not in FORMATS:
        raise NerError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise NerError("is a directory; --out names the file to write", path=out)
    if not out.parent.is_dir():
        raise NerError("folder does not exist", path=out.parent)
    module = ExportedTagger(model) if fmt == "torchscript" else OnnxExportedTagger(model)
    metadata = export_metadata(model, vocab, config)
    data = _torchscript_bytes(module, metadata) if fmt == "torchscript" else _onnx_bytes(module, metadata)
    try:
        atomic_write_bytes(out, data)
    except OSError as err:
        raise NerError(f"cannot write: {err.strerror or err}", path=out) from None
    return out


def export_model(model_dir: str | Path | None, out: str | Path, fmt: str = "torchscript") -> Path:
    """Export the model directory (None: the shipped default model) to ``out``."""
    from nerbilstm.predict import Tagger

    tagger = Tagger.load(model_dir, pretrained=None)
    return export_tagger(tagger.model, tagger.vocab, out, fmt, tagger.config)
