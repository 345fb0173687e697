"""Sub-word tokenizers as a lesson: the merges BPE or WordPiece learns, one by one, and a sentence split at
several vocabulary sizes (`kind: tokenizers`).

The numbers come from `simulator/data/tokenizer_view.py`, the same code that trains the GPT's
`data.tokenizer: bpe | wordpiece`. One frame per learned token; the summary is the merge table and
the splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Optional

from simulator.data.dataset import read_text_file
from simulator.data.tokenizer import DataError
from simulator.data.tokenizer_view import MergeStep, merge_steps, splits_at
from simulator.data.tokenizers import min_vocab_size
from simulator.i18n import N_, _
from simulator.lessons import Lesson, register
from simulator.lessons.worked_examples import ExplainError
from simulator.rules import non_empty, one_of, positive_int
from simulator.sampling import printable
from simulator.textcols import heading
from simulator.yamlconfig import ParseContext

SUBWORD_KINDS = ("bpe", "wordpiece")
CORPORA = ("builtin", "world", "text_file")


def lesson_text(corpus: str, path: str | None = None) -> tuple[str, str]:
    """(text, how a person names it) of the lesson's corpus; ExplainError for a file that cannot be read."""
    if corpus == "builtin":
        from simulator.data.corpus import builtin_corpus
        return builtin_corpus(), _("the built-in corpus")
    if corpus == "world":
        from simulator.data.world import world_corpus
        return world_corpus(), _("the invented-world corpus")
    if not path:
        raise ExplainError(_("corpus text_file needs a path (the text file to learn from)"))
    try:
        return read_text_file(os.path.expanduser(path)), f"'{path}'"
    except DataError as e:
        raise ExplainError(str(e)) from None


def _check_learned(n: int, what: str) -> None:
    if n < 0:
        raise ExplainError(_("{what} {n} is negative: it counts tokens learned on top of the base alphabet").format(
                               what=what, n=n))


def merges_text(kind: str, text: str, where: str, merges: int, steps: list[MergeStep] | None = None) -> str:
    """The table of the first `merges` learned tokens: which two tokens each step joined, how often the pair
    occurred (and WordPiece's score); `steps` when already computed."""
    _check_learned(merges, "merges")
    base = min_vocab_size(kind, text)
    steps = merge_steps(kind, text, base + merges) if steps is None else steps
    head = (_("{kind} on {where} ({n:,} characters): {base} base tokens, then each step joins the most frequent "
              "adjacent pair (ties: smaller ids)") if kind == "bpe" else
            _("{kind} on {where} ({n:,} characters): {base} base tokens, then each step joins the pair with the "
              "highest count(ab) / (count(a) count(b)) (ties: higher count, smaller strings)"))
    lines = [head.format(kind=kind, where=where, n=len(text), base=base),
             heading((_("step"), 5, ">"), (_("id"), 5, ">"), ("", 0, "<"), (_("left"), 12, "<"), (_("right"), 12, "<"),
                     (_("new token"), 16, "<"), (_("count"), 7, ">"))
             + ("  " + _("score") if kind == "wordpiece" else "")]
    for m in steps:
        row = (f"{m.index + 1:>5} {m.token_id:>5}  {printable(m.left):<12} {printable(m.right):<12} "
               f"{printable(m.new):<16} {m.count:>7}")
        lines.append(row + (f"  {m.score:.3g}" if m.score is not None else ""))
    if len(steps) < merges:
        lines.append(_("(stopped after {n} steps: no pair occurs twice any more)").format(n=len(steps)))
    return "\n".join(lines)


