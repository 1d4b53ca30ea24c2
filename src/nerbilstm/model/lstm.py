"""Our multi-layer bidirectional LSTM: the cell, the recurrence and its backward pass.

Gate order and weight layout follow ``torch.nn.LSTM`` (i, f, g, o; ``W_ih`` of shape
(4H, D)) so that weights copy across both ways.

Padding costs nothing: a batch is first *packed*, time-major, its sentences sorted longest
first (``PackedLayout``), so that the rows of time step t are one contiguous block holding
only the sentences still running at t; their previous states are the first rows of step
t-1's block. The backward direction reads each sentence reversed within its own length, so
it has the very same layout, and both directions run together: one batched matrix product
per time step. All time steps' input projections are one product per layer.

The recurrence has a hand-written backward pass (``_Recurrence``): back-propagation through
time with one matrix product and a handful of element-wise ops per step, the activation
derivatives of all steps computed before the loop in a few large ops, and the weight
gradient accumulated in a single product after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerbilstm.model.dropout import dropout as apply_dropout


@dataclass
class PackedLayout:
    """Where the N real tokens of a left-aligned (B, T) batch sit once packed.

    Packed row order is time-major with sentences sorted longest first: the rows of step t
    are ``starts[t] : starts[t] + sizes[t]``, and row k of that block continues row k of step
    t-1's block. Fields:
      index   (N,) position b * T + t, in the flattened (B, T) batch, of each packed row;
      reverse (N,) for row (t, sentence s), the row (len(s) - 1 - t, s): the same token as read
               by the backward direction (a permutation that is its own inverse);
      prev    (N,) for the weight gradient: the row of step t-1 of the same sentence, offset by
               sizes[0] into a state table whose first sizes[0] rows are the zero initial state;
      sizes, starts: python lists of length T (sentences running at step t, first row of step t).
    """

    index: Tensor
    reverse: Tensor
    prev: Tensor
    sizes: list[int]
    starts: list[int]

    @classmethod
    def from_mask(cls, mask: Tensor) -> "PackedLayout":
        """mask: (B, T) bool, left-aligned (every sentence is a prefix of its row), no empty rows."""
        B, T = mask.shape
        lengths = mask.sum(1)
        order = torch.sort(lengths, descending=True, stable=True).indices
        sorted_lengths = lengths[order]
        running = torch.arange(T, device=mask.device).unsqueeze(1) < sorted_lengths.unsqueeze(0)  # (T, B)
        step, rank = running.nonzero(as_tuple=True)  # time-major: step t's rows are ranks 0..sizes[t]-1
        n = step.numel()
        row_of = torch.full((T, B), -1, dtype=torch.long, device=mask.device)
        row_of[step, rank] = torch.arange(n, device=mask.device)
        sizes = running.sum(1).tolist()
        starts = [0] * T
        for t in range(1, T):
            starts[t] = starts[t - 1] + sizes[t - 1]
        reverse = row_of[sorted_lengths[rank] - 1 - step, rank]
        prev = torch.where(step > 0, row_of[(step - 1).clamp(min=0), rank] + sizes[0], rank) if n else step
        return cls(order[rank] * T + step, reverse, prev, sizes, starts)

    def pack(self, x: Tensor) -> Tensor:
        """x: (B, T, F) padded -> (N, F), the real tokens in packed order."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def unpack(self, rows: Tensor, B: int, T: int) -> Tensor:
        """rows: (N, F) in packed order -> (B, T, F), zero on padding."""
        return rows.new_zeros(B * T, rows.shape[-1]).index_copy(0, self.index, rows).view(B, T, -1)


