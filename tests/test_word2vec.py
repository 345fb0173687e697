"""word2vec: the negative-sampling passes against float64 finite differences and a numpy reference, the noise
and subsampling distributions, reproducibility, analogies the trained vectors solve, and one-line mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.cli import main
from simulator.data.world import RELATIONS, world_corpus
from simulator.presets import PresetError, parse_any_text
from simulator.text.tfidf import words
from simulator.text.word2vec import (
    Word2Vec,
    Word2VecParams,
    analogy_accuracy,
    analogy_hits,
    build_vocab,
    draw_negatives,
    encode,
    keep_probability,
    nearest,
    noise_distribution,
    pair_count,
    pca_2d,
)
from simulator.text.word2vec_kernels import cbow_pass, skipgram_pass

EPS = 1e-6


# ------------------------------------------------------------------------------ a plain numpy reference
def nls(s):
    """-log sigmoid(s)."""
    return np.logaddexp(0.0, -s)


def ns_loss(h, w_out, positive, negatives):
    loss = nls(w_out[positive] @ h)
    for n in negatives:
        if n != positive:
            loss += nls(-(w_out[n] @ h))
    return loss


def ref_skipgram(w_in, w_out, ids, radius, negatives, weights):
    """sum_i weights[i] * sum over i's pairs of the negative-sampling loss, pair by pair in the kernel's order."""
    loss, p, n = 0.0, 0, len(ids)
    for i in range(n):
        for j in range(max(0, i - radius[i]), min(n, i + radius[i] + 1)):
            if j != i:
                loss += weights[i] * ns_loss(w_in[ids[i]], w_out, ids[j], negatives[p])
                p += 1
    return loss


def ref_cbow(w_in, w_out, ids, radius, negatives, weights):
    """sum_i weights[i] * loss of the mean context vector predicting ids[i]."""
    loss, n = 0.0, len(ids)
    for i in range(n):
        ctx = [ids[j] for j in range(max(0, i - radius[i]), min(n, i + radius[i] + 1)) if j != i]
        if ctx:
            loss += weights[i] * ns_loss(w_in[ctx].mean(axis=0), w_out, ids[i], negatives[i])
    return loss


def problem(model, seed=0, V=7, D=5, N=9, K=3, window=3):
    """Odd shapes; negatives that repeat and that hit the positive word (both must be handled)."""
    rng = np.random.default_rng(seed)
    w_in, w_out = rng.normal(0, 0.7, (V, D)), rng.normal(0, 0.7, (V, D))
    ids = rng.integers(0, V, N)
    radius = rng.integers(1, window + 1, N)
    rows = pair_count(radius) if model == "skipgram" else N
    negatives = rng.integers(0, V, (rows, K))
    negatives[0, :2] = negatives[0, 2]  # a repeated negative
    return w_in, w_out, ids, radius, negatives


def run_pass(model, w_in, w_out, ids, radius, negatives, scale):
    """(loss, dw_in, dw_out) of the kernel in gradient mode."""
    gin, gout = np.zeros_like(w_in), np.zeros_like(w_out)
    dh = np.zeros(w_in.shape[1])
    if model == "skipgram":
        loss = skipgram_pass(gin, gout, dh, w_in, w_out, ids, radius, negatives, scale)
    else:
        loss = cbow_pass(gin, gout, np.zeros(w_in.shape[1]), dh, w_in, w_out, ids, radius, negatives, scale)
    return loss, gin, gout


REF = {"skipgram": ref_skipgram, "cbow": ref_cbow}


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_pass_gradient_matches_float64_finite_differences(model, seed):
    w_in, w_out, ids, radius, negatives = problem(model, seed)
    negatives[0, 0] = ids[1] if model == "skipgram" else ids[0]  # equal to the first positive word: skipped
    weights = np.random.default_rng(seed + 10).normal(size=len(ids))  # a random upstream weight per position
    loss, gin, gout = run_pass(model, w_in, w_out, ids, radius, negatives, np.ones(len(ids)))
    assert loss == pytest.approx(REF[model](w_in, w_out, ids, radius, negatives, np.ones(len(ids))), rel=1e-12)
    _, gin, gout = run_pass(model, w_in, w_out, ids, radius, negatives, weights)
    assert np.abs(gin).max() > 0.01 and np.abs(gout).max() > 0.01
    for w, g in ((w_in, gin), (w_out, gout)):
        num = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + EPS
            up = REF[model](w_in, w_out, ids, radius, negatives, weights)
            w[idx] = old - EPS
            down = REF[model](w_in, w_out, ids, radius, negatives, weights)
            w[idx] = old
            num[idx] = (up - down) / (2 * EPS)
        err = np.abs(g - num) / np.maximum(1.0, np.maximum(np.abs(g), np.abs(num)))
        assert err.max() < 1e-6, err.max()


def test_a_stream_of_one_word_has_no_pairs():
    w_in, w_out, _, _, _ = problem("skipgram")
    for model in ("skipgram", "cbow"):
        loss, gin, gout = run_pass(model, w_in, w_out, np.array([3]), np.array([2]), np.zeros((1, 3), np.int64),
                                   np.ones(1))
        assert loss == 0.0 and not gin.any() and not gout.any()


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_the_sgd_mode_steps_by_minus_lr_times_that_gradient(model):
    # one prediction whose targets are all different: word2vec's in-place step is exactly w - lr * dL/dw
    w_in, w_out, _, _, _ = problem(model)
    ids = np.array([1, 4, 2]) if model == "cbow" else np.array([1, 4])
    radius = np.array([0, 1, 0]) if model == "cbow" else np.array([1, 0])
    negatives = np.array([[0, 3, 5]] * len(ids))
    lr = 0.3
    _, gin, gout = run_pass(model, w_in, w_out, ids, radius, negatives, np.ones(len(ids)))
    a_in, a_out = w_in.copy(), w_out.copy()
    h, dh = np.zeros(w_in.shape[1]), np.zeros(w_in.shape[1])
    scale = np.full(len(ids), -lr)
    if model == "skipgram":
        skipgram_pass(a_in, a_out, dh, a_in, a_out, ids, radius, negatives, scale)
    else:
        cbow_pass(a_in, a_out, h, dh, a_in, a_out, ids, radius, negatives, scale)
    np.testing.assert_allclose(a_in, w_in - lr * gin, rtol=0, atol=1e-14)
    np.testing.assert_allclose(a_out, w_out - lr * gout, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------- sampling distributions
def test_noise_distribution_and_draws_follow_count_to_the_three_quarters():
    counts = np.array([9547, 1807, 300, 41, 7, 1])
    ref = [c ** 0.75 for c in counts.tolist()]
    ref = np.array([r / sum(ref) for r in ref])
    p = noise_distribution(counts)
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    assert p[0] / p[-1] < counts[0] / counts[-1]  # flatter than the counts: rare words drawn more often
    n = 400_000
    drawn = draw_negatives(np.random.default_rng(3), np.cumsum(p), (n,))
    freq = np.bincount(drawn, minlength=len(p)) / n
    chi2 = float((n * (freq - p) ** 2 / p).sum())
    assert chi2 < 25.0, chi2  # 5 degrees of freedom: P(chi2 > 25) ~ 1e-4


def test_subsampling_keeps_words_by_word2vecs_formula():
    counts = np.array([9547, 1807, 300, 41, 7, 1])
    t, total = 1e-3, counts.sum()
    ref = np.array([min(1.0, math.sqrt(t / (c / total)) + t / (c / total)) for c in counts.tolist()])
    np.testing.assert_allclose(keep_probability(counts, t), ref, rtol=1e-12)
    assert keep_probability(counts, 0.0).tolist() == [1.0] * len(counts)
    # the trainer keeps each occurrence with that chance: one epoch's kept positions against the expectation
    toks = words(world_corpus())
    vocab = build_vocab(toks)
    ids = encode(toks, vocab)
    model = Word2Vec(ids, vocab, Word2VecParams(dim=4, epochs=1, sample=t), chunks=1)
    stats = model.train_chunk()
    keep = keep_probability(vocab.counts, t)[ids]
    expected, sd = keep.sum(), math.sqrt((keep * (1 - keep)).sum())
    assert abs(stats.kept - expected) < 5 * sd and stats.kept < 0.6 * len(ids)


def test_vocabulary_and_pairs():
    vocab = build_vocab(["b", "a", "c", "a", "b", "a", "d"], min_count=2)
    assert vocab.words == ("a", "b") and vocab.counts.tolist() == [3, 2]
    assert encode(["d", "b", "a", "c"], vocab).tolist() == [1, 0]
    radius = np.array([2, 1, 3, 1])
    assert pair_count(radius) == sum(len([j for j in range(max(0, i - r), min(4, i + r + 1)) if j != i])
                                     for i, r in enumerate(radius))


# ----------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def world():
    toks = words(world_corpus())
    vocab = build_vocab(toks)
    return vocab, encode(toks, vocab)


def test_the_same_seed_gives_the_same_vectors(world):
    vocab, ids = world
    ids = ids[:6000]
    runs = []
    for seed in (5, 5, 6):
        m = Word2Vec(ids, vocab, Word2VecParams(dim=12, epochs=2, seed=seed), chunks=3)
        m.train()
        runs.append((m.w_in.copy(), m.w_out.copy()))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])
    # a lesson stopped after k steps is the start of the whole run
    from simulator.lessons.word2vec import Word2VecConfig, run
    cfg = Word2VecConfig(dim=8, epochs=1, steps=4)
    part, whole = run(cfg, 2), run(cfg)
    assert [f.loss for f in part] == [f.loss for f in whole[:2]] and len(whole) == 4
    assert part[-1].vectors is not None and whole[1].vectors is None and whole[-1].vectors.shape == (len(vocab), 8)


def accuracy(vectors, vocab):
    return {rel: (lambda h: h[0] / h[1])(analogy_hits(vectors, vocab, pairs)) for rel, pairs in RELATIONS.items()}


def test_trained_skipgram_vectors_solve_the_worlds_analogies(world):
    # the shipped preset's training (about a second). Measured with seeds 0-3: gender 0.52-0.67,
    # plural 0.16-0.20, capital 0.98-1.00; chance is about 1 / 258 for each.
    vocab, ids = world
    m = Word2Vec(ids, vocab, Word2VecParams(dim=50, window=3, epochs=5, lr=0.05, seed=0), chunks=5)
    before = accuracy(m.w_in, vocab)
    stats = m.train()
    after = accuracy(m.w_in, vocab)
    assert max(before.values()) < 0.05, before
    assert after["gender"] > 0.35 and after["plural"] > 0.1 and after["capital"] > 0.8, after
    assert stats[-1].loss < 0.9 * stats[0].loss < 0.9 * 6 * math.log(2)  # 6 ln 2: w_out starts at zero
    assert stats[-1].lr == pytest.approx(0.05 * 1e-4)
    assert [w for w, _ in nearest(m.w_in, vocab, "tolm", 3)] != [] and \
        {w for w, _ in nearest(m.w_in, vocab, "tolm", 8)} & {c for _, c in RELATIONS["capital"]}


def test_trained_cbow_vectors_solve_analogies_too(world):
    # measured with seeds 1-2: gender 0.63-0.74, plural 0.19-0.20, capital 0.79-0.91
    vocab, ids = world
    m = Word2Vec(ids, vocab, Word2VecParams(model="cbow", dim=50, window=3, epochs=10, lr=0.1, seed=1), chunks=2)
    m.train()
    after = accuracy(m.w_in, vocab)
    assert after["gender"] > 0.4 and after["capital"] > 0.5, after


def test_analogy_accuracy_matches_a_query_by_query_reference():
    # vectors where the relations hold up to noise, so some analogies are solved and some are not
    vocab = build_vocab([w for rel in RELATIONS.values() for pair in rel for w in pair] + ["the", "of"])
    index = vocab.index
    rng = np.random.default_rng(1)
    offsets = {rel: rng.normal(size=9) for rel in RELATIONS}
    v = rng.normal(size=(len(vocab), 9))
    for rel, pairs in RELATIONS.items():
        for a, b in pairs:
            v[index[b]] = v[index[a]] + offsets[rel] + rng.normal(0, 0.9, 9)
    got = analogy_accuracy(v, vocab, RELATIONS)
    e = v / np.linalg.norm(v, axis=1, keepdims=True)
    for (rel, hits, asked), pairs in zip(got, RELATIONS.values(), strict=True):
        ref = total = 0
        for a, b in pairs:
            for c, d in pairs:
                if a != c:
                    sc = e @ (e[index[b]] - e[index[a]] + e[index[c]])
                    sc[[index[a], index[b], index[c]]] = -np.inf
                    ref += int(np.argmax(sc)) == index[d]
                    total += 1
        assert (hits, asked) == (ref, total) and 0 < hits < asked, rel
        assert analogy_hits(v, vocab, pairs) == (hits, asked)


def test_pca_map_is_the_top_two_principal_axes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 7)) * np.array([5.0, 3.0, 1.0, 0.5, 0.4, 0.3, 0.2])
    coords, share = pca_2d(x)
    centered = x - x.mean(0)
    u, sv, _ = np.linalg.svd(centered, full_matrices=False)
    ref = u[:, :2] * sv[:2]
    for j in range(2):  # equal up to each axis's sign, which pca_2d fixes: its largest coordinate is positive
        assert np.allclose(np.abs(coords[:, j]), np.abs(ref[:, j]))
        assert coords[np.argmax(np.abs(coords[:, j])), j] > 0
    np.testing.assert_allclose(share, sv[:2] ** 2 / (sv ** 2).sum())


def test_the_lessons_frames_and_summary_report_what_was_measured():
    from simulator.lessons.word2vec import FREQUENT, Word2VecConfig, run, summary
    cfg = Word2VecConfig(dim=16, epochs=1, steps=3, static_sentences=())
    frames = run(cfg)
    text = summary(cfg, frames)
    last = frames[-1]
    assert [f.step for f in frames] == [1, 2, 3] and frames[0].words_done < last.words_done
    for rel, hits, asked in last.accuracy:
        assert f"{rel:<8} {hits / asked:6.1%}  ({hits} of {asked})" in text
    for w, nbs in last.neighbours:
        assert f"{w:>10}: {nbs[0][0]} {nbs[0][1]:.2f}" in text and len(nbs) == cfg.k
    assert [m[0] for m in last.maps] == ["gender", "plural", "capital", FREQUENT]
    for name, ws, coords, share in last.maps:
        assert coords.shape == (len(ws), 2) and 0 < share[1] <= share[0] < 1
        assert len(ws) == 2 * len(RELATIONS[name]) if name != FREQUENT else len(ws) == 30
    assert "word2vec gives 'plough' one vector whatever its sentence" in text and text.count("plough") >= 3


def test_a_persons_text_file_trains_and_says_which_relations_it_lacks(tmp_path):
    from simulator.lessons import check
    from simulator.lessons.word2vec import FREQUENT, Word2VecConfig, run, summary
    rng = np.random.default_rng(0)
    animals, places = ("cat", "dog", "fox", "owl"), ("mat", "rug", "log", "bed")
    text = ". ".join(f"the {rng.choice(animals)} sat on the {rng.choice(places)}" for _ in range(300)) + ".\n"
    (tmp_path / "story.txt").write_text(text, encoding="utf-8")
    cfg = check(Word2VecConfig(corpus="text_file", path=str(tmp_path / "story.txt"), dim=8, epochs=3, steps=2,
                               neighbours=("cat",), k=3, static_word="dog"))
    frames = run(cfg)
    out = summary(cfg, frames)
    assert [m[0] for m in frames[-1].maps] == [FREQUENT] and len(frames[-1].maps[0][1]) == 11  # all its words
    assert out.count("no pair of this relation in the text") == 3 and "11 in the vocabulary" in out
    assert "word2vec gives 'dog' one vector whatever its sentence" in out


# ----------------------------------------------------------------------------------------------- mistakes
@pytest.mark.parametrize("body, says", [
    ("window: 0\n", "t.yaml:2: window: must be at least 1, got 0"),
    ("dim: 0\n", "t.yaml:2: dim: must be at least 1, got 0"),
    ("negative: 0\n", "t.yaml:2: negative: must be at least 1, got 0"),
    ("model: glove\n", "t.yaml:2: model: 'glove' is not one of skipgram, cbow"),
    ("corpus: text_file\npath: few.txt\nneighbours: []\nstatic_word: null\n",
     "t.yaml:3: path: 'few.txt' has 4 words, fewer than one window of 7 (window 3 on each side)"),
    ("neighbours: [queen, kitten]\n", "t.yaml:2: neighbours: 'kitten' is not a word of the invented-world corpus"),
    ("static_sentences: ['the king rests', 'the goat']\n",
     "t.yaml:2: static_sentences: 'the king rests' does not hold static_word 'plough'"),
])
def test_a_mistake_is_one_line_naming_file_line_and_key(tmp_path, capsys, body, says):
    (tmp_path / "few.txt").write_text("a few words only\n", encoding="utf-8")
    with pytest.raises(PresetError) as err:
        parse_any_text("kind: word2vec\n" + body, "t.yaml", tmp_path)
    message = str(err.value).replace(f"'{tmp_path}/", "'")
    assert message.startswith(says) and "\n" not in message
    preset = tmp_path / "t.yaml"
    preset.write_text("kind: word2vec\n" + body, encoding="utf-8")
    assert main(["train", "--preset", str(preset), "--quiet"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert f"{preset}:" in out.err
