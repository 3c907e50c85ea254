"""Tests of the numpy moe reference (moe_reference.py).

Tiny hand-computed cases for every routing policy, dispatch layout, queue
order, drop policy and FFN form, plus cross-checks of `moe_layer` against
plain per-expert loops written the way the Hugging Face / DeepSpeed blocks
are (float64 throughout, no shared code with the reference).

Run: /usr/bin/python3 -m unittest discover -s test/Integration/reference -v
"""

import math
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_reference as ref  # noqa: E402

F32 = np.float32


def f32(a):
    return np.asarray(a, dtype=F32)


def route(logits, attr, bias=None):
    return ref.route(f32(logits), attr, None if bias is None else f32(bias))


# ----------------------------------------------------------------------------
# Plain float64 helpers for the cross-checks (deliberately not the reference's)
# ----------------------------------------------------------------------------

def softmax64(l):
    l = np.asarray(l, np.float64)
    e = np.exp(l - l.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def silu64(x):
    return x * sigmoid64(x)


def topk_indices(v, k):
    """torch.topk order: descending, equal values by lower index."""
    return np.argsort(-np.asarray(v, np.float64), axis=-1, kind="stable")[..., :k]


def glu64(x, w1, w3, w2):
    return (silu64(x @ w1) * (x @ w3)) @ w2


class Case(unittest.TestCase):
    def assertClose(self, a, b, rtol=1e-6, atol=1e-7, msg=None):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=rtol, atol=atol, err_msg=msg or "")

    def assertRouting(self, got, experts, weights, rtol=1e-6):
        w, e = got
        self.assertEqual(e.dtype, np.int32)
        self.assertEqual(w.dtype, np.float32)
        np.testing.assert_array_equal(e, np.asarray(experts, np.int32))
        self.assertClose(w, weights, rtol=rtol, atol=1e-7)


# ----------------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------------

class AttrTest(Case):
    def test_routing_defaults(self):
        r = ref.parse_attr("#moe.routing<k = 2, normalize = selected>")
        self.assertEqual(r["k"], 2)
        self.assertEqual(r["normalize"], "selected")
        self.assertEqual(r["policy"], "top_k")
        self.assertEqual(r["score"], "softmax")
        self.assertEqual(r["tie_break"], "lower_index")
        self.assertEqual(r["scaling"], 1.0)
        self.assertEqual(r["group_score_k"], 2)
        self.assertEqual(r["sinkhorn_iterations"], 3)
        self.assertEqual(r["jitter_eps"], 0.01)
        self.assertIs(r["mask_with_zero"], False)
        self.assertEqual(len(r), len(ref.ROUTING_FIELDS))

    def test_routing_all_types(self):
        r = ref.parse_attr(
            "#moe.routing<policy = grouped_top_k, k = 6, score = sigmoid,\n"
            "   normalize = selected, scaling = 2.5, num_groups = 8, top_groups = 3,"
            " mask_with_zero = true, epsilon = 1.0e-20>")
        self.assertEqual(r["policy"], "grouped_top_k")
        self.assertEqual(r["num_groups"], 8)
        self.assertEqual(r["epsilon"], 1e-20)
        self.assertIs(r["mask_with_zero"], True)
        self.assertIsInstance(r["scaling"], float)
        self.assertEqual(ref.parse_attr("#moe.routing<k = 1, scaling = 2>")["scaling"], 2.0)

    def test_capacity_and_ffn(self):
        c = ref.parse_attr("#moe.capacity<factor = 1.25, order = position, "
                           "on_drop = pass_through>")
        self.assertEqual(c, {"factor": 1.25, "formula": "gshard", "fixed": 0,
                             "min_capacity": 0, "align": 1, "order": "position",
                             "on_drop": "pass_through", "renormalize": False})
        f = ref.parse_attr("#moe.ffn<>")
        self.assertEqual(f, {"kind": "glu", "activation": "silu", "gate_up": "separate",
                             "layout": "in_out", "alpha": 1.0, "up_shift": 0.0,
                             "limit": 0.0})
        f = ref.parse_attr("#moe.ffn<gate_up = interleaved, alpha = 1.702, "
                           "up_shift = 1.0, limit = 7.0>")
        self.assertEqual((f["alpha"], f["limit"], f["gate_up"]), (1.702, 7.0, "interleaved"))
        self.assertEqual(ref.parse_attr_kind("#moe.ffn<kind = mlp>")[0], "ffn")

    def test_errors(self):
        for bad in ("#moe.routing<>", "#moe.routing<k = 2, bogus = 1>",
                    "#moe.routing<k = 2, policy = top_q>", "#moe.routing<k = two>",
                    "#moe.capacity<renormalize = yes>", "#moe.ffn<kind>",
                    "#moe.routing<k = 1, k = 2>", "#moe.other<>"):
            with self.assertRaises(ValueError, msg=bad):
                ref.parse_attr(bad)

    def test_dict_and_keywords(self):
        r = ref.routing_attr("#moe.routing<k = 2>", normalize="selected")
        self.assertEqual(r["normalize"], "selected")
        self.assertEqual(ref.routing_attr({"k": 3})["k"], 3)
        w1, e1 = route([[1, 3, 2]], {"k": 2})
        w2, e2 = route([[1, 3, 2]], "#moe.routing<k = 2>")
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(w1, w2)


# ----------------------------------------------------------------------------
# Routing
# ----------------------------------------------------------------------------

