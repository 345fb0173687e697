"""The BERT lesson's data: pairs for NSP and SOP, the packing, MLM's masking rules, the bag-of-words probe."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.encoder.masking import (
    KEPT_OUT,
    SPAN_MAX,
    SPAN_P,
    TO_MASK,
    TO_RANDOM,
    UNCHANGED,
    budget,
    candidates,
    mask_batch,
    span_lengths,
    words_of,
)
from simulator.encoder.pairs import CLS, MASK, PAD, SEP, draw_batch, draw_pair, pack
from simulator.encoder.probe import bag_of_words_probe, features, fit_bags
from simulator.lessons.bert import load_data

# chi-square critical values at p = 0.001 (a correct sampler fails one run in a thousand)
CHI2_001 = {1: 10.83, 2: 13.82, 9: 27.88}


def chi_square(observed, expected) -> float:
    observed, expected = np.asarray(observed, float), np.asarray(expected, float)
    return float(np.sum((observed - expected) ** 2 / expected))


@pytest.fixture(scope="module")
def world():
    return load_data("world", None, 900)


def test_nsp_pairs_are_next_sentences_or_from_another_document_half_and_half(world):
    c = world.train
    where = {id(s): (d, i) for d, doc in enumerate(c.documents) for i, s in enumerate(doc)}
    rng = np.random.default_rng(0)
    pairs = [draw_pair(c, "nsp", rng) for _ in range(2000)]
    for p in pairs:
        (da, ia), (db, ib) = where[id(p.a)], where[id(p.b)]
        if p.label == 1:
            assert da == db and ib == ia + 1
        else:
            assert da != db
    assert chi_square(np.bincount([p.label for p in pairs], minlength=2), [1000, 1000]) < CHI2_001[1]


def test_sop_pairs_are_two_consecutive_sentences_in_order_or_swapped(world):
    c = world.train
    where = {id(s): (d, i) for d, doc in enumerate(c.documents) for i, s in enumerate(doc)}
    rng = np.random.default_rng(1)
    pairs = [draw_pair(c, "sop", rng) for _ in range(2000)]
    for p in pairs:
        (da, ia), (db, ib) = where[id(p.a)], where[id(p.b)]
        assert da == db and ib - ia == (1 if p.label == 1 else -1)
    assert chi_square(np.bincount([p.label for p in pairs], minlength=2), [1000, 1000]) < CHI2_001[1]


def test_a_pair_is_packed_as_cls_a_sep_b_sep_with_segments_and_padding(world):
    rng = np.random.default_rng(2)
    pairs = [draw_pair(world.train, "nsp", rng) for _ in range(3)]
    b = pack(pairs, 48)
    for r, p in enumerate(pairs):
        na, nb = len(p.a.ids), len(p.b.ids)
        assert na + nb + 3 <= 48  # these fit whole
        row = b.ids[r]
        assert row[0] == CLS and row[na + 1] == SEP and row[na + nb + 2] == SEP and b.lengths[r] == na + nb + 3
        assert np.array_equal(row[1:na + 1], p.a.ids) and np.array_equal(row[na + 2:na + nb + 2], p.b.ids)
        assert np.all(row[na + nb + 3:] == PAD)
        assert np.all(b.segments[r, :na + 2] == 0) and np.all(b.segments[r, na + 2:na + nb + 3] == 1)
    short = pack(pairs, 9)  # longest first: A and B end up 3 and 3
    assert np.all(short.lengths == 9) and np.all(short.ids[:, -1] == SEP)


def _batches(world, how, n=60, rate=0.15, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        b = draw_batch(world.train, "nsp", 32, 48, rng)
        yield b, mask_batch(b.ids, b.starts, world.train.vocab_ids, rate, how, rng)


def test_token_masking_chooses_15_percent_of_candidates_and_splits_them_80_10_10(world):
    chosen = cand_total = 0
    actions = np.zeros(3, int)
    for b, m in _batches(world, "token"):
        cand = candidates(b.ids)
        assert not m.chosen[~cand].any()  # never [CLS], [SEP] or padding
        assert np.all(m.action[~m.chosen] == KEPT_OUT) and np.array_equal(m.ids[~m.chosen], b.ids[~m.chosen])
        assert np.array_equal(m.targets, b.ids)
        chosen += int(m.chosen.sum())
        cand_total += int(cand.sum())
        acts = m.action[m.chosen]
        actions += [np.sum(acts == TO_MASK), np.sum(acts == TO_RANDOM), np.sum(acts == UNCHANGED)]
        assert np.all(m.ids[m.action == TO_MASK] == MASK)
        assert np.isin(m.ids[m.action == TO_RANDOM], world.train.vocab_ids).all()
        assert np.array_equal(m.ids[m.action == UNCHANGED], b.ids[m.action == UNCHANGED])
    assert chi_square([chosen, cand_total - chosen], [0.15 * cand_total, 0.85 * cand_total]) < CHI2_001[1]
    n = actions.sum()
    assert chi_square(actions, [0.8 * n, 0.1 * n, 0.1 * n]) < CHI2_001[2]


def test_a_skewed_sampler_would_fail_the_same_chi_square(world):
    # the test above can fail: 83/9/8 over as many draws is far past the critical value
    n = 40_000
    assert chi_square([0.83 * n, 0.09 * n, 0.08 * n], [0.8 * n, 0.1 * n, 0.1 * n]) > CHI2_001[2]


def test_whole_word_masking_takes_every_piece_of_a_word_or_none_within_the_budget(world):
    split_words = 0
    for b, m in _batches(world, "whole_word", n=20):
        cand = candidates(b.ids)
        for r in range(b.ids.shape[0]):
            words = words_of(cand[r], b.starts[r])
            for a, e in words:
                part = m.chosen[r, a:e]
                assert part.all() or not part.any()
                split_words += e - a > 1 and part.all()
            k, room = int(m.chosen[r].sum()), budget(int(cand[r].sum()), 0.15)
            assert 0 < k <= room
    assert split_words > 50  # words of several pieces were masked together


def test_span_lengths_follow_a_geometric_distribution_clipped_at_ten():
    lengths = span_lengths(np.random.default_rng(0), 50_000)
    assert lengths.min() == 1 and lengths.max() == SPAN_MAX
    pmf = SPAN_P * (1 - SPAN_P) ** np.arange(SPAN_MAX)
    pmf[-1] = (1 - SPAN_P) ** (SPAN_MAX - 1)  # everything from 10 on is clipped to 10
    observed = np.bincount(lengths, minlength=SPAN_MAX + 1)[1:]
    assert chi_square(observed, pmf * lengths.size) < CHI2_001[9]


def test_span_masking_chooses_contiguous_whole_word_spans_inside_one_sentence(world):
    n_spans = longer = 0
    for b, m in _batches(world, "span", n=20):
        cand = candidates(b.ids)
        for r in range(b.ids.shape[0]):
            words = words_of(cand[r], b.starts[r])
            starts = {a for a, _ in words}
            ends = {e for _, e in words}
            row = m.chosen[r].astype(int)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], row, [0]])))
            for a, e in zip(edges[::2], edges[1::2], strict=True):  # each maximal run of chosen tokens
                assert a in starts and e in ends  # whole words
                assert cand[r, a:e].all()  # contiguous, never across [SEP]
                n_words = sum(1 for s in starts if a <= s < e)
                assert 1 <= n_words <= SPAN_MAX
                n_spans += 1
                longer += n_words > 1
            assert 0 < row.sum() <= budget(int(cand[r].sum()), 0.15)
    assert n_spans > 300 and longer > 100


def test_the_probe_cannot_see_order_and_solves_nsp_but_not_sop(world):
    bags = fit_bags(world.train.documents)
    rng = np.random.default_rng(3)
    p = draw_pair(world.train, "sop", rng)
    swapped = type(p)(p.b, p.a, 1 - p.label)
    assert np.array_equal(features([p], bags), features([swapped], bags))
    results = {}
    for task in ("nsp", "sop"):
        train = [draw_pair(world.train, task, rng) for _ in range(1500)]
        test = [draw_pair(world.test, task, rng) for _ in range(800)]
        results[task] = bag_of_words_probe(task, bags, train, test).test_accuracy
    assert results["nsp"] > 0.75 and abs(results["sop"] - 0.5) < 0.07