def _tanh(x: Tensor, out: Tensor) -> Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1 (within 2e-7 of it in float32): on a CPU ``torch.tanh``
    costs about 3 times these three ops, ``torch.sigmoid`` being vectorized much better."""
    return torch.mul(x, 2.0, out=out).sigmoid_().mul_(2.0).sub_(1.0)


# Inference projects the inputs of about this many packed rows (whole time steps) at a time:
# the (2, rows, 4H) projections of a whole batch would be its largest transient tensor.
INFERENCE_BLOCK_ROWS = 512


def _cell_step(xp: Tensor, h_prev: Tensor | None, c_prev: Tensor, w_hh_t: Tensor, gates: Tensor,
               act: Tensor, c_out: Tensor, tanh_out: Tensor, h_out: Tensor) -> None:
    """One time step of both directions for n rows, written into the given buffers.

    xp (2, n, 4H) input projections with bias; h_prev (2, n, H), None for the zero initial
    state; c_prev (2, n, H); w_hh_t (2, H, 4H). Out: gates (2, n, 4H), contiguous, scratch;
    act (2, n, 4H) = sigmoid(i, f, o), tanh(g); c_out, tanh_out = tanh(c), h_out (2, n, H).
    Nothing is allocated: a step is a few microseconds, and freeing and reallocating its
    temporaries would fragment the heap."""
    H = c_out.shape[-1]
    if h_prev is None:
        gates.copy_(xp)
    else:
        torch.baddbmm(xp, h_prev, w_hh_t, out=gates)
    gates[..., 2 * H : 3 * H].mul_(2.0)  # one sigmoid for all four gates, see _tanh
    torch.sigmoid(gates, out=act)
    i, f, g, o = act.chunk(4, dim=-1)
    g.mul_(2.0).sub_(1.0)
    torch.mul(f, c_prev, out=c_out).addcmul_(i, g)
    torch.mul(o, _tanh(c_out, out=tanh_out), out=h_out)


def _step_buffer(flat: Tensor, n: int, H: int) -> Tensor:
    """The first n rows of a flat scratch buffer, as a contiguous (2, n, 4H) tensor."""
    return flat[: 2 * n * 4 * H].view(2, n, 4 * H)


def inference_recurrence(x: Tensor, weight_ih: Tensor, bias: Tensor, weight_hh: Tensor,
                         layout: PackedLayout) -> Tensor:
    """The recurrence with no backward pass to come: x (N, D) packed rows -> h (2, N, H), as
    ``_Recurrence`` on ``BiLSTMLayer``'s input projections, which are made here for
    INFERENCE_BLOCK_ROWS rows (whole time steps) at a time; one step's activations are held."""
    block_rows = INFERENCE_BLOCK_ROWS
    N = x.shape[0]
    H = weight_hh.shape[-1]
    n0 = layout.sizes[0] if layout.sizes else 0
    w_ih_t, w_hh_t, bias = weight_ih.transpose(1, 2), weight_hh.transpose(1, 2), bias.unsqueeze(1)
    hs = x.new_empty(2, n0 + N, H)  # h of every row, after n0 rows of zero initial state
    hs[:, :n0] = 0
    cells = x.new_zeros(2, 2 * n0, H)  # c of the previous step and of this one, alternately
    act, tanh_c, gates = x.new_empty(2, n0, 4 * H), x.new_empty(2, n0, H), x.new_empty(2 * n0 * 4 * H)
    xp, block_start, block_end, prev = None, 0, 0, 0
    for t, (n, start) in enumerate(zip(layout.sizes, layout.starts)):
        if start + n > block_end:  # project the next whole steps, at least block_rows rows
            block_start, block_end = start, start
            for size in layout.sizes[t:]:
                if block_end - block_start >= block_rows:
                    break
                block_end += size
            rows = slice(block_start, block_end)
            both = torch.stack([x[rows], x.index_select(0, layout.reverse[rows])])  # direction 1 reads reversed
            xp = torch.baddbmm(bias, both, w_ih_t)  # (2, rows, 4H)
        _cell_step(xp[:, start - block_start : start - block_start + n], None if start == 0 else hs[:, prev : prev + n],
                   cells[:, t % 2 * n0 :][:, :n], w_hh_t, _step_buffer(gates, n, H), act[:, :n],
                   cells[:, (t + 1) % 2 * n0 :][:, :n], tanh_c[:, :n], hs[:, n0 + start : n0 + start + n])
        prev = n0 + start
    return hs[:, n0:]


