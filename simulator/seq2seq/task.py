"""The transduction task: the invented world's sentences and their "translations", with known alignments.

A source sentence is drawn from a topic of the invented world (`simulator.data.world.TOPICS`):

    the [adj] SUBJECT VERB the [adj] OBJECT [near the PLACE]       (English word order: S V O)

with singular or plural nouns and the verb agreeing with its subject. Two targets (`TASKS`):

* translate: a second, invented language with another word order. Every source word but "the" has one
  word of its own in it (a lexicon drawn from the seed, syllable by syllable), articles are dropped,
  adjectives follow their noun, "near" becomes a postposition and the verb goes last (S O V):
      SUBJECT' [adj'] OBJECT' [adj'] [PLACE' near'] VERB'
  so the verb, read third, is written last: the alignment is not monotonic.
* reverse: the source words in reverse order (one vocabulary for both sides).

Each target word comes from one source word (`Pair.align`), which is what a cross-attention map should
find. Word-level tokens: one vocabulary holds the specials, the source words and the target words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.data.world import TOPICS

TASKS = ("translate", "reverse")
PAD, BOS, EOS, SEP = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>")
P_ADJECTIVE, P_PLACE, P_PLURAL = 0.4, 0.4, 0.4
MAX_SOURCE = 10  # the [adj] S V the [adj] O near the PLACE (the target: at most S adj O adj P near V)
MAX_TARGET = {"translate": 7, "reverse": MAX_SOURCE}  # words, before <eos>
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u")


def source_words() -> list[str]:
    """Every word a source sentence can hold, in a fixed order."""
    out = ["the", "near"]
    for t in TOPICS:
        out += [w for n in t.nouns for w in (n.singular, n.plural)]
        out += [w for pair in t.verbs for w in pair]
        out += list(t.adjectives) + [p.split()[-1] for p in t.places]
    return list(dict.fromkeys(out))  # distinct, first occurrence kept


def lexicon(seed: int) -> dict[str, str]:
    """The invented language: one new word (two or three syllables) per source word but "the"."""
    rng = np.random.default_rng([seed, 77])
    taken = set(source_words())
    out = {}
    for w in source_words():
        if w == "the":
            continue
        while True:
            n = 2 + int(rng.random() < 0.3)
            word = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
                           for _ in range(n))
            if word not in taken:
                break
        taken.add(word)
        out[w] = word
    return out


@dataclass(frozen=True)
class Pair:
    """A source sentence, its target, and for each target word the source position it comes from."""

    source: tuple[str, ...]
    target: tuple[str, ...]
    align: tuple[int, ...]  # len(target): index into source


@dataclass(frozen=True)
class Task:
    """A task's vocabulary (word <-> id) and its language."""

    name: str
    words: tuple[str, ...]  # id -> word
    index: dict
    lexicon: dict

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def ids(self, words) -> list[int]:
        return [self.index[w] for w in words]


def make_task(name: str, seed: int) -> Task:
    """The vocabulary of task `name` (one of TASKS); translate's lexicon is drawn from `seed`."""
    lex = lexicon(seed) if name == "translate" else {}
    words = list(SPECIALS) + source_words() + sorted(set(lex.values()))
    return Task(name, tuple(words), {w: i for i, w in enumerate(words)}, lex)


def _phrase(rng, topic) -> tuple[list[str], int, bool]:
    """A noun phrase 'the [adj] noun': its words, where the noun is, whether it is plural."""
    noun = topic.nouns[rng.integers(len(topic.nouns))]
    plural = bool(rng.random() < P_PLURAL)
    words = ["the"]
    if rng.random() < P_ADJECTIVE:
        words.append(topic.adjectives[rng.integers(len(topic.adjectives))])
    words.append(noun.plural if plural else noun.singular)
    return words, len(words) - 1, plural


def draw_source(rng: np.random.Generator) -> tuple[str, ...]:
    """One source sentence (see the module's docstring)."""
    topic = TOPICS[rng.integers(len(TOPICS))]
    subj, _, plural = _phrase(rng, topic)
    verb = topic.verbs[rng.integers(len(topic.verbs))][1 if plural else 0]
    obj, _, _ = _phrase(rng, topic)
    words = subj + [verb] + obj
    if topic.places and rng.random() < P_PLACE:
        words += ["near", "the", topic.places[rng.integers(len(topic.places))].split()[-1]]
    return tuple(words)