class TopKTest(Case):
    def test_ties_both_ways(self):
        l = [[1.0, 2.0, 2.0, 0.0]]
        p = softmax64(l)[0]
        self.assertRouting(route(l, "#moe.routing<k = 2>"), [[1, 2]], [[p[1], p[2]]])
        self.assertRouting(route(l, "#moe.routing<k = 2, tie_break = higher_index>"),
                           [[2, 1]], [[p[2], p[1]]])
        # k = 3: the third is the single 1.0
        self.assertRouting(route(l, "#moe.routing<k = 3, tie_break = higher_index>"),
                           [[2, 1, 0]], [[p[2], p[1], p[0]]])

    def test_all_equal(self):
        l = np.zeros((2, 4))
        _, e = route(l, "#moe.routing<k = 3>")
        np.testing.assert_array_equal(e, [[0, 1, 2], [0, 1, 2]])
        _, e = route(l, "#moe.routing<k = 3, tie_break = higher_index>")
        np.testing.assert_array_equal(e, [[3, 2, 1], [3, 2, 1]])

    def test_signed_zero_ties(self):
        l = [[-0.0, 0.0, -1.0]]
        _, e = route(l, "#moe.routing<k = 1, score = identity>")
        np.testing.assert_array_equal(e, [[0]])
        _, e = route(l, "#moe.routing<k = 1, score = identity, tie_break = higher_index>")
        np.testing.assert_array_equal(e, [[1]])

    def test_nan_last(self):
        l = [[np.nan, 1.0, -np.inf, np.nan, 0.0]]
        w, e = route(l, "#moe.routing<k = 4, score = identity>")
        np.testing.assert_array_equal(e, [[1, 4, 2, 0]])
        self.assertEqual(list(w[0, :3]), [1.0, 0.0, -np.inf])
        self.assertTrue(np.isnan(w[0, 3]))
        _, e = route(l, "#moe.routing<k = 5, score = identity, tie_break = higher_index>")
        np.testing.assert_array_equal(e, [[1, 4, 2, 3, 0]])

    def test_softmax_weights_f32(self):
        l = f32([[0.5, -1.0, 2.0, 0.25]])
        m = l.max()
        ex = np.exp(l - m).astype(F32)
        s = F32(0)
        for v in ex[0]:
            s = F32(s + v)
        p = ex / s
        w, e = route(l, "#moe.routing<k = 2>")
        np.testing.assert_array_equal(e, [[2, 0]])
        np.testing.assert_array_equal(w, [[p[0, 2], p[0, 0]]])

    def test_normalize_epsilon_scaling(self):
        l = [[0.5, 0.3, 0.2]]
        self.assertRouting(route(l, "#moe.routing<k = 2, score = identity, "
                                    "normalize = selected>"),
                           [[0, 1]], [[0.625, 0.375]])
        self.assertRouting(route(l, "#moe.routing<k = 2, score = identity, normalize = "
                                    "selected, epsilon = 0.2, scaling = 2.0>"),
                           [[0, 1]], [[1.0, 0.6]])
        self.assertRouting(route(l, "#moe.routing<k = 2, score = identity, scaling = 2.5>"),
                           [[0, 1]], [[1.25, 0.75]])

    def test_sigmoid(self):
        l = [[0.0, 2.0, -1.0]]
        self.assertRouting(route(l, "#moe.routing<k = 2, score = sigmoid>"),
                           [[1, 0]], [[sigmoid64(2.0), 0.5]])
        s = sigmoid64([2.0, 0.0])
        self.assertRouting(route(l, "#moe.routing<k = 2, score = sigmoid, "
                                    "normalize = selected>"),
                           [[1, 0]], [s / s.sum()])

    def test_sigmoid_ranks_by_logit(self):
        # sigmoid(30) == sigmoid(40) == 1.0 in f32, but the key is the logit.
        l = [[30.0, 40.0, 0.0]]
        w, e = route(l, "#moe.routing<k = 1, score = sigmoid>")
        np.testing.assert_array_equal(e, [[1]])
        self.assertEqual(w[0, 0], 1.0)

    def test_softmax_selected(self):
        l = [[0.0, 1.0, 2.0, 3.0]]
        sm = softmax64([3.0, 2.0])
        self.assertRouting(route(l, "#moe.routing<k = 2, score = softmax_selected>"),
                           [[3, 2]], [sm])
        l = [[0.0, 2.0, 2.0, 1.0]]
        self.assertRouting(route(l, "#moe.routing<k = 3, score = softmax_selected, "
                                    "tie_break = higher_index>"),
                           [[2, 1, 3]], [softmax64([2.0, 2.0, 1.0])])

    def test_selection_bias(self):
        # The bias changes the choice; the weights stay the unbiased scores.
        l = [[0.0, 1.0, -1.0, 0.5]]
        s = sigmoid64(l[0])
        b = [0.0, -0.5, 0.8, 0.0]
        # keys: .5, .231, 1.069, .622 -> [2, 3]
        self.assertRouting(route(l, "#moe.routing<k = 2, score = sigmoid>", b),
                           [[2, 3]], [[s[2], s[3]]])
        # Softmax: key = p + b.
        p = softmax64(l)[0]
        keys = p + np.array(b)
        order = topk_indices(keys, 2)
        self.assertRouting(route(l, "#moe.routing<k = 2>", b), [order], [p[order]])

    def test_bias_rejected_for_other_policies(self):
        with self.assertRaises(ValueError):
            route([[0.0, 1.0]], "#moe.routing<policy = sinkhorn, k = 1>", [0.0, 0.0])

    def test_null_experts(self):
        # E' = 4, E = 2: columns 2, 3 are null experts.
        l = [[0.3, 0.1, 0.4, 0.2]]
        attr = "#moe.routing<k = 3, score = identity, normalize = selected, null_experts = 2>"
        # rank: 2 (null), 0, 3 (null): null slots stay in place; they count in
        # the normalisation sum.
        self.assertRouting(route(l, attr), [[-1, 0, -1]], [[0.0, 0.3 / 0.9, 0.0]])
        # all picks null
        self.assertRouting(route([[0.1, 0.0, 0.5, 0.4]],
                                 "#moe.routing<k = 2, score = identity, null_experts = 2>"),
                           [[-1, -1]], [[0.0, 0.0]])

    def test_null_experts_softmax_over_all_columns(self):
        l = np.array([[1.0, 0.0, 2.0]])
        p = softmax64(l)[0]
        self.assertRouting(route(l, "#moe.routing<k = 2, null_experts = 1>"),
                           [[-1, 0]], [[0.0, p[0]]])


class TopPTest(Case):
    P = [[0.1, 0.5, 0.3, 0.1]]

    def run_p(self, top_p, k=3, tie="lower_index"):
        return route(self.P, f"#moe.routing<policy = top_p, k = {k}, score = identity, "
                             f"tie_break = {tie}, top_p = {top_p}>")

    def test_counts(self):
        self.assertRouting(self.run_p(0.5), [[1, -1, -1]], [[0.5, 0, 0]])
        self.assertRouting(self.run_p(0.7), [[1, 2, -1]], [[0.5, 0.3, 0]])
        self.assertRouting(self.run_p(0.85), [[1, 2, 0]], [[0.5, 0.3, 0.1]])
        self.assertRouting(self.run_p(0.85, tie="higher_index"), [[1, 2, 3]],
                           [[0.5, 0.3, 0.1]])
        # at most k
        self.assertRouting(self.run_p(1.0, k=2), [[1, 2]], [[0.5, 0.3]])
        # at least 1
        self.assertRouting(self.run_p(0.05), [[1, -1, -1]], [[0.5, 0, 0]])

    def test_f32_accumulation(self):
        # 0.1f + 0.2f in f32 is 0.3f = 0.300000011920929, the f32 rounding of 0.3,
        # so top_p = 0.3 is reached after two experts.
        self.assertEqual(F32(F32(0.1) + F32(0.2)), F32(0.3))
        w, e = route([[0.2, 0.1, 0.05]], "#moe.routing<policy = top_p, k = 3, "
                                         "score = identity, top_p = 0.3>")
        np.testing.assert_array_equal(e, [[0, 1, -1]])

    def test_softmax_and_normalize(self):
        l = np.log(np.array([[0.1, 0.5, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]]))
        w, e = route(l, "#moe.routing<policy = top_p, k = 4, top_p = 0.6, "
                        "normalize = selected>")
        np.testing.assert_array_equal(e, [[1, 2, -1, -1], [0, 1, 2, -1]])
        self.assertClose(w, [[0.625, 0.375, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0]], rtol=1e-6)

    def test_null_expert_counts_in_mass(self):
        # E = 2, null column 2 holds 0.6 of the mass.
        l = [[0.3, 0.1, 0.6]]
        self.assertRouting(route(l, "#moe.routing<policy = top_p, k = 2, score = identity,"
                                    " top_p = 0.8, null_experts = 1>"),
                           [[-1, 0]], [[0, 0.3]])
        self.assertRouting(route(l, "#moe.routing<policy = top_p, k = 2, score = identity,"
                                    " top_p = 0.5, null_experts = 1>"),
                           [[-1, -1]], [[0, 0]])

    def test_softmax_selected_rejected(self):
        with self.assertRaises(ValueError):
            route([[0.0, 1.0]], "#moe.routing<policy = top_p, k = 1, "
                                "score = softmax_selected>")


class ThresholdTest(Case):
    def test_basic(self):
        l = [[0.1, 0.5, 0.3, 0.1, 0.45]]
        self.assertRouting(route(l, "#moe.routing<policy = threshold, k = 3, "
                                    "score = identity, threshold = 0.4>"),
                           [[1, 4, -1]], [[0.5, 0.45, 0]])
        self.assertRouting(route(l, "#moe.routing<policy = threshold, k = 3, "
                                    "score = identity, threshold = 0.6>"),
                           [[-1, -1, -1]], [[0, 0, 0]])
        # p >= threshold: equality keeps
        self.assertRouting(route(l, "#moe.routing<policy = threshold, k = 3, "
                                    "score = identity, threshold = 0.3>"),
                           [[1, 4, 2]], [[0.5, 0.45, 0.3]])

    def test_kept_moved_to_front(self):
        # With a bias the key is p + b, so a kept expert can follow a dropped one.
        l = [[0.5, 0.1, 0.4]]
        b = [0.0, 0.5, 0.0]     # keys .5 .6 .4 -> rank 1, 0, 2
        self.assertRouting(route(l, "#moe.routing<policy = threshold, k = 3, "
                                    "score = identity, threshold = 0.3>", b),
                           [[0, 2, -1]], [[0.5, 0.4, 0]])

    def test_normalize_and_sigmoid(self):
        l = [[0.0, 2.0, -3.0, 1.0]]
        s = sigmoid64(l[0])    # .5 .881 .047 .731
        self.assertRouting(route(l, "#moe.routing<policy = threshold, k = 3, "
                                    "score = sigmoid, threshold = 0.6, "
                                    "normalize = selected>"),
                           [[1, 3, -1]], [[s[1] / (s[1] + s[3]), s[3] / (s[1] + s[3]), 0]])


    def test_skipping_on_top_k_and_top_p(self):
        # moe-skip-experts: a positive threshold on top_k / top_p skips the
        # kept slots with p < threshold; normalisation covers the rest.
        l = [[0.1, 0.4, 0.05, 0.45]]
        self.assertRouting(route(l, "#moe.routing<k = 3, score = identity, "
                                    "normalize = selected, threshold = 0.2>"),
                           [[3, 1, -1]], [[0.45 / 0.85, 0.4 / 0.85, 0]])
        self.assertRouting(route(l, "#moe.routing<policy = top_p, k = 3, "
                                    "score = identity, top_p = 0.9, threshold = 0.42>"),
                           [[3, -1, -1]], [[0.45, 0, 0]])