def splits_text(kind: str, text: str, where: str, sentence: str, learned: list[int]) -> str:
    """How `sentence` splits with each number of learned tokens on top of the base alphabet, tokens separated
    by '|' (spaces shown as ␣)."""
    if not sentence:
        raise ExplainError(_("the sentence is empty; type a few words"))
    for n in learned:
        _check_learned(n, "a size")
    base = min_vocab_size(kind, text)
    lines = [_("how {sentence!r} splits ({kind}, learned on {where}; vocabulary = {base} base + learned):").format(
        sentence=sentence, kind=kind, where=where, base=base)]
    for n, pieces in splits_at(kind, text, sentence, sorted({base + k for k in learned})).items():
        lines.append(_("{n:>6} tokens: {pieces:>3} pieces, {each:.2f} characters each  ").format(
            n=n, pieces=len(pieces), each=len(sentence) / len(pieces)) + "|".join(printable(p) for p in pieces))

    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- lesson
@dataclass(frozen=True)
class TokenizersConfig:
    """Which sub-word tokenizer, learned on which text, how large, and the sentence to split."""

    name: str = "tokenizers"
    description: str = ("BPE and WordPiece learned step by step on a corpus, and how one sentence splits at "
                        "several vocabulary sizes.")
    tokenizer: str = "bpe"
    corpus: str = "builtin"
    path: Optional[str] = None
    merges: int = 64  # learned tokens the merge table shows
    sentence: str = "the sleepy foxes watched the children."
    learned: tuple[int, ...] = (0, 50, 150, 350, 750)  # vocabularies to split with: base alphabet + this many


def resolve_path(cfg, ctx: ParseContext):
    """A lesson config's `corpus` and `path` agree; a relative path resolves against the preset's folder."""
    if cfg.corpus == "text_file" and cfg.path is None:
        ctx.fail("path", _("corpus text_file needs a path (the text file to learn from)"), at=("corpus",))
    if cfg.corpus != "text_file" and cfg.path is not None:
        ctx.fail("path", _("is set but corpus is {corpus}").format(corpus=cfg.corpus),
                 _("set corpus: text_file, or remove path"))
    if cfg.corpus == "text_file" and not os.path.isabs(os.path.expanduser(cfg.path)):
        cfg = replace(cfg, path=os.path.abspath(ctx.base_dir / cfg.path))
    return cfg


def validate(cfg: TokenizersConfig, ctx: ParseContext) -> TokenizersConfig:
    """A text to learn from, and sizes that count up from the base alphabet."""
    cfg = resolve_path(cfg, ctx)
    if not cfg.learned:
        ctx.fail("learned", _("needs at least one vocabulary size (tokens learned on top of the base alphabet)"))
    if min(cfg.learned) < 0:
        ctx.fail("learned", _("{min} is negative: it counts tokens learned on top of the base alphabet").format(
                                min=min(cfg.learned)))
    try:
        lesson_text(cfg.corpus, cfg.path)
    except ExplainError as e:
        ctx.fail("path", str(e))
    return cfg


def run(cfg: TokenizersConfig, steps: int | None = None, cancelled=lambda: False) -> list[MergeStep]:
    """One frame per learned token, in order (the first `steps` of them when given)."""
    if cancelled():
        return []
    text, _ = lesson_text(cfg.corpus, cfg.path)
    frames = merge_steps(cfg.tokenizer, text, min_vocab_size(cfg.tokenizer, text) + cfg.merges)
    return frames if steps is None else frames[:steps]


def summary(cfg: TokenizersConfig, frames: list[MergeStep]) -> str:
    """The merges of the frames, then the sentence at each size."""
    text, where = lesson_text(cfg.corpus, cfg.path)
    return (merges_text(cfg.tokenizer, text, where, len(frames), frames) + "\n\n"
            + splits_text(cfg.tokenizer, text, where, cfg.sentence, list(cfg.learned)))


_RULES = {"name": non_empty, "tokenizer": one_of(SUBWORD_KINDS), "corpus": one_of(CORPORA), "path": non_empty,
          "merges": positive_int, "sentence": non_empty}
LESSON = register(Lesson("tokenizers", N_("Tokenizers"), TokenizersConfig, _RULES, validate, run, summary,
                         preset="tokenizers"))
