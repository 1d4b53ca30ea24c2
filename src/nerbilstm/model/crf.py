"""Linear-chain CRF: NLL, Viterbi, marginals and n-best; batch first, exact under padding.

Shapes: B sentences, T time steps (padded), K tags. Masks are (B,T) bool, True on real
tokens and left-aligned (each row a prefix of Trues, mask[:, 0] all True).

How it is made fast on CPU, where small-K CRFs are bound by Python/dispatch overhead per
time step: the loops do as few tensor ops as possible and everything else is vectorised.

* No ``torch.where`` carry in the loops. Every step is computed for every row (padding
  emissions are zeroed first so that padding stays finite) and each row's result is read
  at its own last token afterwards. Backward messages run as a *forward* scan over every
  row reversed within its length, so they also start at each row's own last token.
* The partition function runs in scaled probability space (a step is matmul, times the
  exp-emissions, row max, divide) under a custom autograd Function whose backward is the
  exact forward-backward gradient, rather than autograd through a log-space loop. When a
  gradient is needed the backward messages run in the same loop as the forward ones (one
  batched matmul over both directions): the loop costs per op, not per element. Scaling
  loses precision only if every predecessor of some tag underflows, which is detected
  after the loop (all pre-emission products must be >= tiny/eps); the batch is then
  recomputed with the exact log-space recursion, so results never silently degrade.
* Viterbi runs max-product messages forward and backward in one loop (``amax`` only: it
  is several times cheaper than ``max`` with indices) and reads the path off the
  max-marginals in one vectorised argmax, with no backtrace loop. Each path is verified
  against the best score; a row that fails (exactly tied best paths) takes an exact
  backtrace that recomputes each backpointer along its path only.
* The gold path score is one gather/take per term and a cumsum, with no time loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["CRF", "Posteriors"]

# Added to the score of a disallowed transition / start / end. Not -inf, so that a gold
# path breaking a constraint still has a finite NLL.
DISALLOWED_PENALTY = -10000.0

_THRESHOLDS: dict[torch.dtype, float] = {}

# A max-marginal Viterbi path is accepted if its score is within this many ulps (times
# T + |score|) of the best score; otherwise that row takes the exact backtrace.
_VITERBI_TOL_ULPS = 64.0


def _threshold(dtype: torch.dtype) -> float:
    """Smallest product the scaled recursions may divide by or take a log of.

    Terms lost to underflow are < tiny; against a sum >= tiny/eps they are below one ulp."""
    thr = _THRESHOLDS.get(dtype)
    if thr is None:
        fi = torch.finfo(dtype)
        thr = _THRESHOLDS[dtype] = fi.tiny / fi.eps
    return thr


def _underflowed(*products: Tensor) -> bool:
    """True if any of the products is below the threshold (or nan). One host sync."""
    mins = [x.amin() for x in products if x.numel()]
    if not mins:
        return False
    worst = mins[0] if len(mins) == 1 else torch.stack(mins).amin()
    return not bool(worst >= _threshold(worst.dtype))  # nan fails the comparison too


# ----------------------------------------------------------------------------- batch prep


class _Prepared:
    """Time-major views of a batch, shared by all the recursions.

    em_t (T,B,K): emissions with padding zeroed. last (B,): each row's last index."""

    def __init__(self, emissions: Tensor, mask: Tensor, lengths: Tensor):
        B, T, _ = emissions.shape
        self.T, self.B = T, B
        self.mask_t = mask.t().contiguous()
        self.last = lengths - 1
        self.last_flat = self.last * B + torch.arange(B, device=mask.device)  # rows of (T*B)
        self.em_t = torch.where(self.mask_t.unsqueeze(-1), emissions.transpose(0, 1).contiguous(), 0.0)
        self._rev: Tensor | None = None

    def at_last(self, x: Tensor) -> Tensor:
        """x (T,B,...) -> (B,...) at each row's last token."""
        return x.reshape(self.T * self.B, *x.shape[2:]).index_select(0, self.last_flat)

    def reverse(self, x: Tensor) -> Tensor:
        """Reverse each row of x (T,B,...) within its own length; padding stays put.

        Its own inverse. Lets backward recursions run as forward scans."""
        if self._rev is None:
            ar_t = torch.arange(self.T, device=self.last.device)[:, None]
            rev = torch.where(self.mask_t, self.last - ar_t, ar_t)
            self._rev = (rev * self.B + torch.arange(self.B, device=rev.device)).view(-1)
        return x.reshape(self.T * self.B, *x.shape[2:]).index_select(0, self._rev).view(x.shape)


# ----------------------------------------------------------------------------- gold score


