"""Our BiLSTM against torch.nn.LSTM with copied weights: outputs and gradients, padded batches."""

import pytest
import torch
from torch.autograd import gradcheck

from nerbilstm.model import lstm
from nerbilstm.model.lstm import BiLSTM, PackedLayout, _Recurrence


def run_reference(ref: torch.nn.LSTM, x, lengths):
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, _) = ref(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, h_n


def make_case(layers, dtype=torch.float32, D=6, H=5):
    ours = BiLSTM(D, H, layers).to(dtype)
    ref = torch.nn.LSTM(D, H, layers, batch_first=True, bidirectional=True).to(dtype)
    ours.copy_from_torch(ref)
    lengths = torch.tensor([7, 3, 1, 5, 7, 2])
    mask = torch.arange(7)[None] < lengths[:, None]
    x = torch.randn(len(lengths), 7, D, dtype=dtype, requires_grad=True)
    return ours, ref, x, lengths, mask


@pytest.mark.parametrize("layers", [1, 2])
def test_outputs_and_final_states_match_torch(seed, layers):
    ours, ref, x, lengths, mask = make_case(layers)
    out = ours(x, mask)
    expected, h_n = run_reference(ref, x, lengths)
    assert torch.allclose(out, expected, atol=1e-5)
    H = ours.hidden_size
    last = out[torch.arange(len(lengths)), lengths - 1, :H]  # forward direction ends at the last real token
    first = out[:, 0, H:]  # backward direction ends at the first token
    assert torch.allclose(last, h_n[-2], atol=1e-5)
    assert torch.allclose(first, h_n[-1], atol=1e-5)
    assert (out[~mask] == 0).all()


@pytest.mark.parametrize("block_rows", [1, 4, 1024])
def test_inference_matches_torch_whatever_the_projection_block(seed, block_rows, monkeypatch):
    # Without a gradient the input projections are made a block of time steps at a time.
    monkeypatch.setattr(lstm, "INFERENCE_BLOCK_ROWS", block_rows)
    ours, ref, x, lengths, mask = make_case(2)
    with torch.no_grad():
        out = ours(x, mask)
        expected, _ = run_reference(ref, x, lengths)
    assert torch.allclose(out, expected, atol=1e-5)
    assert (out[~mask] == 0).all()


@pytest.mark.parametrize("layers", [1, 2])
def test_gradients_match_torch(seed, layers):
    ours, ref, x, lengths, mask = make_case(layers)
    weight = torch.randn(x.shape[0], x.shape[1], 2 * ours.hidden_size) * mask.unsqueeze(-1)
    grads = torch.autograd.grad((ours(x, mask) * weight).sum(), [x] + list(ours.parameters()))
    expected_out, _ = run_reference(ref, x, lengths)
    ref_grads = torch.autograd.grad((expected_out * weight).sum(), [x] + list(ref.parameters()))
    assert torch.allclose(grads[0], ref_grads[0], atol=1e-5)
    # Our parameters stack the directions; torch lists w_ih, w_hh, b_ih, b_hh per layer and direction.
    ref_named = dict(zip([n for n, _ in ref.named_parameters()], ref_grads[1:]))
    for k, layer in enumerate(ours.layers):
        g_ih, g_hh, g_b = torch.autograd.grad((ours(x, mask) * weight).sum(),
                                              [layer.weight_ih, layer.weight_hh, layer.bias])
        for d, suffix in enumerate(("", "_reverse")):
            assert torch.allclose(g_ih[d], ref_named[f"weight_ih_l{k}{suffix}"], atol=1e-5)
            assert torch.allclose(g_hh[d], ref_named[f"weight_hh_l{k}{suffix}"], atol=1e-5)
            assert torch.allclose(g_b[d], ref_named[f"bias_ih_l{k}{suffix}"], atol=1e-5)
            assert torch.allclose(g_b[d], ref_named[f"bias_hh_l{k}{suffix}"], atol=1e-5)


def test_torch_backend_runs_same_weights(seed):
    ours, ref, x, lengths, mask = make_case(2)
    mine = ours(x, mask)
    ours.backend = "torch"
    theirs = ours(x, mask)
    assert torch.allclose(mine, theirs, atol=1e-5)
    theirs.sum().backward()
    assert ours.layers[0].weight_hh.grad is not None


def test_recurrence_gradcheck_float64(seed):
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    layout = PackedLayout.from_mask(mask)
    xp = torch.randn(2, int(mask.sum()), 8, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(2, 8, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a, b: _Recurrence.apply(a, b, layout), (xp, w_hh))


def test_packed_layout_rows():
    # lengths 1, 4, 2: sorted longest first -> sentences 1, 2, 0; time-major rows.
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    layout = PackedLayout.from_mask(mask)
    assert layout.sizes == [3, 2, 1, 1] and layout.starts == [0, 3, 5, 6]
    # (sentence, step) of each row, as flat positions b * T + t.
    assert layout.index.tolist() == [4, 8, 0, 5, 9, 6, 7]
    # Row (t, s) <-> row (len(s) - 1 - t, s): sentence 1's steps 0..3 are rows 0, 3, 5, 6.
    assert layout.reverse.tolist() == [6, 4, 2, 5, 1, 3, 0]
    assert torch.equal(layout.reverse[layout.reverse], torch.arange(7))
    # Previous step of the same sentence, in a table whose first 3 rows are the zero state.
    assert layout.prev.tolist() == [0, 1, 2, 3, 4, 6, 8]


def test_padding_never_changes_a_sentence(seed):
    ours = BiLSTM(4, 3, 2)
    x = torch.randn(1, 5, 4)
    alone = ours(x, torch.ones(1, 5, dtype=torch.bool))
    batch = torch.randn(3, 9, 4)
    batch[1, :5] = x[0]
    mask = torch.arange(9)[None] < torch.tensor([9, 5, 2])[:, None]
    inside = ours(batch, mask)
    assert torch.equal(inside[1, :5], alone[0]) or torch.allclose(inside[1, :5], alone[0], atol=1e-6)