def transduce(task: Task, source: tuple[str, ...]) -> Pair:
    """The target of `source` under `task`, with its alignment."""
    if task.name == "reverse":
        n = len(source)
        return Pair(source, tuple(reversed(source)), tuple(range(n - 1, -1, -1)))
    # translate: find the parts (the verb follows the subject's noun; 'near the P' ends the sentence)
    lex = task.lexicon
    verb_at = next(i for i in range(2, len(source)) if source[i - 1] != "the" and source[i] != "the"
                   and source[i + 1] == "the")
    place_at = source.index("near") if "near" in source else len(source)

    def noun_phrase(lo: int, hi: int) -> list[int]:  # 'the [adj] noun' -> noun, [adj]
        return [hi - 1] + list(range(lo + 1, hi - 1))

    order = noun_phrase(0, verb_at) + noun_phrase(verb_at + 1, place_at)
    if place_at < len(source):
        order += [place_at + 2, place_at]
    order.append(verb_at)
    return Pair(source, tuple(lex[source[i]] for i in order), tuple(order))


def draw_pairs(task: Task, n: int, rng: np.random.Generator, avoid: frozenset = frozenset()) -> list[Pair]:
    """n pairs whose sources are not in `avoid` (the held-out sentences)."""
    out = []
    while len(out) < n:
        s = draw_source(rng)
        if s not in avoid:
            out.append(transduce(task, s))
    return out


def held_out(task: Task, n: int, rng: np.random.Generator) -> list[Pair]:
    """n pairs of distinct source sentences, the evaluation set (training never draws them)."""
    seen, out = set(), []
    while len(out) < n:
        s = draw_source(rng)
        if s not in seen:
            seen.add(s)
            out.append(transduce(task, s))
    return out


# ------------------------------------------------------------------------------------------------ batches
@dataclass
class EncDecBatch:
    """Pairs as the encoder-decoder reads them: source (B, Ts) and `<bos> target` -> `target <eos>` (B, Tt)."""

    src: np.ndarray  # (B, Ts) int32, padded with PAD
    src_len: np.ndarray  # (B,) int32
    tgt_in: np.ndarray  # (B, Tt) int32: <bos> y1 .. ym, padded
    tgt_out: np.ndarray  # (B, Tt) int32: y1 .. ym <eos>, padded
    tgt_len: np.ndarray  # (B,) int32: m + 1
    weights: np.ndarray  # (B Tt,) float: 1 / (number of target tokens) on each, 0 on padding
    align: np.ndarray  # (B, Tt) int32: source position of each target word, -1 for <eos> and padding


def pack_encdec(task: Task, pairs: list[Pair], Ts: int, Tt: int) -> EncDecBatch:
    B = len(pairs)
    src = np.full((B, Ts), PAD, np.int32)
    tin, tout = np.full((B, Tt), PAD, np.int32), np.full((B, Tt), PAD, np.int32)
    align = np.full((B, Tt), -1, np.int32)
    src_len, tgt_len = np.zeros(B, np.int32), np.zeros(B, np.int32)
    for r, p in enumerate(pairs):
        n, m = len(p.source), len(p.target)
        src[r, :n] = task.ids(p.source)
        y = task.ids(p.target)
        tin[r, :m + 1] = [BOS] + y
        tout[r, :m + 1] = y + [EOS]
        align[r, :m] = p.align
        src_len[r], tgt_len[r] = n, m + 1
    real = (np.arange(Tt)[None, :] < tgt_len[:, None]).reshape(-1)
    return EncDecBatch(src, src_len, tin, tout, tgt_len, real / real.sum(), align)


@dataclass
class PromptBatch:
    """Pairs as the decoder-only GPT reads them: `source <sep> target <eos>`, the loss on the target only."""

    ids: np.ndarray  # (B, T) int32: source <sep> y1 .. ym (the input), padded
    targets: np.ndarray  # (B, T) int32: the next token at each position
    lengths: np.ndarray  # (B,) int32 real input tokens: n + 1 + m
    src_len: np.ndarray  # (B,) int32: n (the <sep> sits at position n and predicts y1)
    weights: np.ndarray  # (B T,) float: 1 / (number of target tokens) at positions n .. n + m, else 0
    align: np.ndarray  # (B, T) int32: at position n + j, the source position of y_{j+1}; else -1


def pack_prompt(task: Task, pairs: list[Pair], T: int) -> PromptBatch:
    B = len(pairs)
    ids, targets = np.full((B, T), PAD, np.int32), np.full((B, T), PAD, np.int32)
    align = np.full((B, T), -1, np.int32)
    lengths, src_len = np.zeros(B, np.int32), np.zeros(B, np.int32)
    w = np.zeros((B, T))
    for r, p in enumerate(pairs):
        n, m = len(p.source), len(p.target)
        row = task.ids(p.source) + [SEP] + task.ids(p.target) + [EOS]  # n + m + 2 tokens
        ids[r, :n + m + 1] = row[:-1]
        targets[r, :n + m + 1] = row[1:]
        w[r, n:n + m + 1] = 1.0
        align[r, n:n + m] = p.align
        lengths[r], src_len[r] = n + m + 1, n
    w = w.reshape(-1)
    return PromptBatch(ids, targets, lengths, src_len, w / w.sum(), align)
