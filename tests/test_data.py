"""Data: the character tokenizer, the built-in corpus, splits, batch sampling and bad text files."""

from __future__ import annotations

import collections
import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator.config import DataConfig
from simulator.data import CharTokenizer, DataError, TextDataset, builtin_corpus, load_dataset, read_text_file
from simulator.data.corpus import generate_corpus

REPO = Path(__file__).resolve().parent.parent


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_round_trip_and_sorted_vocabulary():
    text = "héllo, wörld!\n\tzz ✓"
    tok = CharTokenizer.from_text(text)
    assert list(tok.chars) == sorted(set(text)) and tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert [tok.chars[i] for i in ids] == list(text)
    assert tok.decode(ids) == text and tok.decode([]) == "" and tok.encode("").shape == (0,)
    again = CharTokenizer.from_json(tok.to_json())
    assert again == tok and again.decode(ids) == text


def test_encode_names_the_first_unknown_character_and_its_position():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(DataError, match=r"^character 'Z' \(U\+005A\) at position 3 is not in the vocabulary of 4 "):
        tok.encode("ab Zc")
    with pytest.raises(DataError, match="token id 4 is outside the vocabulary of 4 characters"):
        tok.decode([0, 4])
    with pytest.raises(DataError, match="not a character tokenizer"):
        CharTokenizer.from_json('{"type": "bpe"}')


# -------------------------------------------------------------------------------------------- corpus
def test_builtin_corpus_is_deterministic_across_calls_and_processes():
    text = builtin_corpus()
    assert sha(text) == sha(builtin_corpus()) == sha(generate_corpus())  # cached and freshly generated
    script = "import hashlib; from simulator.data.corpus import generate_corpus; " \
             "print(hashlib.sha256(generate_corpus().encode('utf-8')).hexdigest())"
    for seed in ("1", "2"):  # a different string-hash order must not change the text
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == sha(text)
    assert sha(generate_corpus(seed=1)) != sha(text)  # the seed is what fixes it


def test_builtin_corpus_size_alphabet_and_entropy():
    text = builtin_corpus()
    assert 200_000 <= len(text.encode("utf-8")) <= 400_000
    chars = set(text)
    assert 40 <= len(chars) <= 65
    assert chars <= set("abcdefghijklmnopqrstuvwxyz0123456789 \n.,!?'\":;-+=()")
    assert set("abcdefghijklmnopqrstuvwxyz") <= chars
    counts = collections.Counter(text)
    h = -sum(c / len(text) * math.log(c / len(text)) for c in counts.values())
    assert 2.5 < h < math.log(len(chars))  # below a uniform guess, far above what context allows (next test)


def test_builtin_corpus_has_structure_that_context_predicts():
    # A 3-character-context count model fitted on train must beat the unigram entropy by far on val:
    # the structure is in the conditional distributions, which is what a model can learn.
    ds = load_dataset(DataConfig(kind="builtin"))
    V = ds.vocab_size

    def contexts(ids):
        ids = ids.astype(np.int64)
        return (ids[:-3] * V + ids[1:-2]) * V + ids[2:-1], ids[3:]

    c, nxt = contexts(ds.train_ids)
    joint = np.bincount(c * V + nxt, minlength=V ** 4).reshape(V ** 3, V).astype(np.float64)
    alpha = 0.1
    vc, vn = contexts(ds.val_ids)
    p = (joint[vc, vn] + alpha) / (joint[vc].sum(axis=1) + alpha * V)
    cross_entropy = float(-np.log(p).mean())
    assert cross_entropy < 0.6 * ds.unigram_entropy()


# ----------------------------------------------------------------------------------- dataset, batches
def test_splits_follow_val_fraction_and_validation_is_the_tail():
    ds = load_dataset(DataConfig(kind="builtin", val_fraction=0.2))
    text = builtin_corpus()
    n_val = int(len(text) * 0.2)
    assert len(ds.val_ids) == n_val and len(ds.train_ids) == len(text) - n_val
    assert ds.train_ids.dtype == np.int32 and ds.val_ids.dtype == np.int32
    assert ds.tokenizer.decode(ds.val_ids) == text[-n_val:]
    assert ds.tokenizer.decode(ds.train_ids) == text[:-n_val]


