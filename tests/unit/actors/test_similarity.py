"""Tests for actors/similarity.py: anchor selection and the latent-similarity dense rewards (spec section 3)."""

from __future__ import annotations

import math

import pytest
import torch

from actors.similarity import cosine_to_steps, dense_rewards, select_anchors

FLOOR = 1e-3


def traj(*vectors) -> torch.Tensor:
    """One trajectory of 2-d "latents" (C=2, h=w=1): -> (1, T, 2, 1, 1)."""
    return torch.tensor(vectors, dtype=torch.float64).view(1, len(vectors), 2, 1, 1)


# Unit vectors in the plane, so every cosine is a dot product:
#   step:      0        1          2         3           4
#   x0_i:    (1, 0)  (.8, .6)   (-1, 0)  (-.6, .8)    (0, 1)
#   s_first:   1       .8         -1        -.6          0        = x
#   s_last:    0       .6          0         .8          1        = y
#   sum:       1      1.4         -1         .2          1        -> anchor a = 2 (interior argmin)
#   s_anchor: -1      -.8          1         .6          0        = -x  (cos to (-1, 0))
PLANE = traj((1, 0), (0.8, 0.6), (-1, 0), (-0.6, 0.8), (0, 1))


def test_cosine_values_hand_made():
    # cos((3,4), (1,0)) = 3/5;  cos((1,1), (1,0)) = 1/sqrt(2);  cos((0,2), (1,0)) = 0;  cos((-2,0), (1,0)) = -1
    x0 = traj((1, 0), (3, 4), (1, 1), (0, 2), (-2, 0))
    s = cosine_to_steps(x0, torch.tensor([0]))
    torch.testing.assert_close(s[0], torch.tensor([1, 0.6, 1 / math.sqrt(2), 0, -1], dtype=torch.float32))
    # against the last step (-1, 0): every value flips sign
    s_last = cosine_to_steps(x0, torch.tensor([4]))
    torch.testing.assert_close(s_last, -s)


def test_cosine_per_row_reference_step():
    # row 0 compares to its step 0, row 1 to its step 2
    x0 = torch.cat([traj((1, 0), (0, 1), (1, 1)), traj((1, 0), (0, 1), (1, 1))])
    s = cosine_to_steps(x0, torch.tensor([0, 2]))
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(s, torch.tensor([[1, 0, r], [r, r, 1]], dtype=torch.float32))


def test_one_anchor_is_argmin_of_first_plus_last():
    sel = select_anchors(PLANE, num_anchors=1)
    assert sel.query_steps.tolist() == [[0, 2, 4]]
    expected = torch.tensor(
        [[1, 0.8, -1, -0.6, 0], [-1, -0.8, 1, 0.6, 0], [0, 0.6, 0, 0.8, 1]], dtype=torch.float32
    )  # rows: s_first, s_anchor, s_last (sorted by queried step 0, 2, 4)
    torch.testing.assert_close(sel.similarities[0], expected)


def test_anchor_is_never_the_first_or_last_step():
    # first (1,0), last (-.6,.8), middle (.6,.8):
    #   scores s_first + s_last = [1 - .6, .6 + (-.36 + .64), -.6 + 1] = [.4, .88, .4]
    # the unrestricted argmin would be step 0; the anchor must be the only interior step, 1
    sel = select_anchors(traj((1, 0), (0.6, 0.8), (-0.6, 0.8)), num_anchors=1)
    assert sel.query_steps.tolist() == [[0, 1, 2]]


def test_two_anchors_greedy():
    # after anchor 2, the greedy score adds s_anchor: s_first + s_last + s_anchor = x + y - x = y
    #   interior candidates 1 and 3: y = .6 and .8 -> second anchor is step 1
    # (picking the two smallest s_first + s_last instead would take step 3, whose sum is .2 < 1.4)
    sel = select_anchors(PLANE, num_anchors=2)
    assert sel.query_steps.tolist() == [[0, 1, 2, 4]]
    # similarities follow the sorted query order: cos to steps 0, 1, 2, 4
    for k, q in enumerate([0, 1, 2, 4]):
        torch.testing.assert_close(sel.similarities[:, k], cosine_to_steps(PLANE, torch.tensor([q])))


