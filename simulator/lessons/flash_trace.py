"""Tiled (FlashAttention) attention for one head, one (query tile, key tile) pair at a time.

Pure numpy, written for clarity: each step shows the partial score block, the running row max
m and sum l, and the output rows as they would be if we stopped here, plus a running count of
the floats moved between slow memory (HBM) and fast memory (SRAM).

Memory model. Fast memory holds M floats; everything else lives in slow memory and is counted
when it crosses (4 bytes per float). Arithmetic inside fast memory is free, and the score block
S_ij (tile_q x tile_k), which never leaves fast memory, is not counted against M. Tile sizes
from M follow the FlashAttention paper (Algorithm 1): Bc = M / 4d key rows, so that the Q, K, V
and O tiles each get a quarter of M, and Br = min(Bc, d) query rows. (The paper writes
ceil(M / 4d); we round down so the tiles always fit: the two agree whenever 4d divides M.)
Explicit tile sizes override, and must fit: (2 tile_q + 2 tile_k) d <= M.

  "kv_outer" (Algorithm 1 of FlashAttention, the default): O, l, m are first written to slow
  memory (N d + 2N floats); for each key tile j, K_j and V_j are read once (2 Bc d); then for
  each query tile i, Q_i, O_i, l_i, m_i are read (Br d + Br d + 2 Br) and O_i, l_i, m_i written
  back (Br d + 2 Br). Total Theta(N^2 d^2 / M).
  "q_outer" (FlashAttention-2, the order of the CPU kernel): for each query tile i, Q_i is read
  once and O_i stays in fast memory; for each key tile j, K_j and V_j are read (2 Bc d); after
  the last key tile O_i and lse_i are written (Br d + Br). Total Theta(N^2 d / Br).
  Standard attention (`naive_attention_traffic`): read Q, K and write S = Q K^T; read S and
  write P = softmax(S); read P, V and write O = P V: 4 N d + 4 N^2 floats, Theta(N d + N^2).

Under the causal mask, a pair whose keys all come after all its queries is skipped: it is
visited (so a stepper shows it) but nothing is read, written or computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.i18n import N_, _
from simulator.lessons import Lesson, register
from simulator.rules import non_empty, non_negative, one_of, positive_int
from simulator.yamlconfig import ParseContext

LOOP_ORDERS = ("kv_outer", "q_outer")
BYTES_PER_FLOAT = 4


class AttentionTraceError(ValueError):
    """A person's mistake in the arguments of a trace (shapes, tile sizes, fast memory)."""


class _Moved:
    """`floats` and `bytes` of anything with `reads` and `writes` (counts of floats)."""

    @property
    def floats(self) -> int:
        """Reads plus writes."""
        return self.reads + self.writes

    @property
    def bytes(self) -> int:
        """Reads plus writes at 4 bytes a float."""
        return BYTES_PER_FLOAT * self.floats


@dataclass(frozen=True)
class Traffic(_Moved):
    """Floats moved between slow and fast memory."""

    reads: int  # slow -> fast
    writes: int  # fast -> slow


@dataclass(frozen=True)
class TileStep(_Moved):
    """The state after one (query tile, key tile) pair; arrays are copies."""

    index: int  # position in the visiting order
    q_tile: int
    q_rows: tuple[int, int]  # [start, stop) query rows of the tile
    k_tile: int
    k_cols: tuple[int, int]  # [start, stop) key columns of the tile
    scores: np.ndarray  # (rows, cols) scaled scores, masked entries -inf
    m: np.ndarray  # (rows,) running max of the q tile's rows after this pair
    l: np.ndarray  # noqa: E741 (rows,) running sum of exp(score - m); m and l are the paper's names
    out: np.ndarray  # (rows, d) the output rows if we stopped here (normalised by l)
    skipped: bool  # whole pair above the causal diagonal: nothing moved or computed
    reads: int  # running count of floats read from slow memory, this pair included
    writes: int  # running count of floats written to slow memory


