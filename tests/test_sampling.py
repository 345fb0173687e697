"""Decoding rules against hand-worked distributions, draw frequencies, stability, errors and determinism."""

import re
from dataclasses import replace

import numpy as np
import pytest

from simulator.config import SamplingConfig
from simulator.sampling import (
    SamplingError,
    TokenEvent,
    draw_token,
    explain_table,
    filter_distribution,
    generate,
    printable,
    validate_sampling,
)

# The worked example: probabilities at temperature 1, by token id.
#   id:    0    1    2    3    4     5
#   p:    0.1  0.2  0.4  0.2  0.04  0.06
# Rank order (most likely first, the tie between ids 1 and 3 goes to the lower id):
#   2 (0.4), 1 (0.2), 3 (0.2), 0 (0.1), 5 (0.06), 4 (0.04)
P = np.array([0.1, 0.2, 0.4, 0.2, 0.04, 0.06])
LOGITS = np.log(P) + 3.0  # any shift gives the same softmax


def filt(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, greedy=False, logits=LOGITS):
    return filter_distribution(logits, temperature, top_k, top_p, min_p, greedy)


def check(f, ids, probs):
    np.testing.assert_array_equal(f.after_min_p, ids)
    np.testing.assert_allclose(f.kept_probs, probs, rtol=0, atol=1e-12)


def test_no_filter_keeps_everything_in_rank_order():
    f = filt()
    np.testing.assert_array_equal(f.order, [2, 1, 3, 0, 5, 4])
    np.testing.assert_allclose(f.raw, P, atol=1e-12)
    np.testing.assert_allclose(f.tempered, P, atol=1e-12)
    check(f, [2, 1, 3, 0, 5, 4], [0.4, 0.2, 0.2, 0.1, 0.06, 0.04])
    np.testing.assert_allclose(f.probs(), P, atol=1e-12)


def test_temperature_hand_worked():
    # T = 2 turns p into sqrt(p) / sum sqrt(p); T = 0.5 into p^2 / sum p^2.
    s = np.sqrt(P)
    np.testing.assert_allclose(filt(temperature=2.0).tempered, s / s.sum(), atol=1e-12)
    q = P**2  # 0.01 0.04 0.16 0.04 0.0016 0.0036, sum 0.2552
    np.testing.assert_allclose(filt(temperature=0.5).tempered, q / 0.2552, atol=1e-12)
    np.testing.assert_allclose(filt(temperature=2.0).raw, P, atol=1e-12)  # raw stays at temperature 1


def test_top_k_hand_worked_with_tie():
    # k = 2 keeps 2 and then 1 (not 3: equal probability, the lower id wins); 0.4/0.6, 0.2/0.6.
    check(filt(top_k=2), [2, 1], [2 / 3, 1 / 3])
    check(filt(top_k=3), [2, 1, 3], [0.5, 0.25, 0.25])


def test_top_k_at_least_vocab_keeps_all():
    for k in (6, 7, 1000):
        f = filt(top_k=k)
        np.testing.assert_array_equal(f.after_top_k, [2, 1, 3, 0, 5, 4])
        check(f, [2, 1, 3, 0, 5, 4], [0.4, 0.2, 0.2, 0.1, 0.06, 0.04])