def _gold_parts(p: _Prepared, tags: Tensor, K: int):
    """tags (B,T) -> (tags_t (T,B), move index (T-1,B) as from*K + to, last tags (B,))."""
    tags_t = tags.t().contiguous()
    return tags_t, tags_t[:-1] * K + tags_t[1:], p.at_last(tags_t)


def _gold_score(p: _Prepared, em_t: Tensor, gold, trans: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Score (B,) of the paths in gold (from _gold_parts) on em_t (T,B,K); no time loop.

    A cumsum read at each row's last token sums exactly the real steps, in the same order
    whatever the padding."""
    tags_t, pairs, last_tags = gold
    per_step = em_t.gather(2, tags_t.unsqueeze(2)).squeeze(2)  # (T,B)
    moves = torch.take(trans, pairs)  # (T-1,B): the move into t
    per_step = per_step + torch.cat([start.index_select(0, tags_t[0]).unsqueeze(0), moves])
    return p.at_last(per_step.cumsum(0)) + end.index_select(0, last_tags)


# ----------------------------------------------------------------------------- partition


def _scaled_scan(init_log: Tensor, exp_em: Tensor, mats: Tensor):
    """D independent recursions in scaled probability space, run in one loop.

    init_log (D,B,K): log scores of step 0. exp_em (D,T,B,K): exp(emission - its row max).
    mats (D,K,K): exp(transitions - max), [from, to] (transposed for backward messages).
    Returns X (D,T,B,K), every row scaled to max 1, and C (D,T,B,1) the scale factors
    (C[:, 0] = 1 and c0 (D,B,1) is the log scale of step 0).

    D = 2 runs the forward messages and the backward ones (over reversed rows) together:
    the loop's cost is Python overhead per op, so the second direction is nearly free.
    """
    D, T, B, K = exp_em.shape
    X = torch.empty_like(exp_em)
    C = exp_em.new_empty(D, T, B, 1)
    # unbind once: indexing X[:, t] in the loop would create the same views one by one.
    Xs, Cs, Es = X.unbind(1), C.unbind(1), exp_em.unbind(1)
    c0 = init_log.amax(-1, keepdim=True)
    torch.exp(init_log - c0, out=Xs[0])
    Cs[0].fill_(1.0)
    bmm, mul, amax = torch.bmm, torch.mul, torch.amax
    for prev, x, c, e in zip(Xs, Xs[1:], Cs[1:], Es[1:]):
        mul(bmm(prev, mats), e, out=x)
        amax(x, -1, keepdim=True, out=c)
        x.div_(c)
    return X, C, c0


def _scaled_forward(p: _Prepared, trans: Tensor, start: Tensor, end: Tensor, posteriors: bool):
    """Scaled forward algorithm, plus the backward messages when posteriors is True.

    -> (log Z (B,), state) or None if scaling underflowed (then use the exact path).
    state = (exp_trans, U, Q, N, r) with U (T,B,K) forward messages, Q[t] ∝
    exp(emission_t + beta_t), N = S * Q ∝ exp(alpha_t + beta_t) and r = N.sum(-1)."""
    em_t = p.em_t
    T, B, K = em_t.shape
    em_max = em_t.amax(-1, keepdim=True)  # (T,B,1)
    exp_em = (em_t - em_max).exp_()
    t_max = trans.max()
    exp_trans = (trans - t_max).exp_()
    init = start + em_t.select(0, 0)
    if posteriors:
        # Backward messages as a forward scan over rows reversed within their lengths,
        # with transposed transitions, starting from each row's own last token.
        exp_trans_t = exp_trans.t()
        X, C, c0 = _scaled_scan(
            torch.stack([init, end + p.at_last(em_t)]),
            torch.stack([exp_em, p.reverse(exp_em)]),
            torch.stack([exp_trans, exp_trans_t]),
        )
    else:
        X, C, c0 = _scaled_scan(init.unsqueeze(0), exp_em.unsqueeze(0), exp_trans.unsqueeze(0))
    U = X.select(0, 0)
    # S[t] = U[t-1] @ exp_trans ∝ exp(messages into t), recomputed in one product. Every
    # step is checked, padding too, so that nothing downstream can be 0/0.
    S = torch.empty_like(U)
    S_next = S.narrow(0, 1, T - 1)
    torch.mm(U.narrow(0, 0, T - 1).view(-1, K), exp_trans, out=S_next.view(-1, K))
    end_max = end.max()
    fin = p.at_last(U) @ (end - end_max).exp_()  # (B,)
    checks = [S_next, fin]
    if posteriors:
        S.select(0, 0).copy_((start - start.max()).exp_())
        Ur = X.select(0, 1)
        Q = p.reverse(Ur)
        N = S * Q
        r = N.sum(-1, keepdim=True)  # (T,B,1); >= thr for t >= 1 once S and Q pass
        checks += [Ur.narrow(0, 0, T - 1).view(-1, K) @ exp_trans_t, r.select(0, 0)]
    if _underflowed(*checks):
        return None
    # log Z = c0 + sum over real t >= 1 of (log C_t + em_max_t + t_max) + log(fin) + end_max
    # (C[0] = 1 and em_max[0] is taken back out.) A cumsum read at each row's last token
    # sums exactly its real steps, whatever the padding.
    steps = C.select(0, 0).log_().add_(em_max).view(T, B).cumsum(0)
    log_z = (p.at_last(steps) - em_max.select(0, 0).view(B)).add_(c0.select(0, 0).view(B))
    log_z += p.last * t_max + fin.log_() + end_max
    return log_z, ((exp_trans, U, Q, N, r) if posteriors else None)


def _log_scan(init: Tensor, em_t: Tensor, trans: Tensor) -> Tensor:
    """Exact log-space forward recursion, autograd friendly: (T,B,K) log messages."""
    out = [init]
    a = init
    for e in em_t.unbind(0)[1:]:
        a = torch.logsumexp(a.unsqueeze(2) + trans, dim=1) + e
        out.append(a)
    return torch.stack(out)


def _log_partition_exact(p: _Prepared, em_t: Tensor, trans, start, end) -> Tensor:
    alpha = _log_scan(start + em_t[0], em_t, trans)
    return torch.logsumexp(p.at_last(alpha) + end, dim=-1)


def _log_marginals_exact(p: _Prepared, trans, start, end) -> Tensor:
    """Exact log-space forward-backward marginals (T,B,K), zero past each length."""
    em_t = p.em_t
    alpha = _log_scan(start + em_t[0], em_t, trans)
    log_z = torch.logsumexp(p.at_last(alpha) + end, dim=-1)
    em_r = p.reverse(em_t)
    gamma = p.reverse(_log_scan(end + em_r[0], em_r, trans.t()))  # beta_t + e_t
    mu = torch.exp(alpha + gamma - em_t - log_z[None, :, None])
    # With scores in the hundreds the exponent carries ~1e-5 of float rounding; each
    # position's marginals should still sum to 1.
    mu = mu / mu.sum(-1, keepdim=True)
    return torch.where(p.mask_t.unsqueeze(-1), mu, 0.0)


class _NLL(torch.autograd.Function):
    """log Z - score(tags) per sentence (B,), or log Z alone when tags is None.

    Backward is the analytic gradient: d/d emissions = marginals - gold one-hots,
    d/d transitions = summed pairwise marginals - gold move counts. The backward messages
    are computed in the forward pass, in the same loop as the forward ones."""

    @staticmethod
    def forward(ctx, emissions, mask, lengths, tags, trans, start, end, grad_wanted):
        p = _Prepared(emissions, mask, lengths)
        ctx.p, ctx.K = p, emissions.shape[-1]
        ctx.save_for_backward(trans, start, end)
        ctx.gold = None if tags is None else _gold_parts(p, tags, ctx.K)
        # needs_input_grad is set even under no_grad, hence the caller's grad_wanted.
        res = _scaled_forward(p, trans, start, end, posteriors=grad_wanted)
        if res is None:
            ctx.scaled = None
            out = _log_partition_exact(p, p.em_t, trans, start, end)
        else:
            out, ctx.scaled = res
        if ctx.gold is not None:
            out = out - _gold_score(p, p.em_t, ctx.gold, trans, start, end)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        trans, start, end = ctx.saved_tensors
        p, K, needs, gold = ctx.p, ctx.K, ctx.needs_input_grad, ctx.gold
        if ctx.scaled is None:
            return _exact_grads(p, gold, trans, start, end, grad_out, needs) + (None,)
        exp_trans, U, Q, N, r = ctx.scaled
        T, B = p.T, p.B
        gm = torch.where(p.mask_t, grad_out, 0.0).unsqueeze(-1)  # (T,B,1), 0 on padding
        w = gm / r
        G = N * w  # grad * marginals
        if gold is not None:
            G.view(T * B, K).scatter_add_(1, gold[0].view(-1, 1), -gm.view(-1, 1))
        d_trans = None
        if needs[4]:
            # Pairwise marginals xi_t(i,j) = U[t-1,i] exp_trans[i,j] Q[t,j] / r_t, summed over
            # rows and steps as one (K, T*B) @ (T*B, K) product.
            d_trans = exp_trans * (U[:-1].view(-1, K).t() @ (Q[1:] * w[1:]).view(-1, K))
            if gold is not None:
                d_trans.view(-1).index_add_(0, gold[1].view(-1), -gm[1:].view(-1))
        # G holds grad * (marginal - gold one-hot): start and end gradients are its sums at
        # each row's first and last token.
        d_start = G[0].sum(0) if needs[5] else None
        d_end = p.at_last(G).sum(0) if needs[6] else None
        d_em = G.transpose(0, 1) if needs[0] else None
        return d_em, None, None, None, d_trans, d_start, d_end, None


def _grad_wanted(emissions: Tensor, potentials) -> bool:
    return torch.is_grad_enabled() and (emissions.requires_grad or any(x.requires_grad for x in potentials))


def _exact_grads(p: _Prepared, gold, trans, start, end, grad_out, needs):
    """Fallback gradients: autograd through the exact log-space recursion."""
    with torch.enable_grad():
        em_t = p.em_t.detach().requires_grad_(needs[0])
        leaves = [x.detach().requires_grad_(n) for x, n in zip((trans, start, end), needs[4:])]
        out = _log_partition_exact(p, em_t, *leaves)
        if gold is not None:
            out = out - _gold_score(p, em_t, gold, *leaves)
        wanted = [x for x in (em_t, *leaves) if x.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad_out))
    d_em = next(grads).transpose(0, 1) if needs[0] else None
    rest = [next(grads) if n else None for n in needs[4:]]
    return (d_em, None, None, None, *rest)


def _posteriors(p: _Prepared, trans, start, end) -> "Posteriors":
    """Forward-backward over the batch: marginals (T,B,K), zero past each length, and the
    scaled messages (scaled pass, else exact log-space marginals and no messages)."""
    res = _scaled_forward(p, trans, start, end, posteriors=True)
    if res is None:
        return Posteriors(_log_marginals_exact(p, trans, start, end), None)
    exp_trans, U, Q, N, r = res[1]
    marginals_t = (N / r).masked_fill_(~p.mask_t.unsqueeze(-1), 0.0)
    return Posteriors(marginals_t, (exp_trans, U, Q, N, r))


class Posteriors:
    """The posterior distribution of tag sequences of a batch, from one forward-backward pass.

    marginals_t (T,B,K): P(y_t = k | x), zero past each length. Given the length, the posterior
    is a Markov chain, so the probability of any tag sequence a_s..a_e on a stretch of a sentence
    is P(y_s = a_s) times the product of P(y_t = a_t | y_{t-1} = a_{t-1}): ``log_conditionals``
    gives those factors from the scaled messages (U forward, Q backward with emissions, N = their
    products at each position, r = N summed), as a ratio of pairwise to single marginals."""

    def __init__(self, marginals_t: Tensor, scaled: tuple | None):
        self.marginals_t = marginals_t
        self._scaled = scaled

    @property
    def marginals(self) -> Tensor:
        """(B,T,K)"""
        return self.marginals_t.transpose(0, 1).contiguous()

    def log_conditionals(self, b: Tensor, t: Tensor, prev: Tensor, cur: Tensor) -> tuple[Tensor, Tensor]:
        """log P(y_t = cur | y_{t-1} = prev) at rows b, steps t >= 1 (all (M,) long).

        -> (log probabilities (M,), ok (M,) bool). Where a factor of the ratio is below the
        scaling threshold (or the pass fell back to log space) ok is False and the value
        must not be used; the caller then needs an exact computation."""
        if self._scaled is None:
            return torch.zeros(b.shape, dtype=self.marginals_t.dtype, device=b.device), torch.zeros_like(b, dtype=torch.bool)
        exp_trans, U, Q, N, r = self._scaled
        thr = _threshold(U.dtype)
        u = U[t - 1, b, prev]
        q = Q[t, b, cur]
        n = N[t - 1, b, prev]
        ok = (u >= thr) & (q >= thr) & (n >= thr)
        # P(y_{t-1}=i, y_t=j) = U_{t-1}(i) exp_trans(i,j) Q_t(j) / r_t;  P(y_{t-1}=i) = N_{t-1}(i) / r_{t-1}
        log_c = (u.clamp_min(thr).log() + exp_trans[prev, cur].log() + q.clamp_min(thr).log()
                 + r[t - 1, b, 0].log() - r[t, b, 0].log() - n.clamp_min(thr).log())
        return log_c.clamp_max(0.0), ok


# ----------------------------------------------------------------------------- decoding


def _viterbi(p: _Prepared, trans: Tensor, start: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
    """-> best paths (T,B) (garbage past each length) and their scores (B,).

    Max-product messages run forward and backward (over reversed rows) in one loop; the
    path is then the per-position argmax of the max-marginals, with no backtrace loop.
    That is the Viterbi path whenever the best path is unique beyond rounding. Each row's
    path is verified (its score must equal the best score up to rounding, which rules out
    a mix of tied best paths, e.g. one breaking a constraint); rows that fail take the
    exact backtrace."""
    em_t = p.em_t
    T, B, K = em_t.shape
    # Tag-major (T,K,B): the max over predecessors reduces a dim of a contiguous
    # (K_from, K_to, B) block, the fastest layout for amax on CPU.
    E = torch.stack([em_t, p.reverse(em_t)]).permute(0, 1, 3, 2).contiguous()  # (2,T,K,B)
    V = torch.empty_like(E)  # V[d, t, j, b]: best score of a path (d=1: suffix) ending in j
    Vs, Es = V.unbind(1), E.unbind(1)
    torch.add(torch.stack([start, end]).unsqueeze(-1), Es[0], out=Vs[0])
    mats = torch.stack([trans, trans.t()]).unsqueeze(-1)  # (2, K_from, K_to, 1)
    scratch = E.new_empty(2, K, K, B)
    for prev, v, e in zip(Vs, Vs[1:], Es[1:]):
        torch.add(prev.unsqueeze(2), mats, out=scratch)
        torch.amax(scratch, 1, out=v).add_(e)
    fwd = V[0].permute(0, 2, 1).contiguous()  # (T,B,K)
    best_score = (p.at_last(fwd) + end).amax(1)
    # Max-marginal of tag j at t: the best score of any path through it.
    maxmarg = fwd + p.reverse(V[1].permute(0, 2, 1).contiguous()) - em_t
    path = maxmarg.argmax(-1)  # (T,B)
    score = _gold_score(p, em_t, (path, path[:-1] * K + path[1:], p.at_last(path)), trans, start, end)
    tol = _VITERBI_TOL_ULPS * torch.finfo(em_t.dtype).eps * (T + best_score.abs())
    ok = (best_score - score).abs() <= tol
    if not bool(ok.all()):
        # Only the rows that failed take the backtrace: a row's result must not depend on
        # the rest of the batch.
        path = torch.where(ok, path, _backtrace(p, fwd, trans, end))
    return path, best_score


def _backtrace(p: _Prepared, fwd: Tensor, trans: Tensor, end: Tensor) -> Tensor:
    """Exact Viterbi backtrace from the forward max-messages fwd (T,B,K): (T,B) paths.

    Runs over rows reversed within their lengths, so that every row starts at step 0, and
    recomputes each backpointer along the path only: argmax_i(fwd[t-1, i] + trans[i, cur])
    repeats the forward max exactly (same sums), one (B,K) argmax a step."""
    T, B, K = fwd.shape
    best_last = (p.at_last(fwd) + end).argmax(1)
    Vr = p.reverse(fwd)
    trans_t = trans.t().contiguous()  # [to, from]
    path_r = torch.empty(T, B, dtype=torch.long, device=fwd.device)
    Ps = path_r.unbind(0)
    Ps[0].copy_(best_last)
    for cur, nxt, v in zip(Ps, Ps[1:], Vr.unbind(0)[1:]):
        torch.argmax(v + trans_t.index_select(0, cur), 1, out=nxt)
    return p.reverse(path_r)


def _nbest(p: _Prepared, trans: Tensor, start: Tensor, end: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """-> k best paths (T,B,k) (garbage past each length and for missing paths) and their
    scores (B,k), best first, -inf where fewer than k paths exist.

    k-best Viterbi: each (tag, rank) keeps the k best distinct partial paths ending there,
    one topk over the K*k candidates a step."""
    em_t = p.em_t
    T, B, K = em_t.shape
    dev = em_t.device
    V = em_t.new_full((T, B, K, k), float("-inf"))  # V[t, b, tag, rank]
    bp = torch.empty(T, B, K, k, dtype=torch.long, device=dev)  # from*k + rank at t-1
    bp[0] = 0  # read (and ignored) by the backtrace of rows shorter than T
    V[0, :, :, 0] = start + em_t[0]
    trans_tf = trans.t()[None, :, :, None]  # [., to, from, .]
    scratch = em_t.new_empty(B, K, K, k)  # [b, to, from, rank]
    flat = scratch.view(B, K, K * k)
    Vs, Bs, Es = V.unbind(0), bp.unbind(0), em_t.unbind(0)
    for prev, v, b, e in zip(Vs, Vs[1:], Bs[1:], Es[1:]):
        torch.add(prev.unsqueeze(1), trans_tf, out=scratch)
        torch.topk(flat, k, dim=2, out=(v, b))
        v.add_(e.unsqueeze(2))
    scores, state = (p.at_last(V) + end[:, None]).view(B, K * k).topk(k, dim=1)  # tag*k + rank
    # Backtrace over rows reversed within their lengths (see _viterbi): one gather a step.
    bpr = p.reverse(bp).view(T, B, K * k)
    states = torch.empty(T, B, k, dtype=torch.long, device=dev)
    Ss = states.unbind(0)
    Ss[0].copy_(state)
    for cur, nxt, b in zip(Ss, Ss[1:], bpr.unbind(0)):
        torch.gather(b, 1, cur, out=nxt)
    return p.reverse(states.div_(k, rounding_mode="floor")), scores


def _bool_table(name: str, value: Tensor | ArrayLike | None, shape: tuple[int, ...]) -> Tensor | None:
    """A constraint table as a bool tensor of ``shape``: tensors pass as they are, arrays
    (numpy, nested lists) are converted; anything else is a ValueError naming ``name``."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be a bool tensor or array, got {type(value).__name__}") from None
    if value.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    return value
