"""Decoding rules with the whole next-token distribution visible at every step.

One token is chosen in the conventional order: temperature, then top-k, then
top-p, then min-p, then renormalise, then one uniform draw by inverse CDF.
`filter_distribution` is that order as a pure function that returns every
intermediate set; `generate` runs it once per token with a seeded generator
owned by the sampler (never the training RNG) and emits a `TokenEvent` per
token, so a person can see what each rule removed and why a token was drawn.

Shape alphabet: `V` vocabulary size. Kept sets are token ids in rank order:
most likely first, equal probabilities broken by the lower id (stable sort).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.config import SamplingConfig
from simulator.i18n import _
from simulator.textcols import heading

TOP_RAW = 20  # how many raw (temperature 1) candidates a TokenEvent carries
MAX_NEW = 1_000_000  # tokens one generate() call may make: past it a length is a typo, not a wish

# Cumulative sums of probabilities are off by rounding (0.5 + 0.3 < 0.8 in float64),
# so a prefix whose mass equals top_p up to this tolerance counts as reaching it.
_TOP_P_TOLERANCE = 1e-12

# How the CLI shows characters that would break a table row.
_SHOWN = {"\n": "⏎", "\t": "⇥", " ": "␣", "\r": "␍"}


class SamplingError(Exception):
    """A person's mistake in the sampling settings or the prompt; the message is one sentence."""


@dataclass
class Filtered:
    """Every stage of one decoding rule applied to one logit vector (plain data)."""

    raw: np.ndarray  # (V,) float64 softmax of the logits at temperature 1
    tempered: np.ndarray  # (V,) float64 softmax of the logits / temperature
    order: np.ndarray  # (V,) int64 ids, most likely first, ties by lower id
    after_top_k: np.ndarray  # ids kept by top-k (all when off), rank order
    after_top_p: np.ndarray  # ids kept by top-p among those, rank order
    after_min_p: np.ndarray  # ids kept by min-p among those, rank order: the final kept set
    kept_probs: np.ndarray  # renormalised probabilities of `after_min_p`, aligned with it
    entropy: float  # nats of the renormalised distribution (the one a token is drawn from)

    @property
    def kept(self) -> np.ndarray:
        """The final kept ids (same as `after_min_p`)."""
        return self.after_min_p

    def probs(self) -> np.ndarray:
        """The renormalised distribution as a (V,) vector, zero outside the kept set."""
        out = np.zeros_like(self.tempered)
        out[self.after_min_p] = self.kept_probs
        return out


@dataclass
class TokenEvent:
    """What the sampler saw and did for one generated token (plain data)."""

    index: int  # 0 for the first generated token
    position: int  # index of this token in the whole sequence (prompt tokens count)
    top_raw: list[tuple[int, str, float]]  # (id, char, prob) of the 20 most likely at temperature 1
    tempered: np.ndarray  # (V,) probabilities after temperature, before any filter
    after_top_k: np.ndarray  # kept ids after each filter, rank order
    after_top_p: np.ndarray
    after_min_p: np.ndarray
    kept_probs: np.ndarray  # renormalised probabilities over `after_min_p`, aligned with it
    token: int  # the id drawn
    char: str  # its text
    prob: float  # its renormalised probability
    entropy: float  # nats of the distribution it was drawn from