def test_top_k_one_equals_greedy():
    for T in (0.3, 1.0, 5.0):
        a, b = filt(temperature=T, top_k=1), filt(temperature=T, greedy=True)
        for name in ("after_top_k", "after_top_p", "after_min_p", "kept_probs"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        check(a, [2], [1.0])
        assert a.entropy == 0.0 and b.entropy == 0.0


def test_greedy_ignores_other_filters_and_ties_go_to_lower_id():
    check(filt(greedy=True, top_k=4, top_p=0.9, min_p=0.2), [2], [1.0])
    tied = np.array([0.0, 5.0, 1.0, 5.0])
    check(filt(greedy=True, logits=tied), [1], [1.0])


def test_top_p_hand_worked():
    # cumulative 0.4, 0.6, 0.8, 0.9, 0.96, 1.0
    check(filt(top_p=0.3), [2], [1.0])
    check(filt(top_p=0.4), [2], [1.0])  # reaches p exactly with one token
    check(filt(top_p=0.5), [2, 1], [2 / 3, 1 / 3])
    check(filt(top_p=0.8), [2, 1, 3], [0.5, 0.25, 0.25])  # 0.4 + 0.2 + 0.2 reaches 0.8 (rounding aside)
    check(filt(top_p=0.61), [2, 1, 3], [0.5, 0.25, 0.25])
    check(filt(top_p=0.95), [2, 1, 3, 0, 5], np.array([0.4, 0.2, 0.2, 0.1, 0.06]) / 0.96)
    check(filt(top_p=1e-9), [2], [1.0])  # always at least one token
    assert str(filt(top_p=0.3).entropy) == "0.0"  # one kept token: zero entropy, printed without a sign


def test_top_p_reached_exactly_despite_rounding():
    # 0.7 + 0.2 reaches 0.9 on paper, but the float64 sum is 0.8999999999999999: still two tokens.
    f = filt(top_p=0.9, logits=np.log(np.array([0.2, 0.7, 0.1])))
    check(f, [1, 0], [7 / 9, 2 / 9])


def test_top_p_one_keeps_all():
    f = filt(top_p=1.0)
    check(f, [2, 1, 3, 0, 5, 4], [0.4, 0.2, 0.2, 0.1, 0.06, 0.04])


def test_top_p_tie_broken_by_id():
    # 1 and 3 tie at 0.2: p = 0.6 needs one of them, and it is id 1.
    check(filt(top_p=0.6), [2, 1], [2 / 3, 1 / 3])


def test_top_p_sees_distribution_renormalised_over_top_k():
    # After k = 3 the kept masses are 0.4, 0.2, 0.2 -> 0.5, 0.25, 0.25, cumulative 0.5, 0.75:
    # p = 0.7 stops at two tokens (on the unrenormalised 0.4, 0.6, 0.8 it would take three).
    f = filt(top_k=3, top_p=0.7)
    np.testing.assert_array_equal(f.after_top_k, [2, 1, 3])
    np.testing.assert_array_equal(f.after_top_p, [2, 1])
    check(f, [2, 1], [2 / 3, 1 / 3])


def test_min_p_hand_worked():
    # threshold = min_p * 0.4
    check(filt(min_p=0.25), [2, 1, 3, 0], np.array([0.4, 0.2, 0.2, 0.1]) / 0.9)  # >= 0.1 kept
    check(filt(min_p=0.4), [2, 1, 3], [0.5, 0.25, 0.25])  # 0.16: id 0 (0.1) cut
    check(filt(min_p=0.55), [2], [1.0])  # 0.22: both 0.2 cut
    check(filt(min_p=0.0), [2, 1, 3, 0, 5, 4], [0.4, 0.2, 0.2, 0.1, 0.06, 0.04])
    check(filt(min_p=0.999), [2], [1.0])


def test_all_filters_combined_record_each_stage():
    # k = 5 -> [2 1 3 0 5], mass 0.96; top-p 0.9 on 0.4/.96 .. cumulative .417 .625 .833 .938 -> 4 tokens;
    # min-p 0.3 -> threshold 0.12 cuts id 0 (0.1); renormalised 0.4, 0.2, 0.2 over 0.8.
    f = filt(top_k=5, top_p=0.9, min_p=0.3)
    np.testing.assert_array_equal(f.after_top_k, [2, 1, 3, 0, 5])
    np.testing.assert_array_equal(f.after_top_p, [2, 1, 3, 0])
    np.testing.assert_array_equal(f.after_min_p, [2, 1, 3])
    check(f, [2, 1, 3], [0.5, 0.25, 0.25])
    assert f.entropy == pytest.approx(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)), abs=1e-12)
    np.testing.assert_allclose(f.probs(), [0, 0.25, 0.5, 0.25, 0, 0], atol=1e-12)


def test_filters_after_temperature():
    # T = 0.5: probabilities p^2 / 0.2552 = [.0392 .1567 .6270 .1567 .0063 .0141];
    # top-p 0.75: cumulative .627, .784 -> [2, 1]; renormalised 0.16/0.2, 0.04/0.2 = 0.8, 0.2.
    check(filt(temperature=0.5, top_p=0.75), [2, 1], [0.8, 0.2])


def test_entropy_hand_worked():
    f = filt(top_k=2)
    assert f.entropy == pytest.approx(-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)), abs=1e-12)
    assert filt().entropy == pytest.approx(-(P * np.log(P)).sum(), abs=1e-12)


def test_low_temperature_gives_argmax_with_probability_one():
    f = filt(temperature=0.01)
    assert f.tempered[2] == pytest.approx(1.0, abs=1e-12)  # the next is e^(-ln2 / 0.01) ~ 1e-30
    assert f.after_min_p[0] == 2 and f.kept_probs[0] == pytest.approx(1.0, abs=1e-12)
    assert draw_token(f, 0.999999) == 2
    tied = filt(temperature=0.01, logits=np.array([1.0, 3.0, 3.0, 0.0]))
    np.testing.assert_allclose(tied.tempered, [0, 0.5, 0.5, 0], atol=1e-12)


