"""Feature losses (fitnet, at, agd, nonlocal) against values computed by hand with python math, plus the contract
every registered feature/relation loss follows."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.errors import ConfigError
from kdlab.losses import FEATURE_LOSSES, build_feature_loss

# two samples x two channels x 2 x 2, written out by hand: [n][c][row][col]
S = [[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]],
     [[[2.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]]]
T = [[[[1.0, 1.0], [2.0, 2.0]], [[1.0, 0.0], [0.0, 1.0]]],
     [[[0.0, 1.0], [2.0, 3.0]], [[2.0, 0.0], [0.0, -1.0]]]]


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


def positions(sample):
    """[c][row][col] -> list of positions, each the list of its channel values (row-major, as flatten does)."""
    channels = len(sample)
    return [[sample[c][r][q] for c in range(channels)] for r in range(len(sample[0])) for q in range(len(sample[0][0]))]


def softmax(values):
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def mean(values):
    values = list(values)
    return sum(values) / len(values)


# -- fitnet -------------------------------------------------------------------------------------------------------

def test_fitnet_is_half_the_mean_squared_error():
    diffs = [t - s for ts, ss in zip(T, S) for tc, sc in zip(ts, ss) for tr, sr in zip(tc, sc) for t, s in zip(tr, sr)]
    # t - s per (sample, channel): (0,-1,-1,-2) (1,-1,-1,1) (-2,1,2,1) (1,-1,-1,-2): squares 6 + 4 + 10 + 7 = 27
    assert len(diffs) == 16 and sum(d * d for d in diffs) == 27.0
    assert build_feature_loss("fitnet")(tensor(S), tensor(T)).item() == pytest.approx(0.5 * 27 / 16, rel=1e-12)
    loss = build_feature_loss("fitnet", weight=4.0)
    assert loss(tensor(S), tensor(T)).item() == pytest.approx(4 * 0.5 * 27 / 16, rel=1e-12)
    parts = loss.compute(tensor(S), tensor(T)).parts
    assert {k: v.item() for k, v in parts.items()} == {"hint": pytest.approx(3.375)}


# -- at -----------------------------------------------------------------------------------------------------------

def attention(sample, p=2.0):
    q = [sum(abs(v) ** p for v in pos) for pos in positions(sample)]
    norm = math.sqrt(sum(v * v for v in q))
    return [v / norm for v in q]


def at_by_hand(student, teacher, beta=1000.0, p=2.0):
    diffs = [(a - b) ** 2 for s, t in zip(student, teacher) for a, b in zip(attention(s, p), attention(t, p))]
    return beta / 2 * mean(diffs)


def test_at_matches_the_normalised_squared_attention_difference():
    # sample 0: Q_s = (1+0, 4+1, 9+1, 16+0) = (1, 5, 10, 16), Q_t = (1+1, 1+0, 4+0, 4+1) = (2, 1, 4, 5)
    q_s = [1 / math.sqrt(382), 5 / math.sqrt(382), 10 / math.sqrt(382), 16 / math.sqrt(382)]
    assert attention(S[0]) == pytest.approx(q_s)
    assert attention(T[0]) == pytest.approx([v / math.sqrt(46) for v in (2, 1, 4, 5)])
    hand = at_by_hand(S, T)
    assert build_feature_loss("at")(tensor(S), tensor(T)).item() == pytest.approx(hand, rel=1e-12)
    assert build_feature_loss("at", beta=10.0, p=1.0)(tensor(S), tensor(T)).item() == pytest.approx(
        at_by_hand(S, T, beta=10.0, p=1.0), rel=1e-12)


def test_at_accepts_different_channel_counts_and_resizes_the_smaller_map():
    three = [[*sample, [[1.0, -1.0], [0.5, 0.0]]] for sample in S]            # a third student channel
    assert build_feature_loss("at")(tensor(three), tensor(T)).item() == pytest.approx(at_by_hand(three, T), rel=1e-12)
    # teacher 4x4: the student's 2x2 attention map is bilinearly upsampled before normalisation
    weights = [(1.0, 0.0), (0.75, 0.25), (0.25, 0.75), (0.0, 1.0)]
    big_t = [[[[float((r * 4 + q) % 5 - 2 + c) for q in range(4)] for r in range(4)] for c in range(2)]
             for _ in range(2)]
    expected = []
    for s, t in zip(S, big_t):
        small = [sum(v * v for v in pos) for pos in positions(s)]               # 2x2, row-major
        up = [sum(weights[r][a] * weights[q][b] * small[2 * a + b] for a in range(2) for b in range(2))
              for r in range(4) for q in range(4)]
        norm_up = math.sqrt(sum(v * v for v in up))
        expected += [(u / norm_up - v) ** 2 for u, v in zip(up, attention(t))]
    value = build_feature_loss("at")(tensor(S), tensor(big_t)).item()
    assert value == pytest.approx(500 * mean(expected), rel=1e-12)


# -- agd ----------------------------------------------------------------------------------------------------------

def agd_by_hand(student, teacher, temperature=0.5, alpha=1.0, gamma=1.0, both=True):
    feat_terms, spatial_terms, channel_terms = [], [], []
    for s, t in zip(student, teacher):
        c, hw = len(s), len(s[0]) * len(s[0][0])
        pos_s, pos_t = positions(s), positions(t)
        gs_s = [mean(abs(v) for v in pos) for pos in pos_s]                     # spatial attention, per position
        gs_t = [mean(abs(v) for v in pos) for pos in pos_t]
        gc_s = [mean(abs(pos[k]) for pos in pos_s) for k in range(c)]          # channel attention, per channel
        gc_t = [mean(abs(pos[k]) for pos in pos_t) for k in range(c)]
        src_s = [a + b for a, b in zip(gs_t, gs_s)] if both else gs_t
        src_c = [a + b for a, b in zip(gc_t, gc_s)] if both else gc_t
        m_s = [hw * v for v in softmax([v / temperature for v in src_s])]
        m_c = [c * v for v in softmax([v / temperature for v in src_c])]
        feat_terms += [(pos_t[i][k] - pos_s[i][k]) ** 2 * m_s[i] * m_c[k] for i in range(hw) for k in range(c)]
        spatial_terms += [abs(a - b) for a, b in zip(gs_t, gs_s)]
        channel_terms += [abs(a - b) for a, b in zip(gc_t, gc_s)]
    return alpha * mean(feat_terms), gamma * (mean(spatial_terms) + mean(channel_terms))


def test_agd_masks_and_terms_by_hand():
    # sample 0, student spatial attention: positions (1,0), (2,1), (3,1), (4,0) -> means 0.5, 1.5, 2, 2
    assert [mean(abs(v) for v in pos) for pos in positions(S[0])] == [0.5, 1.5, 2.0, 2.0]
    feat, att = agd_by_hand(S, T)
    loss = build_feature_loss("agd")
    value, parts = loss.compute(tensor(S), tensor(T))
    assert value.item() == pytest.approx(feat + att, rel=1e-12)
    assert {k: v.item() for k, v in parts.items()} == {"feature": pytest.approx(feat), "attention": pytest.approx(att)}
    feat, att = agd_by_hand(S, T, temperature=2.0, alpha=3.0, gamma=0.5, both=False)
    loss = build_feature_loss("agd", temperature=2.0, alpha=3.0, gamma=0.5, mask_source="teacher")
    assert loss(tensor(S), tensor(T)).item() == pytest.approx(feat + att, rel=1e-12)


def test_agd_masks_average_to_one_and_carry_no_gradient():
    student = tensor(S).requires_grad_(True)
    m_spatial, m_channel = build_feature_loss("agd").masks(student, tensor(T))
    assert not m_spatial.requires_grad and not m_channel.requires_grad
    assert m_spatial.mean(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert m_channel.mean(dim=1).tolist() == pytest.approx([1.0, 1.0])


def test_agd_with_uniform_attention_reduces_to_mse():
    # every |value| equal -> all attention maps flat -> masks all ones -> the feature term is plain MSE
    student = [[[[1.0, -1.0], [1.0, 1.0]], [[-1.0, 1.0], [1.0, 1.0]]]]
    teacher = [[[[1.0, 1.0], [-1.0, 1.0]], [[1.0, 1.0], [1.0, -1.0]]]]
    loss = build_feature_loss("agd")
    value, parts = loss.compute(tensor(student), tensor(teacher))
    # differences: 0, -2, 2, 0 | -2, 0, 0, 2  -> squares sum 16 over 8 elements
    assert value.item() == pytest.approx(2.0, rel=1e-12) and parts["attention"].item() == 0.0


# -- nonlocal -----------------------------------------------------------------------------------------------------

def relation(sample):
    pos = positions(sample)
    return [softmax([sum(a * b for a, b in zip(pi, pj)) for pj in pos]) for pi in pos]


def nonlocal_by_hand(student, teacher, weight=1.0):
    rows = [sum((a - b) ** 2 for a, b in zip(rt, rs))
            for s, t in zip(student, teacher) for rs, rt in zip(relation(s), relation(t))]
    return weight * mean(rows)


def test_nonlocal_relation_matrix_and_loss_by_hand():
    # sample 0 student, position 0 = (1, 0): inner products with (1,0), (2,1), (3,1), (4,0) = 1, 2, 3, 4
    assert relation(S[0])[0] == pytest.approx(softmax([1, 2, 3, 4]))
    loss = build_feature_loss("nonlocal", weight=2.0)
    assert loss(tensor(S), tensor(T)).item() == pytest.approx(nonlocal_by_hand(S, T, 2.0), rel=1e-12)
    three = [[*sample, [[1.0, -1.0], [0.5, 0.0]]] for sample in S]            # channels may differ
    assert build_feature_loss("nonlocal")(tensor(three), tensor(T)).item() == pytest.approx(
        nonlocal_by_hand(three, T), rel=1e-12)


def test_nonlocal_refuses_different_spatial_sizes():
    with pytest.raises(ValueError, match=r"equal spatial sizes.*\(2, 2, 2, 2\).*\(2, 2, 4, 4\).*make_adapter"):
        build_feature_loss("nonlocal")(torch.zeros(2, 2, 2, 2), torch.zeros(2, 2, 4, 4))


# -- shapes, adapters, errors -------------------------------------------------------------------------------------

def test_needs_adapter_per_shape_rule():
    conv_s, conv_t, vec = (8, 4, 4), (16, 8, 8), (64,)
    assert build_feature_loss("fitnet").needs_adapter(conv_s, conv_t)
    assert not build_feature_loss("fitnet").needs_adapter(conv_t, conv_t)
    assert build_feature_loss("agd").needs_adapter(conv_s, conv_t)
    assert not build_feature_loss("at").needs_adapter(conv_s, conv_t)
    assert not build_feature_loss("nonlocal").needs_adapter((8, 4, 4), (16, 4, 4))
    assert build_feature_loss("nonlocal").needs_adapter(conv_s, conv_t)
    for name in ("lsp", "rkd", "rkd_distance", "rkd_angle", "sp", "pairwise"):
        assert not build_feature_loss(name).needs_adapter(conv_s, vec)
    with pytest.raises(ConfigError, match=r"loss 'at' compares feature maps.*\[64\]"):
        build_feature_loss("at").needs_adapter(vec, conv_t)
    with pytest.raises(ConfigError, match=r"loss 'fitnet' cannot compare a student vector \[64\].*relation loss"):
        build_feature_loss("fitnet").needs_adapter(vec, conv_t)
    assert build_feature_loss("fitnet").needs_adapter(conv_s, vec)         # pool + linear


def test_bad_inputs_name_the_shapes():
    with pytest.raises(ValueError, match=r"loss 'fitnet'.*equal shapes.*\(2, 8, 4, 4\).*\(2, 16, 8, 8\)"):
        build_feature_loss("fitnet")(torch.zeros(2, 8, 4, 4), torch.zeros(2, 16, 8, 8))
    with pytest.raises(ValueError, match=r"same N"):
        build_feature_loss("sp")(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"loss 'at' needs feature maps"):
        build_feature_loss("at")(torch.zeros(2, 4), torch.zeros(2, 4))


def test_build_errors_name_key_value_and_allowed():
    with pytest.raises(ConfigError, match=r"unknown feature loss 'fitnets'\. Did you mean 'fitnet'\?"):
        build_feature_loss("fitnets")
    with pytest.raises(ConfigError, match=r"feature loss 'at' has no option 'betta'.*Did you mean 'beta'"):
        build_feature_loss("at", betta=3)
    with pytest.raises(ConfigError, match=r"loss 'at': beta=-1 is not allowed; must be > 0"):
        build_feature_loss("at", beta=-1)
    with pytest.raises(ConfigError, match=r"mask_source='teachr'.*both, teacher.*did you mean 'teacher'"):
        build_feature_loss("agd", mask_source="teachr")
    with pytest.raises(ConfigError, match=r"loss 'lsp': k=0"):
        build_feature_loss("lsp", k=0)


def test_half_precision_is_promoted():
    value = build_feature_loss("fitnet")(tensor(S).half(), tensor(T).half())
    assert value.dtype == torch.float32 and value.item() == pytest.approx(0.5 * 27 / 16)


# -- the contract every registered loss follows -------------------------------------------------------------------

@pytest.mark.parametrize("name", FEATURE_LOSSES.names())
def test_every_feature_loss_builds_with_defaults_and_gives_finite_scalars_and_grads(name):
    generator = torch.Generator().manual_seed(0)
    loss_fn = build_feature_loss(name)
    assert loss_fn.name == name and isinstance(loss_fn, torch.nn.Module)
    for scale in (1.0, 1e4):
        student = (scale * torch.randn(4, 8, 4, 4, generator=generator)).requires_grad_(True)
        teacher = (scale * torch.randn(4, 8, 4, 4, generator=generator)).requires_grad_(True)
        value, parts = loss_fn.compute(student, teacher)
        assert value.dim() == 0 and torch.isfinite(value), (name, scale, value)
        value.backward()
        assert student.grad is not None and torch.isfinite(student.grad).all(), (name, scale)
        assert teacher.grad is None                          # the teacher is a fixed target
        assert set(parts) and all(math.isfinite(v.item()) and not v.requires_grad for v in parts.values())
        assert sum(v.item() for v in parts.values()) == pytest.approx(value.item(), rel=1e-5)
    same = torch.randn(4, 8, 4, 4, generator=generator)
    if not (name == "pairwise" and loss_fn.criterion == "ce"):
        assert loss_fn(same.clone().requires_grad_(True), same).item() == pytest.approx(0.0, abs=1e-9)


# -- token features [B, N, D] --------------------------------------------------------------------------------------


def test_at_on_tokens_is_attention_over_the_token_positions():
    """Q = sum_d |A_{n,d}|^2 per token n, normalised over the tokens; L = beta/2 * mean over (batch, tokens) of the
    squared difference: computed by hand for one sample of 2 tokens."""
    from kdlab.losses import build_feature_loss

    student = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])        # Q_s = [1, 4] -> [1, 4] / sqrt(17)
    teacher = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # Q_t = [9, 0] -> [1, 0]; widths may differ
    q_s = torch.tensor([1.0, 4.0]) / 17 ** 0.5
    expected = 1000.0 / 2 * ((q_s - torch.tensor([1.0, 0.0])) ** 2).mean()
    torch.testing.assert_close(build_feature_loss("at")(student, teacher), expected)


def test_nonlocal_on_tokens_relates_every_token_to_every_other():
    from kdlab.losses import build_feature_loss

    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])         # <A_i, A_j> = identity -> rows softmax([1, 0])
    teacher = torch.zeros(1, 2, 3)                               # all zero -> rows [1/2, 1/2]
    e = torch.e
    row = torch.tensor([e / (e + 1), 1 / (e + 1)])
    expected = ((row - 0.5) ** 2).sum()                          # both rows have the same distance; mean over rows
    torch.testing.assert_close(build_feature_loss("nonlocal")(student, teacher), expected)


def test_fitnet_and_agd_on_tokens_and_their_shape_rules():
    from kdlab.errors import ConfigError
    from kdlab.losses import build_feature_loss

    s, t = torch.randn(4, 5, 8), torch.randn(4, 5, 8)
    torch.testing.assert_close(build_feature_loss("fitnet")(s, t), 0.5 * ((t - s) ** 2).mean())
    agd = build_feature_loss("agd")
    assert agd(t, t).item() == 0.0 and agd(s, t).item() > 0
    # agd reads tokens as a [D, N, 1] map: equal to agd on that map
    torch.testing.assert_close(agd(s, t), agd(s.transpose(1, 2).unsqueeze(-1), t.transpose(1, 2).unsqueeze(-1)))
    fitnet, at, nonlocal_ = (build_feature_loss(n) for n in ("fitnet", "at", "nonlocal"))
    assert fitnet.needs_adapter([5, 8], [5, 16]) and not fitnet.needs_adapter([5, 8], [5, 8])
    assert not at.needs_adapter([5, 8], [5, 16]) and not nonlocal_.needs_adapter([5, 8], [5, 16])
    assert fitnet.needs_adapter([5, 8], [16])                    # tokens pooled onto a vector
    for loss in (fitnet, at, nonlocal_, agd):
        with pytest.raises(ConfigError, match="5 and 7 tokens"):
            loss.needs_adapter([5, 8], [7, 8])
        with pytest.raises(ConfigError, match="token features"):
            loss.needs_adapter([5, 8], [8, 4, 4])
    with pytest.raises(ValueError, match="same token count"):
        at(torch.randn(2, 5, 8), torch.randn(2, 7, 8))
    assert not build_feature_loss("rkd").needs_adapter([5, 8], [8, 4, 4])  # relations accept any shapes


def test_token_adapters():
    from kdlab.distill import make_adapter
    from kdlab.distill.adapters import TokenPooledLinear
    from kdlab.errors import ConfigError

    per_token = make_adapter([5, 8], [5, 16])
    assert isinstance(per_token, torch.nn.Linear) and per_token(torch.randn(2, 5, 8)).shape == (2, 5, 16)
    pooled = make_adapter([5, 8], [3])
    assert isinstance(pooled, TokenPooledLinear)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(pooled(x), pooled.linear(x.mean(dim=1)))
    with pytest.raises(ConfigError, match="different token counts"):
        make_adapter([5, 8], [6, 8])
    with pytest.raises(ConfigError, match="do not map onto each other"):
        make_adapter([5, 8], [8, 2, 2])
