"""The CRF against brute-force enumeration, against pytorch-crf, under padding, and by gradcheck."""

import itertools
import math

import pytest
import torch
from torch.autograd import gradcheck

import nerbilstm.model.crf as crf_module
from nerbilstm.model.crf import CRF
from nerbilstm.tags import iob2_constraints

IOB_LABELS = ["O", "B-a", "I-a", "B-b", "I-b"]


# ----------------------------------------------------------------------------- helpers


def make_batch(lengths, K, dtype=torch.float32, scale=1.0, T=None):
    """Random emissions (B,T,K), tags (B,T) and a left-aligned mask for the given lengths."""
    T = T or max(lengths)
    lengths_t = torch.tensor(lengths)
    mask = torch.arange(T)[None, :] < lengths_t[:, None]
    emissions = torch.randn(len(lengths), T, K, dtype=dtype) * scale
    tags = torch.randint(K, (len(lengths), T))
    return emissions, tags, mask


def make_crf(K, dtype=torch.float32, labels=None, scale=1.0):
    crf = CRF(K)
    with torch.no_grad():  # larger than the default init so that paths really differ
        for p in crf.parameters():
            p.normal_(0.0, scale)
    if labels is not None:
        crf.set_constraints(*iob2_constraints(labels))
    return crf.to(dtype)


def effective_params(crf):
    """float64 python lists of the scores with constraint penalties, computed independently."""
    trans = crf.transitions.detach().double().clone()
    start = crf.start_scores.detach().double().clone()
    end = crf.end_scores.detach().double().clone()
    if crf.allowed_transitions is not None:
        trans[~crf.allowed_transitions] -= 10000.0
    if crf.allowed_start is not None:
        start[~crf.allowed_start] -= 10000.0
    if crf.allowed_end is not None:
        end[~crf.allowed_end] -= 10000.0
    return trans.tolist(), start.tolist(), end.tolist()


def path_score(em, path, trans, start, end):
    s = start[path[0]] + em[0][path[0]]
    for t in range(1, len(path)):
        s += trans[path[t - 1]][path[t]] + em[t][path[t]]
    return s + end[path[-1]]


def enumerate_paths(crf, emissions, mask):
    """Per sentence: every tag sequence of its length with its score (float64), best first."""
    trans, start, end = effective_params(crf)
    K = crf.num_tags
    out = []
    for b in range(emissions.shape[0]):
        L = int(mask[b].sum())
        em = emissions[b, :L].double().tolist()
        scored = [(path_score(em, p, trans, start, end), p) for p in itertools.product(range(K), repeat=L)]
        scored.sort(key=lambda x: -x[0])
        out.append(scored)
    return out


