"""Fill in the blank (encoder against causal GPT) and [CLS] fine-tuning on topics: against numpy, finite
differences, and a person's mistakes as one sentence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig
from simulator.data.wordpiece import WordPieceTokenizer
from simulator.encoder.causal import causal_config, next_token_rows
from simulator.encoder.fill import FillError, FillModels, held_out_blanks, parse_blank
from simulator.encoder.model import Encoder
from simulator.encoder.pairs import CLS, MASK, PAD, SEP, pair_corpus
from simulator.encoder.topics import TopicLearner, fine_tune, label_sentences
from simulator.encoder.train import EncoderShape, model_config
from simulator.model.gpt import GPT
from simulator.reference import reference_forward as gpt_reference_forward
from simulator.yamlconfig import PresetError
from tests.helpers import rel_err
from tests.test_encoder import reference_forward as encoder_reference_forward

TEXT = ("the goat has horns. the cow has milk. the hen has eggs.\n\n"
        "the king loves his kingdom. the queen loves her kingdom. the ship has a mast.\n")


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer.train(TEXT, 330)


def _randomise(model, rng, views):
    for layout, v in views:
        for spec in layout:
            w = rng.normal(0.0, 0.5, spec.shape)
            v[spec.name][...] = 1.0 + w if spec.kind == "norm" and spec.name.endswith(".w") else w


def models(tok, T=11, seed=0):
    """A float64 encoder and causal GPT with large random weights over `tok`'s vocabulary."""
    rng = np.random.default_rng(seed)
    s = EncoderShape(tok.vocab_size, T, 6, 2, 2, 3, "token", 0.15, 1e-3, 1)
    enc = Encoder(model_config(s), np.float64)
    _randomise(enc, rng, ((enc.layout, enc.p), (enc.extra_layout, enc.q)))
    gpt = GPT(causal_config(s), np.float64)
    _randomise(gpt, rng, ((gpt.layout, gpt.p),))
    return enc, gpt


def allowed_by_hand(tok, text):
    """Tokens that begin a word and occur in `text`: from the pieces' names, not from the code under test."""
    seen = set(tok.encode(text).tolist())
    return np.array([i in seen and i >= 260 and not p.startswith("##") for i, p in enumerate(tok.pieces)])


def softmax_over(z, allowed):
    p = np.exp(z - z[allowed].max()) * allowed
    return p / p.sum()


def test_both_distributions_match_a_numpy_forward_of_each_model(tok):
    T = 16
    enc, gpt = models(tok, T)
    vocab_ids = np.unique(tok.encode(TEXT))
    fill = FillModels(enc, gpt, tok, vocab_ids, 3, T)
    allowed = allowed_by_hand(tok, TEXT)
    assert np.array_equal(fill.allowed, allowed) and allowed.sum() > 5
    sentences = ["the _ has horns", "_ loves her kingdom", "the queen loves her _", "the _ has a mast ."]
    blanks = [parse_blank(tok, s, T) for s in sentences]  # four: a batch of 3 and one padded with copies
    enc_p, gpt_p = fill.probabilities(blanks)
    for r, (s, b) in enumerate(zip(sentences, blanks, strict=True)):
        left, right = (tok.encode(part).tolist() for part in s.split("_"))
        left, right = [i for i in left if tok.pieces[i] != " "], [i for i in right if tok.pieces[i] != " "]
        assert b.left.tolist() == left and b.right.tolist() == right
        row = [CLS, *left, MASK, *right, SEP]
        ids = np.array([row + [PAD] * (T - len(row))])
        logits = encoder_reference_forward(enc, ids, np.zeros_like(ids), np.array([len(row)]))[0]
        want = softmax_over(logits[0, len(left) + 1], allowed)
        assert rel_err(enc_p[r], want) < 1e-10, s
        prefix = [CLS, *left]
        ids = np.array([prefix + [PAD] * (T - len(prefix))])
        logits, _ = gpt_reference_forward(gpt.p, gpt.cfg, ids, lengths=np.array([len(prefix)]))
        want = softmax_over(logits[0, len(prefix) - 1], allowed)
        assert rel_err(gpt_p[r], want) < 1e-10, s
    # the GPT reads the left side only: two sentences with one left side get one answer, the encoder two
    assert np.array_equal(gpt_p[0], gpt_p[3]) and not np.allclose(enc_p[0], enc_p[3])
    answer = fill.ask("the _ has horns", 4)
    assert [p for p, _ in answer.encoder] == [tok.pieces[i] for i in np.argsort(-enc_p[0])[:4]]
    assert [q for _, q in answer.gpt] == sorted((float(q) for q in gpt_p[0]), reverse=True)[:4]