def tile_sizes(d, fast_memory_floats):
    """(tile_q, tile_k) = (Br, Bc) of FlashAttention for head size d and M floats of fast memory."""
    if fast_memory_floats < 4 * d:
        raise AttentionTraceError(
            _("fast_memory_floats={fast_memory_floats} is too small: fast memory must hold at least 4*d = {value} "
              "floats (one row each of Q, K, V and O)").format(fast_memory_floats=fast_memory_floats, value=4 * d))
    bc = fast_memory_floats // (4 * d)
    return min(bc, d), bc


def _resolve_tiles(d, fast_memory_floats, tile_q, tile_k):
    """Explicit tile sizes, or ones derived from fast memory; checks that they fit."""
    if tile_q is None or tile_k is None:
        if fast_memory_floats is None:
            raise AttentionTraceError(_("give fast_memory_floats, or both tile_q and tile_k"))
        br, bc = tile_sizes(d, fast_memory_floats)
        tile_q = br if tile_q is None else tile_q
        tile_k = bc if tile_k is None else tile_k
    for name, t in (("tile_q", tile_q), ("tile_k", tile_k)):
        if not isinstance(t, (int, np.integer)) or t < 1:
            raise AttentionTraceError(_("{name} must be a positive integer, got {t!r}").format(name=name, t=t))
    need = (2 * tile_q + 2 * tile_k) * d
    if fast_memory_floats is not None and need > fast_memory_floats:
        raise AttentionTraceError(
            _("tile_q={tile_q}, tile_k={tile_k} need (2*{tile_q} + 2*{tile_k})*{d} = {need} floats of fast memory "
              "for the Q, K, V and O tiles, more than fast_memory_floats={fast_memory_floats}").format(
                tile_q=tile_q, tile_k=tile_k, d=d, need=need, fast_memory_floats=fast_memory_floats))
    return int(tile_q), int(tile_k)