def logsumexp(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def is_iob2(path, labels):
    prev = None
    for i in path:
        lab = labels[i]
        if lab.startswith("I-") and (prev is None or prev[2:] != lab[2:] or prev == "O"):
            return False
        prev = lab
    return True


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- brute force

BRUTE_CASES = [
    (3, [1]),
    (3, [4]),
    (3, [3, 1, 4, 2]),
    (4, [2, 4, 1]),
    (4, [4, 4]),
]


@pytest.mark.parametrize("exact_paths", [False, True])
@pytest.mark.parametrize("how", ["no_grad", "frozen_parameters", "inference_mode"])
@pytest.mark.parametrize("K,lengths", BRUTE_CASES + [(5, [3, 2])])
def test_no_gradient_path_against_enumeration(seed, K, lengths, how, exact_paths, monkeypatch):
    """log_partition and the NLL when no gradient is wanted (no posteriors kept) match enumeration."""
    if exact_paths:
        monkeypatch.setattr(crf_module, "_threshold", lambda dtype: float("inf"))
    else:
        monkeypatch.setattr(crf_module, "_log_scan", lambda *a: pytest.fail("_log_scan used"))
    crf = make_crf(K, torch.float64, labels=IOB_LABELS if K == 5 else None)
    emissions, tags, mask = make_batch(lengths, K, torch.float64, scale=2.0)
    paths = enumerate_paths(crf, emissions, mask)
    trans, start, end = effective_params(crf)
    expected_z = torch.tensor([logsumexp([s for s, _ in ps]) for ps in paths], dtype=torch.float64)
    gold = torch.tensor([path_score(emissions[b, :L].tolist(), tags[b, :L].tolist(), trans, start, end)
                         for b, L in enumerate(lengths)], dtype=torch.float64)
    wanted = []
    monkeypatch.setattr(crf_module, "_grad_wanted", lambda *a, f=crf_module._grad_wanted: wanted.append(f(*a)) or f(*a))
    if how == "frozen_parameters":
        crf.requires_grad_(False)
        context = torch.enable_grad()
    else:
        context = torch.no_grad() if how == "no_grad" else torch.inference_mode()
    with context:
        log_z = crf.log_partition(emissions, mask)
        nll = crf.neg_log_likelihood(emissions, tags, mask)
    assert len(wanted) == 2 and not any(wanted), "the gradient path was taken"
    assert not log_z.requires_grad and not nll.requires_grad
    torch.testing.assert_close(log_z, expected_z, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(nll, expected_z - gold, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("exact_paths", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K,lengths", BRUTE_CASES)
def test_against_enumeration(seed, K, lengths, dtype, exact_paths, monkeypatch):
    if exact_paths:  # force the exact log-space recursions and the Viterbi backtrace
        monkeypatch.setattr(crf_module, "_threshold", lambda dtype: float("inf"))
        monkeypatch.setattr(crf_module, "_VITERBI_TOL_ULPS", -1.0)
    else:  # and otherwise make sure that the fast paths are the ones being checked
        for name in ("_log_scan", "_backtrace"):
            monkeypatch.setattr(crf_module, name, lambda *a, name=name: pytest.fail(f"{name} used"))
    crf = make_crf(K, dtype)
    emissions, tags, mask = make_batch(lengths, K, dtype, scale=2.0)
    paths = enumerate_paths(crf, emissions, mask)
    trans, start, end = effective_params(crf)
    t = tol(dtype)

    log_z = crf.log_partition(emissions, mask)
    expected_z = torch.tensor([logsumexp([s for s, _ in ps]) for ps in paths], dtype=torch.float64)
    torch.testing.assert_close(log_z.double(), expected_z, **t)

    gold = [path_score(emissions[b, :L].double().tolist(), tags[b, :L].tolist(), trans, start, end)
            for b, L in enumerate(lengths)]
    torch.testing.assert_close(crf.score(emissions, tags, mask).double(), torch.tensor(gold, dtype=torch.float64), **t)
    nll = crf.neg_log_likelihood(emissions, tags, mask)
    torch.testing.assert_close(nll.double(), expected_z - torch.tensor(gold, dtype=torch.float64), **t)
    assert (nll >= -1e-5).all()

    best, best_score = crf.viterbi_decode(emissions, mask)
    assert best.shape == tags.shape and best.dtype == torch.long
    for b, L in enumerate(lengths):
        assert best[b, :L].tolist() == list(paths[b][0][1])
        assert (best[b, L:] == 0).all()
    torch.testing.assert_close(best_score.double(), torch.tensor([ps[0][0] for ps in paths], dtype=torch.float64), **t)

    mu = crf.marginals(emissions, mask)
    expected_mu = torch.zeros(len(lengths), mask.shape[1], K, dtype=torch.float64)
    for b, ps in enumerate(paths):
        z = expected_z[b].item()
        for s, p in ps:
            for pos, tag in enumerate(p):
                expected_mu[b, pos, tag] += math.exp(s - z)
    torch.testing.assert_close(mu.double(), expected_mu, **t)

    for k in (1, 3, K ** max(lengths) + 2):
        nb_paths, nb_scores = crf.nbest(emissions, mask, k)
        assert nb_paths.shape == (len(lengths), k, mask.shape[1]) and nb_scores.shape == (len(lengths), k)
        for b, L in enumerate(lengths):
            top = paths[b][:k]
            want = [s for s, _ in top] + [-math.inf] * (k - len(top))
            torch.testing.assert_close(nb_scores[b].double(), torch.tensor(want, dtype=torch.float64), **t)
            for r, (_, p) in enumerate(top):
                assert nb_paths[b, r, :L].tolist() == list(p)
            assert (nb_paths[b, :, L:] == 0).all()
            assert (nb_paths[b, len(top):] == 0).all()


@pytest.mark.parametrize("lengths", [[4], [4, 2, 3, 1]])
def test_constrained_against_enumeration(seed, lengths):
    K = len(IOB_LABELS)
    crf = make_crf(K, labels=IOB_LABELS)
    emissions, _, mask = make_batch(lengths, K, scale=3.0)
    # Make the unconstrained favourite illegal: I-a first, then I-b after B-a.
    emissions[0, 0, 2] += 20.0
    emissions[0, 1, 1] += 20.0
    emissions[0, 2, 4] += 20.0
    paths = enumerate_paths(crf, emissions, mask)
    free = CRF(K)
    free.load_state_dict(crf.state_dict())
    free_best, _ = free.viterbi_decode(emissions, mask)
    assert not is_iob2(free_best[0, :lengths[0]].tolist(), IOB_LABELS)  # the constraint matters here

    best, best_score = crf.viterbi_decode(emissions, mask)
    trans, start, end = effective_params(free)  # scores without penalties
    for b, L in enumerate(lengths):
        em = emissions[b, :L].double().tolist()
        allowed = [(path_score(em, p, trans, start, end), p) for p in itertools.product(range(K), repeat=L)
                   if is_iob2(p, IOB_LABELS)]
        want_score, want_path = max(allowed)
        assert best[b, :L].tolist() == list(want_path)
        assert is_iob2(best[b, :L].tolist(), IOB_LABELS)
        assert best_score[b].item() == pytest.approx(want_score, rel=1e-5)

    # Penalised moves count in every computation: partition, marginals and n-best.
    expected_z = torch.tensor([logsumexp([s for s, _ in ps]) for ps in paths], dtype=torch.float64)
    torch.testing.assert_close(crf.log_partition(emissions, mask).double(), expected_z, rtol=1e-5, atol=1e-5)
    mu = crf.marginals(emissions, mask)
    for b, ps in enumerate(paths):
        for pos in range(lengths[b]):
            for tag in range(K):
                want = sum(math.exp(s - expected_z[b].item()) for s, p in ps if p[pos] == tag)
                assert mu[b, pos, tag].item() == pytest.approx(want, abs=1e-5)
    nb_paths, nb_scores = crf.nbest(emissions, mask, 4)
    for b, L in enumerate(lengths):
        for r in range(min(4, len(paths[b]))):
            assert nb_paths[b, r, :L].tolist() == list(paths[b][r][1])
            assert nb_scores[b, r].item() == pytest.approx(paths[b][r][0], rel=1e-5)
            assert is_iob2(nb_paths[b, r, :L].tolist(), IOB_LABELS) or paths[b][r][0] < -5000


# ----------------------------------------------------------------------------- pytorch-crf


def torchcrf_copy(crf):
    torchcrf = pytest.importorskip("torchcrf")
    ref = torchcrf.CRF(crf.num_tags, batch_first=True).to(crf.transitions.dtype)
    trans, start, end = effective_params(crf)
    with torch.no_grad():  # constraints baked into its parameters: the same model
        ref.transitions.copy_(torch.tensor(trans))
        ref.start_transitions.copy_(torch.tensor(start))
        ref.end_transitions.copy_(torch.tensor(end))
    return ref


@pytest.mark.parametrize("labels", [None, IOB_LABELS])
@pytest.mark.parametrize("lengths", [[12, 5, 1, 9, 12, 3, 7, 2], [1, 1, 1], [30, 29]])
def test_matches_torchcrf(seed, lengths, labels):
    K = len(IOB_LABELS)
    crf = make_crf(K, labels=labels)
    ref = torchcrf_copy(crf)
    emissions, tags, mask = make_batch(lengths, K, scale=2.0)
    emissions.requires_grad_(True)

    ours = crf.neg_log_likelihood(emissions, tags, mask)
    theirs = -ref(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)

    ours_g = torch.autograd.grad(ours.sum(), [emissions, crf.transitions, crf.start_scores, crf.end_scores])
    theirs_g = torch.autograd.grad(  # unused (None) when every sentence has one token
        theirs.sum(), [emissions, ref.transitions, ref.start_transitions, ref.end_transitions], allow_unused=True)
    for a, b in zip(ours_g, theirs_g):
        torch.testing.assert_close(a, torch.zeros_like(a) if b is None else b, rtol=1e-4, atol=1e-5)

    paths, _ = crf.viterbi_decode(emissions, mask)
    for b, expected in enumerate(ref.decode(emissions, mask)):
        assert paths[b, :lengths[b]].tolist() == expected


# ----------------------------------------------------------------------------- padding


def all_outputs(crf, emissions, tags, mask, k=3):
    em = emissions.detach().clone().requires_grad_(True)
    nll = crf.neg_log_likelihood(em, tags, mask)
    (grad,) = torch.autograd.grad(nll.sum(), [em])
    path, vscore = crf.viterbi_decode(emissions, mask)
    nb_paths, nb_scores = crf.nbest(emissions, mask, k)
    return dict(
        nll=nll.detach(), log_z=crf.log_partition(emissions, mask).detach(),
        score=crf.score(emissions, tags, mask).detach(), grad=grad, path=path, vscore=vscore,
        marginals=crf.marginals(emissions, mask), nb_paths=nb_paths, nb_scores=nb_scores,
    )


@pytest.mark.parametrize("labels", [None, IOB_LABELS])
def test_padding_invariance(seed, labels):
    K = len(IOB_LABELS)
    crf = make_crf(K, labels=labels)
    lengths = [6, 2, 9, 1, 4]
    emissions, tags, mask = make_batch(lengths, K, scale=2.0, T=13)  # 4 extra padding columns
    # Garbage on padding must change nothing: huge values, nan, inf, and out-of-range tags.
    pad = ~mask
    emissions[pad] = torch.tensor([1e6, float("nan"), float("inf"), -1e6, 3.0])
    tags[pad] = -100
    batched = all_outputs(crf, emissions, tags, mask)
    for b, L in enumerate(lengths):
        alone = all_outputs(crf, emissions[b:b + 1, :L], tags[b:b + 1, :L], mask[b:b + 1, :L])
        for name, value in alone.items():
            got = batched[name][b:b + 1]
            got = got[..., :L] if name in ("path", "nb_paths") else got
            got = got[:, :L] if name in ("grad", "marginals") else got
            torch.testing.assert_close(got, value, rtol=1e-6, atol=1e-6, msg=name)
        assert (batched["grad"][b, L:] == 0).all()
        assert (batched["marginals"][b, L:] == 0).all()
        assert (batched["path"][b, L:] == 0).all()


# ----------------------------------------------------------------------------- gradients


class _NLLOf(torch.nn.Module):
    def __init__(self, crf, tags, mask, partition_only=False):
        super().__init__()
        self.crf, self.tags, self.mask, self.partition_only = crf, tags, mask, partition_only

    def forward(self, emissions):
        if self.partition_only:
            return self.crf.log_partition(emissions, self.mask)
        return self.crf.neg_log_likelihood(emissions, self.tags, self.mask)


@pytest.mark.parametrize("partition_only", [False, True])
@pytest.mark.parametrize("labels", [None, IOB_LABELS, ["O", "I-a", "B-b"]])
def test_gradcheck(seed, labels, partition_only):
    # ["O", "I-a", "B-b"] has a tag nothing may move into: the scaled recursion underflows
    # and the exact log-space fallback (forward and backward) is what gets checked.
    K = len(labels) if labels else 3
    crf = make_crf(K, torch.float64, labels=labels)
    emissions, tags, mask = make_batch([3, 1, 4], K, torch.float64, T=5)
    wrapped = _NLLOf(crf, tags, mask, partition_only)

    def fn(em, trans, start, end):
        params = {"crf.transitions": trans, "crf.start_scores": start, "crf.end_scores": end}
        return torch.func.functional_call(wrapped, params, (em,))

    inputs = [emissions, crf.transitions.detach(), crf.start_scores.detach(), crf.end_scores.detach()]
    assert gradcheck(fn, [x.clone().requires_grad_(True) for x in inputs])


def test_fallback_matches_scaled_path(seed, monkeypatch):
    """Forcing the exact log-space paths and the Viterbi backtrace everywhere gives the same
    answers as the fast paths."""
    K = len(IOB_LABELS)
    crf = make_crf(K, labels=IOB_LABELS)
    emissions, tags, mask = make_batch([7, 3, 1, 7, 5], K, scale=2.0)
    fast = all_outputs(crf, emissions, tags, mask)
    fast_pgrad = torch.autograd.grad(crf.neg_log_likelihood(emissions, tags, mask).sum(), list(crf.parameters()))
    monkeypatch.setattr(crf_module, "_threshold", lambda dtype: float("inf"))
    monkeypatch.setattr(crf_module, "_VITERBI_TOL_ULPS", -1.0)
    slow = all_outputs(crf, emissions, tags, mask)
    slow_pgrad = torch.autograd.grad(crf.neg_log_likelihood(emissions, tags, mask).sum(), list(crf.parameters()))
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-5, atol=1e-5, msg=name)
    for a, b in zip(fast_pgrad, slow_pgrad):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_extreme_scores_stay_exact(seed, monkeypatch):
    """Huge emission gaps underflow the scaled recursion; the result must still be exact."""
    calls = []
    log_scan = crf_module._log_scan
    monkeypatch.setattr(crf_module, "_log_scan", lambda *a: calls.append(1) or log_scan(*a))
    K = len(IOB_LABELS)
    crf = make_crf(K, labels=IOB_LABELS, scale=3.0)
    emissions, tags, mask = make_batch([4, 2, 3], K, scale=60.0)
    paths = enumerate_paths(crf, emissions, mask)
    expected_z = torch.tensor([logsumexp([s for s, _ in ps]) for ps in paths], dtype=torch.float64)
    log_z = crf.log_partition(emissions, mask)
    torch.testing.assert_close(log_z.double(), expected_z, rtol=1e-6, atol=1e-3)
    mu = crf.marginals(emissions, mask)
    assert torch.isfinite(mu).all()
    torch.testing.assert_close(mu.sum(-1), mask.float(), rtol=0, atol=1e-5)
    em = emissions.clone().requires_grad_(True)
    crf.neg_log_likelihood(em, tags, mask).sum().backward()
    assert torch.isfinite(em.grad).all()
    assert calls  # the exact fallback did run


# ----------------------------------------------------------------------------- properties


def test_nll_nonnegative_and_marginals_normalised(seed):
    K = 9
    crf = make_crf(K)
    lengths = [20, 7, 1, 13, 20, 3]
    emissions, tags, mask = make_batch(lengths, K, scale=3.0)
    nll = crf.neg_log_likelihood(emissions, tags, mask)
    assert (nll >= -1e-4).all()
    best, _ = crf.viterbi_decode(emissions, mask)
    assert (crf.neg_log_likelihood(emissions, best, mask) >= -1e-4).all()
    mu = crf.marginals(emissions, mask)
    torch.testing.assert_close(mu.sum(-1), mask.float(), rtol=0, atol=1e-5)
    assert (mu >= 0).all() and (mu <= 1 + 1e-6).all()
    # The Viterbi score is the score of the Viterbi path, and no path in the n-best beats it.
    path, vscore = crf.viterbi_decode(emissions, mask)
    torch.testing.assert_close(crf.score(emissions, path, mask), vscore, rtol=1e-6, atol=1e-5)
    nb_paths, nb_scores = crf.nbest(emissions, mask, 5)
    assert (nb_scores[:, :-1] >= nb_scores[:, 1:]).all()
    assert (nb_paths[:, 0] == path).all()
    for r in range(5):
        torch.testing.assert_close(crf.score(emissions, nb_paths[:, r], mask), nb_scores[:, r], rtol=1e-6, atol=1e-5)
    assert len({tuple(nb_paths[0, r].tolist()) for r in range(5)}) == 5


def test_dtypes_follow_inputs(seed):
    crf = make_crf(4)
    emissions, tags, mask = make_batch([3, 2], 4)
    assert crf.neg_log_likelihood(emissions.double(), tags, mask).dtype == torch.float64
    assert crf.marginals(emissions.double(), mask).dtype == torch.float64
    assert crf.neg_log_likelihood(emissions.bfloat16(), tags, mask).dtype == torch.float32
    torch.testing.assert_close(
        crf.double().neg_log_likelihood(emissions.double(), tags, mask).float(),
        crf.float().neg_log_likelihood(emissions, tags, mask), rtol=1e-5, atol=1e-5)


def test_constraints_buffers(seed):
    K = len(IOB_LABELS)
    crf = make_crf(K)
    emissions, tags, mask = make_batch([4, 3], K, scale=3.0)
    free_z = crf.log_partition(emissions, mask)
    crf.set_constraints(*iob2_constraints(IOB_LABELS))
    assert not torch.allclose(crf.log_partition(emissions, mask), free_z)
    assert set(crf.state_dict()) == {"transitions", "start_scores", "end_scores"}
    crf.double()  # penalties follow the module's dtype
    assert crf.log_partition(emissions.double(), mask).dtype == torch.float64
    crf.float()
    crf.set_constraints(None)
    assert crf.allowed_transitions is None and crf.allowed_start is None
    torch.testing.assert_close(crf.log_partition(emissions, mask), free_z)


# ----------------------------------------------------------------------------- validation


def _bad_inputs():
    K = 4
    em = torch.randn(2, 3, K)
    tags = torch.zeros(2, 3, dtype=torch.long)
    mask = torch.ones(2, 3, dtype=torch.bool)
    holes = mask.clone()
    holes[0, 1] = False
    first_false = mask.clone()
    first_false[1, 0] = False
    bad_tag = tags.clone()
    bad_tag[1, 2] = K
    return [
        ("emissions must be a \\(B,T,K\\)", (em[0], tags, mask)),
        ("emissions have 5 tags", (torch.randn(2, 3, 5), tags, mask)),
        ("floating point", (em.long(), tags, mask)),
        ("mask must be a bool", (em, tags, mask.long())),
        ("mask shape", (em, tags, mask[:, :2])),
        ("mask\\[:, 0\\]", (em, tags, first_false)),
        ("left-aligned", (em, tags, holes)),
        ("tags must be a long", (em, tags.int(), mask)),
        ("tags shape", (em, tags[:, :2], mask)),
        ("tags on real tokens", (em, bad_tag, mask)),
        ("at least one time step", (em[:, :0], tags[:, :0], mask[:, :0])),
    ]


@pytest.mark.parametrize("match,args", _bad_inputs(), ids=[m for m, _ in _bad_inputs()])
def test_validation(match, args):
    crf = CRF(4)
    with pytest.raises(ValueError, match=match):
        crf.neg_log_likelihood(*args)


def test_constraints_from_arrays():
    """iob2_constraints gives numpy bool arrays; set_constraints takes them (and nested lists)
    exactly as the same tables in tensors."""
    allowed, start, end = iob2_constraints(IOB_LABELS)
    from_arrays, from_tensors, from_lists = CRF(len(IOB_LABELS)), CRF(len(IOB_LABELS)), CRF(len(IOB_LABELS))
    from_arrays.set_constraints(allowed, start, end)
    from_tensors.set_constraints(torch.from_numpy(allowed), torch.from_numpy(start), torch.from_numpy(end))
    from_lists.set_constraints(allowed.tolist(), start.tolist(), end.tolist())
    for crf in (from_arrays, from_lists):
        for name in ("allowed_transitions", "allowed_start", "allowed_end", "_transition_penalty"):
            assert torch.equal(getattr(crf, name), getattr(from_tensors, name)), name
    allowed[0, 0] = False  # the CRF holds a copy
    assert from_arrays.allowed_transitions[0, 0]
    with pytest.raises(ValueError, match="bool"):
        from_arrays.set_constraints(allowed.astype(float))
    with pytest.raises(ValueError, match="bool tensor or array"):
        from_arrays.set_constraints(object())
    with pytest.raises(ValueError, match="shape"):
        from_arrays.set_constraints(start)
    assert torch.equal(from_arrays.allowed_start, from_tensors.allowed_start)  # a failed call changes nothing


def test_validation_misc():
    crf = CRF(3)
    em = torch.randn(1, 2, 3)
    mask = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="k must be"):
        crf.nbest(em, mask, 0)
    with pytest.raises(ValueError, match="shape"):
        crf.set_constraints(torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        crf.set_constraints(torch.ones(3, 3))
    with pytest.raises(ValueError, match="mask\\[:, 0\\]"):
        crf.viterbi_decode(em, torch.tensor([[False, False]]))


def test_empty_batch_and_default_mask(seed):
    crf = make_crf(3)
    em = torch.randn(0, 4, 3, requires_grad=True)
    mask = torch.ones(0, 4, dtype=torch.bool)
    tags = torch.zeros(0, 4, dtype=torch.long)
    crf.neg_log_likelihood(em, tags, mask).sum().backward()
    assert em.grad.shape == em.shape
    assert crf.viterbi_decode(em, mask)[0].shape == (0, 4)
    assert crf.marginals(em, mask).shape == (0, 4, 3)
    assert crf.nbest(em, mask, 2)[0].shape == (0, 2, 4)
    # mask=None means every position is real
    emissions, tags, mask = make_batch([5, 5], 3)
    torch.testing.assert_close(
        crf.neg_log_likelihood(emissions, tags, None), crf.neg_log_likelihood(emissions, tags, mask))


@pytest.mark.parametrize("constrained", [False, True])
def test_viterbi_exact_ties_fall_back_to_backtrace(monkeypatch, constrained):
    """Two tied best paths: position-wise max-marginals would mix them; the backtrace must
    give one whole best path (and a legal one under constraints), for that row only."""
    calls = []
    backtrace = crf_module._backtrace
    monkeypatch.setattr(crf_module, "_backtrace", lambda *a: calls.append(1) or backtrace(*a))
    labels = ["O", "B-a", "I-a"]
    crf = CRF(3)
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
        crf.transitions[0, 0] = crf.transitions[1, 1] = -5.0  # O O and B-a B-a are bad
    if constrained:
        crf.set_constraints(*iob2_constraints(labels))
    emissions = torch.zeros(2, 2, 3)
    emissions[:, :, 2] = -20.0  # I-a is never worth it
    emissions[1] += torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # row 1: a unique best path
    mask = torch.ones(2, 2, dtype=torch.bool)
    path, score = crf.viterbi_decode(emissions, mask)
    assert calls
    assert path[0].tolist() in ([0, 1], [1, 0])  # O B-a or B-a O, not O O
    assert path[1].tolist() == [0, 1]
    torch.testing.assert_close(crf.score(emissions, path, mask), score)
    alone, _ = crf.viterbi_decode(emissions[1:], mask[1:])
    assert alone.tolist() == path[1:].tolist()