class GroupedTopKTest(Case):
    def test_group_mask(self):
        # 3 groups of 2; group sums of the 2 best keys: 1.0, 1.1, 0.3
        l = [[0.1, 0.9, 0.5, 0.6, 0.8, -0.5]]
        attr = ("#moe.routing<policy = grouped_top_k, k = 2, score = identity, "
                "num_groups = 3, top_groups = 1>")
        self.assertRouting(route(l, attr), [[3, 2]], [[0.6, 0.5]])
        # plain top-2 would be [1, 4]
        self.assertRouting(route(l, "#moe.routing<k = 2, score = identity>"),
                           [[1, 4]], [[0.9, 0.8]])
        # two groups kept: groups 1 and 0 -> best 2 of {0.1, 0.9, 0.5, 0.6}
        attr2 = attr.replace("top_groups = 1", "top_groups = 2")
        self.assertRouting(route(l, attr2), [[1, 3]], [[0.9, 0.6]])
        # group_score_k = 1: group maxima 0.9, 0.6, 0.8 -> group 0
        attr3 = attr.replace("top_groups = 1", "top_groups = 1, group_score_k = 1")
        self.assertRouting(route(l, attr3), [[1, 0]], [[0.9, 0.1]])

    def test_mask_with_zero(self):
        l = [[-0.1, -0.2, -1.0, -2.0, -0.5, -0.6]]
        base = ("#moe.routing<policy = grouped_top_k, k = 2, score = identity, "
                "num_groups = 3, top_groups = 1{}>")
        self.assertRouting(route(l, base.format("")), [[0, 1]], [[-0.1, -0.2]])
        # masked keys become 0.0 and outrank the negative kept keys; weights are p
        self.assertRouting(route(l, base.format(", mask_with_zero = true")),
                           [[2, 3]], [[-1.0, -2.0]])
        self.assertRouting(route(l, base.format(", tie_break = higher_index, "
                                                "mask_with_zero = true")),
                           [[5, 4]], [[-0.6, -0.5]])

    def test_group_ties_lower_group_first(self):
        l = [[1.0, 0.0, 0.0, 1.0, 0.5, 0.5]]
        attr = ("#moe.routing<policy = grouped_top_k, k = 2, score = identity, "
                "tie_break = higher_index, num_groups = 3, top_groups = 1>")
        # all groups score 1.0 -> group 0 wins even with higher_index
        self.assertRouting(route(l, attr), [[0, 1]], [[1.0, 0.0]])

    def test_bias_deepseek(self):
        rng = np.random.RandomState(3)
        l = rng.standard_normal((5, 16)).astype(F32)
        b = (rng.standard_normal(16) * 0.3).astype(F32)
        w, e = route(l, "#moe.routing<policy = grouped_top_k, k = 4, score = sigmoid, "
                        "normalize = selected, scaling = 2.5, num_groups = 4, "
                        "top_groups = 2, epsilon = 1.0e-20>", b)
        s = sigmoid64(l)
        for t in range(5):
            key = s[t] + b
            gs = np.sort(key.reshape(4, 4), axis=1)[:, ::-1][:, :2].sum(axis=1)
            groups = topk_indices(gs, 2)
            masked = np.full(16, -np.inf)
            for g in groups:
                masked[g * 4:(g + 1) * 4] = key[g * 4:(g + 1) * 4]
            idx = topk_indices(masked, 4)
            ww = s[t, idx] / (s[t, idx].sum() + 1e-20) * 2.5
            np.testing.assert_array_equal(e[t], idx)
            self.assertClose(w[t], ww, rtol=1e-5)


class SinkhornTest(Case):
    def test_hand(self):
        # M = [[1, .5], [.5, .5]]; columns to sum 1: [[2/3, .5], [1/3, .5]];
        # rows to sum 1: [[4/7, 3/7], [2/5, 3/5]].
        l = [[math.log(2.0), 0.0], [0.0, 0.0]]
        attr = "#moe.routing<policy = sinkhorn, k = 1, sinkhorn_iterations = 1>"
        self.assertRouting(route(l, attr), [[0], [1]], [[4 / 7], [3 / 5]])
        self.assertRouting(route(l, attr.replace("k = 1", "k = 2")),
                           [[0, 1], [1, 0]], [[4 / 7, 3 / 7], [3 / 5, 2 / 5]])

    def test_ties(self):
        l = np.zeros((2, 3))
        self.assertRouting(route(l, "#moe.routing<policy = sinkhorn, k = 1>"),
                           [[0], [0]], [[1 / 3], [1 / 3]])
        self.assertRouting(route(l, "#moe.routing<policy = sinkhorn, k = 1, "
                                    "tie_break = higher_index>"),
                           [[2], [2]], [[1 / 3], [1 / 3]])

    def test_against_loop(self):
        rng = np.random.RandomState(0)
        l = rng.standard_normal((6, 4)).astype(F32)
        M = np.exp(l.astype(np.float64) - l.max())
        for _ in range(5):
            M = M * (6 / 4) / M.sum(axis=0, keepdims=True)
            M = M / M.sum(axis=1, keepdims=True)
        idx = topk_indices(M, 2)
        w, e = route(l, "#moe.routing<policy = sinkhorn, k = 2, sinkhorn_iterations = 5, "
                        "scaling = 2.0>")
        np.testing.assert_array_equal(e, idx)
        self.assertClose(w, 2.0 * np.take_along_axis(M, idx, axis=1), rtol=1e-5)


class ExpertChoiceTest(Case):
    P = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]

    def test_k1(self):
        # Ce = min(3, ceil(1 * 3 * 1 / 2)) = 2; expert 0 picks tokens 0, 1;
        # expert 1 picks tokens 2, 1. Token 1 keeps its best: expert 0.
        self.assertRouting(route(self.P, "#moe.routing<policy = expert_choice, k = 1, "
                                         "score = identity>"),
                           [[0], [0], [1]], [[0.9], [0.8], [0.7]])

    def test_k2_dynamic_count(self):
        # Ce = ceil(0.5 * 3 * 2 / 2) = 2.
        self.assertRouting(route(self.P, "#moe.routing<policy = expert_choice, k = 2, "
                                         "score = identity, capacity_factor = 0.5>"),
                           [[0, -1], [0, 1], [1, -1]],
                           [[0.9, 0], [0.8, 0.2], [0.7, 0]])
        # Ce = min(3, ceil(2 * 3 * 2 / 2) = 6) = 3: every expert takes every token.
        self.assertRouting(route(self.P, "#moe.routing<policy = expert_choice, k = 2, "
                                         "score = identity, capacity_factor = 2.0, "
                                         "normalize = selected>"),
                           [[0, 1], [0, 1], [1, 0]],
                           [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])

    def test_token_ties_lower_first(self):
        p = [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]
        # Ce = 2: both experts pick tokens 0 and 1; token 2 gets nothing.
        self.assertRouting(route(p, "#moe.routing<policy = expert_choice, k = 2, "
                                    "score = identity, capacity_factor = 0.5>"),
                           [[0, 1], [0, 1], [-1, -1]], [[0.5, 0.5], [0.5, 0.5], [0, 0]])
        self.assertRouting(route(p, "#moe.routing<policy = expert_choice, k = 2, "
                                    "score = identity, capacity_factor = 0.5, "
                                    "tie_break = higher_index>"),
                           [[1, 0], [1, 0], [-1, -1]], [[0.5, 0.5], [0.5, 0.5], [0, 0]])

    def test_softmax(self):
        l = np.log(np.array([[0.6, 0.4], [0.1, 0.9]]))
        self.assertRouting(route(l, "#moe.routing<policy = expert_choice, k = 1>"),
                           [[0], [1]], [[0.6], [0.9]], rtol=1e-5)


