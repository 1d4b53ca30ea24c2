"""Our multi-layer bidirectional LSTM: the cell, the recurrence and its backward pass.

Gate order and weight layout follow ``torch.nn.LSTM`` (i, f, g, o; ``W_ih`` of shape
(4H, D)) so that weights copy across both ways. Both directions of a layer run together:
the backward direction reads each sentence reversed *within its own length*, so every
sentence starts at its first (or last) real token and the two directions become one
left-aligned batch of size 2 x B. One batched matrix product per time step does both.

The recurrence has a hand-written backward pass (``_Recurrence``): back-propagation through
time with one matrix product per step and the weight gradient accumulated in a single
product after the loop, instead of autograd recording a dozen small ops per step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence within its own length; padding stays where it is.

    x: (B, T, ...); lengths: (B,) long. The map is its own inverse.
    """
    B, T = x.shape[:2]
    steps = torch.arange(T, device=x.device).expand(B, T)
    last = (lengths - 1).unsqueeze(1)
    index = torch.where(steps <= last, last - steps, steps)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class _Recurrence(torch.autograd.Function):
    """LSTM recurrence over pre-projected inputs, both directions batched.

    forward(xp: (2, B, T, 4H) input projections with bias, w_hh: (2, 4H, H), mask: (B, T) bool)
    -> h: (2, B, T, H), the hidden state at every step (zero on padding).
    State is carried unchanged over padding, so a sentence's result never depends on its batch.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # state stays float32 under AMP
    def forward(ctx, xp: Tensor, w_hh: Tensor, mask: Tensor) -> Tensor:
        D2, B, T, G = xp.shape
        H = G // 4
        w_hh_t = w_hh.transpose(1, 2)  # (2, H, 4H)
        act = torch.empty_like(xp)  # sigmoid(i, f), tanh(g), sigmoid(o) per step
        cells = xp.new_empty(D2, B, T + 1, H)  # c_{t-1} at index t
        hs = xp.new_empty(D2, B, T + 1, H)  # h_{t-1} at index t
        tanh_c = xp.new_empty(D2, B, T, H)
        hs[:, :, 0] = 0
        cells[:, :, 0] = 0
        step_mask = mask.t().reshape(T, 1, B, 1)
        h = hs[:, :, 0]
        c = cells[:, :, 0]
        for t in range(T):
            gates = torch.baddbmm(xp[:, :, t], h, w_hh_t)  # (2, B, 4H)
            a = act[:, :, t]
            torch.sigmoid(gates, out=a)
            a[..., 2 * H : 3 * H] = gates[..., 2 * H : 3 * H].tanh()
            i, f, g, o = a.chunk(4, dim=-1)
            c_new = torch.addcmul(f * c, i, g)
            tc = torch.tanh(c_new)
            tanh_c[:, :, t] = tc
            h_new = o * tc
            m = step_mask[t]
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c)
            hs[:, :, t + 1] = h
            cells[:, :, t + 1] = c
        out = hs[:, :, 1:] * mask.view(1, B, T, 1)
        ctx.save_for_backward(w_hh, mask, act, cells, hs, tanh_c)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: Tensor):
        w_hh, mask, act, cells, hs, tanh_c = ctx.saved_tensors
        D2, B, T, G = act.shape
        H = G // 4
        grad_out = grad_out * mask.view(1, B, T, 1)
        grad_gates = torch.empty_like(act)
        dh = grad_out.new_zeros(D2, B, H)
        dc = grad_out.new_zeros(D2, B, H)
        step_mask = mask.t().reshape(T, 1, B, 1)
        for t in range(T - 1, -1, -1):
            i, f, g, o = act[:, :, t].chunk(4, dim=-1)
            tc = tanh_c[:, :, t]
            m = step_mask[t]
            dh_t = dh + grad_out[:, :, t]
            dc_t = torch.addcmul(dc, dh_t * o, 1 - tc * tc)
            dgate = grad_gates[:, :, t]
            di, df, dg, do = dgate.chunk(4, dim=-1)
            torch.mul(dc_t * g, i * (1 - i), out=di)
            torch.mul(dc_t * cells[:, :, t], f * (1 - f), out=df)
            torch.mul(dc_t * i, 1 - g * g, out=dg)
            torch.mul(dh_t * tc, o * (1 - o), out=do)
            dgate.mul_(m)  # no gradient reaches the gates of a padding step
            dh = torch.where(m, torch.bmm(dgate, w_hh), dh_t)
            dc = torch.where(m, dc_t * f, dc)
        grad_xp = grad_gates if ctx.needs_input_grad[0] else None
        grad_w_hh = None
        if ctx.needs_input_grad[1]:
            # dW_hh = sum_t dgates_t^T h_{t-1}: one product over all steps.
            grad_w_hh = torch.bmm(
                grad_gates.reshape(D2, B * T, G).transpose(1, 2), hs[:, :, :-1].reshape(D2, B * T, H)
            )
        return grad_xp, grad_w_hh, None


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

    def forward(self, x: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        """x: (B, T, D), mask: (B, T) bool, lengths: (B,) -> (B, T, 2H), zero on padding."""
        B, T, _ = x.shape
        both = torch.stack([x, reverse_within_length(x, lengths)])  # (2, B, T, D)
        xp = torch.baddbmm(
            self.bias.unsqueeze(1), both.reshape(2, B * T, -1), self.weight_ih.transpose(1, 2)
        ).view(2, B, T, -1)
        h = _Recurrence.apply(xp, self.weight_hh, mask)  # (2, B, T, H)
        return torch.cat([h[0], reverse_within_length(h[1], lengths)], dim=-1)


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
        lengths = mask.sum(1)
        out = x
        for k, layer in enumerate(self.layers):
            if k > 0 and self.dropout > 0:
                out = nn.functional.dropout(out, self.dropout, self.training)
            out = layer(out, mask, lengths)
        return out

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
