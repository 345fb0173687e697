"""Sub-word tokenizers: exact round trips on any UTF-8, hand-worked merges, determinism, the checkpoint, the GPT."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from main import main
from simulator.data import builtin_corpus
from simulator.data.bpe import BPETokenizer, train_bpe_merges
from simulator.data.dataset import TextDataset
from simulator.data.subword import bpe_chunks, word_chunks
from simulator.data.tokenizer import DataError
from simulator.data.tokenizers import build_tokenizer, tokenizer_from_json
from simulator.data.wordpiece import SPECIALS, WordPieceTokenizer, base_pieces, base_size, train_wordpiece
from simulator.presets import PresetError, load_preset, override, parse_preset_text

ROOT = Path(__file__).resolve().parent.parent

# code points from every plane that holds characters: Latin, Greek, CJK, emoji, private use, controls
_RANGES = [(0x0, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]


def random_texts(n: int, seed: int = 0) -> list[str]:
    """Random strings of arbitrary code points (no surrogates, which UTF-8 cannot hold), mixed with corpus words."""
    rng = np.random.default_rng(seed)
    words = builtin_corpus()[:2000].split(" ")
    out = ["", " ", "\n", "\x00", "🙂", "👩‍👩‍👧", "e\u0301", "  \n\n  ", "the cat", "ŝĥ ĉ 中文 ½ _x_ 9.5"]
    for _ in range(n):
        parts = []
        for _ in range(int(rng.integers(1, 12))):
            if rng.random() < 0.4:
                parts.append(words[int(rng.integers(len(words)))] + " ")
            else:
                lo, hi = _RANGES[int(rng.integers(len(_RANGES)))]
                parts.append(chr(int(rng.integers(lo, hi + 1))))
        out.append("".join(parts))
    return out


@pytest.fixture(scope="module")
def corpus_train():
    text = builtin_corpus()
    return text[:len(text) * 9 // 10]


@pytest.fixture(scope="module", params=["bpe", "wordpiece"])
def trained(request, corpus_train):
    return build_tokenizer(request.param, corpus_train, 512)


def test_pre_tokenizers_cut_any_text_into_chunks_that_add_up_to_it():
    for text in random_texts(300, seed=1):
        assert "".join(bpe_chunks(text)) == text
        assert "".join(word_chunks(text)) == text


def test_round_trip_is_exact_on_arbitrary_utf8_including_characters_never_seen(trained):
    seen = set(builtin_corpus())
    unseen = 0
    for text in random_texts(400, seed=2):
        ids = trained.encode(text)
        assert ids.dtype == np.int32 and (ids.size == 0) == (text == "")
        assert ids.size == 0 or (0 <= ids.min() and ids.max() < trained.vocab_size)
        assert trained.decode(ids) == text
        unseen += any(ch not in seen for ch in text)
    assert unseen > 300  # the byte fallback was exercised, not only the learned tokens


def test_the_built_in_corpus_round_trips_and_gets_shorter(trained, corpus_train):
    ids = trained.encode(corpus_train)
    assert trained.decode(ids) == corpus_train
    assert trained.vocab_size == 512
    assert len(ids) < len(corpus_train)  # sub-word tokens cover more than one character on average


def test_training_is_deterministic_across_runs_and_processes(corpus_train):
    first = BPETokenizer.train(corpus_train, 400)
    assert BPETokenizer.train(corpus_train, 400) == first
    wp = WordPieceTokenizer.train(corpus_train, 420)
    assert WordPieceTokenizer.train(corpus_train, 420) == wp
    # set and dict iteration order depends on string hashing: another hash seed must not change a merge
    code = ("import hashlib; from simulator.data import builtin_corpus; from simulator.data.tokenizers import "
            "build_tokenizer; t = builtin_corpus(); t = t[:len(t) * 9 // 10]; "
            "print(hashlib.sha256((build_tokenizer('bpe', t, 400).to_json() + "
            "build_tokenizer('wordpiece', t, 420).to_json()).encode()).hexdigest())")
    want = hashlib.sha256((first.to_json() + wp.to_json()).encode()).hexdigest()
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED=seed))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == want


def test_bpe_merges_match_a_hand_worked_corpus():
    # chunks: "ab", " ab", " cd", " cd" -> pairs (a,b) 2, (' ',a) 1, (' ',c) 2, (c,d) 2.
    # Ties at count 2 go to the smaller left id: (' ', c) = (32, 99) first, making token 256 = " c".
    # Then (a,b) 2 ties (" c", d) = (256, 100) 2: (97, 98) wins -> 257 = "ab"; then (256, 100) -> " cd";
    # then only (' ', "ab") is left with count 1: below 2, training stops at 259 tokens.
    assert train_bpe_merges("ab ab cd cd", 1000) == [(32, 99), (97, 98), (256, 100)]
    tok = BPETokenizer.train("ab ab cd cd", 1000)
    assert tok.vocab_size == 259 and tok.chars[256:] == (" c", "ab", " cd")
    assert tok.encode(" cd ab").tolist() == [258, 32, 257]
    # vocab_size caps the merges
    assert train_bpe_merges("ab ab cd cd", 257) == [(32, 99)]
    # a pair that overlaps itself: "aaa" has (a,a) twice but only one merge fits, left first
    assert train_bpe_merges("aaa aaa", 257) == [(97, 97)]
    assert BPETokenizer.train("aaa aaa", 257).encode("aaa").tolist() == [256, 97]


def test_wordpiece_merges_match_a_hand_worked_corpus():
    # words ab x3, ae x3, cd x2. Piece counts: a 6, ##b 3, ##e 3, c 2, ##d 2.
    # scores: (a,##b) 3/(6*3) = 1/6, (a,##e) 1/6, (c,##d) 2/(2*2) = 1/2 -> "cd" first though it is rarer.
    # Then ab and ae tie on score and count: the smaller strings ("a", "##b") win -> "ab".
    # Then a 3, ##e 3: (a,##e) 3/9 -> "ae".
    text = "ab ab ab ae ae ae cd cd"
    assert base_pieces(text) == [" ", "a", "c", "##b", "##d", "##e"]
    assert train_wordpiece(text, 1000) == ["cd", "ab", "ae"]
    tok = WordPieceTokenizer.train(text, 1000)
    assert tok.vocab_size == len(SPECIALS) + 256 + 6 + 3 == base_size(text) + 3


def test_wordpiece_marks_continuations_and_matches_longest_first():
    tok = WordPieceTokenizer.train("ab ab ab ae ae ae cd cd", 1000)
    ids = tok.encode("aeb cd\nzq")
    pieces = [tok.pieces[i] for i in ids]
    # "aeb": the longest piece at the start is "ae", then "##b"; "z" and "q" are unknown: their bytes
    assert pieces == ["ae", "##b", " ", "cd", "<0x0A>", "<0x7A>", "<0x71>"]
    assert tok.is_continuation[ids].tolist() == [False, True, False, False, False, False, False]
    assert tok.word_starts("aeb cd\nzq").tolist() == [True, False, True, True, True, True, False]
    assert tok.decode(ids) == "aeb cd\nzq"
    assert "".join(tok.chars[i] for i in tok.encode("aeb cd")) == "aeb cd"  # chars read as the text
    assert tok.special_ids == {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3}
    assert tok.encode("[MASK]").tolist() != [3]  # text never turns into a special token


def test_corpus_wordpiece_has_continuations_and_words_start_where_chunks_do(corpus_train):
    tok = build_tokenizer("wordpiece", corpus_train, 512)
    sentence = "the sleepy foxes watched the children."
    ids = tok.encode(sentence)
    assert tok.is_continuation[ids].any() and not tok.is_continuation[ids[0]]
    assert tok.word_starts(sentence).sum() == len(word_chunks(sentence))


def test_json_records_give_back_equal_tokenizers_and_damage_is_named(trained):
    again = tokenizer_from_json(trained.to_json())
    assert again == trained and type(again) is type(trained)
    text = "ünïcödé 🙂 the cat"
    assert again.encode(text).tolist() == trained.encode(text).tolist()
    with pytest.raises(DataError, match="damaged"):
        tokenizer_from_json('{"type": "bpe", "merges": [[1]]}')
    with pytest.raises(DataError, match="do not exist"):
        tokenizer_from_json('{"type": "bpe", "merges": [[300, 1]]}')
    with pytest.raises(DataError, match="damaged"):
        tokenizer_from_json('{"type": "wordpiece", "base": ["a", "a"], "learned": []}')


def test_dataset_learns_the_tokenizer_on_the_training_split_and_counts_characters_per_token():
    text = "ab ab ab ae ae ae cd cd " * 10 + "zz zz"
    ds = TextDataset(text, 0.1, "tiny", "bpe", 300)
    n_train = len(text) - int(len(text) * 0.1)
    assert ds.tokenizer == BPETokenizer.train(text[:n_train], 300)
    assert ds.tokenizer.decode(ds.val_ids) == text[n_train:]
    assert ds.chars_per_token("val") == pytest.approx((len(text) - n_train) / len(ds.val_ids))
    assert ds.chars_per_token("train") > 1.5
    char = TextDataset(text, 0.1, "tiny")
    assert char.chars_per_token("val") == 1.0


SMALL = """\
name: tok-tiny
model: {{d_model: 16, n_layer: 1, n_head: 2, seq_len: 16}}
optim: {{lr: 0.01, warmup_steps: 0, decay_steps: 500}}
data: {{kind: {kind}, {path}tokenizer: {tokenizer}, vocab_size: {vocab}}}
train: {{steps: 3, batch_size: 4, seed: 3, eval_every: 0, eval_batches: 1, stats_every: 0, checkpoint_every: 0}}
"""


@pytest.mark.parametrize("tokenizer,vocab,expected", [
    ("bpe", 200, "data.vocab_size: 200 is smaller than the 256 tokens bpe starts from"),
    ("wordpiece", 300, "data.vocab_size: 300 is smaller than the 342 tokens wordpiece starts from"),
])
def test_a_vocab_size_below_the_base_alphabet_is_one_line_with_file_and_line(tokenizer, vocab, expected):
    with pytest.raises(PresetError) as err:
        parse_preset_text(SMALL.format(kind="builtin", path="", tokenizer=tokenizer, vocab=vocab), "p.yaml")
    msg = str(err.value)
    assert msg.startswith("p.yaml:4: ") and expected in msg and "\n" not in msg


def test_subwords_with_lines_and_unknown_tokenizers_are_refused_and_char_ignores_vocab_size():
    # a dumped config carries data.vocab_size whatever the tokenizer, so char must accept (and ignore) it
    cfg = parse_preset_text(SMALL.format(kind="builtin", path="", tokenizer="char", vocab=300), "p.yaml")
    assert cfg.data.vocab_size == 300 and cfg.data.tokenizer == "char"
    with pytest.raises(PresetError, match=r"p.yaml:4: data.tokenizer: bpe does not work with data.kind lines"):
        parse_preset_text(SMALL.format(kind="lines", path="", tokenizer="bpe", vocab=300), "p.yaml")
    with pytest.raises(PresetError, match=r"data.tokenizer: 'bpf' is not one of char, bpe, wordpiece \(did you mean"):
        parse_preset_text(SMALL.format(kind="builtin", path="", tokenizer="bpf", vocab=300), "p.yaml")


def test_the_cli_refuses_a_bad_vocab_size_with_exit_2(tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text(SMALL.format(kind="builtin", path="", tokenizer="bpe", vocab=10))
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.vocab_size: 10 is smaller than the 256" in err


@pytest.mark.parametrize("tokenizer", ["bpe", "wordpiece"])
def test_checkpoint_keeps_the_tokenizer_and_sample_needs_no_text(tokenizer, tmp_path, capsys):
    text = tmp_path / "story.txt"
    text.write_text(builtin_corpus()[:20000], encoding="utf-8")
    preset = tmp_path / "p.yaml"
    preset.write_text(SMALL.format(kind="text_file", path=f"path: {text.name}, ", tokenizer=tokenizer, vocab=420))
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "runs"), "--quiet"]) == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    from simulator.checkpoint import load_checkpoint
    with_text = load_checkpoint(run)
    text.unlink()  # the run folder alone, as if copied to another machine
    alone = load_checkpoint(run, need_data=False)
    assert alone.tokenizer == with_text.tokenizer and alone.tokenizer.kind == tokenizer
    capsys.readouterr()
    prompt = "the ünknown 🙂"
    assert main(["sample", "--checkpoint", str(run), "--prompt", prompt, "--max-new", "12", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(prompt)  # a prompt with characters never seen: the byte fallback encodes it


def test_the_gpt_learns_with_bpe_tokens():
    cfg = override(load_preset("tiny-gpt"), **{"data.tokenizer": "bpe", "data.vocab_size": 320,
                                             "model.d_model": 32, "model.seq_len": 32, "train.batch_size": 8,
                                             "train.eval_batches": 2})
    from simulator.session import TrainingSession
    s = TrainingSession(cfg)
    assert s.model.cfg.vocab_size == 320
    start = s.evaluate()
    assert start == pytest.approx(np.log(320), abs=0.1)  # small random weights: a near-uniform guess
    for _ in range(60):
        s.step()
    assert s.evaluate() < start - 1.0


def test_merge_steps_show_each_join_with_its_count_and_score():
    from simulator.data.tokenizer_view import merge_steps
    bpe = merge_steps("bpe", "ab ab cd cd", 1000)
    assert [(m.left, m.right, m.new, m.count, m.token_id) for m in bpe] == [
        (" ", "c", " c", 2, 256), ("a", "b", "ab", 2, 257), (" c", "d", " cd", 2, 258)]
    wp = merge_steps("wordpiece", "ab ab ab ae ae ae cd cd", 1000)
    assert [(m.left, m.right, m.new, m.count) for m in wp] == [("c", "##d", "cd", 2), ("a", "##b", "ab", 3),
                                                                ("a", "##e", "ae", 3)]
    assert [m.score for m in wp] == pytest.approx([2 / 4, 3 / 18, 3 / 9])
    first = base_size("ab ab ab ae ae ae cd cd")
    assert [m.token_id for m in wp] == [first, first + 1, first + 2]


@pytest.mark.parametrize("kind,sizes", [("bpe", [260, 300, 420]), ("wordpiece", [342, 600, 900])])
def test_smaller_vocabularies_are_prefixes_of_one_training_and_split_sentences_coarser(kind, sizes, corpus_train):
    from simulator.data.tokenizer_view import splits_at, tokenizers_at
    toks = tokenizers_at(kind, corpus_train, sizes)
    for n in sizes:  # truncating the largest training gives what a training at that size learns
        assert toks[n] == build_tokenizer(kind, corpus_train, n)
        assert toks[n].vocab_size == n
    sentence = "the sleepy foxes watched the children."
    split = splits_at(kind, corpus_train, sentence, sizes)
    lengths = [len(split[n]) for n in sizes]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] > lengths[-1]
    assert ["".join(p.removeprefix("##") for p in split[n]) for n in sizes] == [sentence] * len(sizes)


def test_the_bpe_preset_loads_and_its_tokens_hold_about_three_characters():
    cfg = load_preset("tiny-gpt-bpe")
    assert (cfg.data.tokenizer, cfg.data.vocab_size) == ("bpe", 512)
    from simulator.data import load_dataset
    ds = load_dataset(cfg.data)
    assert ds.vocab_size == 512 and 2.5 < ds.chars_per_token("val") < 3.5  # what its description says
    assert "ln(512) = 6.2" in cfg.description and abs(np.log(512) - 6.2) < 0.05