def test_a_sentence_that_cannot_be_asked_is_one_sentence(tok):
    cases = {"the goat has horns": "put _ where the hidden word goes",
             "the _ has _": "one blank at a time: \"the _ has _\" has 2",
             "the goat_ has horns": "the blank must be a word of its own",
             "the _ has hörns": "the text the models learned from never uses some characters of \"hörns\"",
}
    long = "the _ has horns " + "the goat has horns " * 3
    n = sum(tok.pieces[i] != " " for i in tok.encode(long.replace("_ ", ""))) + 3  # pieces + [CLS] [MASK] [SEP]
    cases[long] = f"the sentence is {n} tokens with [CLS], [MASK] and [SEP]; the models read 11"
    for text, says in cases.items():
        with pytest.raises(FillError) as err:
            parse_blank(tok, text, 11)
        assert str(err.value).startswith(says) and "\n" not in str(err.value), (text, str(err.value))
    assert parse_blank(tok, "The  ___ has horns", 11).text == "the ___ has horns"  # case and spaces as the text's


def test_held_out_blanks_hide_one_word_of_one_piece(tok):
    c = pair_corpus(TEXT, "t", tok)
    allowed = allowed_by_hand(tok, TEXT)
    blanks = held_out_blanks(c.documents, tok, allowed, 4, 40, np.random.default_rng(0))  # no sentence cut
    sentences = {tuple(s.ids.tolist()) for d in c.documents for s in d}
    assert len(blanks) == 4
    for b, hidden in blanks:
        assert tuple([*b.left, hidden, *b.right]) in sentences
        assert allowed[hidden] and tok.pieces[hidden].isalpha()
        assert not b.right.size or not tok.is_continuation[b.right[0]]  # the whole word is hidden


def test_next_token_rows_shift_the_targets_and_drop_the_last_real_token():
    ids = np.array([[CLS, 7, 8, SEP, PAD], [CLS, 9, SEP, PAD, PAD]], np.int32)
    inp, targets, lengths = next_token_rows(ids, np.array([4, 3]))
    assert np.array_equal(inp, ids) and lengths.tolist() == [3, 2]
    assert targets[0, :3].tolist() == [7, 8, SEP] and targets[1, :2].tolist() == [9, SEP]


# ------------------------------------------------------------------------------------ topics on [CLS]
CFG = ModelConfig(vocab_size=11, d_model=6, n_layer=2, n_head=2, seq_len=7, attention=AttentionConfig(mask="none"))


def test_a_five_way_head_with_no_mlm_position_matches_float64_finite_differences():
    rng = np.random.default_rng(2)
    m = Encoder(CFG, np.float64, n_classes=5)
    _randomise(m, rng, ((m.layout, m.p), (m.extra_layout, m.q)))
    B, T = 3, CFG.seq_len
    lengths = np.array([T, 4, 6], np.int32)
    ids = rng.integers(4, CFG.vocab_size, (B, T)).astype(np.int32)
    ids[:, 0] = CLS
    batch = (ids, np.zeros((B, T), np.int32), lengths, np.zeros((B, T), bool), ids, np.array([4, 0, 2], np.int32))

    def loss():
        m.run_forward(*batch)
        return m.pair_loss_and_dlogits()

    loss()
    m.backward()
    grads = {**{k: v.copy() for k, v in m.g.items()}, **{k: v.copy() for k, v in m.gq.items()}}
    checked = 0
    for name, x in {**m.p, **m.q}.items():
        flat = x.reshape(-1)
        for i in (range(flat.size) if name in m.q else rng.choice(flat.size, min(3, flat.size), replace=False)):
            old = flat[i]
            flat[i] = old + 1e-6
            up = loss()
            flat[i] = old - 1e-6
            down = loss()
            flat[i] = old
            assert rel_err(grads[name].reshape(-1)[i], (up - down) / 2e-6) < 1e-6, (name, i)
            checked += 1
    assert checked > 80 and np.abs(grads["wte"]).max() > 0  # the [CLS] loss reaches the embeddings