def _chain_span_probabilities(post: Posteriors, lengths: list[int], spans, inside) -> tuple[Tensor, Tensor]:
    """Span probabilities from the posterior Markov chain (see span_probabilities).

    -> (probabilities (N,), ok (N,) bool: False where a factor lost precision)."""
    dev = post.marginals_t.device
    first: list[tuple[int, int, int]] = []  # (row, step, tag) of each span's first tag
    chain: list[tuple[int, int, int, int, int]] = []  # (span, row, step, previous tag, tag)
    stop: list[tuple[int, int, int, int, int]] = []  # the same for the continuation right after
    for n, ((b, s, e, ids), i_tag) in enumerate(zip(spans, inside)):
        first.append((b, s, ids[0]))
        chain.extend((n, b, s + k, ids[k - 1], ids[k]) for k in range(1, len(ids)))
        if i_tag is not None and e < lengths[b]:
            stop.append((n, b, e, ids[-1], i_tag))
    b0, t0, a0 = torch.tensor(first, device=dev).t()
    log_p = post.marginals_t[t0, b0, a0].log()
    ok = torch.ones_like(log_p, dtype=torch.bool)
    if chain:
        n, b, t, prev, cur = torch.tensor(chain, device=dev).t()
        log_c, fine = post.log_conditionals(b, t, prev, cur)
        log_p.index_add_(0, n, log_c)
        ok[n[~fine]] = False
    probs = log_p.exp()
    if stop:
        n, b, t, prev, cur = torch.tensor(stop, device=dev).t()
        log_c, fine = post.log_conditionals(b, t, prev, cur)
        probs[n] *= 1 - log_c.exp()
        ok[n[~fine]] = False
    return probs.clamp(0, 1), ok


