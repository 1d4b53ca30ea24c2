"""Linear-chain CRF: NLL, Viterbi, marginals and n-best, batch first, exact under padding.

Shapes: B sentences, T time steps (padded), K tags. Masks are (B,T) bool, True on real
tokens and left-aligned (each row a prefix of Trues, mask[:, 0] all True).

Speed notes (CPU, small K): the cost is Python dispatch per time step, so the loops do as
few tensor ops as possible and everything else is vectorised over time.

* No ``torch.where`` carry in the loops: every step is computed for every row (padding
  emissions are zeroed first, so the values stay finite) and each row's result is read at
  its own last token afterwards. The backward messages run as a *forward* scan over each
  row reversed within its length, so they too start at the row's own last token.
* The partition function runs in scaled probability space (4 ops a step: matmul, times the
  exp-emissions, row max, divide) with an exact custom backward (forward-backward), instead
  of autograd through a log-space loop. Scaling can lose precision only when a whole
  predecessor column underflows; that is detected after the loop (every pre-emission
  product of a real step must be >= tiny/eps) and the batch is then recomputed with the
  exact log-space recursion, so results never silently degrade.
* Viterbi and n-best are 3 ops a step with preallocated outputs, and the backtrace is one
  gather a step for the whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CRF", "iob2_constraints"]

# Added to the score of a disallowed transition / start / end (spec: -10000, not -inf, so
# that a gold path breaking a constraint still has a finite NLL).
DISALLOWED_PENALTY = -10000.0


# ----------------------------------------------------------------------------- helpers


def _lengths_and_index(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """mask (B,T) -> last index (B,) long, batch arange (B,), reversal index (T,B).

    rev[t, b] = L_b - 1 - t for real t and t itself for padding, so gathering with it
    reverses each row within its length (and gathering again undoes it)."""
    B, T = mask.shape
    last = mask.sum(1) - 1
    ar_b = torch.arange(B, device=mask.device)
    ar_t = torch.arange(T, device=mask.device)[:, None]
    rev = torch.where(mask.t(), last[None, :] - ar_t, ar_t)
    return last, ar_b, rev


def _gather_time(x: Tensor, rev: Tensor) -> Tensor:
    """x (T,B,K) gathered along time with a (T,B) index."""
    return x.gather(0, rev.unsqueeze(-1).expand_as(x))


def _threshold(dtype: torch.dtype) -> float:
    # Products below `tiny` may have lost terms; if every product we take a log of or
    # divide by is >= tiny/eps, anything lost is below one ulp of the result.
    fi = torch.finfo(dtype)
    return fi.tiny / fi.eps


def _scaled_scan(init_log: Tensor, exp_em: Tensor, exp_trans: Tensor):
    """Forward recursion in scaled probability space.

    init_log (B,K): log scores of step 0. exp_em (T,B,K): exp(emission - row max).
    exp_trans (K,K): exp(transitions - max), indexed [from, to].
    Returns U (T,B,K) messages, each row scaled to max 1; S (T,B,K) pre-emission products
    S[t] = U[t-1] @ exp_trans (S[0] is left unset); C (T,B,1) the per-step scale factors
    (C[0] unset); c0 (B,1) the log scale of step 0.
    """
    T, B, K = exp_em.shape
    U = torch.empty_like(exp_em)
    S = torch.empty_like(exp_em)
    C = exp_em.new_empty(T, B, 1)
    c0 = init_log.amax(1, keepdim=True)
    # unbind once: indexing U[t] in the loop costs a Python-level view per use.
    Us, Ss, Cs, Es = U.unbind(0), S.unbind(0), C.unbind(0), exp_em.unbind(0)
    prev = torch.exp(init_log - c0, out=Us[0])
    for s, u, c, e in zip(Ss[1:], Us[1:], Cs[1:], Es[1:]):
        torch.mm(prev, exp_trans, out=s)
        torch.mul(s, e, out=u)
        torch.amax(u, 1, keepdim=True, out=c)
        prev = u.div_(c)
    return U, S, C, c0


def _min_real_product(S: Tensor, mask_t: Tensor) -> Tensor:
    """Smallest pre-emission product over real steps t >= 1 (a 0-dim tensor; +inf if none)."""
    if S.shape[0] < 2:
        return S.new_full((), float("inf"))
    per_step = S[1:].amin(-1)  # (T-1,B)
    return torch.where(mask_t[1:], per_step, float("inf")).amin()


def _log_scan(init: Tensor, em_t: Tensor, trans: Tensor) -> Tensor:
    """Exact log-space forward recursion (autograd friendly): (T,B,K) log messages.

    Used as the fallback when scaling underflows and for differentiable marginals."""
    out = [init]
    a = init
    for t in range(1, em_t.shape[0]):
        a = torch.logsumexp(a.unsqueeze(2) + trans, dim=1) + em_t[t]
        out.append(a)
    return torch.stack(out)


def _log_partition_exact(em_t, trans, start, end, last, ar_b) -> Tensor:
    """Log-space log Z (B,) from time-major sanitised emissions em_t (T,B,K)."""
    alpha = _log_scan(start + em_t[0], em_t, trans)
    return torch.logsumexp(alpha[last, ar_b] + end, dim=-1)


def _log_marginals_exact(em_t, trans, start, end, mask_t, last, ar_b, rev) -> Tensor:
    """Log-space forward-backward marginals (T,B,K), zero past each length."""
    alpha = _log_scan(start + em_t[0], em_t, trans)
    log_z = torch.logsumexp(alpha[last, ar_b] + end, dim=-1)
    em_r = _gather_time(em_t, rev)
    # gamma_t = beta_t + e_t, computed as a forward scan over the reversed rows.
    gamma = _gather_time(_log_scan(end + em_r[0], em_r, trans.t()), rev)
    mu = torch.exp(alpha + gamma - em_t - log_z[None, :, None])
    return torch.where(mask_t.unsqueeze(-1), mu, 0.0)


class _Prepared:
    """Time-major inputs shared by the partition forward and backward."""

    def __init__(self, emissions: Tensor, mask: Tensor):
        self.mask_t = mask.t()
        self.last, self.ar_b, self.rev = _lengths_and_index(mask)
        # Zero padding emissions: they must not turn into inf/nan inside the scans.
        self.em_t = torch.where(self.mask_t.unsqueeze(-1), emissions.transpose(0, 1), 0.0).contiguous()


def _scaled_forward(p: _Prepared, trans, start, end):
    """-> (log Z (B,), state for backward) or None when the scaled recursion underflowed."""
    em_t = p.em_t
    thr = _threshold(em_t.dtype)
    em_max = em_t.amax(-1, keepdim=True)  # (T,B,1)
    exp_em = torch.exp(em_t - em_max)
    t_max = trans.max()
    exp_trans = torch.exp(trans - t_max)
    U, S, C, c0 = _scaled_scan(start + em_t[0], exp_em, exp_trans)
    end_max = end.max()
    fin = U[p.last, p.ar_b] @ torch.exp(end - end_max)  # (B,)
    worst = torch.minimum(_min_real_product(S, p.mask_t), fin.amin())
    if not bool(worst >= thr):  # also catches nan
        return None
    # log Z = c0 + sum over real t>=1 of (log C_t + t_max + em_max_t) + log(fin) + end_max.
    # A cumsum read at each row's last index keeps the sum independent of padding.
    incr = (C[1:].log() + em_max[1:]).squeeze(-1) + t_max  # (T-1,B)
    cum = torch.cat([incr.new_zeros(1, incr.shape[1]), incr]).cumsum(0)
    log_z = c0.squeeze(1) + cum[p.last, p.ar_b] + fin.log() + end_max
    return log_z, (exp_em, exp_trans, U, S)


def _scaled_posteriors(p: _Prepared, trans, start, end, exp_em, exp_trans, U, S):
    """Node marginals (T,B,K) (zero past length) from a finished scaled forward pass,
    or None if the backward scan underflowed. Also returns the pieces for pairwise terms."""
    thr = _threshold(exp_em.dtype)
    em_t, rev = p.em_t, p.rev
    # Backward messages as a forward scan over reversed rows with transposed transitions:
    # Q_t ∝ exp(e_t + beta_t).
    init = end + em_t[p.last, p.ar_b]
    Ur, Sr, _, _ = _scaled_scan(init, _gather_time(exp_em, rev), exp_trans.t().contiguous())
    ok_back = _min_real_product(Sr, p.mask_t)
    Q = _gather_time(Ur, rev)
    # P_t ∝ exp(logsumexp_i(alpha_{t-1,i} + trans_ij)); P_0 ∝ exp(start).
    P = S.clone()
    P[0] = torch.exp(start - start.max())
    N = P * Q
    r = N.sum(-1, keepdim=True)  # (T,B,1); r_t >= thr for t>=1 once both scans pass
    worst = torch.minimum(ok_back, r[0].amin())
    if not bool(worst >= thr):
        return None
    mu = torch.where(p.mask_t.unsqueeze(-1), N / r, 0.0)
    return mu, Q, r


class _LogPartition(torch.autograd.Function):
    """log Z (B,) with an analytic forward-backward gradient."""

    @staticmethod
    def forward(ctx, emissions, mask, trans, start, end):
        p = _Prepared(emissions, mask)
        res = _scaled_forward(p, trans, start, end)
        ctx.p = p
        ctx.save_for_backward(trans, start, end)
        if res is None:
            ctx.scaled = None
            return _log_partition_exact(p.em_t, trans, start, end, p.last, p.ar_b)
        log_z, ctx.scaled = res
        return log_z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_z):
        trans, start, end = ctx.saved_tensors
        p = ctx.p
        post = None if ctx.scaled is None else _scaled_posteriors(p, trans, start, end, *ctx.scaled)
        if post is None:
            return (None, None) + _exact_partition_grads(p, trans, start, end, grad_z, ctx.needs_input_grad)
        mu, Q, r = post
        exp_em, exp_trans, U, _ = ctx.scaled
        g = grad_z.to(mu.dtype)
        d_em = (mu * g[None, :, None]).transpose(0, 1) if ctx.needs_input_grad[0] else None
        d_start = g @ mu[0] if ctx.needs_input_grad[3] else None
        d_end = g @ mu[p.last, p.ar_b] if ctx.needs_input_grad[4] else None
        d_trans = None
        if ctx.needs_input_grad[2]:
            # Pairwise marginals xi_t(i,j) = U[t-1,i] exp_trans[i,j] Q[t,j] / r_t, summed
            # over b and real t >= 1 as a single (K, B*T) @ (B*T, K) product.
            K = U.shape[-1]
            w = torch.where(p.mask_t[1:].unsqueeze(-1), g[None, :, None] / r[1:], 0.0)
            acc = U[:-1].reshape(-1, K).t() @ (Q[1:] * w).reshape(-1, K)
            d_trans = exp_trans * acc
        return d_em, None, d_trans, d_start, d_end


def _exact_partition_grads(p: _Prepared, trans, start, end, grad_z, needs):
    """Fallback gradients by autograd through the exact log-space recursion."""
    with torch.enable_grad():
        em_t = p.em_t.detach().requires_grad_(needs[0])
        leaves = [x.detach().requires_grad_(n) for x, n in zip((trans, start, end), needs[2:])]
        log_z = _log_partition_exact(em_t, *leaves, p.last, p.ar_b)
        wanted = [x for x in (em_t, *leaves) if x.requires_grad]
        grads = iter(torch.autograd.grad(log_z, wanted, grad_z))
    d_em = next(grads).transpose(0, 1) if needs[0] else None
    rest = tuple(next(grads) if n else None for n in needs[2:])
    return (d_em,) + rest


# ----------------------------------------------------------------------------- module


class CRF(nn.Module):
    """Linear-chain CRF. transitions[from, to] (K,K); start_scores (K,); end_scores (K,).

    Masks are (B,T) bool, True on real tokens, left-aligned (mask[:,0] all True, each row a
    prefix of Trues). Batch first everywhere. Computation runs in the promoted dtype of the
    emissions and parameters (at least float32) on the emissions' device.
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
        for name in ("allowed_transitions", "allowed_start", "allowed_end"):
            self.register_buffer(name, None, persistent=False)
        for name in ("_transition_penalty", "_start_penalty", "_end_penalty"):
            self.register_buffer(name, None, persistent=False)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={self.allowed_transitions is not None}"

    # -- constraints

    def set_constraints(
        self,
        allowed_transitions: Tensor | None,
        allowed_start: Tensor | None = None,
        allowed_end: Tensor | None = None,
    ) -> None:
        """bool (K,K) [from,to], (K,), (K,). Disallowed moves get -10000 added in every
        computation (nll, viterbi, marginals, nbest). None leaves that kind unconstrained,
        so ``set_constraints(None)`` clears everything."""
        K = self.num_tags
        for name, penalty_name, value, shape in (
            ("allowed_transitions", "_transition_penalty", allowed_transitions, (K, K)),
            ("allowed_start", "_start_penalty", allowed_start, (K,)),
            ("allowed_end", "_end_penalty", allowed_end, (K,)),
        ):
            if value is not None:
                if not isinstance(value, Tensor) or value.dtype != torch.bool:
                    raise ValueError(f"{name} must be a bool tensor")
                if tuple(value.shape) != shape:
                    raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
        for name, penalty_name, value, shape in (
            ("allowed_transitions", "_transition_penalty", allowed_transitions, (K, K)),
            ("allowed_start", "_start_penalty", allowed_start, (K,)),
            ("allowed_end", "_end_penalty", allowed_end, (K,)),
        ):
            if value is None:
                setattr(self, name, None)
                setattr(self, penalty_name, None)
                continue
            dev = self.transitions.device
            value = value.to(dev, copy=True)
            penalty = torch.zeros(shape, dtype=self.transitions.dtype, device=dev)
            setattr(self, name, value)
            setattr(self, penalty_name, penalty.masked_fill_(~value, DISALLOWED_PENALTY))

    def _potentials(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Transitions, start and end scores with constraint penalties added, in dtype."""
        out = []
        for param, penalty in (
            (self.transitions, self._transition_penalty),
            (self.start_scores, self._start_penalty),
            (self.end_scores, self._end_penalty),
        ):
            x = param.to(device=device, dtype=dtype)
            if penalty is not None:
                x = x + penalty.to(device=device, dtype=dtype)
            out.append(x)
        return out[0], out[1], out[2]

    # -- validation

    def _validate(self, emissions: Tensor, mask: Tensor | None, tags: Tensor | None = None):
        """Cheap input checks. -> (emissions in compute dtype, mask, sanitised tags or None)."""
        if not isinstance(emissions, Tensor) or emissions.dim() != 3:
            raise ValueError("emissions must be a (B,T,K) tensor")
        B, T, K = emissions.shape
        if K != self.num_tags:
            raise ValueError(f"emissions have {K} tags in the last dimension, expected {self.num_tags}")
        if not emissions.is_floating_point():
            raise ValueError(f"emissions must be floating point, got {emissions.dtype}")
        if T == 0:
            raise ValueError("emissions must have at least one time step")
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask))}")
        if tuple(mask.shape) != (B, T):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match emissions {(B, T)}")
        mask = mask.to(emissions.device)
        # One host sync for both mask checks.
        bad = torch.stack([~mask[:, 0].all(), (mask[:, 1:] & ~mask[:, :-1]).any()]).tolist()
        if bad[0]:
            raise ValueError("mask[:, 0] must be all True (every sentence needs at least one token)")
        if bad[1]:
            raise ValueError("mask rows must be left-aligned: a prefix of Trues followed by Falses")
        if tags is not None:
            if not isinstance(tags, Tensor) or tags.dtype != torch.long:
                raise ValueError(f"tags must be a long tensor, got {getattr(tags, 'dtype', type(tags))}")
            if tuple(tags.shape) != (B, T):
                raise ValueError(f"tags shape {tuple(tags.shape)} does not match emissions {(B, T)}")
            # Padding tags may be anything (e.g. -100); only real ones are checked.
            tags = tags.to(emissions.device).masked_fill(~mask, 0)
            if bool(((tags < 0) | (tags >= K)).any()):
                raise ValueError(f"tags on real tokens must be in [0, {K})")
        dtype = torch.promote_types(torch.promote_types(emissions.dtype, self.transitions.dtype), torch.float32)
        return emissions.to(dtype), mask, tags

    # -- scores and likelihood

    def _path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        trans, start, end = self._potentials(emissions.dtype, emissions.device)
        last = mask.sum(1, keepdim=True) - 1  # (B,1)
        per_step = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B,T)
        first = start[tags[:, 0]].unsqueeze(1)
        moves = trans[tags[:, :-1], tags[:, 1:]]  # (B,T-1) score of the move into t
        per_step = per_step + torch.cat([first, moves], dim=1)
        # cumsum read at the last token: no time loop, and padding never enters the sum.
        total = per_step.cumsum(1).gather(1, last).squeeze(1)
        return total + end[tags.gather(1, last).squeeze(1)]

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), tags (B,T) long, mask (B,T) -> (B,) score of the given paths."""
        emissions, mask, tags = self._validate(emissions, mask, tags)
        return self._path_score(emissions, tags, mask)

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        trans, start, end = self._potentials(emissions.dtype, emissions.device)
        return _LogPartition.apply(emissions, mask, trans, start, end)

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), mask (B,T) -> (B,) log Z by the forward algorithm."""
        emissions, mask, _ = self._validate(emissions, mask)
        return self._log_partition(emissions, mask)

    def neg_log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), tags (B,T) long, mask (B,T) -> (B,) NLL per sentence (no reduction)."""
        emissions, mask, tags = self._validate(emissions, mask, tags)
        return self._log_partition(emissions, mask) - self._path_score(emissions, tags, mask)

    # -- decoding

    # -- decoding: run without autograd and return plain tensors (use score() for a
    # differentiable path score).

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """emissions (B,T,K), mask (B,T) -> (B,T,K) P(y_t = k | x) by forward-backward;
        rows past the length are 0."""
        emissions, mask, _ = self._validate(emissions, mask)
        trans, start, end = self._potentials(emissions.dtype, emissions.device)
        p = _Prepared(emissions, mask)
        res = _scaled_forward(p, trans, start, end)
        post = None if res is None else _scaled_posteriors(p, trans, start, end, *res[1])
        if post is None:
            mu = _log_marginals_exact(p.em_t, trans, start, end, p.mask_t, p.last, p.ar_b, p.rev)
        else:
            mu = post[0]
        return mu.transpose(0, 1).contiguous()

    @torch.no_grad()
    def viterbi_decode(self, emissions: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """emissions (B,T,K), mask (B,T) -> best paths (B,T) long (0 past the length) and
        their scores (B,)."""
        emissions, mask, _ = self._validate(emissions, mask)
        return self._viterbi(emissions, mask)

    def _viterbi(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        trans, start, end = self._potentials(emissions.dtype, emissions.device)
        p = _Prepared(emissions, mask)
        T, B, K = p.em_t.shape
        # Tag-major (T,K,B) so the max over predecessors reduces the outermost dim of a
        # contiguous (K_from, K_to, B) block: amax there is several times faster than max
        # with indices, so backpointers are recomputed lazily along the chosen path only.
        em_kb = p.em_t.permute(0, 2, 1).contiguous()
        V = torch.empty_like(em_kb)  # V[t, j, b]: best score of a path ending in tag j at t
        Vs, Es = V.unbind(0), em_kb.unbind(0)
        prev = torch.add(start[:, None], Es[0], out=Vs[0])
        trans3 = trans.unsqueeze(2)
        scratch = em_kb.new_empty(K, K, B)
        for v, e in zip(Vs[1:], Es[1:]):
            torch.add(prev.unsqueeze(1), trans3, out=scratch)  # [from, to, b]
            torch.amax(scratch, 0, out=v)
            prev = v.add_(e)
        Vb = V.permute(0, 2, 1)  # (T,B,K) view
        best_score, best_last = (Vb[p.last, p.ar_b] + end).max(1)
        # Backtrace over rows reversed within their lengths, so every row starts at step 0.
        # argmax_i(V[t-1, i] + trans[i, cur]) reproduces the forward max exactly (same sums).
        Vr = _gather_time(Vb, p.rev)
        trans_t = trans.t().contiguous()  # [to, from]
        path_r = torch.empty(T, B, dtype=torch.long, device=V.device)
        Ps, Vrs = path_r.unbind(0), Vr.unbind(0)
        cur = Ps[0].copy_(best_last)
        for nxt, v in zip(Ps[1:], Vrs[1:]):
            cur = torch.argmax(v + trans_t.index_select(0, cur), 1, out=nxt)
        path = path_r.gather(0, p.rev).t()
        return torch.where(mask, path, 0), best_score

    @torch.no_grad()
    def nbest(self, emissions: Tensor, mask: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
        """emissions (B,T,K), mask (B,T), k -> paths (B,k,T) long and scores (B,k), best first.

        Exact k-best Viterbi: each (tag, rank) keeps the k best partial paths ending there.
        If a sentence has fewer than k paths the extra scores are -inf (paths 0)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        emissions, mask, _ = self._validate(emissions, mask)
        return self._nbest(emissions, mask, k)

    def _nbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        trans, start, end = self._potentials(emissions.dtype, emissions.device)
        p = _Prepared(emissions, mask)
        em_t = p.em_t
        T, B, K = em_t.shape
        dev = em_t.device
        V = em_t.new_full((T, B, K, k), float("-inf"))  # [t, b, tag, rank]
        bp = torch.empty(T, B, K, k, dtype=torch.long, device=dev)  # flat from*k + rank
        scratch = em_t.new_empty(B, K, K, k)  # [b, to, from, rank]
        trans_tf = trans.t()[None, :, :, None]
        V[0, :, :, 0] = start + em_t[0]
        for t in range(1, T):
            torch.add(V[t - 1].unsqueeze(1), trans_tf, out=scratch)
            torch.topk(scratch.view(B, K, K * k), k, dim=2, out=(V[t], bp[t]))
            V[t].add_(em_t[t].unsqueeze(2))
        final = (V[p.last, p.ar_b] + end[:, None]).view(B, K * k)
        scores, state = final.topk(k, dim=1)  # state: flat tag*k + rank
        ident = torch.arange(K * k, device=dev).view(K, k)
        bp = torch.where(p.mask_t[..., None, None], bp, ident).view(T, B, K * k)
        states = torch.empty(T, B, k, dtype=torch.long, device=dev)
        states[T - 1] = state
        for t in range(T - 1, 0, -1):
            torch.gather(bp[t], 1, states[t], out=states[t - 1])
        paths = torch.div(states, k, rounding_mode="floor").permute(1, 2, 0)  # (B,k,T)
        valid = mask[:, None, :] & torch.isfinite(scores)[:, :, None]
        return torch.where(valid, paths, 0), scores


# ----------------------------------------------------------------------------- IOB2


def iob2_constraints(labels: list[str]) -> tuple[Tensor, Tensor, Tensor]:
    """IOB2 rules as (allowed[from,to] (K,K), allowed_start (K,), allowed_end (K,)) bool.

    I-x may only follow B-x or I-x and may not start a sentence; any ending is allowed.
    Labels that are not O, B-* or I-* (e.g. '<pad>') are unconstrained in both directions."""
    K = len(labels)

    def parse(label: str) -> tuple[str, str | None]:
        if label == "O":
            return "O", None
        if label.startswith(("B-", "I-")):
            return label[0], label[2:]
        return "free", None

    parsed = [parse(lab) for lab in labels]
    allowed = torch.ones(K, K, dtype=torch.bool)
    start = torch.ones(K, dtype=torch.bool)
    end = torch.ones(K, dtype=torch.bool)
    for j, (kind_j, type_j) in enumerate(parsed):
        if kind_j != "I":
            continue
        start[j] = False
        for i, (kind_i, type_i) in enumerate(parsed):
            if kind_i == "free":
                continue
            allowed[i, j] = kind_i in ("B", "I") and type_i == type_j
    return allowed, start, end
