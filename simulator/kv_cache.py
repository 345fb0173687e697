"""A KV cache for generation: every layer's keys and values of the tokens so far, so a new token costs one row.

Token by token, nothing is recomputed: the new token's q, k and v come from its own row, its k and v
join the cache, and its query attends to every cached key. Keys are cached after the rope rotation
(a key's rotation depends on its own position only, so it never changes).

Why it is exact: under the causal mask the logits at position t do not depend on later tokens, so
the cache gives the logits a whole-sequence forward gives (the tests check every position in
float64). A bidirectional model (attention.mask: none) has no such property, as every new token
changes every earlier position: it is always recomputed over the whole context.

Length: learned positions exist for seq_len positions only. The session's decoder holds seq_len
positions; past that, each token is recomputed over the last seq_len tokens (a sliding window,
without a cache). Sinusoidal, rope and none are functions of the position, so a decoder built with
a larger `capacity` runs past the trained length.

Memory: 2 (k and v) x n_layer x n_kv_head x head_size numbers per token, so MQA keeps 1/n_head of
what MHA keeps, and GQA with g kv heads g/n_head (`kv_cache_bytes_per_token`).

Local attention (`attention.mask: local`, Longformer-style): a query sees the first `global_tokens`
keys and the last `window` ones, so the cache keeps only those: n_global slots for the global tokens
and a ring of `window` slots where position p (past the global ones) lives at n_global + (p - n_global)
mod window, overwriting the position `window` before it, which no later query sees. Its memory is
(n_global + window) tokens' worth whatever the sequence length, and with positions that are functions
(sinusoidal, rope, none) a decoder with a large `capacity` generates far past seq_len in that memory.

Shape alphabet: L layers, NH query heads, NKV key/value heads, G = NH / NKV, HS head size, V vocab.
"""

from __future__ import annotations

import numpy as np

from simulator.config import ModelConfig
from simulator.model.gpt import GPT


def kv_cache_bytes_per_token(cfg: ModelConfig, dtype=np.float32) -> dict[str, int]:
    """Cache bytes per token of this model ("model"), and of the same model as MHA, GQA (if it is one) and MQA."""
    per_kv_head = 2 * cfg.n_layer * cfg.head_size * np.dtype(dtype).itemsize  # k and v of one head, every layer
    out = {"model": per_kv_head * cfg.kv_heads, "MHA": per_kv_head * cfg.n_head}
    if 1 < cfg.kv_heads < cfg.n_head:
        out["GQA"] = per_kv_head * cfg.kv_heads
    out["MQA"] = per_kv_head
    return out


class KVCache:
    """Keys and values of every layer for one sequence of up to `capacity` tokens (a window's worth under a local
    mask: `window` > 0 keeps the `n_global` first tokens and a ring of the last `window`)."""

    def __init__(self, cfg: ModelConfig, dtype, capacity: int, window: int = 0, n_global: int = 0):
        self.window, self.n_global = int(window), int(n_global)
        slots = capacity if self.window <= 0 else min(capacity, self.n_global + self.window)
        shape = (cfg.n_layer, cfg.kv_heads, slots, cfg.head_size)  # (L, NKV, slots, HS)
        self.k = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)
        self.tokens = np.zeros(capacity, np.int32)  # the ids of the sequence so far (their keys may be gone)
        self.length = 0
        self.capacity = capacity

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @property
    def ring(self) -> bool:
        """Whether positions past the global ones share a ring of `window` slots (else a slot per position)."""
        return self.k.shape[2] < self.capacity

    def slot(self, p: int) -> int:
        """Where position p's key and value live."""
        if not self.ring or p < self.n_global:
            return p
        return self.n_global + (p - self.n_global) % self.window

    def visible_slots(self, t: int) -> np.ndarray | slice:
        """The slots of the keys query t sees: every earlier one, or under a local mask the global ones and the
        last `window` (as the attention kernels' `_local_span`: a window reaching back into the global tokens
        sees them all)."""
        if self.window <= 0 or t < self.n_global:
            return slice(0, t + 1)
        recent = [self.slot(p) for p in range(max(t - self.window + 1, self.n_global), t + 1)]
        return np.array([*range(self.n_global), *recent], dtype=np.intp)

    def kept_positions(self, n: int) -> list[int]:
        """The positions of a prompt of n tokens whose keys the cache keeps (the ring: its last `window`)."""
        if not self.ring:
            return list(range(n))
        return [p for p in range(n) if p < self.n_global or p >= max(n - self.window, self.n_global)]

    def holds_prefix_of(self, ids: np.ndarray) -> bool:
        """Whether the cached tokens are a (non-empty) prefix of `ids` that `ids` extends."""
        n = self.length
        return 0 < n < len(ids) and np.array_equal(self.tokens[:n], ids[:n])


