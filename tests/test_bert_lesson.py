"""The BERT lesson: a seed gives the same run, and a person's mistakes are one line naming file, line and key."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.cli import main
from simulator.lessons import check, default_config, lesson_for
from simulator.presets import parse_any_text
from simulator.yamlconfig import PresetError


@pytest.fixture(scope="module")
def small():
    cfg = default_config(lesson_for("bert"))
    return dataclasses.replace(cfg, steps=6, eval_every=3, eval_pairs=32, probe_pairs=100, fill_blanks=32,
                               topic_steps=4, topic_eval_every=2)


def test_a_seed_gives_the_same_run_and_another_seed_another(small):
    run = lesson_for("bert").run
    a, b = run(small), run(small)
    c = run(dataclasses.replace(small, seed=1))
    losses = lambda frames: [(p.mlm_loss, p.pair_loss) for f in frames for p in f.points]  # noqa: E731
    assert losses(a) == losses(b) and losses(a) != losses(c)
    gpt = lambda frames: [f.gpt_loss for f in frames]  # noqa: E731 - the causal GPT beside them, seeded too
    assert gpt(a) == gpt(b) and gpt(a) != gpt(c) and gpt(run(small, 2)) == gpt(a)[:2]
    topics = lambda frames: [c.accuracy for c in frames[-1].topics.curves]  # noqa: E731
    assert topics(a) == topics(b) and a[-1].fill_score == b[-1].fill_score
    assert [f.step for f in a] == list(range(1, 7))
    assert [f.step for f in a if f.points[0].eval is not None] == [1, 3, 6]
    assert run(small, 2) and losses(run(small, 2)) == losses(a)[:4]  # a shorter run is the start of the longer


def test_both_learners_start_from_the_same_weights(small):
    frames = lesson_for("bert").run(small, 1)
    nsp, sop = frames[0].points
    assert nsp.task == "nsp" and sop.task == "sop"
    assert abs(nsp.eval.mlm_loss - sop.eval.mlm_loss) < 0.2  # different held-out pairs, one start


@pytest.mark.parametrize("body, says", [
    ("mask_rate: 1.5\n", "t.yaml:2: mask_rate: must be in (0, 1), got 1.5"),
    ("mask_rate: 0\n", "t.yaml:2: mask_rate: must be in (0, 1), got 0"),
    ("masking: random\n", "t.yaml:2: masking: 'random' is not one of token, whole_word, span"),
    ("tasks: [nsp, mlm]\n", "t.yaml:2: tasks: must be distinct pair tasks of nsp, sop, got ['nsp', 'mlm']"),
    ("seq_len: 200000\n", "t.yaml:2: seq_len: a window of 200000 tokens is larger than the invented-world corpus"),
    ("seq_len: 4\n", "t.yaml:2: seq_len: must be at least 5, got 4"),
    ("corpus: text_file\npath: one.txt\nvocab_size: 400\nstatic_word: null\n",
     "t.yaml:3: path: 'one.txt' has 1 document; NSP draws its negatives from another document"),
    ("vocab_size: 100\n", "t.yaml:2: vocab_size: WordPiece on the invented-world corpus needs vocab_size >= 312"),
    ("n_head: 3\n", "t.yaml:2: n_head: 3 heads do not divide d_model 32"),
    ("fill_sentences: ['the goat']\n", "t.yaml:2: fill_sentences: 'the goat': put _ where the hidden word goes"),
    ("fill_sentences: ['the _ and _']\n", "t.yaml:2: fill_sentences: 'the _ and _': one blank at a time"),
    ("topic_shown: 100000\n", "t.yaml:2: topic_shown: 100000 is not one of the 627 held-out sentences"),
    ("topic_lr: 0\n", "t.yaml:2: topic_lr: must be greater than 0, got 0"),
])
def test_a_mistake_is_one_line_naming_file_line_and_key(tmp_path, capsys, body, says):
    (tmp_path / "one.txt").write_text("The cat sat. Then the dog ran. At last they slept.\n", encoding="utf-8")
    with pytest.raises(PresetError) as err:
        parse_any_text("kind: bert\n" + body, "t.yaml", tmp_path)
    message = str(err.value).replace(f"'{tmp_path}/", "'")
    assert message.startswith(says) and "\n" not in message
    preset = tmp_path / "t.yaml"
    preset.write_text("kind: bert\n" + body, encoding="utf-8")
    assert main(["train", "--preset", str(preset), "--quiet"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert f"{preset}:" in out.err


def test_one_document_is_enough_for_sop(tmp_path):
    (tmp_path / "one.txt").write_text("The cat sat. Then the dog ran. At last they slept.\n", encoding="utf-8")
    cfg = parse_any_text("kind: bert\ncorpus: text_file\npath: one.txt\nvocab_size: 400\ntasks: [sop]\nseq_len: 8\n"
                         "steps: 2\neval_pairs: 4\nbatch_size: 4\nprobe_pairs: 10\nstatic_word: null\n", "t.yaml",
                         tmp_path)
    assert check(cfg) == cfg
    frames = lesson_for("bert").run(cfg)
    assert len(frames) == 2 and "too few to hold any out" in lesson_for("bert").summary(cfg, frames)


def test_static_vs_contextual_reads_the_words_vectors_at_each_layer():
    from simulator.encoder.contextual import contextual_cosines, word_positions
    from simulator.encoder.pairs import tokenize_sentence
    from simulator.encoder.train import EncoderShape, Learner
    from simulator.lessons.bert import load_data

    data = load_data("world", None, 900)
    tok = data.full.tokenizer
    shape = EncoderShape(tok.vocab_size, 24, 16, 2, 2, 4, "token", 0.15, 1e-3, 1)
    model = Learner("nsp", shape, data.train, 0, 0).model
    one, two = "the lazy pigs plough one muddy field near the barn", "at last, the plough has handles"
    same = contextual_cosines(model, tok, (one, one), "plough", 4, 24)
    assert [name for name, _ in same] == ["embedding", "block 1", "block 2", "final norm"]
    assert all(abs(c - 1.0) < 1e-6 for _, c in same)  # one sentence twice: one vector
    cos = dict(contextual_cosines(model, tok, (one, two), "plough", 4, 24))
    # the embedding layer by hand: the word's pieces' token + position + segment 0 rows, averaged
    P, Q = model.p, model.q
    vecs = []
    for s in (one, two):
        pos = word_positions(tok, s, "plough")
        ids = tokenize_sentence(tok, s).ids
        vecs.append(np.mean([P["wte"][ids[p - 1]] + P["wpe"][p] + Q["wse"][0] for p in pos], axis=0))
    a, b = (v.astype(np.float64) for v in vecs)
    assert abs(cos["embedding"] - a @ b / np.linalg.norm(a) / np.linalg.norm(b)) < 1e-6
    assert all(c < 1 - 1e-4 for c in cos.values())  # other words around it: other vectors


def test_static_sentences_must_hold_the_word(tmp_path):
    with pytest.raises(PresetError, match="t.yaml:2: static_sentences: 'the goat' does not hold static_word 'plough'"):
        parse_any_text("kind: bert\nstatic_sentences: ['the plough has handles', 'the goat']\n", "t.yaml", tmp_path)
