"""A GPT-style decoder as a flat list of ops, each a forward/backward pair over shared buffers.

The same op list serves a full training step and the step-through view: a
phase of `TrainingSession.step_into` is one op's forward or backward.

Buffers: activations live in one arena per (B, T). The backward threads one
residual-stream gradient `dres` (N, C) down the network in place (a residual
add passes its gradient through unchanged, so nothing needs copying), with a
few scratch buffers for the gradients inside an op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.config import ModelConfig
from simulator.kernels.cpu import activations as act
from simulator.kernels.cpu.attention import (
    attention_heads_backward,
    attention_heads_forward,
    merge_heads,
    merge_qkv_grad,
    split_heads,
    split_heads_grad,
)
from simulator.kernels.cpu.attention_tiled import (
    BACKWARD_TILE_K,
    BACKWARD_TILE_Q,
    TILE_K,
    TILE_Q,
    tiled_attention_backward,
    tiled_attention_forward,
)
from simulator.kernels.cpu.batchnorm import (
    batchnorm_backward,
    batchnorm_eval_backward,
    batchnorm_eval_forward,
    batchnorm_forward,
    batchnorm_running_update,
)
from simulator.kernels.cpu.embedding import embedding_backward, embedding_forward
from simulator.kernels.cpu.linear import linear_backward, linear_forward
from simulator.kernels.cpu.norms import layernorm_backward, layernorm_forward, rmsnorm_backward, rmsnorm_forward
from simulator.kernels.cpu.rope import rope_backward, rope_forward, rope_tables, sinusoid_table
from simulator.kernels.cpu.softmax import crossentropy_forward, crossentropy_softmax_backward
from simulator.model.arena import Arena
from simulator.model.params import build_buffers, build_layout, has_final_norm, init_params, norm_sites

Tensors = dict[str, np.ndarray]


@dataclass
class Op:
    """One forward/backward pair; each returns the tensors it produced (by display name)."""

    name: str  # e.g. "block0.attn"
    forward: Callable[[], Tensors]
    backward: Callable[[], Tensors]


class GPT:
    """Parameters, gradients and activations of one model, and its ops in forward order."""

    def __init__(self, cfg: ModelConfig, dtype=np.float32, shared_params: np.ndarray | None = None,
                 shared_buffers: dict[str, np.ndarray] | None = None):
        assert cfg.vocab_size, "vocab_size must be resolved before building the model"
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.layout = build_layout(cfg)
        # shared_params: a second model over the same weights with its own activations (generation)
        self.params = shared_params if shared_params is not None else np.zeros(self.layout.size, dtype=self.dtype)
        self.grads = np.zeros(self.layout.size, dtype=self.dtype)
        self.p = self.layout.views(self.params)
        self.g = self.layout.views(self.grads)
        # buffers: state that is not trained (BatchNorm's running statistics); shared like the weights
        self.buffers = shared_buffers if shared_buffers is not None else build_buffers(cfg, self.dtype)
        self.dropout = float(cfg.dropout)  # live: read at every forward
        self.dropout_mode = cfg.dropout_mode  # live: inverted or classic
        self.training = True  # eval mode: dropout off (classic: scaled by 1-p), BatchNorm on running statistics
        self.dropout_rng = np.random.default_rng(0)  # the session replaces it with its own stream
        self.shape: tuple[int, int] | None = None
        self.ops: list[Op] = []
        self.position_offset = 0  # position of row 0: a KV-cache decoder runs one token at a time further on
        self.set_max_positions(cfg.seq_len)

    def init_weights(self, rng: np.random.Generator) -> None:
        """Draws fresh weights from `rng` by the config's init scheme."""
        init_params(self.p, self.layout, self.cfg, rng)

    # ----------------------------------------------------------------- buffers

    def ensure_shape(self, B: int, T: int) -> None:
        """Allocates activations for batches of (B, T) once; later calls with the same shape are free."""
        if self.shape == (B, T):
            return
        assert 1 <= T <= self.cfg.seq_len, (T, self.cfg.seq_len)
        cfg, C, N = self.cfg, self.cfg.d_model, B * T
        NH, HS, H, V = cfg.n_head, cfg.head_size, cfg.d_hidden, cfg.vocab_size
        shapes: dict[str, tuple[int, ...]] = {"x0": (N, C), "x0.mask": (N, C)}
        # a norm's cached statistics: one per row (layernorm, rmsnorm) or one per channel (batchnorm)
        stat = (C,) if cfg.norm == "batchnorm" else (N,)
        for site in norm_sites(cfg):
            shapes.update({site: (N, C), f"{site}.mean": stat, f"{site}.rstd": stat, f"{site}.var": stat})
        shapes.update({"rowmask": (N,), "dnorm_sum": (C,), "dnorm_xsum": (C,)})
        NKV, QKV, naive = cfg.kv_heads, C + 2 * cfg.kv_heads * HS, cfg.attention.impl == "naive"
        for i in range(cfg.n_layer):
            p = f"h{i}"
            # q and k as the scores use them (rotated, under rope); naive keeps the probabilities (T x T per
            # head), tiled only each row's log-sum-exp, from which its backward recomputes them
            shapes[f"{p}.att" if naive else f"{p}.lse"] = (B, NH, T, T) if naive else (B, NH, T)
            shapes.update({
                f"{p}.qkv": (N, QKV), f"{p}.q": (B, NH, T, HS), f"{p}.k": (B, NKV, T, HS),
                f"{p}.v": (B, NKV, T, HS), f"{p}.yh": (B, NH, T, HS),
                f"{p}.y": (N, C), f"{p}.attn": (N, C), f"{p}.attn.mask": (N, C), f"{p}.res1": (N, C),
                f"{p}.fc": (N, H), f"{p}.act": (N, H), f"{p}.mlp": (N, C), f"{p}.mlp.mask": (N, C),
                f"{p}.res2": (N, C),
            })
        shapes.update({"logits": (N, V), "losses": (N,), "uniform": (N * H,)})
        # gradient scratch: the residual stream, an op's input, inside attention and the MLP
        shapes.update({"dres": (N, C), "dz": (N, C), "dh": (N, C), "dbranch": (N, C), "dy": (N, C),
                       "dqkv": (N, QKV), "dq": (B, NH, T, HS), "dk": (B, NKV, T, HS), "dv": (B, NKV, T, HS),
                       "dyh": (B, NH, T, HS), "dfc": (N, H), "dact": (N, H), "dlogits": (N, V)})
        if naive:
            shapes["datt"] = (B, NH, T, T)
        if cfg.positional != "learned":  # the gradient a fixed position table receives, thrown away
            shapes["dpos"] = (T, C)
        self.acts = Arena(shapes, self.dtype)
        self.acts["rowmask"].fill(1.0)  # every row of a batch is a real token: batches are never padded
        self.ids = np.zeros((B, T), dtype=np.int32)
        self.targets = np.zeros((B, T), dtype=np.int32)
        self.kv_len = np.full(B, T, dtype=np.int32)  # real tokens per row; the rest is <pad> (see set_lengths)
        self.padded = False
        self.shape = (B, T)
        self._dropout_on: dict[str, bool] = {}
        self._norm_trained: dict[str, bool] = {}
        self.ops = self._build_ops()

    # -------------------------------------------------------------- ops list

    def _build_ops(self) -> list[Op]:
        cfg = self.cfg
        ops = [Op("embed", self._embed_forward, self._embed_backward)]
        x = "x0"  # name of the residual stream entering the next block
        for i in range(cfg.n_layer):
            block_ops, x = self._block_ops(i, x)
            ops += block_ops
        if has_final_norm(cfg):
            f, b = self._norm_pair("norm_f", x, "norm_f", first=True)
            ops.append(Op("norm_f", f, b))
            x = "norm_f"
        self.final = x
        ops.append(Op("head", self._head_forward, self._head_backward))
        return ops

    @property
    def activation_sites(self) -> list[str]:
        """The activations worth watching, in forward order: the stream, each norm's input and output."""
        cfg, pre = self.cfg, self.cfg.norm_position == "pre"
        order = ("norm1", "attn", "res1", "norm2", "mlp", "res2") if pre else \
            ("attn", "res1", "norm1", "mlp", "res2", "norm2")
        skip = ("norm" if cfg.norm == "none" else "-", "res" if not cfg.residual else "-")
        names = ["x0"]
        for i in range(cfg.n_layer):
            names += [f"h{i}.{s}" for s in order if not s.startswith(skip)]
        return names + (["norm_f"] if has_final_norm(cfg) else [])

    def _block_ops(self, i: int, x: str) -> tuple[list[Op], str]:
        """The ops of block i reading stream `x`; returns them and the name of the block's output."""
        cfg, p = self.cfg, f"h{i}"
        has_norm, pre = cfg.norm != "none", cfg.norm_position == "pre"
        ops = []
        if pre:  # x + attn(norm1(x)) -> x + mlp(norm2(x))
            h = x
            if has_norm:
                ops.append(Op(f"block{i}.norm1", *self._norm_pair(f"{p}.norm1", x, f"{p}.norm1")))
                h = f"{p}.norm1"
            ops.append(Op(f"block{i}.attn", *self._branch_pair(i, "attn", h, x, f"{p}.res1", into_dres=not has_norm)))
            x = f"{p}.res1" if cfg.residual else f"{p}.attn"
            h = x
            if has_norm:
                ops.append(Op(f"block{i}.norm2", *self._norm_pair(f"{p}.norm2", x, f"{p}.norm2")))
                h = f"{p}.norm2"
            ops.append(Op(f"block{i}.mlp", *self._branch_pair(i, "mlp", h, x, f"{p}.res2", into_dres=not has_norm)))
            x = f"{p}.res2" if cfg.residual else f"{p}.mlp"
        else:  # norm1(x + attn(x)) -> norm2(x + mlp(x))
            for branch, site, res in (("attn", "norm1", "res1"), ("mlp", "norm2", "res2")):
                ops.append(Op(f"block{i}.{branch}", *self._branch_pair(i, branch, x, x, f"{p}.{res}", into_dres=True,
                                                                       grad_from="dz" if has_norm else "dres")))
                x = f"{p}.{res}" if cfg.residual else f"{p}.{branch}"
                if has_norm:
                    ops.append(Op(f"block{i}.{site}", *self._norm_pair(f"{p}.{site}", x, f"{p}.{site}", post=True)))
                    x = f"{p}.{site}"
        return ops, x

    # ------------------------------------------------------------ positions

    def set_max_positions(self, n: int) -> None:
        """Builds the fixed position tables for positions 0 .. n-1 (learned positions stop at seq_len)."""
        cfg, kind = self.cfg, self.cfg.positional
        # added to the token embedding: sinusoids, or zeros for none and rope (rope acts on q and k instead).
        # The sinusoids are scaled to init_std, the token embeddings' own scale: at amplitude 1 they would
        # drown the tokens (std 0.02) and the model would learn nothing past letter frequencies. The paper
        # balances the two the other way, multiplying its (larger) token embeddings by sqrt(d_model).
        self.pos_table = (cfg.init_std * sinusoid_table(n, cfg.d_model, np.float64)).astype(self.dtype) \
            if kind == "sinusoidal" else np.zeros((n, cfg.d_model), self.dtype) if kind != "learned" else None
        self.rope_cos, self.rope_sin = rope_tables(n, cfg.head_size, self.dtype) if kind == "rope" else (None, None)

    def set_lengths(self, lengths: np.ndarray | None = None) -> None:
        """How many leading tokens of each row are real (the rest is <pad>); None: every row is full.

        Padding keys are hidden from attention (kv_len), and padding rows count
        neither in the loss nor in BatchNorm's statistics (rowmask).
        """
        B, T = self.shape
        if lengths is None:
            self.kv_len.fill(T)
        else:
            assert np.shape(lengths) == (B,) and 0 <= np.min(lengths) and np.max(lengths) <= T, lengths
            self.kv_len[...] = lengths
        self.padded = bool(np.any(self.kv_len < T))
        self.acts["rowmask"][...] = (np.arange(T)[None, :] < self.kv_len[:, None]).reshape(-1)

    # ------------------------------------------------------------ embedding

    def _embed_forward(self) -> Tensors:
        B, T = self.shape
        A, t0 = self.acts, self.position_offset
        pos = self.p["wpe"] if self.cfg.positional == "learned" else self.pos_table
        embedding_forward(A["x0"].reshape(B, T, -1), self.ids, self.p["wte"], pos[t0:t0 + T])
        self._apply_dropout("x0")
        return {"x0": A["x0"]}

    def _embed_backward(self) -> Tensors:
        B, T = self.shape
        t0 = self.position_offset
        d = self._dropout_grad("x0", self.acts["dres"])
        if self.cfg.positional == "learned":
            embedding_backward(self.g["wte"], self.g["wpe"][t0:t0 + T], d.reshape(B, T, -1), self.ids)
            return {"d wte": self.g["wte"], "d wpe": self.g["wpe"]}
        self.acts["dpos"].fill(0.0)  # a fixed table: its gradient is computed (same kernel) and dropped
        embedding_backward(self.g["wte"], self.acts["dpos"], d.reshape(B, T, -1), self.ids)
        return {"d wte": self.g["wte"]}

    # ---------------------------------------------------------------- norms

    def _norm_pair(self, prefix: str, inp: str, out: str, first=False, post=False):
        """Forward/backward of a norm reading `inp`.

        Pre-norm: the output gradient is in `dh`; the input gradient is added onto
        the stream gradient `dres` (which also flows on through the residual), or
        written there at the final norm (`first`: nothing has reached `dres` yet).
        Post-norm: the norm sits on the stream, so it reads `dres` and writes `dz`,
        which the branch below turns back into `dres`.
        """
        A, P, G = self.acts, self.p, self.g
        rms, bn = self.cfg.norm == "rmsnorm", self.cfg.norm == "batchnorm"

        def forward():
            if bn:
                self._batchnorm_forward(prefix, inp, out)
            elif rms:
                rmsnorm_forward(A[out], A[f"{out}.rstd"], A[inp], P[f"{prefix}.w"])
            else:
                layernorm_forward(A[out], A[f"{out}.mean"], A[f"{out}.rstd"], A[inp], P[f"{prefix}.w"],
                                  P[f"{prefix}.b"])
            return {out: A[out]}

        def backward():
            dout = A["dres"] if post else A["dh"]
            dinp = A["dz"] if post else A["dres"]
            if post or first:
                dinp.fill(0.0)
            if bn:
                self._batchnorm_backward(prefix, inp, out, dinp, dout)
            elif rms:
                rmsnorm_backward(dinp, G[f"{prefix}.w"], dout, A[inp], P[f"{prefix}.w"], A[f"{out}.rstd"])
            else:
                layernorm_backward(dinp, G[f"{prefix}.w"], G[f"{prefix}.b"], dout, A[inp], P[f"{prefix}.w"],
                                   A[f"{out}.mean"], A[f"{out}.rstd"])
            names = [k for k in (f"{prefix}.w", f"{prefix}.b") if k in G]
            return {f"d {inp}": dinp, **{f"d {k}": G[k] for k in names}}

        return forward, backward

    def _batchnorm_forward(self, prefix: str, inp: str, out: str) -> None:
        """Train mode: batch statistics over the rows, then the running statistics move; eval: running ones."""
        A, P = self.acts, self.p
        running_mean, running_var = self.buffers[f"{prefix}.running_mean"], self.buffers[f"{prefix}.running_var"]
        if self.training:
            batchnorm_forward(A[out], A[f"{out}.mean"], A[f"{out}.var"], A[f"{out}.rstd"], A[inp], A["rowmask"],
                              P[f"{prefix}.w"], P[f"{prefix}.b"])
            batchnorm_running_update(running_mean, running_var, A[f"{out}.mean"], A[f"{out}.var"], A["rowmask"],
                                     self.cfg.batchnorm_momentum)
        else:
            batchnorm_eval_forward(A[out], A[f"{out}.mean"], A[f"{out}.rstd"], A[inp], running_mean, running_var,
                                   P[f"{prefix}.w"], P[f"{prefix}.b"])
        self._norm_trained[out] = self.training  # the backward must differentiate what the forward did

    def _batchnorm_backward(self, prefix: str, inp: str, out: str, dinp: np.ndarray, dout: np.ndarray) -> None:
        A, P, G = self.acts, self.p, self.g
        if self._norm_trained.get(out, True):
            batchnorm_backward(dinp, G[f"{prefix}.w"], G[f"{prefix}.b"], dout, A[inp], A["rowmask"], P[f"{prefix}.w"],
                               A[f"{out}.mean"], A[f"{out}.rstd"], A["dnorm_sum"], A["dnorm_xsum"])
        else:
            batchnorm_eval_backward(dinp, G[f"{prefix}.w"], G[f"{prefix}.b"], dout, A[inp], P[f"{prefix}.w"],
                                    A[f"{out}.mean"], A[f"{out}.rstd"])

    # ------------------------------------------------------- attention / mlp

    def _branch_pair(self, i: int, branch: str, inp: str, stream: str, res: str, into_dres: bool,
                     grad_from: str = "dres"):
        """Forward/backward of an attention or MLP branch reading `inp`, with its residual add.

        Forward: out = branch(inp); res = stream + out when residuals are on.
        Backward: the output gradient is `dres` (the stream's); the input gradient
        is written to `dh` when a norm sits before the branch, else added into
        `dres` (`into_dres`: the branch reads the stream itself).
        """
        A, cfg, p = self.acts, self.cfg, f"h{i}"
        out = f"{p}.{branch}"
        run_forward = self._attn_forward if branch == "attn" else self._mlp_forward
        run_backward = self._attn_backward if branch == "attn" else self._mlp_backward

        def forward():
            run_forward(p, inp, out)
            self._apply_dropout(out)
            produced = {out: A[out]}
            if cfg.residual:
                act.residual_forward(A[res], A[stream], A[out])
                produced[res] = A[res]
            return produced

        def backward():
            dstream = A[grad_from]  # gradient of the branch output (and of `stream` through the residual)
            dout = self._dropout_grad(out, dstream)
            dinp = A["dh"]
            run_backward(p, inp, dout, dinp)  # writes dinp
            if into_dres:  # the branch read the stream: its input gradient joins the stream's
                if grad_from == "dres":
                    if cfg.residual:
                        act.add_inplace(A["dres"], dinp)
                    else:
                        np.copyto(A["dres"], dinp)
                elif cfg.residual:  # post-norm: stream gradient = dz (residual) + branch input gradient
                    act.residual_forward(A["dres"], A[grad_from], dinp)
                else:
                    np.copyto(A["dres"], dinp)
            elif not cfg.residual:  # pre-norm without residual: only the norm's gradient reaches the stream
                A["dres"].fill(0.0)
            names = [k for k in self.g if k.startswith(f"{p}.{branch}.")]
            return {f"d {inp}": dinp, **{f"d {k}": self.g[k] for k in names}}

        return forward, backward

    def _attn_forward(self, p: str, inp: str, out: str) -> None:
        A, P = self.acts, self.p
        linear_forward(A[f"{p}.qkv"], A[inp], P[f"{p}.attn.qkv.w"], P[f"{p}.attn.qkv.b"])  # (N, C + 2 NKV HS)
        self._attend(p)  # {p}.qkv -> {p}.y
        linear_forward(A[out], A[f"{p}.y"], P[f"{p}.attn.proj.w"], P[f"{p}.attn.proj.b"])  # (N, C)

    def _attend(self, p: str) -> None:
        """Heads from the fused projection, positions rotated in (rope), attention, heads merged into {p}.y."""
        A, (B, T), att = self.acts, self.shape, self.cfg.attention
        q, k, v, yh = A[f"{p}.q"], A[f"{p}.k"], A[f"{p}.v"], A[f"{p}.yh"]
        split_heads(q, k, v, A[f"{p}.qkv"].reshape(B, T, -1))  # (B, NH, T, HS), k and v (B, NKV, T, HS)
        if self.rope_cos is not None:
            cos, sin = self._rope_rows()
            rope_forward(q, cos, sin)
            rope_forward(k, cos, sin)
        causal = att.mask == "causal"
        if att.impl == "tiled":
            tile_q, tile_k = att.tile_q or TILE_Q, att.tile_k or TILE_K
            tiled_attention_forward(yh, A[f"{p}.lse"], q, k, v, self.kv_len, self._attn_scale(), causal, tile_q, tile_k)
        else:
            attention_heads_forward(yh, A[f"{p}.att"], q, k, v, self._attn_scale(), causal, self.kv_len)
        merge_heads(A[f"{p}.y"].reshape(B, T, -1), yh)  # (B, T, C)

    def _attn_backward(self, p: str, inp: str, dout: np.ndarray, dinp: np.ndarray) -> None:
        A, P, G, (B, T), att = self.acts, self.p, self.g, self.shape, self.cfg.attention
        linear_backward(A["dy"], G[f"{p}.attn.proj.w"], G[f"{p}.attn.proj.b"], dout, A[f"{p}.y"],
                        P[f"{p}.attn.proj.w"])
        dq, dk, dv, dyh = A["dq"], A["dk"], A["dv"], A["dyh"]
        q, k, v = A[f"{p}.q"], A[f"{p}.k"], A[f"{p}.v"]
        split_heads_grad(dyh, A["dy"].reshape(B, T, -1))
        if att.impl == "tiled":
            for d in (dq, dk, dv):  # the tiled backward accumulates
                d.fill(0.0)
            tile_q, tile_k = att.tile_q or BACKWARD_TILE_Q, att.tile_k or BACKWARD_TILE_K
            tiled_attention_backward(dq, dk, dv, dyh, q, k, v, A[f"{p}.yh"], A[f"{p}.lse"], self.kv_len,
                                     self._attn_scale(), att.mask == "causal", tile_q, tile_k)
        else:
            attention_heads_backward(dq, dk, dv, A["datt"], dyh, q, k, v, A[f"{p}.att"], self._attn_scale())
        if self.rope_cos is not None:  # gradients of the rotated q, k -> of the projected ones
            cos, sin = self._rope_rows()
            rope_backward(dq, cos, sin)
            rope_backward(dk, cos, sin)
        merge_qkv_grad(A["dqkv"].reshape(B, T, -1), dq, dk, dv)
        linear_backward(dinp, G[f"{p}.attn.qkv.w"], G[f"{p}.attn.qkv.b"], A["dqkv"], A[inp], P[f"{p}.attn.qkv.w"])

    def _rope_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the rope tables for this batch's positions."""
        t0, T = self.position_offset, self.shape[1]
        return self.rope_cos[t0:t0 + T], self.rope_sin[t0:t0 + T]

    def _attn_scale(self) -> float:
        """What scores q.k are multiplied by: 1/sqrt(head size), or 1 (scale: none)."""
        return 1.0 / np.sqrt(self.cfg.head_size) if self.cfg.attention.scale == "sqrt_dk" else 1.0

    def attention_probs(self, layer: int) -> np.ndarray:
        """A layer's attention probabilities (B, NH, T, T) in the last forward.

        Naive attention keeps them. Tiled attention keeps only each row's
        log-sum-exp, so they are recomputed exactly as its backward does:
        P = exp(scale q k^T - lse) on the visible keys (a new array, on request).
        """
        A, p = self.acts, f"h{layer}"
        if self.cfg.attention.impl == "naive":
            return A[f"{p}.att"]
        q, k = A[f"{p}.q"].astype(np.float64), A[f"{p}.k"].astype(np.float64)
        B, NH, T, HS = q.shape
        nkv = k.shape[1]
        s = (q.reshape(B, nkv, -1, HS) @ k.transpose(0, 1, 3, 2)).reshape(B, NH, T, T) * self._attn_scale()
        lse = A[f"{p}.lse"].astype(np.float64)
        visible = np.arange(T)[None, None, None, :] < self.kv_len[:, None, None, None]  # (B, 1, 1, T) keys
        if self.cfg.attention.mask == "causal":
            visible = visible & np.tri(T, dtype=bool)
        lse = np.where(np.isfinite(lse), lse, np.inf)  # a row without keys: all zeros
        return np.where(visible, np.exp(np.where(visible, s, 0.0) - lse[..., None]), 0.0).astype(self.dtype)

    def attention_entropy(self, layer: int, probs: np.ndarray | None = None) -> np.ndarray:
        """(NH,) mean entropy in nats of each head's attention rows in a layer (real tokens only).

        0 means every query looks at one key (a saturated softmax); log(n) is
        uniform attention over n keys. `probs`: attention_probs(layer), if at hand.
        """
        P = (self.attention_probs(layer) if probs is None else probs).astype(np.float64)
        B, NH, T, _ = P.shape
        h = -(P * np.log(np.where(P > 0, P, 1.0))).sum(axis=-1)  # (B, NH, T)
        rows = self.acts["rowmask"].reshape(B, 1, T).astype(np.float64)
        return (h * rows).sum(axis=(0, 2)) / max(float(rows.sum()), 1.0)

    def attention_saturation(self, layer: int, probs: np.ndarray | None = None, margin: float = 0.01) -> np.ndarray:
        """(NH,) share of each head's rows (real tokens with two or more visible keys) whose top probability > 1-margin.

        Such a softmax row is nearly one-hot: with top probability 1 - e, its score
        gradient dS = p (dP - sum(p dP)) has |dS|_1 <= 4 e max|dP|, so q and k learn
        almost nothing from it, however large the gradient dP arriving from above.
        """
        P = self.attention_probs(layer) if probs is None else probs
        B, NH, T, _ = P.shape
        keys = np.minimum(self.kv_len[:, None], T)  # (B, 1): visible keys per query row
        if self.cfg.attention.mask == "causal":
            keys = np.minimum(keys, np.arange(1, T + 1)[None, :])  # (B, T)
        rows = (np.broadcast_to(keys, (B, T)) >= 2) & (self.acts["rowmask"].reshape(B, T) != 0)
        top = P.max(axis=-1) > 1.0 - margin  # (B, NH, T)
        return (top & rows[:, None, :]).sum(axis=(0, 2)) / max(int(rows.sum()), 1)

    def _mlp_forward(self, p: str, inp: str, out: str) -> None:
        A, P = self.acts, self.p
        linear_forward(A[f"{p}.fc"], A[inp], P[f"{p}.mlp.fc.w"], P[f"{p}.mlp.fc.b"])  # (N, H)
        act.ACTIVATION_KERNELS[self.cfg.activation][0](A[f"{p}.act"], A[f"{p}.fc"])
        linear_forward(A[out], A[f"{p}.act"], P[f"{p}.mlp.proj.w"], P[f"{p}.mlp.proj.b"])  # (N, C)

    def _mlp_backward(self, p: str, inp: str, dout: np.ndarray, dinp: np.ndarray) -> None:
        A, P, G = self.acts, self.p, self.g
        linear_backward(A["dact"], G[f"{p}.mlp.proj.w"], G[f"{p}.mlp.proj.b"], dout, A[f"{p}.act"],
                        P[f"{p}.mlp.proj.w"])
        A["dfc"].fill(0.0)
        act.ACTIVATION_KERNELS[self.cfg.activation][1](A["dfc"], A[f"{p}.fc"], A["dact"])
        linear_backward(dinp, G[f"{p}.mlp.fc.w"], G[f"{p}.mlp.fc.b"], A["dfc"], A[inp], P[f"{p}.mlp.fc.w"])

    # ------------------------------------------------------- identity path

    def identity_fractions(self, params: Tensors | None = None) -> dict[str, float]:
        """Per residual sublayer ("h0.attn", "h0.mlp", ...): how much of its input reaches its output unchanged.

        A sublayer maps its input stream x (N, C) to y = x + f (pre-norm, or no norm)
        or to y = norm(x + f) (post-norm), f being the branch output. With its
        statistics fixed, a norm is linear plus a bias, so y = S(x) + S(f) + beta,
        where S is what the skip path does to x: the identity for pre-norm; for
        post-norm the norm's centring and scaling with the statistics of x + f
        (LayerNorm: gamma (x - row mean) row_rstd; RMSNorm: gamma x row_rstd;
        BatchNorm: gamma (x - channel mean) channel_rstd). The fraction is
        ||S(x)|| / ||S0(x)||, where S0 is the same map with the statistics of x
        alone, i.e. what would reach the output if the branch added nothing. So it
        is exactly 1 for pre-norm (and without norms), 0 without residuals, and for
        post-norm about rms(x) / rms(x + f): 1/sqrt(2) once the branch is as large
        as the stream and uncorrelated with it. Computed from the last forward's
        tensors; `params`: the weight views that forward used (default: current).
        """
        cfg, A = self.cfg, self.acts
        P = self.p if params is None else params
        out: dict[str, float] = {}
        post = cfg.norm != "none" and cfg.norm_position == "post"
        x_name = "x0"
        for i in range(cfg.n_layer):
            for branch, site in (("attn", "norm1"), ("mlp", "norm2")):
                key = f"h{i}.{branch}"
                if not cfg.residual:
                    out[key] = 0.0
                elif not post:
                    out[key] = 1.0
                else:
                    norm = f"h{i}.{site}"
                    x, gamma = A[x_name].astype(np.float64), P[f"{norm}.w"].astype(np.float64)
                    through = np.linalg.norm(self._norm_linear_part(x, norm, gamma, own_statistics=False))
                    alone = np.linalg.norm(self._norm_linear_part(x, norm, gamma, own_statistics=True))
                    out[key] = float(through / alone) if alone > 0 else 0.0
                    x_name = norm
        return out

    def _norm_linear_part(self, x: np.ndarray, site: str, gamma: np.ndarray, own_statistics: bool) -> np.ndarray:
        """What norm `site` does to x along the skip path: with the last forward's statistics, or with x's own."""
        A, kind, eps = self.acts, self.cfg.norm, 1e-5  # the norms' eps
        if kind == "batchnorm":
            valid = A["rowmask"] != 0
            if not self._norm_trained.get(site, True):  # running statistics: a fixed map, whatever x is
                return gamma * x * A[f"{site}.rstd"].astype(np.float64)
            xc = x - x[valid].mean(axis=0)
            rstd = 1.0 / np.sqrt((xc[valid] ** 2).mean(axis=0) + eps) if own_statistics else \
                A[f"{site}.rstd"].astype(np.float64)
            return gamma * xc * rstd
        xc = x - x.mean(axis=1, keepdims=True) if kind == "layernorm" else x
        rstd = 1.0 / np.sqrt((xc ** 2).mean(axis=1) + eps) if own_statistics else A[f"{site}.rstd"].astype(np.float64)
        return gamma * xc * rstd[:, None]

    # ------------------------------------------------------------- dropout

    def _apply_dropout(self, site: str) -> None:
        """Dropout in place on activation `site` when its rate is above 0.

        Inverted (default): training keeps each element with probability 1-p and
        scales it by 1/(1-p); eval is the identity. Classic: training keeps without
        scaling; eval multiplies by 1-p. Either way the expected value is the same
        in both modes. The per-element factor stays in `{site}.mask` for the backward.
        """
        p, classic = self.dropout, self.dropout_mode == "classic"
        on = p > 0.0 and (self.training or classic)
        self._dropout_on[site] = on
        if not on:
            return
        A = self.acts
        x, mask = A[site], A[f"{site}.mask"]
        if not self.training:  # classic at inference: every unit is on, so scale to the training expectation
            mask.fill(1.0 - p)
            np.multiply(x, mask, out=x)
            return
        uniform = A["uniform"][:x.size].reshape(x.shape)
        self.dropout_rng.random(out=uniform, dtype=self.dtype)
        (act.dropout_classic_forward if classic else act.dropout_forward)(x, mask, x, uniform, p)

    def _dropout_grad(self, site: str, dout: np.ndarray) -> np.ndarray:
        """The gradient before `site`'s dropout: dout times the mask (in scratch), or dout itself."""
        if not self._dropout_on.get(site, False):
            return dout
        d = self.acts["dbranch"]
        np.multiply(dout, self.acts[f"{site}.mask"], out=d)
        return d

    # ---------------------------------------------------------- head, loss

    def _head_weight(self, grads=False) -> np.ndarray:
        src = self.g if grads else self.p
        return src["wte"].T if self.cfg.tie_embeddings else src["lm_head.w"]  # (C, V)

    def _head_forward(self) -> Tensors:
        A = self.acts
        linear_forward(A["logits"], A[self.final], self._head_weight(), None)  # (N, V)
        return {"logits": A["logits"]}

    def _head_backward(self) -> Tensors:
        A = self.acts
        self.grads.fill(0.0)  # the first backward op of a step: parameter gradients accumulate from here
        # the stream gradient starts here, written; a final norm reads it from dh
        dst = A["dh"] if has_final_norm(self.cfg) else A["dres"]
        linear_backward(dst, self._head_weight(grads=True), None, A["dlogits"], A[self.final], self._head_weight())
        name = "d wte" if self.cfg.tie_embeddings else "d lm_head.w"
        return {f"d {self.final}": dst, name: self._head_weight(grads=True)}

    def loss_and_dlogits(self) -> float:
        """Mean cross-entropy of the current logits against `self.targets`; writes dlogits (fused).

        With padding (set_lengths) the mean runs over the real tokens only: pad
        rows get loss 0 and dlogits 0.
        """
        A = self.acts
        if not self.padded:
            N = A["losses"].shape[0]
            crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], self.targets.reshape(-1), 1.0 / N)
            return float(A["losses"].mean(dtype=np.float64))
        rows = A["rowmask"]
        n_real = max(int(self.kv_len.sum()), 1)
        crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], self.targets.reshape(-1), 1.0 / n_real)
        np.multiply(A["dlogits"], rows[:, None], out=A["dlogits"])
        return self._real_mean(n_real)

    def loss_only(self) -> float:
        """Mean cross-entropy of the current logits (no gradient), for evaluation; real tokens only."""
        A = self.acts
        crossentropy_forward(A["losses"], A["logits"], self.targets.reshape(-1))
        if not self.padded:
            return float(A["losses"].mean(dtype=np.float64))
        return self._real_mean(max(int(self.kv_len.sum()), 1))

    def _real_mean(self, n_real: int) -> float:
        losses = self.acts["losses"]
        np.multiply(losses, self.acts["rowmask"], out=losses)  # pad rows: 0
        return float(losses.sum(dtype=np.float64) / n_real)

    # ------------------------------------------------------------- helpers

    def forward(self, ids: np.ndarray, targets: np.ndarray | None = None,
                lengths: np.ndarray | None = None) -> float | None:
        """Runs every op's forward on `ids` (B, T); returns the mean loss when targets are given.

        `lengths` (B,): real tokens per row, the rest padding (see set_lengths); None: no padding.
        """
        B, T = ids.shape
        self.ensure_shape(B, T)
        self.set_lengths(lengths)
        self.ids[...] = ids
        for op in self.ops:
            op.forward()
        if targets is None:
            return None
        self.targets[...] = targets
        return self.loss_only()

    def backward(self) -> None:
        """Runs every op's backward in reverse order (the head's zeroes the gradients first)."""
        for op in reversed(self.ops):
            op.backward()

    def logits(self) -> np.ndarray:
        """The logits of the last forward, (B, T, V)."""
        B, T = self.shape
        return self.acts["logits"].reshape(B, T, -1)