class _CachedStep(GPT):
    """A (1, 1) GPT whose attention reads and extends a KVCache instead of attending within its batch.

    It overrides the attention op's hook `GPT.attend` only: the projections, the heads and rope before it,
    and every other op (embedding at the cache's position, norms, MLP, eval-mode dropout, head) are the
    GPT's own, so the one new row goes through the same code as a whole-sequence forward.
    """

    def __init__(self, cfg: ModelConfig, dtype, params: np.ndarray, buffers: dict, cache: KVCache,
                 frozen: np.ndarray | None = None, qbase=None):
        super().__init__(cfg, dtype, shared_params=params, shared_buffers=buffers, shared_frozen=frozen,
                         shared_qbase=qbase)
        self.cache = cache
        self.training = False
        self.set_max_positions(cache.capacity)
        self.ensure_shape(1, 1)

    def attend(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, yh: np.ndarray) -> None:
        """The new token's k and v join the cache at its position; its query attends to every cached key."""
        cache, t = self.cache, self.position_offset
        at = cache.slot(t)
        cache.k[layer, :, at] = k[0, :, 0]  # k, v are (1, NKV, 1, HS), rotated under rope; q (1, NH, 1, HS)
        cache.v[layer, :, at] = v[0, :, 0]
        seen = cache.visible_slots(t)
        keys, values = cache.k[layer][:, seen], cache.v[layer][:, seen]  # (NKV, keys seen, HS)
        NKV = keys.shape[0]
        qg = q[0, :, 0].reshape(NKV, -1, q.shape[-1])  # (NKV, G, HS): the query heads of each kv head
        s = (qg @ keys.transpose(0, 2, 1)) * self.attention_scale()  # (NKV, G, t + 1)
        s -= s.max(axis=-1, keepdims=True)  # stable at any scale
        probs = np.exp(s)
        probs /= probs.sum(axis=-1, keepdims=True)
        yh[0, :, 0] = (probs @ values).reshape(q.shape[1], -1)  # (NKV, G, HS) -> (NH, HS), heads in order


class CachedDecoder:
    """Next-token logits for a growing sequence: a whole forward for the prompt, then one cached row per token."""

    def __init__(self, cfg: ModelConfig, dtype, params: np.ndarray, buffers: dict | None = None,
                 capacity: int | None = None, frozen: np.ndarray | None = None, qbase=None):
        capacity = cfg.seq_len if capacity is None else int(capacity)
        if cfg.positional == "learned" and capacity > cfg.seq_len:
            raise ValueError(f"learned positions stop at seq_len {cfg.seq_len}; capacity {capacity} is larger")
        self.cfg = cfg
        local = cfg.attention.window_args()  # {window, n_global} under a local mask: a window-sized cache
        self.cache = KVCache(cfg, dtype, capacity, local.get("window", 0), local.get("n_global", 0))
        # frozen: a LoRA model's base weights (params then holds its adapters); qbase: QLoRA's NF4 weights
        self.full = GPT(cfg, dtype, shared_params=params, shared_buffers=buffers, shared_frozen=frozen,
                        shared_qbase=qbase)
        self.full.training = False
        self.step_model = _CachedStep(cfg, dtype, params, self.full.buffers, self.cache, self.full.frozen,
                                      self.full.qbase)
        self.uses_cache = cfg.attention.causal  # causal and local: earlier logits never change
        self.last_mode = ""  # how the last call ran: prefill, cached, window, recompute

    def set_dropout(self, rate: float, mode: str) -> None:
        """Dropout settings (classic dropout scales by 1-p at inference); cached values assume them."""
        for m in (self.full, self.step_model):
            m.dropout, m.dropout_mode = float(rate), mode

    def reset(self) -> None:
        """Forgets the cached tokens (new weights, or new dropout settings)."""
        self.cache.length = 0

    def next_logits(self, ids: np.ndarray) -> np.ndarray:
        """Logits (V,) float64 for the token after `ids`.

        cached: the cache holds a prefix of ids (the last call's sequence): only the new tokens run.
        prefill: a whole forward over ids (up to seq_len), whose keys and values fill the cache.
        window: ids are longer than the cache: a whole forward over the last seq_len tokens.
        recompute: a bidirectional model, always a whole forward over the last seq_len tokens.
        """
        ids = np.asarray(ids, dtype=np.int32).reshape(-1)
        cache, n = self.cache, ids.size
        if not self.uses_cache or n > cache.capacity:
            self.reset()
            self.last_mode = "window" if self.uses_cache else "recompute"
            return self._whole(ids[-self.cfg.seq_len:])
        if not cache.holds_prefix_of(ids):
            self.reset()
            if n <= self.cfg.seq_len:
                self.last_mode = "prefill"
                logits = self._whole(ids)
                kept = cache.kept_positions(n)
                slots = [cache.slot(p) for p in kept]
                for i in range(self.cfg.n_layer):
                    cache.k[i][:, slots] = self.full.acts[f"h{i}.k"][0][:, kept]  # (NKV, n, HS), rotated (rope)
                    cache.v[i][:, slots] = self.full.acts[f"h{i}.v"][0][:, kept]
                cache.tokens[:n] = ids
                cache.length = n
                return logits
        self.last_mode = "cached"
        while cache.length < n:  # past seq_len (capacity > seq_len): the prompt itself goes a row at a time
            logits = self._step(ids[cache.length])
        return logits

    def _whole(self, ids: np.ndarray) -> np.ndarray:
        self.full.forward(ids[None, :])
        return self.full.logits()[0, -1].astype(np.float64)

    def _step(self, token: int) -> np.ndarray:
        m, cache = self.step_model, self.cache
        m.position_offset = cache.length  # the new token's position; attend writes its k and v there
        m.forward(np.array([[token]], dtype=np.int32))
        cache.tokens[cache.length] = token
        cache.length += 1
        return m.logits()[0, -1].astype(np.float64)
