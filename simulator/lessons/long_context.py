"""What to do when a sequence is longer than the model or the machine allows, measured on our engine.

Two parts, one frame each step:

* cost: one attention forward + backward (B 1, a few heads, float32) at T = min_seq_len, 2x, ... up
  to max_seq_len, for naive (the (T, T) probabilities and their gradient are stored), tiled (exact,
  FlashAttention-style, O(T) memory) and local (the tiled kernel with a causal window and global
  tokens: tile pairs nobody sees are skipped, so its time grows as T, not T^2). Bytes are counted by
  formula (`attention_bytes`) and checked against the arrays actually allocated; naive is not run
  where its bytes exceed memory_budget_mib, and the frame says so.
* copy task: token t + 1 repeats token t + 1 - copy_distance (a random block repeated), so a
  prediction needs a token copy_distance - 1 positions back. Exact (tiled, causal) attention over the
  whole sequence, local attention (window < copy_distance), and a model trained on short crops of
  context_len tokens (< copy_distance) read two ways: truncation (each prediction sees only the last
  context_len tokens) and a sliding window with overlap (chunks of context_len tokens every stride
  tokens, each scoring the positions after the overlap). Same steps, seed and learning rate; the loss
  is measured only on the predictable positions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from simulator.config import AttentionConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.data.dataset import TextDataset
from simulator.i18n import N_, _
from simulator.lessons import Lesson, register
from simulator.lessons.threads import one_thread
from simulator.rules import at_least, non_empty, positive, positive_int, setting, settings_of
from simulator.textcols import pad
from simulator.yamlconfig import ParseContext

IMPLS = ("naive", "tiled", "local")
STRATEGIES = ("exact", "local", "truncation", "sliding")
STRATEGY_LABELS = {"exact": N_("exact (tiled) attention"), "local": N_("local attention"),
                   "truncation": N_("truncation"), "sliding": N_("sliding window")}  # translated where shown
FLOAT = 4  # float32 bytes
MIB = 1 << 20


@dataclass(frozen=True)
class LongContextConfig:
    """The cost sweep's sizes and budget, and the copy task's sequence, window, crops and model."""

    name: str = setting("long-context", non_empty)
    description: str = ""
    # cost against T
    min_seq_len: int = setting(1024, positive_int, help="The sweep's first T; each next one doubles it.")
    max_seq_len: int = setting(16384, positive_int, help="The sweep's last T.")
    n_head: int = setting(2, positive_int, help="Heads of the measured attention (B is 1).")
    head_size: int = setting(64, positive_int)
    window: int = setting(256, positive_int, help="Local attention's window in the cost sweep.")
    global_tokens: int = setting(16, at_least(0), help="Local attention's global tokens in the cost sweep.")
    memory_budget_mib: int = setting(2048, positive_int, help=(
        "Naive attention is not run where its arrays would need more than this many MiB."))
    repeats: int = setting(2, positive_int, help="Each time is the best of this many forward + backward runs.")
    # the copy task
    vocab: int = setting(12, at_least(2), help="Distinct tokens of the copy task.")
    seq_len: int = setting(160, positive_int, help="Tokens per sequence of the copy task (the long document).")
    copy_distance: int = setting(48, at_least(2), help="Token t + 1 repeats token t + 1 - copy_distance.")
    copy_window: int = setting(16, positive_int, help="Local attention's window on the copy task.")
    copy_global_tokens: int = setting(2, at_least(0), help="Local attention's global tokens on the copy task.")
    context_len: int = setting(32, at_least(2), help="What truncation and the sliding window let the model see.")
    stride: int = setting(16, positive_int, help="The sliding window's step (overlap = context_len - stride).")
    d_model: int = setting(32, positive_int)
    n_layer: int = setting(1, positive_int)
    model_heads: int = setting(2, positive_int, help="Heads of the copy-task models.")
    batch_size: int = setting(16, positive_int)
    steps: int = setting(200, positive_int, help="Training steps of each copy-task model (the same for all).")
    lr: float = setting(1e-2, positive)
    eval_every: int = setting(25, positive_int, help="Steps between evaluations of the copy loss.")
    seed: int = setting(0, at_least(0))

    def seq_lens(self) -> tuple[int, ...]:
        out, t = [], self.min_seq_len
        while t <= self.max_seq_len:
            out.append(t)
            t *= 2
        return tuple(out)


# ------------------------------------------------------------------------------------------- cost
@dataclass(frozen=True)
class CostPoint:
    """One attention forward + backward at one T, or why it was not run."""

    impl: str
    seq_len: int
    seconds: float | None  # None: not run (over the memory budget)
    bytes: int  # by formula
    allocated: int  # the arrays the run allocated (0 when not run)
    tile_share: float  # the share of the T x T score grid computed (tile pairs of the forward walk)


@dataclass(frozen=True)
class CostFrame:
    """Step k of the sweep: every impl at one T."""

    seq_len: int
    points: tuple[CostPoint, ...]
    budget_bytes: int

    def point(self, impl: str) -> CostPoint:
        return next(p for p in self.points if p.impl == impl)


def attention_bytes(impl: str, T: int, n_head: int, head_size: int) -> int:
    """Bytes one attention forward + backward keeps (B 1, float32): q, k, v, y, dy, dq, dk, dv and naive's
    (T, T) probabilities and their gradient, or tiled's per-row log-sum-exp. Per-thread tile scratch
    (O(tile^2), under a MiB) is not counted."""
    per_head = 8 * T * head_size
    per_head += 2 * T * T if impl == "naive" else T
    return FLOAT * n_head * per_head


def _tile_share(impl: str, T: int, window: int, n_global: int) -> float:
    """The share of the T x T grid the forward computes: tile pairs walked x their size over T^2."""
    from simulator.kernels.cpu.attention_tiled import TILE_K, TILE_Q, _tile_hidden

    if impl == "naive":
        return 1.0
    tq, tk = min(TILE_Q, T), min(TILE_K, T)
    w, g = (window, n_global) if impl == "local" else (0, 0)
    done = 0
    for q0 in range(0, T, tq):
        nr = min(tq, T - q0)
        for k0 in range(0, min(T, q0 + nr), tk):
            nc = min(tk, min(T, q0 + nr) - k0)
            if not _tile_hidden(q0, k0, nc, w, g):
                done += nr * nc
    return done / (T * T)


def _measure(impl: str, T: int, cfg: LongContextConfig, rng: np.random.Generator) -> CostPoint:
    """Times `repeats` forward + backward passes of one impl at T; allocates exactly what attention_bytes counts."""
    from simulator.kernels.cpu.attention import attention_heads_backward, attention_heads_forward
    from simulator.kernels.cpu.attention_tiled import (
        BACKWARD_TILE_K,
        BACKWARD_TILE_Q,
        TILE_K,
        TILE_Q,
        tiled_attention_backward,
        tiled_attention_forward,
    )

    NH, HS = cfg.n_head, cfg.head_size
    formula = attention_bytes(impl, T, NH, HS)
    share = _tile_share(impl, T, cfg.window, cfg.global_tokens)
    if impl == "naive" and formula > cfg.memory_budget_mib * MIB:
        return CostPoint(impl, T, None, formula, 0, share)
    shape = (1, NH, T, HS)
    q, k, v, dy = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
    y, dq, dk, dv = (np.zeros(shape, np.float32) for _ in range(4))
    arrays = [q, k, v, dy, y, dq, dk, dv]
    scale = 1.0 / np.sqrt(HS)
    kv_len = np.full(1, T, np.int32)
    if impl == "naive":
        att, datt = np.zeros((1, NH, T, T), np.float32), np.zeros((1, NH, T, T), np.float32)
        arrays += [att, datt]

        def once():
            attention_heads_forward(y, att, q, k, v, scale, True, kv_len)
            attention_heads_backward(dq, dk, dv, datt, dy, q, k, v, att, scale, True, kv_len)
    else:
        lse = np.zeros((1, NH, T), np.float32)
        arrays.append(lse)
        local = {"window": cfg.window, "n_global": cfg.global_tokens} if impl == "local" else {}

        def once():
            for g in (dq, dk, dv):  # the tiled backward accumulates
                g.fill(0.0)
            tiled_attention_forward(y, lse, q, k, v, kv_len, scale, True, TILE_Q, TILE_K, **local)
            # the tile kernels for tiled too (not the row blocks through BLAS that training takes without a
            # window): their scratch is a tile per thread, as attention_bytes assumes, and local is the same
            # kernels skipping tiles, so the time ratio is what the window saves
            tiled_attention_backward(dq, dk, dv, dy, q, k, v, y, lse, kv_len, scale, True, BACKWARD_TILE_Q,
                                     BACKWARD_TILE_K, **local, by_rows=False)
    best = np.inf
    for _repeat in range(cfg.repeats):
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return CostPoint(impl, T, best, formula, sum(a.nbytes for a in arrays), share)


def _warm_up(cfg: LongContextConfig) -> None:
    """One small call of each kernel, so that loading the compiled code is not timed."""
    _measure("naive", 64, replace(cfg, repeats=1, memory_budget_mib=1 << 20), np.random.default_rng(0))
    small = replace(cfg, repeats=1, window=16, global_tokens=min(cfg.global_tokens, 8))
    for impl in ("tiled", "local"):
        _measure(impl, 64, small, np.random.default_rng(0))


@lru_cache(maxsize=64)
def _cost_point(impl: str, T: int, n_head: int, head_size: int, window: int, global_tokens: int, budget_mib: int,
                repeats: int, seed: int) -> CostPoint:
    """One measurement, kept for the process: a change to the copy task (or a second `train` of the same
    preset) does not time the sweep again, and a run repeated in one process reports the same numbers."""
    cfg = LongContextConfig(n_head=n_head, head_size=head_size, window=window, global_tokens=global_tokens,
                            memory_budget_mib=budget_mib, repeats=repeats, seed=seed)
    return _measure(impl, T, cfg, np.random.default_rng([seed, T, IMPLS.index(impl)]))


def cost_frame(cfg: LongContextConfig, T: int, cancelled=lambda: False) -> CostFrame | None:
    """Every impl at T (measured once per process and setting; see _cost_point); None when cancelled."""
    points = []
    for impl in IMPLS:
        if cancelled():
            return None
        window, n_global = (cfg.window, cfg.global_tokens) if impl == "local" else (1, 0)
        budget = cfg.memory_budget_mib if impl == "naive" else 0  # only naive reads the budget
        points.append(_cost_point(impl, T, cfg.n_head, cfg.head_size, window, n_global, budget, cfg.repeats, cfg.seed))
    return CostFrame(T, tuple(points), cfg.memory_budget_mib * MIB)


# -------------------------------------------------------------------------------------------- copy
@dataclass(frozen=True)
class CopyFrame:
    """One strategy on the copy task: its copy-position loss at each evaluation and at the end."""

    strategy: str
    curve: tuple[tuple[int, float], ...]  # (step, loss on the predictable positions)
    final: float
    sees: int  # the farthest a prediction can look back (tokens)
    chance: float  # log(vocab): the loss of guessing


class CopyTask(TextDataset):
    """Sequences of `vocab` letters in which token t repeats token t - distance (a random block, repeated).

    A dataset a TrainingSession samples from: each row is a window of `length` tokens from a fresh
    sequence of seq_len + 1 (a crop when length < seq_len: the short-context model's training).
    """

    def __init__(self, vocab: int, seq_len: int, distance: int):
        letters = "".join(chr(ord("a") + i) for i in range(vocab))
        super().__init__(letters * 4, 0.5, _("the copy task"))
        self.vocab, self.seq_len, self.distance = vocab, seq_len, distance

    def sequences(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, seq_len + 1) int32: random first blocks, then each token repeats the one `distance` back."""
        block = rng.integers(0, self.vocab, (n, self.distance))
        reps = -(-(self.seq_len + 1) // self.distance)
        return np.tile(block, (1, reps))[:, :self.seq_len + 1].astype(np.int32)

    def check_fits(self, seq_len: int) -> None:
        if seq_len > self.seq_len:
            raise ValueError(_("a copy-task window of {n} is longer than its sequences ({seq_len})").format(
                n=seq_len, seq_len=self.seq_len))

    def sample_batch(self, split, rng, x_out, y_out):
        B, T = x_out.shape
        seqs = self.sequences(rng, B)
        starts = rng.integers(0, self.seq_len - T + 1, B)
        for b in range(B):
            x_out[b] = seqs[b, starts[b]:starts[b] + T]
            y_out[b] = seqs[b, starts[b] + 1:starts[b] + T + 1]


def _run_config(cfg: LongContextConfig, T: int, attention: AttentionConfig) -> RunConfig:
    model = ModelConfig(vocab_size=cfg.vocab, d_model=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.model_heads,
                        seq_len=T, positional="rope", attention=attention)
    return RunConfig(name=cfg.name, model=model,
                     optim=OptimConfig(name="adamw", lr=cfg.lr, schedule="constant", weight_decay=0.0),
                     train=TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, eval_every=0,
                                       stats_every=0))


def _position_losses(session, ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(B, T) next-token losses of one batch on the current weights (eval mode)."""
    session.eval()
    try:
        session.forward_backward(ids, targets)
        return np.asarray(session.model.acts["losses"], np.float64).reshape(ids.shape).copy()
    finally:
        session.train()


def _first_predictable(cfg: LongContextConfig) -> int:
    """The first input position whose next token repeats an earlier one."""
    return cfg.copy_distance - 1


def _long_loss(session, seqs: np.ndarray, cfg: LongContextConfig) -> float:
    """Copy loss of a model that sees the whole sequence (exact or local attention)."""
    losses = _position_losses(session, seqs[:, :-1], seqs[:, 1:])
    return float(losses[:, _first_predictable(cfg):].mean())


def truncation_positions(cfg: LongContextConfig) -> np.ndarray:
    """The predictable positions truncation is scored on: at most 24, evenly spaced (each is one forward)."""
    first = _first_predictable(cfg)
    return np.unique(np.linspace(first, cfg.seq_len - 1, min(24, cfg.seq_len - first)).astype(int))


def sliding_chunks(cfg: LongContextConfig) -> list[tuple[int, int]]:
    """(start, first scored position) of each chunk: chunks of context_len every stride tokens, the last one
    ending at the sequence's end; a chunk scores the positions after the previous chunk's end."""
    K, L = cfg.context_len, cfg.seq_len
    starts = list(range(0, L - K + 1, cfg.stride))
    if starts[-1] + K < L:
        starts.append(L - K)
    chunks, scored_to = [], 0
    for s in starts:
        chunks.append((s, scored_to))
        scored_to = s + K
    return chunks


def _short_losses(session, seqs: np.ndarray, cfg: LongContextConfig) -> tuple[float, float]:
    """(truncation, sliding window) copy losses of the model trained on context_len-token crops."""
    K, first = cfg.context_len, _first_predictable(cfg)
    x, y = seqs[:, :-1], seqs[:, 1:]
    trunc = []
    for t in truncation_positions(cfg):  # the last K tokens up to t, scored at t
        lo = max(t - K + 1, 0)
        ids, tg = x[:, lo:lo + K], y[:, lo:lo + K]
        trunc.append(_position_losses(session, ids, tg)[:, t - lo])
    slid = []
    for s, scored_from in sliding_chunks(cfg):
        losses = _position_losses(session, x[:, s:s + K], y[:, s:s + K])
        lo = max(scored_from, first) - s  # positions before the overlap's end were scored by the chunk before
        if lo < K:
            slid.append(losses[:, lo:].reshape(-1))
    return float(np.mean(trunc)), float(np.concatenate(slid).mean())


def copy_frames(cfg: LongContextConfig, cancelled=lambda: False) -> list[CopyFrame]:
    """Trains the three models (same seed, steps and rate) and scores the four strategies."""
    with one_thread():
        return _copy_frames(cfg, cancelled)


def _copy_frames(cfg: LongContextConfig, cancelled) -> list[CopyFrame]:
    from simulator.session import TrainingSession  # imported here: it builds the kernels

    data = CopyTask(cfg.vocab, cfg.seq_len, cfg.copy_distance)
    seqs = data.sequences(np.random.default_rng([cfg.seed, 1]), cfg.batch_size)  # the evaluation sequences
    chance = float(np.log(cfg.vocab))
    runs = {
        "exact": _run_config(cfg, cfg.seq_len, AttentionConfig(impl="tiled", mask="causal")),
        "local": _run_config(cfg, cfg.seq_len, AttentionConfig(impl="tiled", mask="local", window=cfg.copy_window,
                                                               global_tokens=cfg.copy_global_tokens)),
        "short": _run_config(cfg, cfg.context_len, AttentionConfig(impl="tiled", mask="causal")),
    }
    curves: dict[str, list[tuple[int, float]]] = {s: [] for s in STRATEGIES}
    for name, run_cfg in runs.items():
        if cancelled():
            return []
        session = TrainingSession(run_cfg, data)
        for step in range(cfg.steps + 1):
            if step % cfg.eval_every == 0 or step == cfg.steps:
                if name == "short":
                    tr, sl = _short_losses(session, seqs, cfg)
                    curves["truncation"].append((step, tr))
                    curves["sliding"].append((step, sl))
                else:
                    curves[name].append((step, _long_loss(session, seqs, cfg)))
            if step < cfg.steps:
                if cancelled():  # a tab that asked for another config: stop within a step
                    return []
                session.step()
    sees = {"exact": cfg.seq_len, "local": cfg.copy_window, "truncation": cfg.context_len,
            "sliding": cfg.context_len}
    return [CopyFrame(s, tuple(curves[s]), curves[s][-1][1], sees[s], chance) for s in STRATEGIES]


# ------------------------------------------------------------------------------------------ lesson
def run(cfg: LongContextConfig, steps: int | None = None, cancelled=lambda: False) -> list:
    """The cost sweep (one frame per T), then the copy task (one frame per strategy); the first `steps` frames."""
    lens = cfg.seq_lens()
    n = len(lens) + len(STRATEGIES) if steps is None else steps
    frames: list = []
    if cancelled():
        return frames
    _warm_up(cfg)
    for T in lens[:n]:
        frame = cost_frame(cfg, T, cancelled)
        if frame is None:
            return []
        frames.append(frame)
    if n > len(frames):
        frames.extend(copy_frames(cfg, cancelled)[:n - len(frames)])
    return frames


def cost_table(frames: list) -> list[str]:
    """The sweep as text rows: T, then ms and MiB per impl."""
    rows = [f"{'T':>6}  " + "  ".join(f"{impl + ' ms':>10} {impl + ' MiB':>10}" for impl in IMPLS)]
    for f in (f for f in frames if isinstance(f, CostFrame)):
        cells = []
        for p in f.points:
            ms = f"{1e3 * p.seconds:.1f}" if p.seconds is not None else _("over budget")
            cells.append(f"{pad(ms, 10, right=True)} {p.bytes / MIB:>10.1f}")
        rows.append(f"{f.seq_len:>6}  " + "  ".join(cells))
    return rows


def summary(cfg: LongContextConfig, frames: list) -> str:
    """The cost table and the copy losses."""
    cost = [f for f in frames if isinstance(f, CostFrame)]
    copy = [f for f in frames if isinstance(f, CopyFrame)]
    lines = [_("long context: attention forward + backward, B 1, {n_head} heads of {head_size}, float32; local: "
               "window {window}, {n_global} global tokens; naive budget {budget} MiB").format(
                 n_head=cfg.n_head, head_size=cfg.head_size, window=cfg.window, n_global=cfg.global_tokens,
                 budget=cfg.memory_budget_mib)]
    lines += cost_table(frames)
    if cost:
        last = cost[-1]
        tiled, local = last.point("tiled"), last.point("local")
        lines.append(_("at T={T}: local / tiled time {ratio:.2f} (grid computed {local:.3f} vs {tiled:.3f})").format(
            T=last.seq_len, ratio=local.seconds / tiled.seconds, local=local.tile_share, tiled=tiled.tile_share))
    if copy:
        lines.append(_("copy task (token t+1 repeats t+1-{distance}, {vocab} tokens, chance {chance:.2f}), {steps} "
                       "steps, seed {seed}: loss on the predictable positions").format(
            distance=cfg.copy_distance, vocab=cfg.vocab, chance=copy[0].chance, steps=cfg.steps, seed=cfg.seed))
        lines += ["  " + pad(_(STRATEGY_LABELS[f.strategy]), 24) + " "
                  + _("sees {n:>4} back: {loss:.3f}").format(n=f.sees, loss=f.final) for f in copy]
    return "\n".join(lines)


def validate(cfg: LongContextConfig, ctx: ParseContext) -> LongContextConfig:
    """The sweep runs upward; the copy task needs a distance beyond every short context, inside the sequence."""
    if cfg.max_seq_len < cfg.min_seq_len:
        ctx.fail("max_seq_len", _("{value} is below min_seq_len {low}").format(value=cfg.max_seq_len,
                                                                                low=cfg.min_seq_len),
                 at=("max_seq_len", "min_seq_len"))
    if cfg.global_tokens >= cfg.min_seq_len:
        ctx.fail("global_tokens", _("{n} global tokens in a sweep that starts at T={T}").format(
            n=cfg.global_tokens, T=cfg.min_seq_len), _("use fewer than min_seq_len"),
            at=("global_tokens", "min_seq_len"))
    if cfg.copy_distance >= cfg.seq_len:
        ctx.fail("copy_distance", _("{value} does not fit in seq_len {seq_len}").format(
            value=cfg.copy_distance, seq_len=cfg.seq_len), at=("copy_distance", "seq_len"))
    for key in ("copy_window", "context_len"):
        if getattr(cfg, key) >= cfg.copy_distance:
            ctx.fail(key, _("{value} reaches copy_distance {distance}: the copy would be in view").format(
                value=getattr(cfg, key), distance=cfg.copy_distance),
                     _("use less than {distance}").format(distance=cfg.copy_distance), at=(key, "copy_distance"))
    if cfg.copy_global_tokens >= cfg.seq_len:
        ctx.fail("copy_global_tokens", _("{n} global tokens in sequences of {seq_len}").format(
            n=cfg.copy_global_tokens, seq_len=cfg.seq_len), at=("copy_global_tokens", "seq_len"))
    if cfg.stride > cfg.context_len:
        ctx.fail("stride", _("{stride} is longer than context_len {context_len}: the chunks would leave gaps").format(
            stride=cfg.stride, context_len=cfg.context_len), at=("stride", "context_len"))
    if cfg.d_model % cfg.model_heads or (cfg.d_model // cfg.model_heads) % 2:
        ctx.fail("model_heads", _("{heads} heads of d_model {d_model}: the head size must be a whole, even number "
                                  "(rope)").format(heads=cfg.model_heads, d_model=cfg.d_model),
                 at=("model_heads", "d_model"))
    return cfg


@lru_cache(maxsize=1)
def _rules():
    return {path: s.rule for path, s in settings_of(LongContextConfig).items() if s.rule is not None}


LESSON = register(Lesson("long_context", "Long context", LongContextConfig, _rules(), validate, run, summary,
                         preset="long-context"))
