"""One sentence at a time, in numpy: the tagger's decode for a web service's one-text calls.

For one short sentence the batched torch path (``tagger.decode`` + the CRF) costs several
milliseconds, nearly all of it per-op overhead: a few hundred torch calls on (2, 1, 512)
tensors. The same function here runs in numpy (an op costs about a microsecond) on weights
copied from the model once: features (word, pretrained, char CNN, casing), the BiLSTM
recurrence, emissions, Viterbi, forward-backward marginals and entity probabilities.

Results are those of the batched path up to float32 rounding (different kernels sum in a
different order): tags equal, scores and probabilities within about 1e-5 (see
tests/test_single.py). Where the batched path would take an exact fallback (scaled messages
that underflow, a span factor below the precision threshold) ``decode`` returns None and the
caller takes the batched path. CRF decoder, CPU and float32 only (``SingleSentence.build``
returns None otherwise).

Shapes: n tokens, D LSTM input, H hidden size, K tags.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nerbilstm.data.batching import CACHE_MAX_TOKEN_CHARS, Encoded
from nerbilstm.tags import entity_spans

__all__ = ["SingleSentence"]

CACHE_TOKENS = 8192  # first-layer projections remembered (8 KB each with H = 128); emptied when full

_THRESHOLD = float(np.finfo(np.float32).tiny / np.finfo(np.float32).eps)  # as the CRF's _threshold


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy().copy()


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b by torch, for the products large enough that numpy's BLAS would start threads of
    its own (OpenBLAS threads beside torch's oversubscribe the cores: 20x slower under load)."""
    return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()


class _Layer:
    """One BiLSTM layer's weights, direction first. Gate columns are reordered (i, f, o, g) and
    prescaled so that one tanh gives all four gates: sigmoid(z) = (tanh(z / 2) + 1) / 2."""

    def __init__(self, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias: torch.Tensor):
        H = weight_hh.shape[-1]
        order = np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]  # i f g o -> i f o g
        scale = np.r_[np.full(3 * H, 0.5, np.float32), np.ones(H, np.float32)]
        self.H = H
        self.w_ih = np.ascontiguousarray(_np(weight_ih)[:, order].transpose(0, 2, 1))  # (2, D, 4H), unscaled
        self.bias = _np(bias)[:, order][:, None, :]  # (2, 1, 4H)
        self.scale = scale
        self.w_hh = np.ascontiguousarray(_np(weight_hh)[:, order].transpose(0, 2, 1) * scale)  # (2, H, 4H)

    def project(self, x: np.ndarray) -> np.ndarray:
        """x (m, D) -> (2, m, 4H): both directions' prescaled input projections of each row."""
        return (_matmul(x, self.w_ih) + self.bias) * self.scale

    def __call__(self, xp: np.ndarray) -> np.ndarray:
        """xp (2, n, 4H) projections (``project``) in reading order -> (n, 2H): forward states,
        and backward states (the sentence read reversed) in reading order."""
        n, H = xp.shape[1], self.H
        xp = np.stack([xp[0], xp[1, ::-1]])
        hs = np.zeros((2, n + 1, 1, H), np.float32)  # hs[:, t + 1]: h after step t; hs[:, 0] = 0
        c = np.zeros((2, 1, H), np.float32)
        z = np.empty((2, 1, 4 * H), np.float32)
        ifo, g = z[..., : 3 * H], z[..., 3 * H :]
        i, f, o = z[..., :H], z[..., H : 2 * H], z[..., 2 * H : 3 * H]
        matmul, tanh, multiply, w_hh = np.matmul, np.tanh, np.multiply, self.w_hh
        tc, ig = np.empty_like(c), np.empty_like(c)
        for t in range(n):
            matmul(hs[:, t], w_hh, out=z)
            z += xp[:, t : t + 1]
            tanh(z, out=z)
            ifo *= 0.5
            ifo += 0.5
            c *= f
            c += multiply(i, g, out=ig)
            multiply(o, tanh(c, out=tc), out=hs[:, t + 1])
        return np.concatenate([hs[0, 1:, 0], hs[1, :0:-1, 0]], axis=1)