def softmax_at(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of logits / temperature in float64, stable for any finite logits and temperature > 0."""
    z = np.asarray(logits, dtype=np.float64)
    # Subtract the max before dividing: the shifted values are <= 0, so a tiny
    # temperature sends them to -inf (exp -> 0, the intended limit) instead of inf - inf = NaN.
    with np.errstate(over="ignore"):
        z = (z - z.max()) / temperature  # (V,)
    e = np.exp(z)  # the max entry is exp(0) = 1, so the sum is >= 1
    return e / e.sum()


def _renormalised(probs: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """probs[ids] scaled to sum to one (the first id is always the most likely, so the sum is > 0)."""
    p = probs[ids]
    return p / p.sum()


def filter_distribution(logits: np.ndarray, temperature: float, top_k: int, top_p: float, min_p: float,
                        greedy: bool) -> Filtered:
    """Apply temperature, top-k, top-p, min-p (or greedy) to one logit vector; return every stage."""
    # logits is (V,)
    logits = np.asarray(logits, dtype=np.float64)
    raw = softmax_at(logits, 1.0)
    tempered = softmax_at(logits, temperature)
    # Rank by logit, not by probability: two logits far below the max both
    # underflow to probability 0, yet their order is still known.
    order = np.argsort(-logits, kind="stable")  # (V,) ties keep the lower id first
    V = logits.shape[0]

    if greedy:
        # Greedy is the argmax; no filter can remove it, so every stage is that one token.
        top = order[:1]
        one = np.ones(1)
        return Filtered(raw, tempered, order, top, top, top, one, 0.0)

    k = V if top_k <= 0 else min(top_k, V)
    after_k = order[:k]

    after_p = after_k
    if top_p < 1.0:
        # Conventional order: top-p sees the distribution renormalised over the top-k set.
        cum = np.cumsum(_renormalised(tempered, after_k))
        n = int(np.searchsorted(cum, top_p - _TOP_P_TOLERANCE, side="left")) + 1
        after_p = after_k[:min(n, k)]  # at least one token, never more than top-k kept

    after_m = after_p
    if min_p > 0.0:
        # Renormalising scales all kept probabilities alike, so the ratio to the max
        # is the same before and after; the first id is the max.
        p = tempered[after_p]
        after_m = after_p[p >= min_p * p[0]]

    kept_probs = _renormalised(tempered, after_m)
    return Filtered(raw, tempered, order, after_k, after_p, after_m, kept_probs, entropy_nats(kept_probs))


def entropy_nats(probs: np.ndarray) -> float:
    """Shannon entropy in nats of a probability vector (zero entries contribute nothing)."""
    p = probs[probs > 0]
    return max(0.0, float(-(p * np.log(p)).sum()))  # max: a single token gives 0.0, not -0.0


def draw_token(filtered: Filtered, u: float) -> int:
    """The kept id whose inverse-CDF interval holds the uniform u in [0, 1)."""
    cdf = np.cumsum(filtered.kept_probs)
    # Scale by the total so that rounding (cdf[-1] = 0.9999999999999999) cannot push u past the end.
    i = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    # Zero-probability ids sit at the tail in rank order; never land on one.
    last = int(np.count_nonzero(filtered.kept_probs)) - 1
    return int(filtered.after_min_p[min(i, last)])


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def validate_sampling(cfg: SamplingConfig) -> None:
    """Raise SamplingError with one sentence when a sampling setting is out of range."""
    t = cfg.temperature
    if not _is_number(t) or not math.isfinite(t) or t <= 0:
        raise SamplingError(_("sampling.temperature must be a finite number > 0, got {t!r}").format(t=t))
    if not _is_int(cfg.top_k) or cfg.top_k < 0:
        raise SamplingError(_("sampling.top_k must be an integer >= 0 (0 turns it off), got {top_k!r}").format(
                                top_k=cfg.top_k))
    if not _is_number(cfg.top_p) or not 0.0 < cfg.top_p <= 1.0:
        raise SamplingError(_("sampling.top_p must be in (0, 1] (1.0 turns it off), got {top_p!r}").format(
                                top_p=cfg.top_p))
    if not _is_number(cfg.min_p) or not 0.0 <= cfg.min_p < 1.0:
        raise SamplingError(_("sampling.min_p must be in [0, 1) (0.0 turns it off), got {min_p!r}").format(
                                min_p=cfg.min_p))
    if not _is_int(cfg.max_new) or cfg.max_new < 1:
        raise SamplingError(_("sampling.max_new must be an integer >= 1, got {max_new!r}").format(max_new=cfg.max_new))
    if cfg.max_new > MAX_NEW:
        raise SamplingError(_("sampling.max_new must be at most {MAX_NEW:,} tokens at a time, got {max_new:,}").format(
                                MAX_NEW=MAX_NEW, max_new=cfg.max_new))
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise SamplingError(_("sampling.seed must be an integer >= 0, got {seed!r}").format(seed=cfg.seed))
    if not isinstance(cfg.prompt, str) or cfg.prompt == "":
        raise SamplingError(_("sampling.prompt is empty; give at least one character to start from"))


def encode_prompt(tokenizer, prompt: str) -> np.ndarray:
    """The prompt as int32 ids; SamplingError names the first character outside the vocabulary."""
    if prompt == "":
        raise SamplingError(_("sampling.prompt is empty; give at least one character to start from"))
    try:
        ids = np.asarray(tokenizer.encode(prompt), dtype=np.int32)
    except Exception as err:
        known = set("".join(tokenizer.chars))
        for pos, ch in enumerate(prompt):
            if ch not in known:
                raise SamplingError(_("sampling.prompt has the character {ch!r} at position {pos}, which is not in "
                                      "the vocabulary of this model").format(ch=ch, pos=pos)) from err
        raise SamplingError(_("sampling.prompt could not be encoded: {err}").format(err=err)) from err
    if ids.size == 0:
        raise SamplingError(_("sampling.prompt encodes to no tokens; give at least one character to start from"))
    return ids


def _top_raw(raw: np.ndarray, order: np.ndarray, chars: list[str]) -> list[tuple[int, str, float]]:
    return [(int(i), chars[i], float(raw[i])) for i in order[:TOP_RAW]]


def generate(next_logits: Callable[[np.ndarray], np.ndarray], tokenizer, cfg: SamplingConfig,
             on_token: Callable[[TokenEvent], None] | None = None,
             keep_events: bool = True) -> tuple[str, list[TokenEvent]]:
    """Generate cfg.max_new tokens after the prompt; return the continuation text and one event per token.

    keep_events=False keeps none (each is ~4 KB; `on_token` still sees every one as it is made).
    """
    validate_sampling(cfg)
    prompt = encode_prompt(tokenizer, cfg.prompt)
    V = tokenizer.vocab_size
    # The sampler's own generator: same model, prompt, rule and seed give the same text.
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    seq = np.empty(prompt.size + cfg.max_new, dtype=np.int32)
    seq[:prompt.size] = prompt
    n = prompt.size
    events: list[TokenEvent] = []
    for i in range(cfg.max_new):
        ids = seq[:n]
        ids.flags.writeable = False  # the model may keep it; the sampler only writes past n
        logits = np.asarray(next_logits(ids), dtype=np.float64)
        if logits.shape != (V,):
            raise ValueError(f"next_logits returned shape {logits.shape}, expected ({V},)")
        if not np.isfinite(logits).all():
            raise SamplingError(_("the model's logits for position {n} contain NaN or Inf (its weights have "
                                  "diverged), so no token can be drawn").format(n=n))
        f = filter_distribution(logits, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p, cfg.greedy)
        u = rng.random()  # one uniform per token, greedy included: token i uses the i-th number
        token = draw_token(f, u)
        j = int(np.flatnonzero(f.after_min_p == token)[0])
        event = TokenEvent(index=i, position=n, top_raw=_top_raw(f.raw, f.order, tokenizer.chars),
                           tempered=f.tempered, after_top_k=f.after_top_k, after_top_p=f.after_top_p,
                           after_min_p=f.after_min_p, kept_probs=f.kept_probs, token=token,
                           char=tokenizer.chars[token], prob=float(f.kept_probs[j]), entropy=f.entropy)
        if keep_events:
            events.append(event)
        seq[n] = token
        n += 1
        if on_token is not None:
            on_token(event)
    return tokenizer.decode(seq[prompt.size:n]), events


def printable(text: str) -> str:
    """A token's text as one visible table cell: newline as ⏎, tab as ⇥, space as ␣, controls escaped."""
    out = []
    for ch in text:
        if ch in _SHOWN:
            out.append(_SHOWN[ch])
        elif not ch.isprintable():
            out.append(ascii(ch)[1:-1])
        else:
            out.append(ch)
    return "".join(out)


def explain_table(events: list[TokenEvent], tokenizer, top: int = 5) -> str:
    """A compact per-token table: drawn token, its prob, entropy, kept-set size and the top candidates."""
    header = (heading((_("pos"), 5, ">"), (_("token"), 6, "<"), (_("prob"), 6, ">"), (_("H(nats)"), 7, ">"),
                      (_("kept"), 5, ">")) + "  "
              + _("top {top} after temperature ((cut) = removed by a filter)").format(top=top))

    lines = [header]
    for ev in events:
        kept = set(ev.after_min_p.tolist())
        # The same stable rank order the filters use: lower id first among equal probabilities.
        cand = np.argsort(-ev.tempered, kind="stable")[:top]
        cells = []
        for c in cand:
            cell = f"{printable(tokenizer.chars[c])}:{ev.tempered[c]:.3f}"
            cells.append(cell if int(c) in kept else f"({cell})")
        lines.append(f"{ev.position:>5} {printable(ev.char):<6} {ev.prob:>6.3f} {ev.entropy:>7.3f} "
                     f"{len(kept):>5}  " + "  ".join(cells))
    return "\n".join(lines)