# ----------------------------------------------------------------------------- module


class CRF(nn.Module):
    """Linear-chain CRF. transitions[from, to] (K,K); start_scores (K,); end_scores (K,).

    Masks are (B,T) bool, True on real tokens, left-aligned (mask[:,0] all True, each row a
    prefix of Trues). Batch first everywhere. Computation runs on the emissions' device in
    the promoted dtype of emissions and parameters, at least float32.

    neg_log_likelihood, log_partition and score are differentiable; the decoders
    (viterbi_decode, marginals, nbest) run without autograd and return plain tensors.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start_scores = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_scores = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        # Constraints are not saved with the weights: the caller re-sets them after load.
        for name in ("allowed_transitions", "allowed_start", "allowed_end",
                     "_transition_penalty", "_start_penalty", "_end_penalty"):
            self.register_buffer(name, None, persistent=False)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={self.allowed_transitions is not None}"

    # -- constraints

    def set_constraints(
        self,
        allowed_transitions: Tensor | ArrayLike | None,
        allowed_start: Tensor | ArrayLike | None = None,
        allowed_end: Tensor | ArrayLike | None = None,
    ) -> None:
        """bool (K,K) [from,to], (K,), (K,): tensors, or bool arrays such as those of
        :func:`nerbilstm.tags.iob2_constraints`. Disallowed moves get -10000 added in every
        computation (nll, viterbi, marginals, nbest). None leaves that kind unconstrained,
        so ``set_constraints(None)`` clears everything."""
        K = self.num_tags
        specs = [  # validate all before changing anything
            (name, penalty_name, _bool_table(name, value, shape), shape)
            for name, penalty_name, value, shape in (
                ("allowed_transitions", "_transition_penalty", allowed_transitions, (K, K)),
                ("allowed_start", "_start_penalty", allowed_start, (K,)),
                ("allowed_end", "_end_penalty", allowed_end, (K,)),
            )
        ]
        dev = self.transitions.device
        for name, penalty_name, value, shape in specs:
            if value is None:
                setattr(self, name, None)
                setattr(self, penalty_name, None)
            else:
                value = value.to(dev, copy=True)
                penalty = torch.zeros(shape, dtype=self.transitions.dtype, device=dev)
                setattr(self, name, value)
                setattr(self, penalty_name, penalty.masked_fill_(~value, DISALLOWED_PENALTY))

    def _potentials(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Transitions, start and end scores with constraint penalties added, in dtype."""

        def cast(x: Tensor) -> Tensor:
            return x if x.dtype == dtype and x.device == device else x.to(device=device, dtype=dtype)

        out = []
        for param, penalty in (
            (self.transitions, self._transition_penalty),
            (self.start_scores, self._start_penalty),
            (self.end_scores, self._end_penalty),
        ):
            out.append(cast(param) if penalty is None else cast(param) + cast(penalty))
        return out[0], out[1], out[2]

    # -- validation

    def _validate(self, emissions: Tensor, mask: Tensor | None, tags: Tensor | None = None):
        """Cheap input checks, one host sync.

        -> (emissions in the compute dtype, mask, lengths (B,), tags with padding set to 0)."""
        if not isinstance(emissions, Tensor) or emissions.dim() != 3:
            raise ValueError("emissions must be a (B,T,K) tensor")
        B, T, K = emissions.shape
        if K != self.num_tags:
            raise ValueError(f"emissions have {K} tags in the last dimension, expected {self.num_tags}")
        if not emissions.is_floating_point():
            raise ValueError(f"emissions must be floating point, got {emissions.dtype}")
        if T == 0:
            raise ValueError("emissions must have at least one time step")
        device = emissions.device
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=device)
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask))}")
        if tuple(mask.shape) != (B, T):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match emissions {(B, T)}")
        if mask.device != device:
            mask = mask.to(device)
        checks = [~mask[:, 0].all(), (mask[:, 1:] > mask[:, :-1]).any()]
        if tags is not None:
            if not isinstance(tags, Tensor) or tags.dtype != torch.long:
                raise ValueError(f"tags must be a long tensor, got {getattr(tags, 'dtype', type(tags))}")
            if tuple(tags.shape) != (B, T):
                raise ValueError(f"tags shape {tuple(tags.shape)} does not match emissions {(B, T)}")
            # Padding tags may be anything (e.g. -100); only real ones must be tag ids.
            tags = torch.where(mask, tags.to(device), 0)
            checks.append((tags.clamp(0, K - 1) != tags).any())
        bad = torch.stack(checks).tolist()
        if bad[0]:
            raise ValueError("mask[:, 0] must be all True (every sentence needs at least one token)")
        if bad[1]:
            raise ValueError("mask rows must be left-aligned: a prefix of Trues followed by Falses")
        if tags is not None and bad[2]:
            raise ValueError(f"tags on real tokens must be in [0, {K})")
        dtype = torch.promote_types(torch.promote_types(emissions.dtype, self.transitions.dtype), torch.float32)
        if emissions.dtype != dtype:
            emissions = emissions.to(dtype)
        return emissions, mask, mask.sum(1), tags

    def _setup(self, emissions, mask, tags=None):
        emissions, mask, lengths, tags = self._validate(emissions, mask, tags)
        return emissions, mask, lengths, tags, self._potentials(emissions.dtype, emissions.device)

    # -- likelihood

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), tags (B,T) long, mask (B,T) -> (B,) score of the given paths."""
        emissions, mask, lengths, tags, pot = self._setup(emissions, mask, tags)
        p = _Prepared(emissions, mask, lengths)
        return _gold_score(p, p.em_t, _gold_parts(p, tags, self.num_tags), *pot)

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), mask (B,T) -> (B,) log Z by the forward algorithm."""
        emissions, mask, lengths, _, pot = self._setup(emissions, mask)
        return _NLL.apply(emissions, mask, lengths, None, *pot, _grad_wanted(emissions, pot))

    def neg_log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), tags (B,T) long, mask (B,T) -> (B,) NLL per sentence
        (log Z - score, no reduction; >= 0 up to rounding)."""
        emissions, mask, lengths, tags, pot = self._setup(emissions, mask, tags)
        return _NLL.apply(emissions, mask, lengths, tags, *pot, _grad_wanted(emissions, pot))

    # -- decoding

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), mask (B,T) -> (B,T,K) P(y_t = k | x) by forward-backward;
        rows past the length are 0."""
        return self.posteriors(emissions, mask).marginals

    @torch.no_grad()
    def posteriors(self, emissions: Tensor, mask: Tensor | None = None) -> Posteriors:
        """emissions (B,T,K), mask (B,T) -> Posteriors: the marginals and what the probability
        of a tag sequence on any stretch of a sentence follows from."""
        emissions, mask, lengths, _, pot = self._setup(emissions, mask)
        return _posteriors(_Prepared(emissions, mask, lengths), *pot)

    @torch.no_grad()
    def viterbi_decode(self, emissions: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """emissions (B,T,K), mask (B,T) -> best paths (B,T) long (0 past the length) and
        their scores (B,)."""
        emissions, mask, lengths, _, pot = self._setup(emissions, mask)
        path, score = _viterbi(_Prepared(emissions, mask, lengths), *pot)
        return torch.where(mask, path.t(), 0), score

    @torch.no_grad()
    def nbest(self, emissions: Tensor, mask: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
        """emissions (B,T,K), mask (B,T), k -> paths (B,k,T) long and scores (B,k), best
        first. Where a sentence has fewer than k paths the extra scores are -inf (paths 0)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        emissions, mask, lengths, _, pot = self._setup(emissions, mask)
        paths, scores = _nbest(_Prepared(emissions, mask, lengths), *pot, k)
        valid = mask[:, None, :] & torch.isfinite(scores)[:, :, None]
        return torch.where(valid, paths.permute(1, 2, 0), 0), scores

    @torch.no_grad()
    def span_probabilities(self, emissions: Tensor, mask: Tensor, spans: list[tuple[int, int, int, list[int]]],
                           inside: list[int | None], posteriors: Posteriors | None = None) -> Tensor:
        """Probability that each span carries exactly the given tags and does not go on.

        emissions (B, T, K), mask (B, T); spans: (row b, start s, end e exclusive, tag ids of
        s..e-1); inside: per span, the tag that would continue it at e (None: nothing can).
        -> (N,). The posterior over tag sequences is a Markov chain, so this is P(y_s) times
        P(y_t | y_{t-1}) along the span, times 1 - P(y_e = inside | y_{e-1}) (see ``Posteriors``;
        ``posteriors`` of this batch are computed if not given). A span where those ratios would
        lose precision gets the exact figure instead: the partition function of the paths that
        agree with it over the full one, both by the forward algorithm.
        """
        if not spans:
            return emissions.new_zeros(0)
        if posteriors is None:
            posteriors = self.posteriors(emissions, mask)
        probs, ok = _chain_span_probabilities(posteriors, mask.sum(1).tolist(), spans, inside)
        if not bool(ok.all()):
            redo = (~ok).nonzero().flatten().tolist()
            probs[redo] = self._exact_span_probabilities(emissions, mask, [spans[i] for i in redo],
                                                         [inside[i] for i in redo]).to(probs.dtype)
        return probs

    def _exact_span_probabilities(self, emissions: Tensor, mask: Tensor, spans, inside) -> Tensor:
        """Constrained over full partition function, per span (see span_probabilities)."""
        rows = torch.tensor([b for b, _, _, _ in spans], device=emissions.device)
        em = emissions[rows]
        T = em.shape[1]
        # Index lists, built in Python once: (span, position, tag) of the span's own tags, and
        # of the I- tag forbidden right after it.
        own: list[tuple[int, int, int]] = []
        after: list[tuple[int, int, int]] = []
        for n, ((_, s, e, ids), i_tag) in enumerate(zip(spans, inside)):
            own.extend((n, s + k, t) for k, t in enumerate(ids))
            if i_tag is not None and e < T:
                after.append((n, e, i_tag))
        own_index = torch.tensor(own, device=em.device).t()
        allowed = torch.ones_like(em, dtype=torch.bool)
        allowed[own_index[0], own_index[1]] = False  # inside the span: only its own tags
        allowed[own_index[0], own_index[1], own_index[2]] = True
        if after:
            after_index = torch.tensor(after, device=em.device).t()
            allowed[after_index[0], after_index[1], after_index[2]] = False
        # A large finite penalty rather than -inf keeps every step of the recursion finite.
        constrained = self.log_partition(em.masked_fill(~allowed, -1e4), mask[rows])
        full = self.log_partition(emissions, mask)[rows]  # once per sentence, not per span
        return (constrained - full).exp().clamp(0, 1)