def test_no_anchor_queries_first_and_last_only():
    # PLANE with K = 0: queries 0 and 4, rows s_first = x and s_last = y from the table above.
    #   r_first = 1, r_last = 3; weights clamped at 1e-3:
    #   step 1: (.8*1 + .6*3) / 1.4 = 2.6 / 1.4 = 1.857142...
    #   step 2: s = (-1 -> .001, 0 -> .001): the plain mean (1 + 3) / 2 = 2
    #   step 3: (.001*1 + .8*3) / .801 = 2.401 / .801 = 2.997503...
    sel = select_anchors(PLANE, num_anchors=0)
    assert sel.query_steps.tolist() == [[0, 4]]
    torch.testing.assert_close(
        sel.similarities[0].double(), torch.tensor([[1, 0.8, -1, -0.6, 0], [0, 0.6, 0, 0.8, 1]], dtype=torch.float64)
    )
    r = dense_rewards(torch.tensor([[1.0, 3.0]]), sel.query_steps, sel.similarities, floor=FLOOR)
    torch.testing.assert_close(r, torch.tensor([[1.0, 2.6 / 1.4, 2.0, 2.401 / 0.801, 3.0]]))
    # T = 2, the fewest steps with distinct first and last: both steps are queried, nothing is filled in
    two = select_anchors(traj((1, 0), (0, 1)), num_anchors=0)
    assert two.query_steps.tolist() == [[0, 1]]
    torch.testing.assert_close(
        dense_rewards(torch.tensor([[0.25, 0.75]]), two.query_steps, two.similarities), torch.tensor([[0.25, 0.75]])
    )
    with pytest.raises(ValueError, match="at least 2 steps"):
        select_anchors(torch.zeros(1, 1, 2, 1, 1), num_anchors=0)


def test_query_steps_sorted_and_distinct_random():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 7, 3, 2, 2, generator=g)
    for k in (1, 2, 3, 5):
        q = select_anchors(x0, num_anchors=k).query_steps
        assert q.shape == (8, k + 2)
        assert torch.all(q[:, 1:] > q[:, :-1])  # strictly increasing: sorted and no step chosen twice
        assert torch.all(q[:, 0] == 0) and torch.all(q[:, -1] == 6)


def test_too_few_steps_raises():
    with pytest.raises(ValueError, match="at least 3 steps"):
        select_anchors(torch.zeros(1, 2, 1, 1, 1), num_anchors=1)
    with pytest.raises(ValueError, match="at least 4 steps"):
        select_anchors(torch.randn(1, 3, 1, 1, 1), num_anchors=2)
    assert select_anchors(torch.randn(1, 3, 2, 1, 1), num_anchors=1).query_steps.tolist() == [[0, 1, 2]]


def test_dense_rewards_hand_worked_with_floor():
    # r_first = 1, r_anchor = 2, r_last = 4 at steps 0, 2, 4; weights = similarities clamped at 1e-3
    #   step 1: s = (.8, -.8 -> .001, .6):  (.8*1 + .001*2 + .6*4) / 1.401 = 3.202 / 1.401 = 2.285510...
    #   step 3: s = (-.6 -> .001, .6, .8):  (.001*1 + .6*2 + .8*4) / 1.401 = 4.401 / 1.401 = 3.141328...
    # The raw formula at step 3 would give (-.6 + 1.2 + 3.2) / (-.6 + .6 + .8) = 3.8 / .8 = 4.75 > max 4:
    # outside the sparse rewards. The floor keeps it a convex combination.
    sel = select_anchors(PLANE, num_anchors=1)
    sparse = torch.tensor([[1.0, 2.0, 4.0]])
    r = dense_rewards(sparse, sel.query_steps, sel.similarities, floor=FLOOR)
    torch.testing.assert_close(r, torch.tensor([[1.0, 3.202 / 1.401, 2.0, 4.401 / 1.401, 4.0]]))
    raw = (sparse[0, :, None] * sel.similarities[0]).sum(0) / sel.similarities[0].sum(0)
    assert raw[3].item() == pytest.approx(4.75, rel=1e-5)  # what the guard prevents