def test_unigram_entropy_matches_a_hand_count():
    ds = TextDataset("aaab" * 5 + "cc", 0.1, "tiny")  # 22 chars: train is the first 20 = aaab x 5
    p = np.array([15, 5]) / 20
    assert ds.unigram_entropy() == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-12)


@pytest.mark.parametrize("B,T", [(3, 5), (1, 1), (4, 7)])
def test_batches_are_deterministic_windows_with_shifted_targets(B, T):
    ds = load_dataset(DataConfig(kind="builtin"))
    for split in ("train", "val"):
        ids = ds.split(split)
        x, y = np.zeros((B, T), np.int32), np.zeros((B, T), np.int32)
        x_again, y_again = np.zeros_like(x), np.zeros_like(y)
        ds.sample_batch(split, np.random.default_rng(5), x, y)
        ds.sample_batch(split, np.random.default_rng(5), x_again, y_again)
        assert np.array_equal(x, x_again) and np.array_equal(y, y_again)
        assert np.array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one token
        starts = np.random.default_rng(5).integers(0, len(ids) - T, size=B)  # the same draws, by hand
        for b in range(B):
            assert np.array_equal(x[b], ids[starts[b]:starts[b] + T])
            assert y[b, -1] == ids[starts[b] + T]


def test_batches_differ_as_the_rng_advances_and_reach_both_ends_of_the_split():
    ds = TextDataset("abcdefghijklmnopqrst", 0.25, "text")  # train: a..o, 15 distinct tokens
    rng = np.random.default_rng(0)
    x, y = np.zeros((64, 4), np.int32), np.zeros((64, 4), np.int32)
    ds.sample_batch("train", rng, x, y)
    first_x, first_y = x.copy(), y.copy()
    ds.sample_batch("train", rng, x, y)
    assert not np.array_equal(first_x, x)
    # windows start at 0 .. n - T - 1 = 10: every start is drawn, and the last target is the split's last token
    starts = {ds.tokenizer.chars[i] for i in np.concatenate([first_x[:, 0], x[:, 0]])}
    assert starts == set("abcdefghijk")
    assert ds.tokenizer.chars[max(first_y.max(), y.max())] == "o"


def test_a_split_shorter_than_a_window_is_a_clear_error():
    ds = TextDataset("abcdefghij" * 2, 0.25, "'tiny.txt'")  # 15 train, 5 val tokens
    x, y = np.zeros((2, 5), np.int32), np.zeros((2, 5), np.int32)
    ds.sample_batch("train", np.random.default_rng(0), x, y)
    with pytest.raises(DataError, match=r"^the validation split of 'tiny.txt' has 5 tokens, fewer than "
                                        r"model.seq_len \+ 1 = 6"):
        ds.sample_batch("val", np.random.default_rng(0), x, y)
    with pytest.raises(DataError, match="the training split of 'tiny.txt' has 15 tokens"):
        ds.check_fits(15)


# -------------------------------------------------------------------------------------------- text files
def test_text_file_dataset(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\ufeff" + "one two three\n" * 20, encoding="utf-8")
    ds = load_dataset(DataConfig(kind="text_file", path=str(path)))
    assert "\ufeff" not in ds.tokenizer.chars  # the byte-order mark is not text
    assert ds.tokenizer.decode(np.concatenate([ds.train_ids, ds.val_ids])) == "one two three\n" * 20
    assert ds.source == str(path)


@pytest.mark.parametrize("content,expected", [
    (None, "does not exist"),
    (b"", "is empty"),
    ("dir", "is a folder, not a text file"),
    (b"ok\nok\n\xc3\x28", "is not UTF-8 text: byte 0xc3 at byte offset 6 (line 3) cannot be decoded"),
])
def test_bad_text_files_say_what_is_wrong(tmp_path, content, expected):
    path = tmp_path / "data.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(kind="text_file", path=str(path)))
    assert str(info.value).startswith(f"data file '{path}' {expected}"), str(info.value)
    with pytest.raises(DataError):
        read_text_file(path)