def test_fine_tuning_starts_from_the_pretrained_weights_with_the_scratch_learners_classifier(tok):
    c = pair_corpus(TEXT, "t", tok)
    s = EncoderShape(tok.vocab_size, 12, 8, 1, 2, 4, "token", 0.15, 1e-2, 1)
    pre = Encoder(model_config(s))
    pre.init_weights(np.random.default_rng(9))
    a, b = TopicLearner(s, 3, 0, 1e-2, pre), TopicLearner(s, 3, 0, 1e-2)
    assert np.array_equal(a.model.params, pre.params) and not np.array_equal(b.model.params, pre.params)
    for name in ("wse", "pool.w", "pool.b"):
        assert np.array_equal(a.model.q[name], pre.q[name])
    assert np.array_equal(a.model.q["cls.w"], b.model.q["cls.w"]) and a.model.q["cls.w"].shape == (8, 3)
    data = label_sentences(c.documents, [0, 2], 12)
    assert data.labels.tolist() == [0] * 3 + [2] * 3 and data.ids[0, 0] == CLS
    assert data.ids[0, data.lengths[0] - 1] == SEP
    result = fine_tune(s, pre, ("x", "y", "z"), data, data, 30, 1e-2, 10, 4, 0, tok.pieces)
    assert [c.label for c in result.curves] == ["pretrained", "scratch"] and result.majority == 0.5
    for curve in result.curves:
        assert curve.steps == (0, 10, 20, 30) and len(curve.loss) == 30 and curve.loss[-1] < curve.loss[0]
        assert curve.attention.shape == (2, data.lengths[4])
        np.testing.assert_allclose(curve.attention.sum(axis=1), 1.0, rtol=1e-5)
    assert result.tokens[0] == "[CLS]" and result.label == 2
    for curve in result.curves:  # two classes, half and half: each learner at least learns that (ln 3 at the start)
        assert np.mean(curve.loss[-5:]) < 0.8 < np.log(3) - 0.25 < curve.loss[0]
        assert result.accuracy(curve.label) == curve.accuracy[-1] and 0 <= curve.accuracy[-1] <= 1
    # fine-tuning trains the encoder too, not only the classifier: the [CLS] loss reaches every block
    before = a.model.params.copy()
    a.step(data)
    a.step(data)
    moved = {name: not np.array_equal(v, a.model.layout.views(before)[name]) for name, v in a.model.p.items()}
    assert moved["wte"] and moved["h0.attn.qkv.w"] and moved["h0.mlp.fc.w"]


# ------------------------------------------------------------------------------------ the lesson
@pytest.fixture(scope="module")
def small_run():
    from simulator.lessons import default_config, lesson_for

    cfg = dataclasses.replace(default_config(lesson_for("bert")), steps=4, eval_every=2, eval_pairs=32,
                              probe_pairs=100, fill_blanks=40, topic_steps=6, topic_eval_every=3)
    return cfg, lesson_for("bert").run(cfg)


def test_the_last_frame_carries_both_models_answers_and_the_topic_result(small_run):
    from simulator.lessons import lesson_for

    cfg, frames = small_run
    last = frames[-1]
    assert all(f.gpt_loss is not None for f in frames) and frames[0].fill is None
    assert [a.text for a in last.fill_answers] == list(cfg.fill_sentences)
    again = last.fill.ask(cfg.fill_sentences[0], cfg.fill_top)
    assert again == last.fill_answers[0] and len(again.encoder) == cfg.fill_top
    assert last.fill_score.n == 40 and 0 < last.fill_score.gpt_probability < 1
    t = last.topics
    assert t.names == ("court", "farm", "sea", "travel", "market") and t.n_test > 100
    assert [c.steps for c in t.curves] == [(0, 3, 6)] * 2
    text = lesson_for("bert").summary(cfg, frames)
    assert "fill in the blank" in text and '"the _ has horns"' in text and "[CLS] fine-tuning" in text


def test_a_bad_fill_sentence_in_a_preset_names_its_key(tmp_path):
    from simulator.presets import parse_any_text

    with pytest.raises(PresetError, match=r"^t.yaml:2: fill_sentences: 'the goat': put _ where the hidden word"):
        parse_any_text("kind: bert\nfill_sentences: ['the _ has horns', 'the goat']\n", "t.yaml", tmp_path)