class _Recurrence(torch.autograd.Function):
    """LSTM recurrence over packed input projections, both directions batched, for training.

    forward(xp: (2, N, 4H) input projections with bias, w_hh: (2, 4H, H), layout) -> h: (2, N, H),
    the hidden state of every packed row (direction 1's rows in its own, reversed, reading order).
    Every row's activations and cell are kept for the backward pass (inference, with none to
    come, runs ``inference_recurrence``).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # state stays float32 under AMP
    def forward(ctx, xp: Tensor, w_hh: Tensor, layout: PackedLayout) -> Tensor:
        D2, N, G = xp.shape
        H = G // 4
        n0 = layout.sizes[0] if layout.sizes else 0
        w_hh_t = w_hh.transpose(1, 2)  # (2, H, 4H)
        act = torch.empty_like(xp)  # sigmoid(i, f, o), tanh(g) of every row
        hs = xp.new_empty(D2, n0 + N, H)  # h of every row, after n0 rows of zero initial state
        cells = xp.new_empty(D2, n0 + N, H)  # c, likewise
        tanh_c = xp.new_empty(D2, N, H)
        gates = xp.new_empty(D2 * n0 * G)
        hs[:, :n0] = 0
        cells[:, :n0] = 0
        prev = 0  # first row of the previous step's states
        for n, start in zip(layout.sizes, layout.starts):
            rows, out = slice(start, start + n), slice(n0 + start, n0 + start + n)
            _cell_step(xp[:, rows], None if start == 0 else hs[:, prev : prev + n], cells[:, prev : prev + n],
                       w_hh_t, _step_buffer(gates, n, H), act[:, rows], cells[:, out], tanh_c[:, rows], hs[:, out])
            prev = n0 + start
        ctx.layout = layout
        ctx.save_for_backward(w_hh, act, cells, hs, tanh_c)
        return hs[:, n0:]

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_h: Tensor):
        w_hh, act, cells, hs, tanh_c = ctx.saved_tensors
        layout: PackedLayout = ctx.layout
        D2, N, G = act.shape
        H = G // 4
        n0 = layout.sizes[0] if layout.sizes else 0
        i, f, g, o = act.chunk(4, dim=-1)
        c_prev = cells.index_select(1, layout.prev)  # (2, N, H)
        # Before the loop, for all rows at once: d gates = [dc, dc, dc, dh] * local, and
        # dc receives dh * o * (1 - tanh(c)^2).
        local = torch.empty_like(act)
        li, lf, lg, lo = local.chunk(4, dim=-1)
        torch.mul(g, i - i * i, out=li)
        torch.mul(c_prev, f - f * f, out=lf)
        torch.mul(i, 1 - g * g, out=lg)
        torch.mul(tanh_c, o - o * o, out=lo)
        del c_prev
        dc_from_dh = o * (1 - tanh_c * tanh_c)
        local4 = local.view(D2, N, 4, H)
        grad_gates = torch.empty_like(act)
        grad4 = grad_gates.view(D2, N, 4, H)
        dh = grad_h.new_zeros(D2, n0, H)  # gradient reaching h and c of the step just done
        dc = grad_h.new_zeros(D2, n0, H)
        for n, start in zip(reversed(layout.sizes), reversed(layout.starts)):
            rows = slice(start, start + n)
            dh_t = dh[:, :n] + grad_h[:, rows]
            dc_t = torch.addcmul(dc[:, :n], dh_t, dc_from_dh[:, rows])
            torch.mul(dc_t.unsqueeze(2), local4[:, rows, :3], out=grad4[:, rows, :3])
            torch.mul(dh_t, local4[:, rows, 3], out=grad4[:, rows, 3])
            if start == 0:
                break  # the initial state is a constant: no gradient to carry further
            dh[:, :n] = torch.bmm(grad_gates[:, rows], w_hh)
            torch.mul(dc_t, f[:, rows], out=dc[:, :n])
        grad_w_hh = None
        if ctx.needs_input_grad[1]:
            # dW_hh = sum over rows of dgates^T h_prev: one product for all steps after the
            # first (whose h_prev, the initial state, is zero).
            later = slice(n0, N)
            grad_w_hh = torch.bmm(grad_gates[:, later].transpose(1, 2), hs.index_select(1, layout.prev[later]))
        return grad_gates if ctx.needs_input_grad[0] else None, grad_w_hh, None, None


class BiLSTMLayer(nn.Module):
    """One bidirectional layer. Parameters, direction first (0 forward, 1 backward):
    weight_ih (2, 4H, D), weight_hh (2, 4H, H), bias (2, 4H) (= b_ih + b_hh of torch)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(2, 4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2, 4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(2, 4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = self.hidden_size**-0.5
        for p in (self.weight_ih, self.weight_hh):
            nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():
            self.bias.zero_()
            # A forget-gate bias of 1 helps gradients flow early in training (Jozefowicz et al. 2015).
            self.bias[:, self.hidden_size : 2 * self.hidden_size] = 1.0

    def forward(self, x: Tensor, layout: PackedLayout) -> Tensor:
        """x: (N, D) packed rows -> (N, 2H): both directions' states at each row's token."""
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            both = torch.stack([x, x.index_select(0, layout.reverse)])  # direction 1 reads reversed
            xp = torch.baddbmm(self.bias.unsqueeze(1), both, self.weight_ih.transpose(1, 2))  # (2, N, 4H)
            h = _Recurrence.apply(xp, self.weight_hh, layout)  # (2, N, H)
        else:
            h = inference_recurrence(x, self.weight_ih, self.bias, self.weight_hh, layout)
        return torch.cat([h[0], h[1].index_select(0, layout.reverse)], dim=-1)


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM with dropout between layers (as ``torch.nn.LSTM``'s ``dropout``).

    backend "ours" runs our recurrence; "torch" runs ``torch.nn.LSTM`` on the very same
    parameters (for comparison), through ``torch.func.functional_call``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 backend: str = "ours"):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.layers = nn.ModuleList(
            BiLSTMLayer(input_size if k == 0 else 2 * hidden_size, hidden_size) for k in range(num_layers)
        )
        self.backend = backend

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        if name not in ("ours", "torch"):
            raise ValueError(f"unknown LSTM backend {name!r}; expected 'ours' or 'torch'")
        self._backend = name
        # Kept out of the module tree: it owns no weights of its own that we save.
        self.__dict__["_torch_lstm"] = None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, T, D), mask: (B, T) bool, left-aligned -> (B, T, 2H), zero on padding."""
        if self._backend == "torch":
            return self._forward_torch(x, mask)
        h, layout = self.forward_packed(x, mask)
        return layout.unpack(h, *mask.shape)

    def forward_packed(self, x: Tensor, mask: Tensor) -> tuple[Tensor, PackedLayout]:
        """x: (B, T, D), mask: (B, T) bool -> (h (N, 2H) at the N real tokens, their layout),
        for layers on top that need not see the padding."""
        layout = PackedLayout.from_mask(mask)
        if self._backend == "torch":
            return layout.pack(self._forward_torch(x, mask)), layout
        h = layout.pack(x)
        for k, layer in enumerate(self.layers):
            if k > 0 and self.dropout > 0:
                h = apply_dropout(h, self.dropout, self.training)
            h = layer(h, layout)
        return h, layout

    def _forward_torch(self, x: Tensor, mask: Tensor) -> Tensor:
        ref = self.__dict__["_torch_lstm"]
        if ref is None:
            ref = nn.LSTM(self.layers[0].input_size, self.hidden_size, self.num_layers,
                          batch_first=True, bidirectional=True, dropout=self.dropout)
            self.__dict__["_torch_lstm"] = ref
        ref.train(self.training)
        params = {}
        for k, layer in enumerate(self.layers):
            zero = torch.zeros_like(layer.bias[0])
            for d, suffix in enumerate(("", "_reverse")):
                params[f"weight_ih_l{k}{suffix}"] = layer.weight_ih[d]
                params[f"weight_hh_l{k}{suffix}"] = layer.weight_hh[d]
                params[f"bias_ih_l{k}{suffix}"] = layer.bias[d]
                params[f"bias_hh_l{k}{suffix}"] = zero
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = torch.func.functional_call(ref.to(x.device, x.dtype), params, (packed,))
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out

    @torch.no_grad()
    def copy_from_torch(self, ref: nn.LSTM) -> None:
        """Copy the weights of a bidirectional ``torch.nn.LSTM`` (same sizes) into ours."""
        if not ref.bidirectional or ref.num_layers != self.num_layers or ref.hidden_size != self.hidden_size:
            raise ValueError("reference LSTM must be bidirectional with the same layers and hidden size")
        for k, layer in enumerate(self.layers):
            for d, suffix in enumerate(("", "_reverse")):
                layer.weight_ih[d].copy_(getattr(ref, f"weight_ih_l{k}{suffix}"))
                layer.weight_hh[d].copy_(getattr(ref, f"weight_hh_l{k}{suffix}"))
                layer.bias[d].copy_(getattr(ref, f"bias_ih_l{k}{suffix}") + getattr(ref, f"bias_hh_l{k}{suffix}"))