def _schedule(n, d, tile_q, tile_k, causal, loop_order):
    """Yields (q_tile, k_tile, skipped, reads, writes) per pair in visiting order; counts for that pair alone."""
    if loop_order not in LOOP_ORDERS:
        raise AttentionTraceError(_("loop_order must be one of {items}, got {loop_order!r}").format(
                                      items=', '.join(LOOP_ORDERS), loop_order=loop_order))
    n_q, n_k = -(-n // tile_q), -(-n // tile_k)

    def rows(i):
        return min(tile_q, n - i * tile_q)

    def cols(j):
        return min(tile_k, n - j * tile_k)

    def skipped(i, j):  # every key of tile j after every query of tile i
        return causal and j * tile_k > i * tile_q + rows(i) - 1

    if loop_order == "kv_outer":
        first = True
        for j in range(n_k):
            kv_loaded = False
            for i in range(n_q):
                if skipped(i, j):
                    yield i, j, True, 0, 0
                    continue
                br = rows(i)
                reads = 2 * br * d + 2 * br  # Q_i, O_i, l_i, m_i
                writes = br * d + 2 * br  # O_i, l_i, m_i
                if not kv_loaded:
                    reads += 2 * cols(j) * d  # K_j, V_j once per key tile
                    kv_loaded = True
                if first:
                    writes += n * d + 2 * n  # O = 0, l = 0, m = -inf initialised in slow memory
                    first = False
                yield i, j, False, reads, writes
    else:
        for i in range(n_q):
            last_j = max(j for j in range(n_k) if not skipped(i, j))
            for j in range(n_k):
                if skipped(i, j):
                    yield i, j, True, 0, 0
                    continue
                reads = 2 * cols(j) * d + (rows(i) * d if j == 0 else 0)  # K_j, V_j; Q_i on the first pair
                writes = rows(i) * d + rows(i) if j == last_j else 0  # O_i and lse_i after the last pair
                yield i, j, False, reads, writes


def tiled_attention_traffic(n, d, fast_memory_floats=None, causal=True, tile_q=None, tile_k=None,
                            loop_order="kv_outer"):
    """Total slow/fast memory traffic of tiled attention over n positions of head size d (no arithmetic)."""
    tile_q, tile_k = _resolve_tiles(d, fast_memory_floats, tile_q, tile_k)
    reads = writes = 0
    for _q, _k, _w, r, w in _schedule(n, d, tile_q, tile_k, causal, loop_order):
        reads, writes = reads + r, writes + w
    return Traffic(reads, writes)


def naive_attention_traffic(n, d):
    """Traffic of standard attention: read Q, K write S; read S write P; read P, V write O."""
    return Traffic(reads=2 * n * d + n * n + n * n + n * d, writes=n * n + n * n + n * d)


class TiledAttentionTrace:
    """Steps tiled attention over one head's q, k, v (T, d) pair by pair; iterate it or call step()."""

    def __init__(self, q, k, v, scale=None, causal=True, tile_q=None, tile_k=None, fast_memory_floats=None,
                 loop_order="kv_outer"):
        q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
        if q.ndim != 2 or not q.shape == k.shape == v.shape or q.shape[0] < 1:
            raise AttentionTraceError(
                _("q, k and v must be (T, d) arrays of one shape, got {shape}, {shape2}, {shape3}").format(
                    shape=q.shape, shape2=k.shape, shape3=v.shape))
        self.n, self.d = q.shape
        self.q, self.k, self.v = q, k, v
        self.scale = 1.0 / np.sqrt(self.d) if scale is None else float(scale)
        self.causal = bool(causal)
        self.fast_memory_floats = fast_memory_floats
        self.tile_q, self.tile_k = _resolve_tiles(self.d, fast_memory_floats, tile_q, tile_k)
        self.loop_order = loop_order
        self.n_steps = -(-self.n // self.tile_q) * -(-self.n // self.tile_k)
        self._pairs = _schedule(self.n, self.d, self.tile_q, self.tile_k, self.causal, loop_order)
        self._m = np.full(self.n, -np.inf)  # running row max
        self._l = np.zeros(self.n)  # running sum of exp(s - m)
        self._acc = np.zeros((self.n, self.d))  # unnormalised output: sum of exp(s - m) v
        self._index = 0
        self._reads = self._writes = 0
        self.done = False

    @property
    def output(self):
        """The whole (T, d) output as it stands (rows not reached yet are 0)."""
        return self._normalised(slice(0, self.n))

    def _normalised(self, rows):
        lsum = self._l[rows, None]
        return np.where(lsum > 0, self._acc[rows] / np.where(lsum > 0, lsum, 1.0), 0.0)

    def __iter__(self):
        while (st := self.step()) is not None:
            yield st

    def step(self):
        """Runs the next (query tile, key tile) pair and returns its TileStep, or None when done."""
        pair = next(self._pairs, None)
        if pair is None:
            self.done = True
            return None
        i, j, skipped, reads, writes = pair
        r0, r1 = i * self.tile_q, min((i + 1) * self.tile_q, self.n)
        c0, c1 = j * self.tile_k, min((j + 1) * self.tile_k, self.n)
        rows = slice(r0, r1)
        s = self.scale * self.q[rows] @ self.k[c0:c1].T  # (rows, cols)
        if self.causal:
            s = np.where(np.arange(c0, c1)[None, :] <= np.arange(r0, r1)[:, None], s, -np.inf)
        if not skipped:
            m_old = self._m[rows]
            m_new = np.maximum(m_old, s.max(axis=1))
            safe = np.where(np.isfinite(m_new), m_new, 0.0)  # a row with no key yet keeps exp() at 0
            alpha = np.exp(m_old - safe)  # rescales what was summed under the old max
            p = np.exp(s - safe[:, None])  # (rows, cols)
            self._l[rows] = alpha * self._l[rows] + p.sum(axis=1)
            self._acc[rows] = alpha[:, None] * self._acc[rows] + p @ self.v[c0:c1]
            self._m[rows] = m_new
        self._reads += reads
        self._writes += writes
        st = TileStep(index=self._index, q_tile=i, q_rows=(r0, r1), k_tile=j, k_cols=(c0, c1), scores=s,
                      m=self._m[rows].copy(), l=self._l[rows].copy(), out=self._normalised(rows), skipped=skipped,
                      reads=self._reads, writes=self._writes)
        self._index += 1
        return st


# -------------------------------------------------------------------------------------------- lesson
@dataclass(frozen=True)
class FlashTraceConfig:
    """A tiled-attention walk over one head's random q, k, v: sizes, fast memory, loop order, mask."""

    name: str = "flash-trace"
    description: str = ("FlashAttention's walk over the T x T score grid, one (query tile, key tile) pair at a time, "
                        "counting the bytes that cross between slow and fast memory.")
    seq_len: int = 64  # T
    head_size: int = 16  # d
    fast_memory_floats: int = 1024  # M: tiles of 16 keys for d = 16, so a 64 x 64 grid shows 4 x 4 tiles
    loop_order: str = "kv_outer"
    causal: bool = True
    seed: int = 0  # q, k, v are standard normal from this seed


def inputs(cfg: FlashTraceConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lesson's q, k, v (T, d) each and the output standard attention gives for them (T, d)."""
    q, k, v = np.random.default_rng(cfg.seed).standard_normal((3, cfg.seq_len, cfg.head_size))
    s = q @ k.T / np.sqrt(cfg.head_size)  # (T, T)
    if cfg.causal:
        s = np.where(np.tri(cfg.seq_len, dtype=bool), s, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return q, k, v, (p / p.sum(axis=1, keepdims=True)) @ v


def validate(cfg: FlashTraceConfig, ctx: ParseContext) -> FlashTraceConfig:
    """Fast memory must hold the tiles it implies."""
    try:
        _resolve_tiles(cfg.head_size, cfg.fast_memory_floats, None, None)
    except AttentionTraceError as err:
        ctx.fail("fast_memory_floats", str(err), at=("fast_memory_floats", "head_size"))
    return cfg


def run(cfg: FlashTraceConfig, steps: int | None = None, cancelled=lambda: False) -> list[TileStep]:
    """The first `steps` pairs of the walk (default: all of them)."""
    q, k, v, _ = inputs(cfg)
    trace = TiledAttentionTrace(q, k, v, causal=cfg.causal, fast_memory_floats=cfg.fast_memory_floats,
                                loop_order=cfg.loop_order)
    frames = []
    while (steps is None or len(frames) < steps) and not cancelled() and (st := trace.step()) is not None:
        frames.append(st)
    return frames


def summary(cfg: FlashTraceConfig, frames: list[TileStep]) -> str:
    """How far the walk got and the bytes it moved, against the whole walk and standard attention."""
    n, d = cfg.seq_len, cfg.head_size
    tile_q, tile_k = tile_sizes(d, cfg.fast_memory_floats)
    total = tiled_attention_traffic(n, d, cfg.fast_memory_floats, cfg.causal, loop_order=cfg.loop_order)
    naive = naive_attention_traffic(n, d)
    last = frames[-1]
    n_pairs = -(-n // tile_q) * -(-n // tile_k)
    head = (_("tiled attention, T={n}, d={d}, fast memory {floats} floats: tiles {tile_q} x {tile_k}, {order}, causal")
            if cfg.causal else
            _("tiled attention, T={n}, d={d}, fast memory {floats} floats: tiles {tile_q} x {tile_k}, {order}"))
    return "\n".join([
        head.format(n=n, d=d, floats=cfg.fast_memory_floats, tile_q=tile_q, tile_k=tile_k, order=cfg.loop_order),
        _("after {done} of {pairs} pairs: {read} bytes read, {written} written").format(
            done=last.index + 1, pairs=n_pairs, read=BYTES_PER_FLOAT * last.reads,
            written=BYTES_PER_FLOAT * last.writes),
        _("the whole walk moves {tiled} bytes; standard attention {naive} (tiled / standard = {ratio:.2f})").format(
            tiled=total.bytes, naive=naive.bytes, ratio=total.bytes / naive.bytes),
    ])



_RULES = {"name": non_empty, "seq_len": positive_int, "head_size": positive_int, "fast_memory_floats": positive_int,
          "loop_order": one_of(LOOP_ORDERS), "seed": non_negative}
LESSON = register(Lesson("flash_trace", N_("Tiled attention"), FlashTraceConfig, _RULES, validate, run, summary))