class SparseMixerTest(Case):
    def test_hand(self):
        # e1 = 0; (2 - 1.99) / 2 = 0.005 <= 0.02 keeps column 1, the others are
        # masked. Second round: column 1 alone -> weight 1.
        l = [[2.0, 1.99, 0.0, -1.0]]
        w1 = math.exp(2.0) / (math.exp(2.0) + math.exp(1.99))
        self.assertRouting(route(l, "#moe.routing<policy = sparse_mixer, k = 2>"),
                           [[0, 1]], [[w1, 1.0]], rtol=1e-5)

    def test_jitter_and_second_round(self):
        l = [[1.0, 0.5, 0.995, 0.97]]
        # jitter 0.01: round 1 keeps {0, 2} (0.005), masks 3 (0.03) and 1.
        # round 2 (e2 = 2): (0.995 - 0.97) / 0.995 = 0.0251 > 0.02 -> alone.
        e = math.exp
        self.assertRouting(route(l, "#moe.routing<policy = sparse_mixer, k = 2>"),
                           [[0, 2]], [[e(1) / (e(1) + e(0.995)), 1.0]], rtol=1e-5)
        # jitter 0.02 (2 eps = 0.04): round 1 keeps {0, 2, 3}; round 2 keeps {2, 3}.
        self.assertRouting(route(l, "#moe.routing<policy = sparse_mixer, k = 2, "
                                    "jitter_eps = 0.02>"),
                           [[0, 2]],
                           [[e(1) / (e(1) + e(0.995) + e(0.97)),
                             e(0.995) / (e(0.995) + e(0.97))]], rtol=1e-5)

    def test_ties(self):
        l = [[1.0, 1.0, 0.0]]
        w, e = route(l, "#moe.routing<policy = sparse_mixer, k = 2>")
        np.testing.assert_array_equal(e, [[0, 1]])
        self.assertClose(w, [[0.5, 1.0]])
        w, e = route(l, "#moe.routing<policy = sparse_mixer, k = 2, "
                        "tie_break = higher_index>")
        np.testing.assert_array_equal(e, [[1, 0]])

    def test_negative_logits(self):
        # factor = max(|l[e]|, l[e1]); l = -1, -1.01: (-1 + 1.01) / 1.01 = .0099
        l = [[-1.0, -1.01, -3.0]]
        e = math.exp
        self.assertRouting(route(l, "#moe.routing<policy = sparse_mixer, k = 2>"),
                           [[0, 1]], [[e(-1) / (e(-1) + e(-1.01)), 1.0]], rtol=1e-5)

    def test_against_phimoe_loop(self):
        rng = np.random.RandomState(7)
        l = (rng.standard_normal((20, 8)) * 0.05).astype(F32)
        eps = 0.01
        w, e = route(l, "#moe.routing<policy = sparse_mixer, k = 2>")
        for t in range(20):
            s = l[t].astype(np.float64)
            m1 = int(np.argmax(s))
            thr = s[m1]
            factor = np.maximum(np.abs(s), thr)
            g = np.where((thr - s) / factor > 2 * eps, -np.inf, s)
            p1 = softmax64(g)[m1]
            s2 = s.copy()
            s2[m1] = -np.inf
            m2 = int(np.argmax(s2))
            thr2 = s2[m2]
            with np.errstate(invalid="ignore"):
                mask2 = (thr2 - s2) / np.maximum(np.abs(s2), thr2) > 2 * eps
            g2 = np.where(mask2, -np.inf, s2)
            p2 = softmax64(g2)[m2]
            np.testing.assert_array_equal(e[t], [m1, m2])
            self.assertClose(w[t], [p1, p2], rtol=1e-5)


# ----------------------------------------------------------------------------
# Dispatch / combine / stats
# ----------------------------------------------------------------------------