class SingleSentence:
    """The numpy decode of one sentence, with weights copied from a ``BiLSTMTagger``."""

    def __init__(self, model):
        self.word = _np(model.word_embed.weight)
        self.char = None
        if model.char_cnn is not None:
            conv = model.char_cnn.conv
            w = _np(conv.weight)  # (F, C, k)
            F, C, k = w.shape
            self.char = _np(model.char_cnn.embed.weight)
            self.char[0] = 0.0  # the padding id: zero outside a word, as CharCNN
            self.kernel = k
            self.conv_w = np.ascontiguousarray(w.transpose(2, 1, 0).reshape(k * C, F))  # [(m, c), f]
            self.conv_b = _np(conv.bias)
        self.case = _np(model.case_embed.weight) if model.case_embed is not None else None
        self.layers = [_Layer(layer.weight_ih, layer.weight_hh, layer.bias) for layer in model.lstm.layers]
        self.em_w = np.ascontiguousarray(_np(model.emission.weight).T)  # (2H, K)
        self.em_b = _np(model.emission.bias)
        trans, start, end = (_np(x) for x in model.crf._potentials(torch.float32, torch.device("cpu")))
        self.trans, self.start, self.end = trans, start, end
        self.t_max = trans.max()
        self.exp_trans = np.exp(trans - self.t_max)
        self.exp_both = np.stack([self.exp_trans, self.exp_trans.T])  # (2, K, K)
        self.exp_start = np.exp(start - start.max())
        self.labels = model.labels
        self._cache: dict[str, np.ndarray] = {}  # token -> (2, 4H), see _projections
        self._cache_pretrained = None
        self.continuation = model.continuation

    @classmethod
    def build(cls, model) -> "SingleSentence | None":
        """The numpy decoder for a model, or None where this path does not apply."""
        if model.crf is None or model.training:
            return None
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
            return None
        return cls(model)

    # -- features and emissions

    def _char_features(self, chars) -> np.ndarray:
        """chars: n sequences of char ids -> (n, F): the CNN max-pooled over each word."""
        n, k = len(chars), self.kernel
        lengths = np.fromiter(map(len, chars), np.int64, n)
        L = max(1, int(lengths.max()))
        pad = k // 2
        ids = np.zeros((n, L + 2 * pad), np.int64)  # id 0: the zero padding vector
        for row, c in enumerate(chars):
            ids[row, pad : pad + len(c)] = c
        x = self.char[ids]  # (n, L + 2 pad, C)
        cols = np.concatenate([x[:, m : m + L] for m in range(k)], axis=2)  # (n, L, k C)
        feats = _matmul(cols, self.conv_w) + self.conv_b  # (n, L, F)
        feats[np.arange(L)[None, :] >= lengths[:, None]] = -np.inf
        out = feats.max(1)
        out[~np.isfinite(out)] = 0.0
        return out

    def _features(self, item: Encoded, rows: list[int], pretrained) -> np.ndarray:
        """(m, D) LSTM inputs of the tokens at ``rows``: word (or pretrained) vector, char CNN, casing."""
        x = self.word[[item.words[k] for k in rows]]
        if pretrained is not None:
            unknown = [j for j, k in enumerate(rows) if item.words[k] == 1]
            if unknown:
                vectors, found = pretrained.vectors_for([item.tokens[rows[j]] for j in unknown])
                for j, v, ok in zip(unknown, vectors, found):
                    if ok:
                        x[j] = v
        parts = [x]
        if self.char is not None:
            parts.append(self._char_features([item.chars[k] for k in rows]))
        if self.case is not None:
            parts.append(self.case[[item.cases[k] for k in rows]])
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    def _projections(self, item: Encoded, pretrained) -> np.ndarray:
        """(2, n, 4H) the first layer's input projections. A token's depend on the token alone
        (and the pretrained table): they are remembered for up to CACHE_TOKENS tokens."""
        if pretrained is not self._cache_pretrained:
            self._cache.clear()
            self._cache_pretrained = pretrained
        cache = self._cache
        rows = [cache.get(t) for t in item.tokens]
        missing = [k for k, r in enumerate(rows) if r is None]
        if missing:
            xp = self.layers[0].project(self._features(item, missing, pretrained))
            if len(cache) + len(missing) > CACHE_TOKENS:
                cache.clear()
            for j, k in enumerate(missing):
                rows[k] = xp[:, j]
                if len(item.tokens[k]) <= CACHE_MAX_TOKEN_CHARS:
                    cache[item.tokens[k]] = rows[k]
        return np.stack(rows, axis=1)

    def emissions(self, item: Encoded, pretrained=None) -> np.ndarray:
        """-> (n, K) emission scores of one non-empty sentence."""
        h = self.layers[0](self._projections(item, pretrained))
        for layer in self.layers[1:]:
            h = layer(layer.project(h))
        return _matmul(np.ascontiguousarray(h), self.em_w) + self.em_b

    # -- CRF

    def _viterbi(self, em: np.ndarray) -> tuple[list[int], float]:
        """em (n, K) -> best path and its score: the max-sum messages of the CRF's Viterbi (the
        same sums in the same order), backpointers found after the loop in one argmax."""
        n, K = em.shape
        trans = self.trans
        V = np.empty((n, K), np.float32)
        V[0] = self.start + em[0]
        add, amax = np.add, np.maximum.reduce
        s = np.empty((K, K), np.float32)
        for t in range(1, n):
            add(V[t - 1, :, None], trans, out=s)  # [from, to]
            add(amax(s, 0), em[t], out=V[t])
        final = V[-1] + self.end
        tag = int(final.argmax())
        path = [tag]
        if n > 1:
            back = (V[:-1, :, None] + trans).argmax(1).tolist()  # (n - 1, K): best predecessor
            for t in range(n - 2, -1, -1):
                tag = back[t][tag]
                path.append(tag)
        return path[::-1], float(final.max())

    def _messages(self, em: np.ndarray):
        """Scaled forward-backward (as the CRF's _scaled_forward) -> (U, Q, N, r) or None on underflow."""
        n, K = em.shape
        exp_em = np.exp(em - em.max(1, keepdims=True))
        exp_both = np.stack([exp_em, exp_em[::-1]])  # (2, n, K): backward messages read reversed
        X = np.empty((2, n, 1, K), np.float32)
        init = np.stack([self.start + em[0], self.end + em[-1]])[:, None, :]  # (2, 1, K)
        X[:, 0] = np.exp(init - init.max(2, keepdims=True))
        mats, matmul, amax, divide = self.exp_both, np.matmul, np.maximum.reduce, np.divide
        x = np.empty((2, 1, K), np.float32)
        for t in range(1, n):
            matmul(X[:, t - 1], mats, out=x)
            x *= exp_both[:, t, None]
            divide(x, amax(x, 2, keepdims=True), out=X[:, t])
        U, Ur = X[0, :, 0], X[1, :, 0]
        S = np.empty_like(U)
        S[0] = self.exp_start
        S[1:] = U[:-1] @ self.exp_trans
        Q = Ur[::-1]
        N = S * Q
        r = N.sum(1)
        fin = U[-1] @ np.exp(self.end - self.end.max())
        worst = min(S[1:].min(initial=np.inf), float(fin), (Ur[:-1] @ self.exp_trans.T).min(initial=np.inf),
                    float(r[0]))
        if not worst >= _THRESHOLD:
            return None
        return U, Q, N, r

    def _log_conditional(self, msgs, t: int, prev: int, cur: int) -> float | None:
        """log P(y_t = cur | y_{t-1} = prev) (as Posteriors.log_conditionals), None if imprecise."""
        U, Q, N, r = msgs
        u, q, nn = float(U[t - 1, prev]), float(Q[t, cur]), float(N[t - 1, prev])
        if not (u >= _THRESHOLD and q >= _THRESHOLD and nn >= _THRESHOLD):
            return None
        log_c = (math.log(u) + math.log(float(self.exp_trans[prev, cur])) + math.log(q)
                 + math.log(float(r[t - 1])) - math.log(float(r[t])) - math.log(nn))
        return min(log_c, 0.0)

    def decode(self, item: Encoded, pretrained=None):
        """One non-empty encoded sentence -> TaggedSentence with marginals and entity
        probabilities, or None where the batched path must decide (see the module docstring)."""
        from nerbilstm.predict import TaggedSentence

        em = self.emissions(item, pretrained)
        tags, score = self._viterbi(em)
        msgs = self._messages(em)
        if msgs is None:
            return None
        U, Q, N, r = msgs
        marginals = N / r[:, None]
        n = len(tags)
        probs = []
        for _, s, e in entity_spans([self.labels[t] for t in tags], mode="conll"):
            ids = tags[s:e]
            log_p = math.log(float(marginals[s, ids[0]]))
            for k in range(1, len(ids)):
                log_c = self._log_conditional(msgs, s + k, ids[k - 1], ids[k])
                if log_c is None:
                    return None
                log_p += log_c
            p = math.exp(log_p)
            inside = self.continuation[ids[0]]
            if inside is not None and e < n:
                log_c = self._log_conditional(msgs, e, ids[-1], inside)
                if log_c is None:
                    return None
                p *= 1 - math.exp(log_c)
            probs.append(min(max(p, 0.0), 1.0))
        return TaggedSentence(tags, score, marginals.astype(np.float32, copy=False), probs)
