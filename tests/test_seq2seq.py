"""The encoder-decoder: the cross-attention op against numpy and against float64 finite differences, the whole
model's gradient, the task's alignments, and the lesson (seeded, its claims, one-line mistakes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig
from simulator.seq2seq.cross_attention import (
    WEIGHTS,
    allocate,
    cache_shapes,
    cross_attention_backward,
    cross_attention_forward,
    reference_forward,
    scratch_shapes,
    weight_shapes,
)
from simulator.seq2seq.model import EncoderDecoder, weighted_loss

B, TD, TE, C, NH = 3, 5, 7, 6, 3  # odd shapes: no two alike, a head size of 2
LENGTHS = np.array([7, 3, 1], np.int32)  # padding on the key side


def test_the_layout_kernels_and_the_rectangular_softmax_against_numpy():
    from simulator.seq2seq.kernels import (
        cross_softmax_backward,
        cross_softmax_forward,
        from_heads,
        merge_kv,
        split_kv,
        to_heads,
    )

    rng = np.random.default_rng(9)
    HS = C // NH
    x = rng.normal(size=(B, TD, C))
    xh = np.zeros((B, NH, TD, HS))
    to_heads(xh, x)
    np.testing.assert_array_equal(xh, x.reshape(B, TD, NH, HS).transpose(0, 2, 1, 3))
    back = np.zeros_like(x)
    from_heads(back, xh)
    np.testing.assert_array_equal(back, x)
    kv = rng.normal(size=(B, TE, 2 * C))
    k, v = np.zeros((B, NH, TE, HS)), np.zeros((B, NH, TE, HS))
    split_kv(k, v, kv)
    np.testing.assert_array_equal(k, kv[..., :C].reshape(B, TE, NH, HS).transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(v, kv[..., C:].reshape(B, TE, NH, HS).transpose(0, 2, 1, 3))
    merged = np.zeros_like(kv)
    merge_kv(merged, k, v)
    np.testing.assert_array_equal(merged, kv)
    lengths = np.array([7, 2, 0], np.int32)
    for scale in (0.7, -0.7):  # a negative scale: the row's smallest score is the one subtracted
        scores = rng.normal(0, 30, size=(B, NH, TD, TE))
        p = scores.copy()
        cross_softmax_forward(p, scale, lengths)
        d = rng.normal(size=p.shape)
        ds = d.copy()
        cross_softmax_backward(ds, p, scale, lengths)
        assert np.all(p[2] == 0) and np.all(ds[2] == 0)  # no source: the rows read nothing
        for b, n in enumerate(lengths[:2]):
            z = scale * scores[b, :, :, :n]
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            want = e / e.sum(axis=-1, keepdims=True)
            np.testing.assert_allclose(p[b, :, :, :n], want, rtol=1e-12, atol=1e-300)
            assert np.all(p[b, :, :, n:] == 0) and np.all(ds[b, :, :, n:] == 0)
            dot = (d[b, :, :, :n] * want).sum(axis=-1, keepdims=True)
            np.testing.assert_allclose(ds[b, :, :, :n], scale * want * (d[b, :, :, :n] - dot), rtol=1e-10, atol=1e-14)


def _op_inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B * TD, C)).astype(dtype)
    m = rng.normal(size=(B * TE, C)).astype(dtype)
    W = {k: rng.normal(0, 0.5, s).astype(dtype) for k, s in weight_shapes(C).items()}
    return x, m, W


def _forward(x, m, m_len, W):
    dtype = x.dtype
    cache = allocate(cache_shapes(B, TD, TE, C, NH), dtype)
    out = np.zeros((B * TD, C), dtype)
    cross_attention_forward(out, x, m, m_len, W, cache)
    return out, cache


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_cross_attention_forward_matches_numpy(dtype, tol):
    x, m, W = _op_inputs(dtype)
    lengths = np.array([7, 3, 0], np.int32)  # a row with no source reads nothing (its output is the bias)
    out, cache = _forward(x, m, lengths, W)
    ref, p = reference_forward(x, m, lengths, W, B, TD, TE, NH)
    assert np.max(np.abs(out - ref)) < tol * max(1.0, np.max(np.abs(ref)))
    assert np.max(np.abs(cache["att"] - p)) < tol
    assert np.all(cache["att"][1, :, :, 3:] == 0) and np.all(cache["att"][2] == 0)  # padding keys: probability 0
    np.testing.assert_allclose(cache["att"][:2].sum(-1), 1.0, atol=tol)


def test_cross_attention_backward_matches_finite_differences():
    x, m, W = _op_inputs(np.float64, seed=1)
    R = np.random.default_rng(2).normal(size=(B * TD, C))  # loss = sum(out * R), so d(out) = R

    def loss(x, m, W):
        return float(np.sum(_forward(x, m, LENGTHS, W)[0] * R))

    out, cache = _forward(x, m, LENGTHS, W)
    dx, dm = np.full_like(x, 0.25), np.full_like(m, -0.5)  # the backward adds: start from something
    dW = {k: np.zeros_like(v) for k, v in W.items()}
    cross_attention_backward(dx, dm, dW, R, x, m, LENGTHS, W, cache, allocate(scratch_shapes(B, TD, TE, C, NH),
                                                                              np.float64))
    dx -= 0.25
    dm += 0.5
    eps = 1e-6

    def numeric(arr):
        g = np.zeros_like(arr)
        for i in range(arr.size):
            old = arr.flat[i]
            arr.flat[i] = old + eps
            up = loss(x, m, W)
            arr.flat[i] = old - eps
            down = loss(x, m, W)
            arr.flat[i] = old
            g.flat[i] = (up - down) / (2 * eps)
        return g

    for name, analytic, arr in [("x", dx, x), ("m", dm, m)] + [(k, dW[k], W[k]) for k in WEIGHTS]:
        num = numeric(arr)
        assert np.max(np.abs(analytic - num)) < 1e-7 * max(1.0, np.max(np.abs(num))), name
    # padding keys pass nothing back to the encoder: rows of m past each source's length
    dm3 = dm.reshape(B, TE, C)
    assert np.all(dm3[1, 3:] == 0) and np.all(dm3[2, 1:] == 0) and np.any(dm3[0, 6] != 0)


def _tiny(norm_position="pre", norm="layernorm"):
    common = dict(vocab_size=11, d_model=6, n_head=2, norm=norm, norm_position=norm_position, init_std=0.5)
    enc = ModelConfig(n_layer=1, seq_len=5, attention=AttentionConfig(mask="none"), **common)
    dec = ModelConfig(n_layer=2, seq_len=4, **common)
    return enc, dec


@pytest.mark.parametrize("norm_position, norm", [("pre", "layernorm"), ("post", "layernorm"), ("pre", "rmsnorm")])
def test_the_whole_encoder_decoder_gradient_matches_finite_differences(norm_position, norm):
    enc, dec = _tiny(norm_position, norm)
    model = EncoderDecoder(enc, dec, np.float64)
    model.init_weights(np.random.default_rng(3))
    rng = np.random.default_rng(4)
    src, src_len = rng.integers(4, 11, (3, 5)).astype(np.int32), np.array([5, 2, 4], np.int32)
    tgt_in, tgt_out = rng.integers(1, 11, (3, 4)).astype(np.int32), rng.integers(2, 11, (3, 4)).astype(np.int32)
    tgt_len = np.array([4, 3, 1], np.int32)
    w = (np.arange(4)[None, :] < tgt_len[:, None]).reshape(-1) / tgt_len.sum()

    def loss(grads=False):
        model.encode(src, src_len)
        model.decode(tgt_in, tgt_len)
        return weighted_loss(model.decoder, tgt_out, w, grads)

    loss(True)
    model.backward()
    checked = 0
    for part in (model.encoder, model.decoder):
        analytic = part.grads.copy()
        picks = np.random.default_rng(5)
        for spec in part.layout:
            for i in picks.choice(spec.size, size=min(3, spec.size), replace=False):
                k = spec.offset + int(i)
                old = part.params[k]
                part.params[k] = old + 1e-6
                up = loss()
                part.params[k] = old - 1e-6
                down = loss()
                part.params[k] = old
                num = (up - down) / 2e-6
                assert abs(analytic[k] - num) < 1e-6 * max(1.0, abs(num)), (spec.name, int(i), analytic[k], num)
                checked += 1
    assert checked > 100
    assert np.any(model.decoder.g["h1.cross.kv.w"] != 0) and np.any(model.encoder.g["h0.attn.qkv.w"] != 0)


# ------------------------------------------------------------------------------------------------- the task
def test_each_target_word_comes_from_the_source_word_it_is_aligned_to():
    from simulator.seq2seq.task import MAX_SOURCE, MAX_TARGET, draw_pairs, make_task

    translate, reverse = make_task("translate", 0), make_task("reverse", 0)
    rng = np.random.default_rng(0)
    pairs = draw_pairs(translate, 500, rng)
    assert max(len(p.source) for p in pairs) == MAX_SOURCE and max(len(p.target) for p in pairs) == MAX_TARGET[
        "translate"]
    for p in pairs:
        assert [translate.lexicon[p.source[j]] for j in p.align] == list(p.target)
        assert sorted(p.align) == [i for i, w in enumerate(p.source) if w != "the"]  # every word but 'the', once
        verb = p.align[-1]  # written last: the verb, read right after the subject ('the [adj] noun')
        assert verb in (2, 3) and p.source[verb + 1] == "the" and p.source[verb - 1] != "the"
    assert len(set(translate.lexicon.values())) == len(translate.lexicon)  # one invented word per source word
    assert not set(translate.lexicon.values()) & set(reverse.words)  # and none is a source word
    for p in draw_pairs(reverse, 50, rng):
        assert [p.source[j] for j in p.align] == list(p.target) == list(reversed(p.source))
    assert make_task("translate", 1).lexicon != translate.lexicon  # the language comes from the seed


def test_both_packings_hold_the_same_target_tokens_and_weights():
    from simulator.seq2seq.task import BOS, EOS, SEP, draw_pairs, held_out, make_task, pack_encdec, pack_prompt

    task = make_task("translate", 0)
    test = held_out(task, 40, np.random.default_rng(1))
    assert len({p.source for p in test}) == 40
    avoid = frozenset(p.source for p in test)
    pairs = draw_pairs(task, 200, np.random.default_rng(2), avoid)
    assert not {p.source for p in pairs} & avoid  # training never draws a held-out sentence
    a, g = pack_encdec(task, pairs[:5], 10, 8), pack_prompt(task, pairs[:5], 18)
    assert np.all(a.tgt_in[:, 0] == BOS) and abs(a.weights.sum() - 1) < 1e-12 and abs(g.weights.sum() - 1) < 1e-12
    for r in range(5):
        m = a.tgt_len[r]
        assert a.tgt_out[r, m - 1] == EOS and np.all(a.tgt_in[r, 1:m] == a.tgt_out[r, :m - 1])
        wg = g.weights.reshape(5, 18)[r] > 0
        np.testing.assert_array_equal(g.targets[r][wg], a.tgt_out[r, :m])  # the GPT predicts the same tokens
        assert g.ids[r, g.src_len[r]] == SEP and np.flatnonzero(wg)[0] == g.src_len[r]
        np.testing.assert_array_equal(g.align[r][wg][:-1], a.align[r, :m - 1])


def test_the_gpt_is_matched_to_the_encoder_decoders_parameter_count():
    from simulator.lessons import default_config, lesson_for
    from simulator.lessons.seq2seq import shape_of
    from simulator.seq2seq.train import EncDecLearner, PromptLearner, encdec_params, gpt_params

    s = shape_of(default_config(lesson_for("seq2seq")))
    a, g = EncDecLearner(s, 0), PromptLearner(s, 0)
    assert a.n_params == encdec_params(s) and g.n_params == gpt_params(s, s.gpt_d_model)
    assert s.gpt_d_model % s.n_head == 0
    for d in range(s.n_head, 4 * s.d_model, s.n_head):  # no other width is nearer
        assert abs(gpt_params(s, d) - a.n_params) >= abs(g.n_params - a.n_params)


# ---------------------------------------------------------------------------------------------- the lesson
@pytest.fixture(scope="module")
def small():
    from simulator.lessons import default_config, lesson_for

    return dataclasses.replace(default_config(lesson_for("seq2seq")), steps=6, eval_every=3, eval_pairs=32)


def test_a_seed_gives_the_same_run_and_another_seed_another(small):
    from simulator.lessons import lesson_for

    run = lesson_for("seq2seq").run
    a, b, c = run(small), run(small), run(dataclasses.replace(small, seed=1))
    losses = lambda frames: [f.losses for f in frames]  # noqa: E731
    assert losses(a) == losses(b) and losses(a) != losses(c)
    assert [f.step for f in a if f.evals is not None] == [1, 3, 6]
    np.testing.assert_array_equal(a[-1].example.cross, b[-1].example.cross)
    assert losses(run(small, 2)) == losses(a)[:2]  # a shorter run is the start of the longer
    ex = a[-1].example
    assert ex.cross.shape == (small.dec_layers, small.n_head, len(ex.target) + 1, len(ex.source))
    np.testing.assert_allclose(ex.cross.sum(axis=-1), 1.0, rtol=1e-5)  # over the real source words only
    assert ex.gpt_attention.shape == (small.gpt_layers, small.n_head, len(ex.target) + 1, len(ex.source))
    # the GPT's queries also see <sep> and the target so far: what falls on the source is less than all
    assert np.all(ex.gpt_attention.sum(axis=-1) < 1) and np.all(ex.gpt_attention > 0)


@pytest.mark.parametrize("body, says", [
    ("task: translit\n", "t.yaml:2: task: 'translit' is not one of translate, reverse"),
    ("src_len: 9\n", "t.yaml:2: src_len: 9 positions are fewer than the longest source sentence (10 words)"),
    ("tgt_len: 7\n", "t.yaml:2: tgt_len: 7 positions cannot hold the longest translate target (7 words and <eos>)"),
    ("tgt_len: 8\ntask: reverse\n",
     "t.yaml:2: tgt_len: 8 positions cannot hold the longest reverse target (10 words and <eos>)"),
    ("n_head: 3\n", "t.yaml:2: n_head: 3 heads do not divide d_model 32"),
    ("gpt_d_model: 33\n", "t.yaml:2: gpt_d_model: 2 heads do not divide gpt_d_model 33"),
    ("norm_position: middle\n", "t.yaml:2: norm_position: 'middle' is not one of pre, post"),
    ("shown: 32\n", "t.yaml:2: shown: 32 is not a row of a batch of 32"),
])
def test_a_mistake_is_one_line_naming_file_line_and_key(tmp_path, capsys, body, says):
    from simulator.cli import main
    from simulator.presets import parse_any_text
    from simulator.yamlconfig import PresetError

    with pytest.raises(PresetError) as err:
        parse_any_text("kind: seq2seq\n" + body, "t.yaml", tmp_path)
    assert str(err.value).startswith(says) and "\n" not in str(err.value), str(err.value)
    preset = tmp_path / "t.yaml"
    preset.write_text("kind: seq2seq\n" + body, encoding="utf-8")
    assert main(["train", "--preset", str(preset), "--quiet"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert f"{preset}:" in out.err


def test_a_shorter_target_reads_the_same_memory():
    """Decoding fewer positions than the window (a new arena) gives the same logits there: causal, one memory."""
    enc, dec = _tiny()
    model = EncoderDecoder(enc, dec, np.float64)
    model.init_weights(np.random.default_rng(6))
    rng = np.random.default_rng(7)
    src, src_len = rng.integers(4, 11, (3, 5)).astype(np.int32), np.array([5, 2, 4], np.int32)
    tgt = rng.integers(1, 11, (3, 4)).astype(np.int32)
    model.encode(src, src_len)
    model.decode(tgt)
    full = model.decoder.logits().copy()
    model.decode(tgt[:, :2])
    np.testing.assert_allclose(model.decoder.logits(), full[:, :2], rtol=1e-12, atol=1e-14)
    src2 = src.copy()
    src2[1, 3:] = 4  # padding of row 1 (length 2) changed: nothing it reads
    model.encode(src2, src_len)
    model.decode(tgt)
    np.testing.assert_allclose(model.decoder.logits()[1], full[1], rtol=1e-12, atol=1e-14)
    src2[1, 0] = 4 if src[1, 0] != 4 else 5  # a real word of row 1 changed: it reads that
    model.encode(src2, src_len)
    model.decode(tgt)
    assert not np.allclose(model.decoder.logits()[1], full[1])


def test_the_alignment_statistic_is_one_on_the_alignment_and_chance_when_uniform():
    from simulator.seq2seq.train import _align_stats

    src_len = np.array([3, 5], np.int32)
    align = np.array([[2, 0, 1, -1], [4, 3, -1, -1]], np.int32)  # -1: <eos> and padding, not counted
    visible = np.broadcast_to(src_len[:, None], align.shape)
    sharp = np.zeros((2, 2, 4, 6))
    for b in range(2):
        for t in range(4):
            if align[b, t] >= 0:
                sharp[b, 0, t, align[b, t]] = 1.0  # head 0 on the aligned word
                sharp[b, 1, t, (align[b, t] + 1) % src_len[b]] = 1.0  # head 1 always one word off
    mass, hits, n, chance = _align_stats(sharp, align, visible, src_len)
    assert n == 5 and list(mass) == [5.0, 0.0] and list(hits) == [5.0, 0.0]
    assert abs(chance - (3 / 3 + 2 / 5)) < 1e-12
    uniform = np.zeros((2, 2, 4, 6))
    for b in range(2):
        uniform[b, :, :, :src_len[b]] = 1.0 / src_len[b]
    mass, _hits, n, chance = _align_stats(uniform, align, visible, src_len)
    np.testing.assert_allclose(mass / n, chance / n)