class DispatchTest(Case):
    X = np.arange(12, dtype=F32).reshape(3, 4) + 1
    EXPERTS = np.array([[0, 1], [0, 1], [1, 0]], np.int32)
    WEIGHTS = f32([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1]])

    def padded(self, attr):
        return ref.dispatch(self.X, self.WEIGHTS, self.EXPERTS, 2, attr)

    def test_ragged(self):
        experts = np.array([[1, 0], [1, -1], [0, 1]], np.int32)
        w = f32([[0.5, 0.25], [1.0, 7.0], [0.125, 0.375]])
        d, rt, counts, ts, cw = ref.dispatch(self.X, w, experts, 2)
        self.assertEqual(d.shape, (6, 4))
        np.testing.assert_array_equal(rt, [0, 2, 0, 1, 2, -1])
        np.testing.assert_array_equal(counts, [2, 3])
        np.testing.assert_array_equal(ts, [[2, 0], [3, -1], [1, 4]])
        np.testing.assert_array_equal(d[:5], self.X[[0, 2, 0, 1, 2]])
        np.testing.assert_array_equal(d[5], 0)
        np.testing.assert_array_equal(cw, [[0.5, 0.25], [1.0, 0.0], [0.125, 0.375]])

    def test_corrupt_indices_are_non_pairs(self):
        experts = np.array([[5, 0], [-7, 1], [2, -1]], np.int32)
        d, rt, counts, ts, cw = ref.dispatch(self.X, self.WEIGHTS, experts, 2)
        np.testing.assert_array_equal(counts, [1, 1])
        np.testing.assert_array_equal(ts, [[-1, 0], [-1, 1], [-1, -1]])
        np.testing.assert_array_equal(cw, f32([[0, 0.4], [0, 0.3], [0, 0]]))

    def test_position(self):
        d, rt, counts, ts, cw = self.padded("#moe.capacity<formula = fixed, fixed = 2>")
        self.assertEqual(d.shape, (2, 2, 4))
        np.testing.assert_array_equal(counts, [2, 2])
        np.testing.assert_array_equal(rt, [[0, 1], [0, 1]])
        np.testing.assert_array_equal(ts, [[0, 2], [1, 3], [-1, -1]])
        np.testing.assert_array_equal(d[0], self.X[[0, 1]])
        np.testing.assert_array_equal(d[1], self.X[[0, 1]])
        np.testing.assert_array_equal(cw, f32([[0.6, 0.4], [0.7, 0.3], [0, 0]]))

    def test_choice_major(self):
        d, rt, counts, ts, cw = self.padded("#moe.capacity<formula = fixed, fixed = 2, "
                                            "order = choice_major>")
        np.testing.assert_array_equal(rt, [[0, 1], [2, 0]])
        np.testing.assert_array_equal(ts, [[0, 3], [1, -1], [2, -1]])
        np.testing.assert_array_equal(cw, f32([[0.6, 0.4], [0.7, 0], [0.9, 0]]))

    def test_score(self):
        d, rt, counts, ts, cw = self.padded("#moe.capacity<formula = fixed, fixed = 2, "
                                            "order = score>")
        np.testing.assert_array_equal(rt, [[1, 0], [2, 0]])
        np.testing.assert_array_equal(ts, [[1, 3], [0, -1], [2, -1]])
        np.testing.assert_array_equal(cw, f32([[0.6, 0.4], [0.7, 0], [0.9, 0]]))

    def test_score_ties_by_position(self):
        w = f32([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
        d, rt, counts, ts, cw = ref.dispatch(
            self.X, w, self.EXPERTS, 2, "#moe.capacity<formula = fixed, fixed = 2, "
                                        "order = score>")
        np.testing.assert_array_equal(ts, [[0, 2], [1, 3], [-1, -1]])

    def test_renormalize_after_drop(self):
        d, rt, counts, ts, cw = self.padded("#moe.capacity<formula = fixed, fixed = 2, "
                                            "order = choice_major, renormalize = true>")
        s0 = F32(F32(0.6) + F32(0.4))
        np.testing.assert_array_equal(cw, f32([[F32(0.6) / s0, F32(0.4) / s0],
                                               [1.0, 0.0], [1.0, 0.0]]))
        # everything dropped: 0 / FLT_EPSILON = 0
        d, rt, counts, ts, cw = ref.dispatch(
            self.X, self.WEIGHTS, self.EXPERTS, 2,
            "#moe.capacity<formula = fixed, fixed = 1, renormalize = true>")
        np.testing.assert_array_equal(ts, [[0, 1], [-1, -1], [-1, -1]])
        np.testing.assert_array_equal(cw, f32([[0.6 / 1.0, 0.4 / 1.0], [0, 0], [0, 0]]))

    def test_pass_through_keeps_weight(self):
        d, rt, counts, ts, cw = self.padded("#moe.capacity<formula = fixed, fixed = 2, "
                                            "on_drop = pass_through>")
        np.testing.assert_array_equal(ts, [[0, 2], [1, 3], [-1, -1]])
        np.testing.assert_array_equal(cw, self.WEIGHTS)

    def test_unfilled_and_non_pairs(self):
        experts = np.array([[0, -1], [0, -1], [-1, -1]], np.int32)
        d, rt, counts, ts, cw = ref.dispatch(
            self.X, self.WEIGHTS, experts, 2, "#moe.capacity<formula = fixed, fixed = 3>")
        np.testing.assert_array_equal(counts, [2, 0])
        np.testing.assert_array_equal(rt, [[0, 1, -1], [-1, -1, -1]])
        np.testing.assert_array_equal(d[0, 2], 0)
        np.testing.assert_array_equal(d[1], 0)
        np.testing.assert_array_equal(ts, [[0, -1], [1, -1], [-1, -1]])

    def test_capacity_formulas(self):
        cf = ref.capacity_for
        self.assertEqual(cf("#moe.capacity<factor = 1.25>", 10, 2, 4), 7)
        self.assertEqual(cf("#moe.capacity<factor = 1.25, formula = tutel>", 10, 2, 4), 6)
        self.assertEqual(cf("#moe.capacity<factor = 1.25, min_capacity = 8>", 10, 2, 4), 8)
        self.assertEqual(cf("#moe.capacity<factor = 1.25, align = 4>", 10, 2, 4), 8)
        self.assertEqual(cf("#moe.capacity<factor = 1.5, formula = tutel, min_capacity = 10, "
                            "align = 4>", 10, 2, 4), 12)
        self.assertEqual(cf("#moe.capacity<formula = fixed, fixed = 5>", 100, 2, 4), 5)
        self.assertEqual(cf("#moe.capacity<factor = 0.5, formula = tutel>", 3, 1, 4), 0)
        # T = 3, K = 2, E = 2: C = 2 * floor(0.25 * 2) = 0, everything is dropped.
        d, rt, counts, ts, cw = ref.dispatch(self.X, self.WEIGHTS, self.EXPERTS, 2,
                                             "#moe.capacity<factor = 0.25, formula = tutel>")
        self.assertEqual(d.shape, (2, 0, 4))
        np.testing.assert_array_equal(counts, [0, 0])
        np.testing.assert_array_equal(ts, -1)
        np.testing.assert_array_equal(cw, 0)


class CombineTest(Case):
    def test_slot_order_and_pass_through(self):
        out = f32([[1, 2], [3, 4], [5, 6]])
        ts = np.array([[0, 2], [-1, 1], [-1, -1]], np.int32)
        w = f32([[0.5, 2.0], [0.25, 1.0], [0.0, 0.0]])
        x = f32([[10, 20], [30, 40], [50, 60]])
        y = ref.combine(out, ts, w)
        np.testing.assert_array_equal(y, [[10.5, 13], [3, 4], [0, 0]])
        y = ref.combine(out, ts, w, x)
        np.testing.assert_array_equal(y, [[10.5, 13], [10.5, 14], [0, 0]])

    def test_padded_rows(self):
        out = np.arange(2 * 3 * 2, dtype=F32).reshape(2, 3, 2)
        ts = np.array([[4, 0]], np.int32)     # e = 1, c = 1 and e = 0, c = 0
        y = ref.combine(out, ts, f32([[1.0, 2.0]]))
        np.testing.assert_array_equal(y, [[8.0, 11.0]])

    def test_f32_slot_order(self):
        big = F32(1e8)
        out = f32([[big], [1.0], [-big]])
        ts = np.array([[0, 1, 2]], np.int32)
        # (1e8 + 1) - 1e8 in f32 = 0, not 1
        y = ref.combine(out, ts, f32([[1, 1, 1]]))
        self.assertEqual(y[0, 0], 0.0)


class StatsTest(Case):
    def test_hand(self):
        counts, mass = ref.expert_stats(np.array([[0, 1], [1, -1], [3, 1]]),
                                        f32([[0.5, 0.25], [0.75, 9.0], [1.0, 2.0]]), 3)
        self.assertEqual(counts.dtype, np.int64)
        self.assertEqual(mass.dtype, np.float32)
        np.testing.assert_array_equal(counts, [1, 3, 0])
        np.testing.assert_array_equal(mass, [0.5, 3.0, 0.0])

    def test_load_balancing(self):
        experts = np.array([[0], [0], [1], [0]])
        probs = np.array([[0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
        # f = [3/4, 1/4], P = [0.625, 0.375] -> 2 * (0.46875 + 0.09375)
        self.assertAlmostEqual(ref.load_balancing(experts, probs, 2), 1.125)


# ----------------------------------------------------------------------------
# Expert FFN
# ----------------------------------------------------------------------------

class FFNTest(Case):
    def setUp(self):
        rng = np.random.RandomState(11)
        self.D, self.F = 5, 3
        self.x = rng.standard_normal((4, self.D)).astype(F32)
        self.wg = rng.standard_normal((self.D, self.F)).astype(F32)
        self.wu = rng.standard_normal((self.D, self.F)).astype(F32)
        self.w2 = rng.standard_normal((self.F, self.D)).astype(F32)
        self.bg = rng.standard_normal(self.F).astype(F32)
        self.bu = rng.standard_normal(self.F).astype(F32)
        self.b2 = rng.standard_normal(self.D).astype(F32)

    def test_activations(self):
        a = np.array([-1.0, 0.0, 1.0, 2.0])
        self.assertClose(ref.activation(a, "gelu"),
                         [-0.15865525393145707, 0.0, 0.8413447460685429, 1.9544997361036416],
                         rtol=1e-12)
        self.assertClose(ref.activation(a, "gelu_tanh"),
                         [-0.15880800939172324, 0.0, 0.8411919906082768, 1.9545976940871754],
                         rtol=1e-12)
        self.assertClose(ref.activation(a, "silu"), a / (1 + np.exp(-a)), rtol=1e-12)
        self.assertClose(ref.activation(a, "silu", 1.702), a / (1 + np.exp(-1.702 * a)),
                         rtol=1e-12)
        self.assertClose(ref.activation(a, "relu"), [0, 0, 1, 2])
        self.assertClose(ref.activation(a, "identity"), a)

    def test_mlp(self):
        x = f32([[1.0, -2.0]])
        w1 = f32([[1.0, 0.5], [0.5, -1.0]])      # h = [0, 2.5] + b1
        w2 = f32([[2.0, 1.0], [1.0, 3.0]])
        y = ref.expert_ffn(x, w1, None, w2, f32([1.0, -0.5]), f32([0.25, 0.0]),
                           "#moe.ffn<kind = mlp, activation = relu>")
        # relu([1, 2]) @ w2 + b2 = [2 + 2, 1 + 6] + [.25, 0]
        np.testing.assert_array_equal(y, f32([[4.25, 7.0]]))
        self.assertEqual(y.dtype, np.float32)
        y = ref.expert_ffn(x, w1.T, None, w2.T, f32([1.0, -0.5]), f32([0.25, 0.0]),
                           "#moe.ffn<kind = mlp, activation = relu, layout = out_in>")
        np.testing.assert_array_equal(y, f32([[4.25, 7.0]]))

    def expected_glu(self, alpha=1.0, up_shift=0.0, limit=0.0, act="silu", biases=False):
        x = self.x.astype(np.float64)
        g = x @ self.wg + (self.bg if biases else 0)
        u = x @ self.wu + (self.bu if biases else 0)
        if limit:
            g = np.minimum(g, limit)
            u = np.clip(u, -limit, limit)
        h = ref.activation(g, act, alpha) * (u + up_shift)
        return h @ self.w2 + (self.b2 if biases else 0)

    def test_glu_forms(self):
        sep = ref.expert_ffn(self.x, self.wg, self.wu, self.w2, ffn="#moe.ffn<>")
        self.assertClose(sep, self.expected_glu(), rtol=1e-6)
        cat = np.concatenate([self.wg, self.wu], axis=1)
        inter = np.empty((self.D, 2 * self.F), F32)
        inter[:, 0::2], inter[:, 1::2] = self.wg, self.wu
        self.assertClose(ref.expert_ffn(self.x, cat, None, self.w2,
                                        ffn="#moe.ffn<gate_up = concatenated>"), sep, rtol=1e-6)
        self.assertClose(ref.expert_ffn(self.x, inter, None, self.w2,
                                        ffn="#moe.ffn<gate_up = interleaved>"), sep, rtol=1e-6)
        self.assertClose(ref.expert_ffn(self.x, inter.T, None, self.w2.T,
                                        ffn="#moe.ffn<gate_up = interleaved, "
                                            "layout = out_in>"), sep, rtol=1e-6)
        self.assertClose(ref.expert_ffn(self.x, self.wg.T, self.wu.T, self.w2.T,
                                        ffn="#moe.ffn<layout = out_in>"), sep, rtol=1e-6)

    def test_gpt_oss_swiglu_with_biases(self):
        exp = self.expected_glu(alpha=1.702, up_shift=1.0, limit=0.5, biases=True)
        b1i = np.empty(2 * self.F, F32)
        b1i[0::2], b1i[1::2] = self.bg, self.bu
        inter = np.empty((self.D, 2 * self.F), F32)
        inter[:, 0::2], inter[:, 1::2] = self.wg, self.wu
        y = ref.expert_ffn(self.x, inter, None, self.w2, b1i, self.b2,
                           "#moe.ffn<gate_up = interleaved, alpha = 1.702, up_shift = 1.0, "
                           "limit = 0.5>")
        self.assertClose(y, exp, rtol=1e-6)
        cat = np.concatenate([self.wg, self.wu], axis=1)
        y = ref.expert_ffn(self.x, cat, None, self.w2, np.concatenate([self.bg, self.bu]),
                           self.b2, "#moe.ffn<gate_up = concatenated, alpha = 1.702, "
                                    "up_shift = 1.0, limit = 0.5>")
        self.assertClose(y, exp, rtol=1e-6)
        # the clamp is active somewhere
        self.assertGreater(np.abs(exp - self.expected_glu(1.702, 1.0, 0.0, biases=True)).max(),
                           1e-3)

    def test_separate_bias_is_gate_only(self):
        y = ref.expert_ffn(self.x, self.wg, self.wu, self.w2, self.bg, None, "#moe.ffn<>")
        x = self.x.astype(np.float64)
        exp = (silu64(x @ self.wg + self.bg) * (x @ self.wu)) @ self.w2
        self.assertClose(y, exp, rtol=1e-6)

    def test_gelu_glu(self):
        y = ref.expert_ffn(self.x, self.wg, self.wu, self.w2,
                           ffn="#moe.ffn<activation = gelu_tanh>")
        self.assertClose(y, self.expected_glu(act="gelu_tanh"), rtol=1e-6)

    def test_run_experts_layouts(self):
        rng = np.random.RandomState(5)
        E, D, F_ = 3, 4, 6
        w1 = rng.standard_normal((E, D, F_)).astype(F32)
        w3 = rng.standard_normal((E, D, F_)).astype(F32)
        w2 = rng.standard_normal((E, F_, D)).astype(F32)
        rows = rng.standard_normal((8, D)).astype(F32)
        counts = np.array([2, 0, 3], np.int32)
        out = ref.run_experts(rows, counts, w1, w3, w2, ffn="#moe.ffn<>")
        self.assertClose(out[0:2], glu64(rows[0:2].astype(np.float64), w1[0], w3[0], w2[0]),
                         rtol=1e-5)
        self.assertClose(out[2:5], glu64(rows[2:5].astype(np.float64), w1[2], w3[2], w2[2]),
                         rtol=1e-5)
        np.testing.assert_array_equal(out[5:], 0)
        padded = np.zeros((3, 2, D), F32)
        padded[0] = rows[:2]
        padded[2, :1] = rows[5:6]
        out = ref.run_experts(padded, np.array([2, 0, 1]), w1, w3, w2, ffn="#moe.ffn<>")
        self.assertClose(out[2, 0], glu64(rows[5:6].astype(np.float64), w1[2], w3[2], w2[2])[0],
                         rtol=1e-5)
        np.testing.assert_array_equal(out[1], 0)
        np.testing.assert_array_equal(out[2, 1], 0)


# ----------------------------------------------------------------------------
# Whole layers against per-expert loops written like the peers
# ----------------------------------------------------------------------------

def hf_sparse_block(x, sel, rw, expert_fn, num_experts):
    """Hugging Face MixtralSparseMoeBlock's loop: one_hot mask, for every
    expert `idx, top_x = where(mask[e])`, expert on x[top_x], scale by the
    routing weight, index_add into the output."""
    T = x.shape[0]
    out = np.zeros((T, x.shape[1]))
    mask = np.zeros((num_experts, sel.shape[1], T), bool)     # [E, K, T]
    for t in range(T):
        for j in range(sel.shape[1]):
            if 0 <= sel[t, j] < num_experts:
                mask[sel[t, j], j, t] = True
    for e in range(num_experts):
        idx, top_x = np.nonzero(mask[e])
        if top_x.size == 0:
            continue
        cur = x[top_x]
        h = expert_fn(e, cur) * rw[top_x, idx][:, None]
        np.add.at(out, top_x, h)
    return out


class LayerCrossCheckTest(Case):
    T, D, F, E = 13, 16, 24, 8

    def params(self, seed, **kw):
        return ref.make_layer_params(self.D, self.F, self.E, kw.pop("routing"), seed=seed,
                                     **kw)

    def x(self, seed, T=None):
        return ref.make_inputs({"x": (T or self.T, self.D)}, seed)["x"]

    def test_mixtral(self):
        routing = "#moe.routing<k = 2, normalize = selected>"
        p = self.params(1, routing=routing, router_scale=1.0)
        x = self.x(2)
        logits = x.astype(np.float64) @ p["router"]
        self.assertGreater(ref.key_gap(logits, 2), 1e-4)
        probs = softmax64(logits)
        sel = topk_indices(probs, 2)
        rw = np.take_along_axis(probs, sel, 1)
        rw = rw / rw.sum(-1, keepdims=True)
        w1, w3, w2 = (p[n].astype(np.float64) for n in ("w1", "w3", "w2"))
        expect = hf_sparse_block(x.astype(np.float64), sel, rw,
                                 lambda e, h: glu64(h, w1[e], w3[e], w2[e]), self.E)
        y = ref.moe_layer(x, p, routing, "#moe.ffn<kind = glu, activation = silu>")
        self.assertEqual(y.dtype, np.float32)
        self.assertClose(y, expect, rtol=1e-4, atol=1e-5)

    def test_mixtral_out_in_layout(self):
        routing = "#moe.routing<k = 2, normalize = selected>"
        ffn = "#moe.ffn<layout = out_in>"
        p = ref.make_layer_params(self.D, self.F, self.E, routing, ffn, seed=4,
                                  router_scale=1.0)
        self.assertEqual(p["w1"].shape, (self.E, self.F, self.D))
        self.assertEqual(p["router"].shape, (self.E, self.D))
        x = self.x(5)
        probs = softmax64(x.astype(np.float64) @ p["router"].T)
        sel = topk_indices(probs, 2)
        rw = np.take_along_axis(probs, sel, 1)
        rw = rw / rw.sum(-1, keepdims=True)
        w1, w3, w2 = (p[n].astype(np.float64) for n in ("w1", "w3", "w2"))
        expect = hf_sparse_block(x.astype(np.float64), sel, rw,
                                 lambda e, h: glu64(h, w1[e].T, w3[e].T, w2[e].T), self.E)
        self.assertClose(ref.moe_layer(x, p, routing, ffn), expect, rtol=1e-4, atol=1e-5)

    def test_qwen2_shared_gate(self):
        routing = "#moe.routing<k = 4, normalize = none>"
        p = self.params(6, routing=routing, num_shared_experts=1, shared_d_ff=40,
                        shared_gate=True, router_scale=1.0)
        x = self.x(7)
        x64 = x.astype(np.float64)
        probs = softmax64(x64 @ p["router"])
        sel = topk_indices(probs, 4)
        rw = np.take_along_axis(probs, sel, 1)
        w1, w3, w2 = (p[n].astype(np.float64) for n in ("w1", "w3", "w2"))
        routed = hf_sparse_block(x64, sel, rw, lambda e, h: glu64(h, w1[e], w3[e], w2[e]),
                                 self.E)
        shared = glu64(x64, p["shared_w1"][0], p["shared_w3"][0], p["shared_w2"][0])
        shared = sigmoid64(x64 @ p["shared_gate"]) * shared
        y = ref.moe_layer(x, p, routing, "#moe.ffn<>")
        self.assertClose(y, routed + shared, rtol=1e-4, atol=1e-5)

    def test_deepseek_v3(self):
        routing = ("#moe.routing<policy = grouped_top_k, k = 3, score = sigmoid, "
                   "normalize = selected, scaling = 2.5, num_groups = 4, top_groups = 2, "
                   "epsilon = 1.0e-20>")
        p = self.params(8, routing=routing, selection_bias=True, num_shared_experts=2,
                        shared_d_ff=12, router_scale=1.0)
        x = self.x(9)
        x64 = x.astype(np.float64)
        scores_ = sigmoid64(x64 @ p["router"])
        sfc = scores_ + p["selection_bias"]
        T, E, G = self.T, self.E, 4
        group_scores = np.sort(sfc.reshape(T, G, E // G), axis=-1)[..., ::-1][..., :2].sum(-1)
        group_idx = topk_indices(group_scores, 2)
        gmask = np.zeros((T, G), bool)
        gmask[np.arange(T)[:, None], group_idx] = True
        smask = np.repeat(gmask, E // G, axis=1)
        tmp = np.where(smask, sfc, -np.inf)
        sel = topk_indices(tmp, 3)
        rw = np.take_along_axis(scores_, sel, 1)
        rw = rw / (rw.sum(-1, keepdims=True) + 1e-20) * 2.5
        w1, w3, w2 = (p[n].astype(np.float64) for n in ("w1", "w3", "w2"))
        routed = hf_sparse_block(x64, sel, rw, lambda e, h: glu64(h, w1[e], w3[e], w2[e]),
                                 self.E)
        # DeepSeek merges the shared experts into one wider MLP.
        sw1 = np.concatenate(list(p["shared_w1"]), axis=1)
        sw3 = np.concatenate(list(p["shared_w3"]), axis=1)
        sw2 = np.concatenate(list(p["shared_w2"]), axis=0)
        shared = glu64(x64, sw1, sw3, sw2)
        y = ref.moe_layer(x, p, routing, "#moe.ffn<>")
        self.assertClose(y, routed + shared, rtol=1e-4, atol=1e-5)

    def test_adamoe_null_experts(self):
        routing = "#moe.routing<k = 4, normalize = selected, null_experts = 4>"
        p = self.params(10, routing=routing, router_scale=1.0)
        self.assertEqual(p["router"].shape, (self.D, self.E + 4))
        x = self.x(11, T=40)
        x64 = x.astype(np.float64)
        probs = softmax64(x64 @ p["router"])
        sel = topk_indices(probs, 4)
        rw = np.take_along_axis(probs, sel, 1)
        rw = rw / rw.sum(-1, keepdims=True)
        w1, w3, w2 = (p[n].astype(np.float64) for n in ("w1", "w3", "w2"))
        expect = hf_sparse_block(x64, sel, rw, lambda e, h: glu64(h, w1[e], w3[e], w2[e]),
                                 self.E)
        y, inter = ref.moe_layer(x, p, routing, "#moe.ffn<>", return_intermediates=True)
        self.assertTrue((inter["experts"] == -1).any())
        self.assertClose(y, expect, rtol=1e-4, atol=1e-5)

    def test_switch_capacity_pass_through(self):
        # HF SwitchTransformersSparseMLP (v4): top-1 argmax, expert_capacity per
        # batch in token order, dropped tokens keep their hidden state, and the
        # result is router_probs(max) * next_states.
        E, T, cap = 4, 16, 3
        routing = "#moe.routing<k = 1>"
        ffn = "#moe.ffn<kind = mlp, activation = relu>"
        capacity = f"#moe.capacity<formula = fixed, fixed = {cap}, on_drop = pass_through>"
        p = ref.make_layer_params(self.D, self.F, E, routing, ffn, seed=12, router_scale=1.0)
        x = self.x(13, T=T)
        x64 = x.astype(np.float64)
        probs = softmax64(x64 @ p["router"])
        idx = np.argmax(probs, axis=-1)
        mask = np.eye(E)[idx]
        priority = np.cumsum(mask, axis=0)
        mask = mask * (priority <= cap)
        self.assertLess(mask.sum(), T)            # something is dropped
        pmax = probs.max(-1)
        nxt = x64.copy()
        for e in range(E):
            rows = mask[:, e].astype(bool)
            nxt[rows] = np.maximum(nxt[rows] @ p["w1"][e], 0) @ p["w2"][e]
        expect = pmax[:, None] * nxt
        self.assertClose(ref.moe_layer(x, p, routing, ffn, capacity), expect,
                         rtol=1e-4, atol=1e-5)
        # with on_drop = zero, dropped tokens output 0
        y = ref.moe_layer(x, p, routing, ffn, capacity.replace("pass_through", "zero"))
        dropped = mask.sum(-1) == 0
        np.testing.assert_array_equal(y[dropped], 0)
        self.assertClose(y[~dropped], expect[~dropped], rtol=1e-4, atol=1e-5)

    def test_deepspeed_top2_gshard(self):
        # DeepSpeed top2gating (no noise): second choices queue after every
        # first choice, capacity ceil(T / E * cf * 2) >= min_capacity, gates
        # renormalised after dropping with denominator clamp(min = eps).
        E, T, cf, min_cap = 4, 20, 0.5, 4
        routing = "#moe.routing<k = 2>"
        capacity = (f"#moe.capacity<factor = {cf}, min_capacity = {min_cap}, "
                    "order = choice_major, renormalize = true>")
        p = ref.make_layer_params(self.D, self.F, E, routing, seed=14, router_scale=1.0)
        x = self.x(15, T=T)
        x64 = x.astype(np.float64)
        logits = x64 @ p["router"]
        gates = softmax64(logits)
        capacity_n = max(int(math.ceil(T / E * cf * 2)), min_cap)
        self.assertEqual(ref.capacity_for(capacity, T, 2, E), capacity_n)
        idx1 = np.argmax(gates, axis=1)
        mask1 = np.eye(E)[idx1]
        idx2 = np.argmax(np.where(mask1 > 0, -np.inf, logits), axis=1)
        mask2 = np.eye(E)[idx2]
        loc1 = np.cumsum(mask1, 0) - 1
        loc2 = np.cumsum(mask2, 0) - 1 + mask1.sum(0, keepdims=True)
        mask1 = mask1 * (loc1 < capacity_n)
        mask2 = mask2 * (loc2 < capacity_n)
        self.assertLess(mask1.sum() + mask2.sum(), 2 * T)
        g1 = (gates * mask1).sum(1)
        g2 = (gates * mask2).sum(1)
        denom = np.maximum(g1 + g2, np.finfo(np.float32).eps)
        g1, g2 = g1 / denom, g2 / denom
        w1, w3, w2 = (p[n].astype(np.float64) for n in ("w1", "w3", "w2"))
        expect = np.zeros_like(x64)
        for e in range(E):
            y_e = glu64(x64, w1[e], w3[e], w2[e])
            expect += (g1 * mask1[:, e])[:, None] * y_e + (g2 * mask2[:, e])[:, None] * y_e
        self.assertClose(ref.moe_layer(x, p, routing, "#moe.ffn<>", capacity), expect,
                         rtol=1e-4, atol=1e-5)

    def test_padded_without_drops_equals_ragged(self):
        routing = "#moe.routing<k = 2, normalize = selected>"
        p = self.params(16, routing=routing, b1=True, b2=True)
        x = self.x(17)
        ragged = ref.moe_layer(x, p, routing, "#moe.ffn<>")
        padded = ref.moe_layer(x, p, routing, "#moe.ffn<>",
                               f"#moe.capacity<formula = fixed, fixed = {self.T}>")
        self.assertClose(padded, ragged, rtol=1e-6, atol=1e-7)

    def test_per_token_loop_all_policies(self):
        # moe_layer equals "route, then for every token sum w * expert(x)".
        cases = [
            ("#moe.routing<policy = top_p, k = 4, top_p = 0.4>", {}),
            ("#moe.routing<policy = threshold, k = 3, score = sigmoid, threshold = 0.6>", {}),
            ("#moe.routing<policy = sinkhorn, k = 2, sinkhorn_iterations = 5>", {}),
            ("#moe.routing<policy = expert_choice, k = 2, capacity_factor = 1.0>", {}),
            ("#moe.routing<policy = sparse_mixer, k = 2>", {}),
            ("#moe.routing<k = 3, score = softmax_selected, tie_break = higher_index>", {}),
            ("#moe.routing<k = 2, score = sigmoid, normalize = selected>",
             {"router_bias": True, "selection_bias": True}),
        ]
        for i, (routing, kw) in enumerate(cases):
            with self.subTest(routing=routing):
                ffn = "#moe.ffn<kind = mlp, activation = gelu>"
                p = ref.make_layer_params(self.D, self.F, self.E, routing, ffn, seed=20 + i,
                                          b1=True, b2=True, **kw)
                x = self.x(40 + i)
                logits = ref.router_logits(x, p, ffn)
                w, e = ref.route(logits, routing, p.get("selection_bias"))
                expect = np.zeros((self.T, self.D))
                for t in range(self.T):
                    for j in range(w.shape[1]):
                        if e[t, j] < 0:
                            continue
                        h = x[t:t + 1].astype(np.float64) @ p["w1"][e[t, j]] + p["b1"][e[t, j]]
                        h = ref.activation(h, "gelu")
                        h = h @ p["w2"][e[t, j]] + p["b2"][e[t, j]]
                        expect[t] += w[t, j] * h[0]
                y = ref.moe_layer(x, p, routing, ffn)
                self.assertClose(y, expect, rtol=1e-4, atol=1e-5)


class ModelTest(Case):
    def test_two_layer_stack(self):
        D, T = 16, 9
        r1 = "#moe.routing<k = 2, normalize = selected>"
        r2 = "#moe.routing<k = 1>"
        p1 = ref.make_layer_params(D, 20, 4, r1, seed=1)
        p2 = ref.make_layer_params(D, 12, 6, r2, "#moe.ffn<kind = mlp, activation = relu>",
                                   seed=2)
        n = ref.make_inputs({"n1": (D,), "n2": (D,), "fin": (D,), "x": (T, D)}, seed=3)
        layers = [
            {"params": p1, "routing": r1, "norm": n["n1"]},
            {"params": p2, "routing": r2, "ffn": "#moe.ffn<kind = mlp, activation = relu>",
             "norm": n["n2"]},
        ]

        def rms64(h, w, eps=1e-6):
            h = h.astype(np.float64)
            return w * (h / np.sqrt((h * h).mean(-1, keepdims=True) + eps))

        x = n["x"]
        h1 = x + ref.moe_layer(rms64(x, n["n1"]).astype(F32), p1, r1)
        h2 = h1 + ref.moe_layer(rms64(h1, n["n2"]).astype(F32), p2, r2,
                                "#moe.ffn<kind = mlp, activation = relu>")
        expect = rms64(h2, n["fin"])
        y = ref.model(x, layers, final_norm=n["fin"])
        self.assertEqual(y.dtype, np.float32)
        self.assertClose(y, expect, rtol=1e-4, atol=1e-5)
        y_nofinal = ref.model(x, layers)
        self.assertClose(y_nofinal, h2, rtol=1e-4, atol=1e-5)

    def test_rmsnorm(self):
        x = f32([[3.0, 4.0]])
        y = ref.rmsnorm(x, f32([1.0, 2.0]), eps=0.0)
        self.assertClose(y, [[3 / math.sqrt(12.5), 8 / math.sqrt(12.5)]], rtol=1e-6)


class CollectivesTest(Case):
    def test_all_to_all(self):
        ranks = [np.arange(4).reshape(4, 1) + 10 * r for r in range(2)]
        out = ref.all_to_all(ranks, split_dim=0, concat_dim=0)
        np.testing.assert_array_equal(out[0].ravel(), [0, 1, 10, 11])
        np.testing.assert_array_equal(out[1].ravel(), [2, 3, 12, 13])
        out = ref.all_to_all(ranks, split_dim=0, concat_dim=1)
        self.assertEqual(out[0].shape, (2, 2))
        np.testing.assert_array_equal(out[1], [[2, 12], [3, 13]])

    def test_all_gather_reduce_scatter(self):
        ranks = [np.full((2, 2), r, F32) for r in range(3)]
        g = ref.all_gather(ranks, dim=1)
        self.assertEqual(g[2].shape, (2, 6))
        np.testing.assert_array_equal(g[0][0], [0, 0, 1, 1, 2, 2])
        ranks = [np.arange(6, dtype=F32).reshape(3, 2) * (r + 1) for r in range(3)]
        rs = ref.reduce_scatter(ranks, dim=0)
        np.testing.assert_array_equal(rs[1], [[12, 18]])


class DtypeAndEmptyTest(Case):
    def test_f16_layer(self):
        routing = "#moe.routing<k = 2>"
        p = ref.make_layer_params(8, 6, 4, routing, seed=1)
        x = ref.make_inputs({"x": (5, 8)}, 2)["x"]
        y32 = ref.moe_layer(x, p, routing)
        y16 = ref.moe_layer(x.astype(np.float16),
                            {k: v.astype(np.float16) for k, v in p.items()}, routing)
        self.assertEqual(y16.dtype, np.float16)
        self.assertClose(y16, y32, rtol=2e-2, atol=2e-2)

    def test_no_tokens(self):
        for attr in ("#moe.routing<k = 2>", "#moe.routing<policy = sinkhorn, k = 2>",
                     "#moe.routing<policy = expert_choice, k = 2>",
                     "#moe.routing<policy = sparse_mixer, k = 2>"):
            w, e = route(np.zeros((0, 4)), attr)
            self.assertEqual((w.shape, e.shape), ((0, 2), (0, 2)))
        p = ref.make_layer_params(8, 6, 4, "#moe.routing<k = 2>", seed=1)
        self.assertEqual(ref.moe_layer(np.zeros((0, 8), F32), p, "#moe.routing<k = 2>",
                                       capacity="#moe.capacity<>").shape, (0, 8))


class InputsTest(Case):
    def test_deterministic_and_independent(self):
        a = ref.make_inputs({"x": (3, 4), "w": ((4, 5), 0.5)}, seed=1)
        b = ref.make_inputs({"x": (3, 4)}, seed=1)
        c = ref.make_inputs({"x": (3, 4)}, seed=2)
        np.testing.assert_array_equal(a["x"], b["x"])
        self.assertFalse(np.array_equal(a["x"], c["x"]))
        self.assertEqual(a["w"].shape, (4, 5))
        self.assertEqual(a["x"].dtype, np.float32)
        w_unscaled = ref.make_inputs({"w": (4, 5)}, seed=1)["w"]
        np.testing.assert_allclose(a["w"], w_unscaled * 0.5, rtol=1e-6)

    def test_layer_param_shapes(self):
        p = ref.make_layer_params(8, 6, 4, "#moe.routing<k = 2, null_experts = 2>",
                                  "#moe.ffn<gate_up = concatenated>", num_shared_experts=2,
                                  shared_d_ff=10, shared_gate=True, b1=True, b2=True,
                                  router_bias=True, selection_bias=True)
        shapes = {k: v.shape for k, v in p.items()}
        self.assertEqual(shapes, {"router": (8, 6), "router_bias": (6,),
                                  "selection_bias": (6,), "w1": (4, 8, 12), "w2": (4, 6, 8),
                                  "b1": (4, 12), "b2": (4, 8), "shared_w1": (2, 8, 20),
                                  "shared_w2": (2, 10, 8), "shared_gate": (8, 1)})

    def test_bf16(self):
        v = ref.round_to_bf16(f32([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, np.nan]))
        self.assertEqual(list(v[:3]), [1.0, 1.0, 1.0 + 2 ** -6])
        self.assertTrue(np.isnan(v[3]))


if __name__ == "__main__":
    unittest.main()