def test_dense_rewards_near_zero_denominator():
    # hand similarities for a non-queried step 1 (queries 0, 2, 3): s = (.5, -.45, 0)
    #   raw: (.5*1 - .45*2 + 0*4) / (.5 - .45 + 0) = -.4 / .05 = -8   (far below the min reward 1)
    #   floored: (.5*1 + .001*2 + .001*4) / (.5 + .001 + .001) = .506 / .502 = 1.007968...
    sims = torch.tensor([[[1.0, 0.5, 0.2, 0.1], [0.2, -0.45, 1.0, 0.3], [0.1, 0.0, 0.3, 1.0]]])
    r = dense_rewards(torch.tensor([[1.0, 2.0, 4.0]]), torch.tensor([[0, 2, 3]]), sims, floor=FLOOR)
    assert r[0, 1].item() == pytest.approx(0.506 / 0.502, rel=1e-6)
    # all similarities negative: every weight is the floor, so the plain mean (1 + 2 + 4) / 3
    sims_neg = -torch.ones(1, 3, 4)
    r = dense_rewards(torch.tensor([[1.0, 2.0, 4.0]]), torch.tensor([[0, 2, 3]]), sims_neg, floor=FLOOR)
    assert r[0, 1].item() == pytest.approx(7 / 3, rel=1e-6)


def test_dense_rewards_exact_at_queries_and_convex_elsewhere_random():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(16, 9, 2, 2, 2, generator=g)  # random latents: many near-zero and negative cosines
    for k in (1, 3):
        sel = select_anchors(x0, num_anchors=k)
        sparse = torch.randn(16, k + 2, generator=g) * 3
        r = dense_rewards(sparse, sel.query_steps, sel.similarities)
        assert r.shape == (16, 9)
        assert torch.equal(r.gather(1, sel.query_steps), sparse)  # exact, bit for bit
        lo, hi = sparse.min(1, keepdim=True).values, sparse.max(1, keepdim=True).values
        assert torch.all(r >= lo - 1e-5) and torch.all(r <= hi + 1e-5)
    assert (sel.similarities < 0).any()  # the case the floor exists for did occur


def loop_reference(pred_x0: torch.Tensor, sparse: torch.Tensor, num_anchors: int, floor: float):
    """The spec formula in plain python, one trajectory at a time: returns (query_steps, dense)."""

    def cos(u, v):
        dot = sum(a * b for a, b in zip(u, v))
        return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))

    all_q, all_r = [], []
    for n in range(pred_x0.shape[0]):
        xs = [pred_x0[n, i].flatten().tolist() for i in range(pred_x0.shape[1])]
        T = len(xs)
        chosen = [0, T - 1]
        for _ in range(num_anchors):
            scores = {i: sum(cos(xs[i], xs[q]) for q in chosen) for i in range(T) if i not in chosen}
            chosen.append(min(scores, key=lambda i: (scores[i], i)))
        q = sorted(chosen)
        rs = sparse[n].tolist()
        dense = []
        for i in range(T):
            if i in q:
                dense.append(rs[q.index(i)])
                continue
            w = [max(cos(xs[i], xs[qq]), floor) for qq in q]
            dense.append(sum(wk * rk for wk, rk in zip(w, rs)) / sum(w))
        all_q.append(q)
        all_r.append(dense)
    return all_q, all_r


@pytest.mark.parametrize("num_anchors", [1, 2])
def test_vectorized_equals_loop(num_anchors):
    g = torch.Generator().manual_seed(2 + num_anchors)
    x0 = torch.randn(6, 8, 3, 2, 2, generator=g)
    sparse = torch.randn(6, num_anchors + 2, generator=g)
    sel = select_anchors(x0, num_anchors=num_anchors)
    r = dense_rewards(sparse, sel.query_steps, sel.similarities, floor=FLOOR)
    ref_q, ref_r = loop_reference(x0, sparse, num_anchors, FLOOR)
    assert sel.query_steps.tolist() == ref_q
    torch.testing.assert_close(r, torch.tensor(ref_r, dtype=torch.float32), rtol=1e-5, atol=1e-5)