@pytest.mark.parametrize("T", [0.01, 1.0, 100.0])
def test_extreme_logits_stay_finite(T):
    logits = np.array([1e4, -1e4, 0.0, 1e4 - 1.0, -1e4, 3.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        f = filt(temperature=T, top_k=5, top_p=0.9, min_p=0.01, logits=logits)
    for arr in (f.raw, f.tempered, f.kept_probs):
        assert np.isfinite(arr).all()
    assert f.tempered.sum() == pytest.approx(1.0, abs=1e-12)
    assert f.kept_probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.isfinite(f.entropy) and f.entropy >= 0
    assert f.order[0] == 0 and f.order[1] == 6  # the tie at 1e4 goes to the lower id
    if T == 0.01:
        np.testing.assert_allclose(f.tempered[[0, 6]], [0.5, 0.5], atol=1e-12)


def test_tiny_and_huge_temperatures_do_not_overflow():
    logits = np.array([1e4, -1e4, 5.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        cold = filt(temperature=1e-310, logits=logits)  # 1e4 / 1e-310 alone would overflow
        hot = filt(temperature=1e300, logits=logits)
    np.testing.assert_allclose(cold.tempered, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(hot.tempered, [1 / 3] * 3, atol=1e-12)


def test_draw_is_inverse_cdf_over_kept_rank_order():
    f = filt(top_k=3)  # kept [2, 1, 3] with cdf 0.5, 0.75, 1.0
    assert [draw_token(f, u) for u in (0.0, 0.49, 0.5, 0.74, 0.75, 0.999999)] == [2, 2, 1, 1, 3, 3]
    assert draw_token(f, np.nextafter(1.0, 0.0)) == 3


def test_draw_never_lands_on_zero_probability_token():
    # At T = 0.01 the ids other than 0 underflow to probability 0 yet stay in the kept set.
    f = filt(temperature=0.01, logits=np.array([1e4, -1e4, -1e4 + 1]))
    assert len(f.after_min_p) == 3
    assert draw_token(f, np.nextafter(1.0, 0.0)) == 0


# ---- a tiny tokenizer and a fixed bigram model built here ------------------------------------------------


class DataError(Exception):
    pass


class TinyTokenizer:
    def __init__(self, chars):
        self.chars = list(chars)
        self.vocab_size = len(self.chars)
        self._id = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text):
        for c in text:
            if c not in self._id:
                raise DataError(f"unknown character {c!r}")
        return np.array([self._id[c] for c in text], dtype=np.int32)

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


TOK = TinyTokenizer("\nabcde ")


def bigram_model(seed=3):
    table = np.random.default_rng(seed).normal(size=(TOK.vocab_size, TOK.vocab_size)) * 2.0  # (V, V)
    calls = []

    def next_logits(ids):
        calls.append(ids.copy())
        return table[ids[-1]].astype(np.float32)

    return next_logits, calls


def test_same_seed_same_text_and_events():
    cfg = SamplingConfig(prompt="ab", max_new=40, temperature=0.9, top_k=5, top_p=0.95, min_p=0.05, seed=7)
    model, _ = bigram_model()
    t1, e1 = generate(model, TOK, cfg)
    t2, e2 = generate(model, TOK, cfg)
    assert t1 == t2 and len(t1) == 40
    assert [e.token for e in e1] == [e.token for e in e2]
    assert [e.prob for e in e1] == [e.prob for e in e2]
    t3, _ = generate(model, TOK, replace(cfg, seed=8))
    assert t3 != t1  # a different seed gives a different stream for this model


def test_generate_feeds_the_growing_sequence_and_streams_events():
    cfg = SamplingConfig(prompt="a\n", max_new=6, seed=1)
    model, calls = bigram_model()
    seen = []
    text, events = generate(model, TOK, cfg, on_token=seen.append)
    assert seen == events and len(events) == 6
    assert calls[0].tolist() == [1, 0]  # the prompt alone first
    for i, (c, ev) in enumerate(zip(calls, events, strict=True)):
        assert len(c) == 2 + i
        assert ev.index == i and ev.position == 2 + i
        if i + 1 < len(calls):
            assert calls[i + 1][-1] == ev.token  # the drawn token is fed back
    assert text == "".join(e.char for e in events)


def test_token_event_contents():
    cfg = SamplingConfig(prompt="c", max_new=3, temperature=2.0, top_k=4, top_p=0.8, min_p=0.1, seed=5)
    model, _ = bigram_model()
    _, events = generate(model, TOK, cfg)
    for ev in events:
        assert isinstance(ev, TokenEvent)
        assert len(ev.top_raw) == TOK.vocab_size  # fewer than 20 ids exist
        raw_probs = [p for _, _, p in ev.top_raw]
        assert raw_probs == sorted(raw_probs, reverse=True) and sum(raw_probs) == pytest.approx(1.0)
        assert all(TOK.chars[i] == c for i, c, _ in ev.top_raw)
        assert ev.tempered.shape == (TOK.vocab_size,)
        assert set(ev.after_min_p) <= set(ev.after_top_p) <= set(ev.after_top_k) and len(ev.after_top_k) == 4
        assert ev.token in ev.after_min_p and ev.char == TOK.chars[ev.token]
        assert ev.prob == ev.kept_probs[list(ev.after_min_p).index(ev.token)]
        assert ev.entropy == pytest.approx(-(ev.kept_probs * np.log(ev.kept_probs)).sum(), abs=1e-12)
    # The temperature-1 distribution is the model's softmax; tempered is flatter at T = 2.
    top = events[0].top_raw[0][2]
    assert events[0].tempered.max() < top


def test_greedy_generation_follows_argmax_chain():
    model, _ = bigram_model()
    table = np.stack([model(np.array([i], dtype=np.int32)) for i in range(TOK.vocab_size)])
    text, events = generate(model, TOK, SamplingConfig(prompt="e", max_new=10, greedy=True, seed=123))
    prev, expect = TOK.encode("e")[0], []
    for _ in range(10):
        prev = int(np.argmax(table[prev]))
        expect.append(prev)
    assert [e.token for e in events] == expect
    assert all(e.prob == 1.0 and e.entropy == 0.0 for e in events)
    # Greedy does not depend on the seed.
    assert generate(model, TOK, SamplingConfig(prompt="e", max_new=10, greedy=True, seed=9))[0] == text


# 99.9% critical values of the chi-square distribution (standard table, upper tail 0.001) by degrees of freedom.
CHI2_999 = {3: 16.266, 4: 18.467, 5: 20.515}


def chi_square(counts, probs):
    n = counts.sum()
    expected = n * probs
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("rule, df", [
    ({}, 5),  # all six tokens
    ({"top_k": 5, "temperature": 0.7}, 4),
    ({"top_p": 0.9, "min_p": 0.35, "temperature": 1.5}, 3),  # top-p keeps 5, min-p cuts id 5
])
def test_draw_frequencies_match_filtered_distribution(rule, df):
    # A model that always returns the worked-example logits: every token is drawn from one distribution.
    n = 20000
    tok = TinyTokenizer("uvwxyz")
    cfg = replace(SamplingConfig(prompt="u", max_new=n, seed=2024), **rule)
    _, events = generate(lambda ids: LOGITS, tok, cfg)
    f = filt(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, min_p=cfg.min_p)
    assert len(f.after_min_p) == df + 1
    counts = np.bincount([e.token for e in events], minlength=6)
    outside = np.setdiff1d(np.arange(6), f.after_min_p)
    assert counts[outside].sum() == 0  # filtered ids are never drawn
    stat = chi_square(counts[f.after_min_p].astype(float), f.kept_probs)
    assert stat < CHI2_999[df], f"chi-square {stat:.2f} >= {CHI2_999[df]} with {df} degrees of freedom"


# ---- a person's mistakes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"temperature": 0.0}, r"sampling\.temperature must be a finite number > 0, got 0\.0"),
    ({"temperature": -1.0}, r"sampling\.temperature must be a finite number > 0, got -1\.0"),
    ({"temperature": float("inf")}, r"sampling\.temperature must be a finite number > 0, got inf"),
    ({"temperature": float("nan")}, r"sampling\.temperature must be a finite number > 0, got nan"),
    ({"temperature": "hot"}, r"sampling\.temperature must be a finite number > 0, got 'hot'"),
    ({"top_p": 0.0}, r"sampling\.top_p must be in \(0, 1\] \(1\.0 turns it off\), got 0\.0"),
    ({"top_p": 1.5}, r"sampling\.top_p must be in \(0, 1\] \(1\.0 turns it off\), got 1\.5"),
    ({"top_k": -1}, r"sampling\.top_k must be an integer >= 0 \(0 turns it off\), got -1"),
    ({"top_k": 2.5}, r"sampling\.top_k must be an integer >= 0 \(0 turns it off\), got 2\.5"),
    ({"min_p": 1.0}, r"sampling\.min_p must be in \[0, 1\) \(0\.0 turns it off\), got 1\.0"),
    ({"min_p": -0.1}, r"sampling\.min_p must be in \[0, 1\) \(0\.0 turns it off\), got -0\.1"),
    ({"max_new": 0}, r"sampling\.max_new must be an integer >= 1, got 0"),
    ({"seed": -3}, r"sampling\.seed must be an integer >= 0, got -3"),
    ({"prompt": ""}, r"sampling\.prompt is empty"),
])
def test_bad_settings_have_one_sentence(change, message):
    cfg = replace(SamplingConfig(), **change)
    with pytest.raises(SamplingError, match=message):
        validate_sampling(cfg)
    model, calls = bigram_model()
    with pytest.raises(SamplingError, match=message):
        generate(model, TOK, cfg)
    assert calls == []  # nothing ran


def test_good_settings_pass():
    validate_sampling(SamplingConfig(temperature=100.0, top_k=0, top_p=1.0, min_p=0.0, max_new=1))
    validate_sampling(SamplingConfig(temperature=0.01, top_k=3, top_p=0.5, min_p=0.99, seed=0))


def test_prompt_character_outside_vocabulary_is_named_with_position():
    model, _ = bigram_model()
    with pytest.raises(SamplingError, match=r"character 'z' at position 3, which is not in the vocabulary") as e:
        generate(model, TOK, SamplingConfig(prompt="ab zc"))
    assert isinstance(e.value.__cause__, DataError)
    with pytest.raises(SamplingError, match=r"character '\\t' at position 0"):
        generate(model, TOK, SamplingConfig(prompt="\tab"))


def test_nonfinite_logits_are_reported():
    logits = LOGITS.copy()
    logits[3] = np.nan
    with pytest.raises(SamplingError, match=r"logits for position 1 contain NaN or Inf"):
        generate(lambda ids: logits, TinyTokenizer("uvwxyz"), SamplingConfig(prompt="u", max_new=2))


# ---- the CLI table ------------------------------------------------------------------------------------------


def test_printable():
    assert printable("\n") == "⏎" and printable(" ") == "␣" and printable("\t") == "⇥"
    assert printable("a") == "a" and printable("\x07") == "\\x07"


def test_explain_table():
    tok = TinyTokenizer("\nabcdef")
    logits = np.log(np.array([0.4, 0.2, 0.15, 0.1, 0.08, 0.05, 0.02]))  # newline most likely
    cfg = SamplingConfig(prompt="ab", max_new=4, top_k=3, greedy=True, seed=0)
    _, events = generate(lambda ids: logits, tok, cfg)
    table = explain_table(events, tok, top=5)
    lines = table.splitlines()
    assert len(lines) == 1 + 4
    row = lines[1].split()
    assert row[:5] == ["2", "⏎", "1.000", "0.000", "1"]  # pos, token, prob, entropy, kept-set size
    # Top 5 after temperature, the ones greedy cut in parentheses.
    assert row[5:] == ["⏎:0.400", "(a:0.200)", "(b:0.150)", "(c:0.100)", "(d:0.080)"]
    assert "\n" not in "".join(lines)  # the drawn newline does not break the row
    assert lines[4].split()[0] == "5"


def test_explain_table_in_chinese_puts_each_heading_over_its_column():
    from simulator import i18n
    from simulator.textcols import display_width

    tok = TinyTokenizer("\nabcdef")
    logits = np.log(np.array([0.4, 0.2, 0.15, 0.1, 0.08, 0.05, 0.02]))
    _, events = generate(lambda ids: logits, tok, SamplingConfig(prompt="ab", max_new=2, greedy=True, seed=0))
    try:
        i18n.set_language("zh_CN")
        head, row = explain_table(events, tok, top=3).splitlines()[:2]
    finally:
        i18n.set_language("en")
    assert head.split()[:5] == ["位置", "词元", "概率", "H(奈特)", "保留"]

    def ends(line):  # terminal columns at which the first five cells end (pos, prob, H and kept are right-aligned)
        return [display_width(line[:m.end()]) for m in re.finditer(r"\S+", line)][:5]

    h, r = ends(head), ends(row)
    assert [h[0], h[2], h[3], h[4]] == [r[0], r[2], r[3], r[4]], (head, row)
