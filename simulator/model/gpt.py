"""A GPT-style decoder as a flat list of ops, each a forward/backward pair over shared buffers.

The same op list serves a full training step and the step-through view: a
phase of `TrainingSession.step_into` is one op's forward or backward.

Buffers: activations live in one arena per (B, T), and so do the activations'
gradients (`grads_acts`, as llm.c's grads_acts). The backward contract is
llm.c's: every op's backward reads the gradient of its output and adds (+=)
into the gradients of its inputs and parameters, and `zero_grad`, which the
first backward op calls, zeroes them all once per step (an activation
gradient's buffer is cleared at its first use, see GradientArena). A residual
add passes its gradient on unchanged, so `x = x + f` keeps x's gradient
buffer: the stream has one buffer through its adds. Inside an op, the
gradients that BLAS products write whole (dy, dact; the naive attention's dq,
dk, dv) are scratch, and the others (dyh, dqkv, dfc, ...) are gradients whose
buffer every layer's op shares: one is never alive while another is.

Arrays and kernels come from a backend (simulator/backend/): `self.bk` allocates and moves arrays,
`self.k` holds the kernels by name. The CPU backend's arrays are numpy arrays and its kernels the numba
CPU ones; the CUDA backend's are device arrays and the twins, and the code here is the same for both.
The batch's ids, targets and row lengths are filled on the host (the data pipeline is numpy) and
mirrored where the kernels read them (`bk.mirror` / `bk.sync`: on the CPU the host arrays themselves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.backend import cpu_backend
from simulator.config import ModelConfig
from simulator.kernels.cpu import activations as cpu_act  # LoRA's dropout only: LoRA runs on the CPU backend alone
from simulator.kernels.cpu.attention_tiled import BACKWARD_TILE_K, BACKWARD_TILE_Q, TILE_K, TILE_Q
from simulator.kernels.cpu.lora import lora_backward, lora_forward  # no CUDA twin yet: backend cuda refuses LoRA
from simulator.kernels.cpu.qlora import qlora_linear_backward, qlora_linear_forward  # QLoRA's NF4 base, CPU only
from simulator.kernels.cpu.rope import rope_tables, sinusoid_table  # host-side tables, moved to the backend once
from simulator.model.arena import Arena, GradientArena
from simulator.model.lora import init_lora, lora_activation_shapes, lora_layout, lora_sites
from simulator.model.params import build_buffers, build_layout, has_final_norm, init_params, norm_sites
from simulator.model.qlora import QuantizedBase, float_base_layout

Tensors = dict[str, np.ndarray]


@dataclass
class Op:
    """One forward/backward pair; each returns the tensors it produced (by display name)."""

    name: str  # e.g. "block0.attn"
    forward: Callable[[], Tensors]
    backward: Callable[[], Tensors]


def activation_shapes(cfg: ModelConfig, B: int, T: int) -> dict[str, tuple[int, ...]]:
    """The forward arena of a GPT for batches of (B, T): every activation, cache and scratch array by name."""
    C, N = cfg.d_model, B * T
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
    # gradient scratch inside an op, written whole by BLAS products (so never zeroed); dlogits is
    # written by the loss, before the backward zeroes the gradients
    shapes.update({"dy": (N, C), "dact": (N, H), "dscratch": (N, C), "dlogits": (N, V)})
    if naive:
        shapes.update({"dq": (B, NH, T, HS), "dk": (B, NKV, T, HS), "dv": (B, NKV, T, HS), "datt": (B, NH, T, T)})
    shapes.update(lora_activation_shapes(cfg, N))  # nothing without LoRA
    return shapes


class GPT:
    """Parameters, gradients and activations of one model, and its ops in forward order."""

    def __init__(self, cfg: ModelConfig, dtype=np.float32, shared_params: np.ndarray | None = None,
                 shared_buffers: dict[str, np.ndarray] | None = None, shared_frozen: np.ndarray | None = None,
                 backend=None, shared_qbase: QuantizedBase | None = None):
        assert cfg.vocab_size, "vocab_size must be resolved before building the model"
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.bk = bk = backend if backend is not None else cpu_backend()  # where arrays live, which kernels run
        self.k = bk.k
        assert bk.on_host or not cfg.lora.on, "LoRA has no CUDA kernels yet (simulator.backend.backend_problem)"
        # `layout`, `params` and `grads` cover the trainable tensors: every weight, or under LoRA the adapters
        # alone, while the base weights sit in `frozen` (its own layout, no gradient, no optimizer state)
        self.lora = cfg.lora if cfg.lora.on else None
        # QLoRA (lora.base nf4): the targeted linears' weights are held only as NF4 codes in `qbase`; the frozen
        # buffer keeps the rest of the base (embeddings, norms, biases, head) in the model's dtype
        self.qbase = None
        if cfg.lora.quantized:
            self.qbase = shared_qbase if shared_qbase is not None else QuantizedBase(cfg)
        self.frozen_layout = (float_base_layout(cfg) if self.qbase else build_layout(cfg)) if self.lora else None
        self.layout = lora_layout(cfg) if self.lora else build_layout(cfg)
        self.frozen = None
        if self.lora:
            self.frozen = shared_frozen if shared_frozen is not None else \
                np.zeros(self.frozen_layout.size, dtype=self.dtype)
        # shared_params: a second model over the same weights with its own activations (generation)
        self.params = shared_params if shared_params is not None else bk.zeros(self.layout.size, self.dtype)
        self.grads = bk.zeros(self.layout.size, self.dtype)
        self.p = self.layout.views(self.params)
        if self.lora:  # every tensor by name for the forward: the frozen base and the adapters
            self.p = {**self.frozen_layout.views(self.frozen), **self.p}
        self.g = self.layout.views(self.grads)
        self._lora_sites = {site: (d_in, d_out) for site, d_in, d_out in lora_sites(cfg)}
        # buffers: state that is not trained (BatchNorm's running statistics); shared like the weights
        self.buffers = shared_buffers if shared_buffers is not None else \
            {k: bk.from_host(v) for k, v in build_buffers(cfg, self.dtype).items()}
        self.dropout = float(cfg.dropout)  # live: read at every forward
        self.dropout_mode = cfg.dropout_mode  # live: inverted or classic
        self.training = True  # eval mode: dropout off (classic: scaled by 1-p), BatchNorm on running statistics
        self.dropout_rng = np.random.default_rng(0)  # the session replaces it with its own stream
        self.shape: tuple[int, int] | None = None
        self.ops: list[Op] = []
        self.position_offset = 0  # position of row 0: a KV-cache decoder runs one token at a time further on
        self.set_max_positions(cfg.seq_len)

    def init_weights(self, rng: np.random.Generator) -> None:
        """Draws fresh weights from `rng` by the config's init scheme (the base first: LoRA or not, one seed
        gives the same base weights). Drawn on the host; a device backend then receives a copy."""
        if not self.bk.on_host:
            host = np.zeros(self.layout.size, dtype=self.dtype)
            init_params(self.layout.views(host), self.layout, self.cfg, rng)
            self.bk.upload(self.params, host)
            return
        if self.qbase is not None:  # the whole base drawn in floats (as LoRA's), then quantized; the copy goes
            base = build_layout(self.cfg)
            views = base.views(np.zeros(base.size, self.dtype))
            init_params(views, base, self.cfg, rng)
            self.load_base(views)
        else:
            init_params(self.p, self.frozen_layout or self.layout, self.cfg, rng)
        if self.lora:
            init_lora(self.p, self.cfg, rng)

    def load_base(self, tensors: dict[str, np.ndarray]) -> None:
        """Writes every base tensor by name (a LoRA model's frozen base; QLoRA quantizes its targeted weights
        from these, keeping no float copy of them; a full model's weights)."""
        layout = self.frozen_layout or self.layout
        views = layout.views(self.frozen if self.frozen is not None else self.params)
        for name, view in views.items():
            view[...] = tensors[name]
        if self.qbase is not None:
            self.qbase.quantize_from(tensors)

    def base_tensors(self) -> dict[str, np.ndarray]:
        """Every base tensor by name: views of the frozen buffer, and under QLoRA fresh float copies of the
        NF4 weights as the linears decode them (made for the caller, never kept)."""
        layout = self.frozen_layout or self.layout
        out = layout.views(self.frozen if self.frozen is not None else self.params)
        if self.qbase is not None:
            out.update({name: self.qbase.dequantized(name, self.dtype) for name in self.qbase.names})
        return out

    # ----------------------------------------------------------------- buffers

    def ensure_shape(self, B: int, T: int) -> None:
        """Allocates activations for batches of (B, T) once; later calls with the same shape are free."""
        if self.shape == (B, T):
            return
        assert 1 <= T <= self.cfg.seq_len, (T, self.cfg.seq_len)
        bk = self.bk
        self.acts = Arena(activation_shapes(self.cfg, B, T), self.dtype, bk.zeros)
        bk.fill(self.acts["rowmask"], 1.0)  # every row of a batch is a real token: batches are never padded
        self.ids = np.zeros((B, T), dtype=np.int32)
        self.targets = np.zeros((B, T), dtype=np.int32)
        self.kv_len = np.full(B, T, dtype=np.int32)  # real tokens per row; the rest is <pad> (see set_lengths)
        # where the kernels read them (the host arrays themselves on the CPU)
        self._ids_k, self._targets_k, self._kv_len_k = bk.mirror(self.ids), bk.mirror(self.targets), \
            bk.mirror(self.kv_len)
        self.padded = False
        self.shape = (B, T)
        self._dropout_on: dict[str, bool] = {}
        self._lora_dropped: dict[str, bool] = {}
        self.norm_trained: dict[str, bool] = {}
        self._gradient_of: dict[str, str] = {}  # activation -> its gradient; gradient -> its buffer (see _grad)
        self._buffer_of: dict[str, str] = {}
        self._grad_shapes: dict[str, tuple[int, ...]] = {}
        self.ops: list[Op] = []
        self._build_ops()
        self.grads_acts = GradientArena(self._grad_shapes, self.dtype, self._gradient_of, self._buffer_of, bk.zeros,
                                        bk.fill)

    def zero_grad(self) -> None:
        """Zeroes every gradient, of the parameters and of the activations: each backward op adds from here.

        The one place gradients are zeroed, once per step (the head's backward calls it).
        """
        self.bk.fill(self.grads, 0.0)
        self.grads_acts.zero()

    def _grad(self, name: str, shape: tuple[int, ...] | None = None, same_as: str | None = None,
              buffer: str | None = None) -> None:
        """Gives activation `name` a gradient (once; default shape (N, C)), or makes it the gradient of `same_as`.

        `buffer`: the buffer it shares with gradients of the same kind in other
        layers, for a gradient that lives inside one op (never two at once).
        """
        if same_as is not None:
            self._gradient_of[name] = self._gradient_of[same_as]
        elif name not in self._gradient_of:
            B, T = self.shape
            shape = shape or (B * T, self.cfg.d_model)
            self._gradient_of[name] = name
            self._buffer_of[name] = buffer or name
            assert self._grad_shapes.setdefault(buffer or name, shape) == shape, name

    # -------------------------------------------------------------- ops list

    def _build_ops(self) -> None:
        self.ops.append(Op("embed", self._embed_forward, self._embed_backward))
        self._grad("x0")
        self._grad("x0.undropped", buffer="undropped")
        if self.cfg.positional != "learned":  # a fixed position table: its gradient is computed and dropped
            self._grad("pos", (self.shape[1], self.cfg.d_model))
        x = "x0"  # the residual stream
        for i in range(self.cfg.n_layer):
            x = self._block(i, x)
        if has_final_norm(self.cfg):
            x = self._norm("norm_f", "norm_f", x)
        self.final = x
        self.ops.append(Op("head", self._head_forward, self._head_backward))

    def _block(self, i: int, x: str) -> str:
        """Appends the ops of block i reading stream `x`; returns the name of the block's output.

        `_norm` is the identity under norm: none, and `_branch` adds onto the
        stream only with residuals on (without, its output is the stream).
        """
        def norm(site: str, inp: str) -> str:
            return self._norm(f"block{i}.{site}", f"h{i}.{site}", inp)

        if self.cfg.norm_position == "pre":  # nanoGPT: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
            x = self._branch(i, "attn", norm("norm1", x), stream=x)
            x = self._branch(i, "mlp", norm("norm2", x), stream=x)
        else:  # post-norm, the original Transformer: x = ln_1(x + attn(x)); x = ln_2(x + mlp(x))
            x = norm("norm1", self._branch(i, "attn", x, stream=x))
            x = norm("norm2", self._branch(i, "mlp", x, stream=x))
        return x

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

    # ------------------------------------------------------------ positions

    def set_max_positions(self, n: int) -> None:
        """Builds the fixed position tables for positions 0 .. n-1 (learned positions stop at seq_len)."""
        cfg, kind = self.cfg, self.cfg.positional
        # added to the token embedding: sinusoids, or zeros for none and rope (rope acts on q and k instead).
        # The sinusoids are scaled to init_std, the token embeddings' own scale: at amplitude 1 they would
        # drown the tokens (std 0.02) and the model would learn nothing past letter frequencies. The paper
        # balances the two the other way, multiplying its (larger) token embeddings by sqrt(d_model).
        pos = (cfg.init_std * sinusoid_table(n, cfg.d_model, np.float64)).astype(self.dtype) \
            if kind == "sinusoidal" else np.zeros((n, cfg.d_model), self.dtype) if kind != "learned" else None
        rope = rope_tables(n, cfg.head_size, self.dtype) if kind == "rope" else (None, None)
        if not self.bk.on_host:  # built on the host, moved once
            pos = None if pos is None else self.bk.from_host(pos)
            rope = tuple(None if t is None else self.bk.from_host(t) for t in rope)
        self.pos_table, (self.rope_cos, self.rope_sin) = pos, rope

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
        self.bk.upload(self.acts["rowmask"], (np.arange(T)[None, :] < self.kv_len[:, None]).reshape(-1))
        self.bk.sync(self._kv_len_k, self.kv_len)

    # ------------------------------------------------------------ embedding

    def _embed_forward(self) -> Tensors:
        B, T = self.shape
        A, t0 = self.acts, self.position_offset
        pos = self.p["wpe"] if self.cfg.positional == "learned" else self.pos_table
        self.bk.sync(self._ids_k, self.ids)  # the batch, filled on the host
        self.k.embedding_forward(A["x0"].reshape(B, T, -1), self._ids_k, self.p["wte"], pos[t0:t0 + T])
        self._apply_dropout("x0")
        return {"x0": A["x0"]}

    def _embed_backward(self) -> Tensors:
        B, T = self.shape
        t0 = self.position_offset
        if self.lora:  # frozen embeddings: nothing below the stream needs a gradient
            return {}
        d = self._dropout_backward("x0").reshape(B, T, -1)
        if self.cfg.positional == "learned":
            self.k.embedding_backward(self.g["wte"], self.g["wpe"][t0:t0 + T], d, self._ids_k)
            return {"d wte": self.g["wte"], "d wpe": self.g["wpe"]}
        self.k.embedding_backward(self.g["wte"], self.grads_acts["pos"], d, self._ids_k)
        return {"d wte": self.g["wte"]}

    # ---------------------------------------------------------------- norms

    def _norm(self, name: str, site: str, inp: str) -> str:
        """Appends op `name`: norm `site` of activation `inp`; returns `site`, or `inp` itself under norm: none."""
        if self.cfg.norm == "none":
            return inp
        A, P, G, K = self.acts, self.p, self.g, self.k
        rms, bn = self.cfg.norm == "rmsnorm", self.cfg.norm == "batchnorm"
        self._grad(site)

        def forward():
            if bn:
                self._batchnorm_forward(site, inp, site)
            elif rms:
                K.rmsnorm_forward(A[site], A[f"{site}.rstd"], A[inp], P[f"{site}.w"])
            else:
                K.layernorm_forward(A[site], A[f"{site}.mean"], A[f"{site}.rstd"], A[inp], P[f"{site}.w"],
                                  P[f"{site}.b"])
            return {site: A[site]}

        def backward():
            dinp, dout = self.grads_acts[inp], self.grads_acts[site]
            dw, db = self._norm_grads(site)
            if bn:
                self._batchnorm_backward(site, inp, site, dinp, dout)
            elif rms:
                K.rmsnorm_backward(dinp, dw, dout, A[inp], P[f"{site}.w"], A[f"{site}.rstd"])
            else:
                K.layernorm_backward(dinp, dw, db, dout, A[inp], P[f"{site}.w"], A[f"{site}.mean"], A[f"{site}.rstd"])
            names = [k for k in (f"{site}.w", f"{site}.b") if k in G]
            return {f"d {inp}": dinp, **{f"d {k}": G[k] for k in names}}

        self.ops.append(Op(name, forward, backward))
        return site

    def _norm_grads(self, site: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Where a norm's backward adds its gain and shift gradients: theirs, or a sink when they are frozen."""
        G = self.g
        if self.lora:  # the kernels compute them with the input gradient; a frozen norm's go nowhere
            return self.acts["dfrozen_w"], self.acts["dfrozen_b"]
        return G[f"{site}.w"], G.get(f"{site}.b")

    def _batchnorm_forward(self, prefix: str, inp: str, out: str) -> None:
        """Train mode: batch statistics over the rows, then the running statistics move; eval: running ones."""
        A, P, B = self.acts, self.p, self.buffers
        # the backward must differentiate what the forward did
        self.norm_trained[out] = self.k.batchnorm_mode_forward(
            A[out], A[f"{out}.mean"], A[f"{out}.var"], A[f"{out}.rstd"], A[inp], A["rowmask"], P[f"{prefix}.w"],
            P[f"{prefix}.b"], B[f"{prefix}.running_mean"], B[f"{prefix}.running_var"], self.cfg.batchnorm_momentum,
            self.training)

    def _batchnorm_backward(self, prefix: str, inp: str, out: str, dinp: np.ndarray, dout: np.ndarray) -> None:
        A, P = self.acts, self.p
        dw, db = self._norm_grads(prefix)
        self.k.batchnorm_mode_backward(dinp, dw, db, dout, A[inp], A["rowmask"], P[f"{prefix}.w"],
                                A[f"{out}.mean"], A[f"{out}.rstd"], A["dnorm_sum"], A["dnorm_xsum"],
                                self.norm_trained.get(out, True))

    # ------------------------------------------------------- attention / mlp

    def _branch(self, i: int, kind: str, inp: str, stream: str) -> str:
        """Appends op block{i}.{kind}: out = dropout(kind(inp)), then res = stream + out with residuals on.

        `kind` is attn or mlp. Returns the name of what flows on: res, or out
        without residuals. The backward adds d(res) into d(out) (d(stream) is
        d(res) already: one buffer), then the branch's input gradient into d(inp).
        """
        A, cfg, p = self.acts, self.cfg, f"h{i}"
        out, res = f"{p}.{kind}", f"{p}.res1" if kind == "attn" else f"{p}.res2"
        run_forward, run_backward = (self._attn_forward, self._attn_backward) if kind == "attn" else \
            (self._mlp_forward, self._mlp_backward)
        self._grad(out)
        self._grad(f"{out}.undropped", buffer="undropped")  # the gradients inside the op: one buffer each
        if kind == "attn":
            B, T, NH, HS, NKV = *self.shape, cfg.n_head, cfg.head_size, cfg.kv_heads
            self._grad(f"{p}.yh", (B, NH, T, HS), buffer="yh")
            self._grad(f"{p}.qkv", (B * T, cfg.d_model + 2 * NKV * HS), buffer="qkv")
            if cfg.attention.impl == "tiled":  # its backward adds into dq, dk, dv; the naive one's are scratch
                for name, shape in (("q", (B, NH, T, HS)), ("k", (B, NKV, T, HS)), ("v", (B, NKV, T, HS))):
                    self._grad(f"{p}.{name}", shape, buffer=name)
        else:
            self._grad(f"{p}.fc", (self.shape[0] * self.shape[1], cfg.d_hidden), buffer="fc")
        if cfg.residual:
            self._grad(res, same_as=stream)  # x = x + f: the stream keeps its gradient buffer

        def forward():
            run_forward(p, inp, out)
            self._apply_dropout(out)
            produced = {out: A[out]}
            if cfg.residual:
                self.k.residual_forward(A[res], A[stream], A[out])
                produced[res] = A[res]
            return produced

        def backward():
            D = self.grads_acts
            if cfg.residual:  # d(out) += d(res): d(out) is still zero, so a copy
                self.bk.copy(D.for_writing(out), D[res])
            run_backward(p, inp, self._dropout_backward(out))
            names = [k for k in self.g if k.startswith(f"{p}.{kind}.")]
            return {f"d {inp}": D[inp], **{f"d {k}": self.g[k] for k in names}}

        self.ops.append(Op(f"block{i}.{kind}", forward, backward))
        return res if cfg.residual else out

    def _attn_forward(self, p: str, inp: str, out: str) -> None:
        A = self.acts
        self._linear_forward(f"{p}.attn.qkv", A[f"{p}.qkv"], A[inp])  # (N, C + 2 NKV HS)
        self._lora_forward(f"{p}.attn.qkv", A[f"{p}.qkv"], A[inp])
        self._attend(p)  # {p}.qkv -> {p}.y
        self._linear_forward(f"{p}.attn.proj", A[out], A[f"{p}.y"])  # (N, C)
        self._lora_forward(f"{p}.attn.proj", A[out], A[f"{p}.y"])

    def _attend(self, p: str) -> None:
        """Heads from the fused projection, positions rotated in (rope), `attend`, heads merged into {p}.y."""
        A, (B, T) = self.acts, self.shape
        q, k, v, yh = A[f"{p}.q"], A[f"{p}.k"], A[f"{p}.v"], A[f"{p}.yh"]
        self.k.split_heads(q, k, v, A[f"{p}.qkv"].reshape(B, T, -1))  # (B, NH, T, HS), k and v (B, NKV, T, HS)
        if self.rope_cos is not None:
            cos, sin = self._rope_rows()
            self.k.rope_forward(q, cos, sin)
            self.k.rope_forward(k, cos, sin)
        self.attend(int(p[1:]), q, k, v, yh)
        self.k.merge_heads(A[f"{p}.y"].reshape(B, T, -1), yh)  # (B, T, C)

    def attend(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, yh: np.ndarray) -> None:
        """Writes the attention output yh (B, NH, T, HS) of a layer from its q, k (rotated under rope) and v.

        The hook of the attention op: a KV-cache decoder overrides it to attend
        over its cached keys as well; everything around it stays the model's.
        """
        A, p, att = self.acts, f"h{layer}", self.cfg.attention
        causal, local = att.causal, att.window_args()  # local: {window, n_global}, else {} (the kernels' defaults)
        if att.impl == "tiled":
            tile_q, tile_k = att.tile_q or TILE_Q, att.tile_k or TILE_K
            self.k.tiled_attention_forward(yh, A[f"{p}.lse"], q, k, v, self._kv_len_k, self.attention_scale(), causal,
                                           tile_q, tile_k, **local)
        else:
            self.k.attention_heads_forward(yh, A[f"{p}.att"], q, k, v, self.attention_scale(), causal, self._kv_len_k,
                                           **local)

    def _attn_backward(self, p: str, inp: str, dout: np.ndarray) -> None:
        A, D, (B, T), att = self.acts, self.grads_acts, self.shape, self.cfg.attention
        # dy: scratch, written whole by the product
        self._linear_backward(f"{p}.attn.proj", A["dy"], dout, A[f"{p}.y"])
        self._lora_backward(f"{p}.attn.proj", A["dy"], dout, A[f"{p}.y"])
        q, k, v, dyh = A[f"{p}.q"], A[f"{p}.k"], A[f"{p}.v"], D[f"{p}.yh"]
        self.k.split_heads_grad(dyh, A["dy"].reshape(B, T, -1))
        if att.impl == "tiled":
            dq, dk, dv = D[f"{p}.q"], D[f"{p}.k"], D[f"{p}.v"]
            tile_q, tile_k = att.tile_q or BACKWARD_TILE_Q, att.tile_k or BACKWARD_TILE_K
            self.k.tiled_attention_backward(dq, dk, dv, dyh, q, k, v, A[f"{p}.yh"], A[f"{p}.lse"], self._kv_len_k,
                                            self.attention_scale(), att.causal, tile_q, tile_k, **att.window_args())
        else:  # scratch, written whole by the products; the window lets the BLAS path skip the keys before it
            dq, dk, dv = A["dq"], A["dk"], A["dv"]
            self.k.attention_heads_backward(dq, dk, dv, A["datt"], dyh, q, k, v, A[f"{p}.att"],
                                            self.attention_scale(), att.causal, self._kv_len_k, **att.window_args())
        if self.rope_cos is not None:  # gradients of the rotated q, k -> of the projected ones
            cos, sin = self._rope_rows()
            self.k.rope_backward(dq, cos, sin)
            self.k.rope_backward(dk, cos, sin)
        dqkv = D[f"{p}.qkv"]
        self.k.merge_qkv_grad(dqkv.reshape(B, T, -1), dq, dk, dv)
        dinp, dscratch = self._input_grad(inp)
        self._linear_backward(f"{p}.attn.qkv", dinp, dqkv, A[inp], dscratch)
        self._lora_backward(f"{p}.attn.qkv", dinp, dqkv, A[inp])

    def _rope_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the rope tables for this batch's positions."""
        t0, T = self.position_offset, self.shape[1]
        return self.rope_cos[t0:t0 + T], self.rope_sin[t0:t0 + T]

    def attention_scale(self) -> float:
        """What scores q.k are multiplied by: 1/sqrt(head size), or 1 (scale: none)."""
        return 1.0 / np.sqrt(self.cfg.head_size) if self.cfg.attention.scale == "sqrt_dk" else 1.0

    def _mlp_forward(self, p: str, inp: str, out: str) -> None:
        A = self.acts
        self._linear_forward(f"{p}.mlp.fc", A[f"{p}.fc"], A[inp])  # (N, H)
        self._lora_forward(f"{p}.mlp.fc", A[f"{p}.fc"], A[inp])
        self.k.ACTIVATION_KERNELS[self.cfg.activation][0](A[f"{p}.act"], A[f"{p}.fc"])
        self._linear_forward(f"{p}.mlp.proj", A[out], A[f"{p}.act"])  # (N, C)
        self._lora_forward(f"{p}.mlp.proj", A[out], A[f"{p}.act"])

    def _mlp_backward(self, p: str, inp: str, dout: np.ndarray) -> None:
        A, dfc = self.acts, self.grads_acts[f"{p}.fc"]
        # dact: scratch, written whole by the product
        self._linear_backward(f"{p}.mlp.proj", A["dact"], dout, A[f"{p}.act"])
        self._lora_backward(f"{p}.mlp.proj", A["dact"], dout, A[f"{p}.act"])
        self.k.ACTIVATION_KERNELS[self.cfg.activation][1](dfc, A[f"{p}.fc"], A["dact"])
        dinp, dscratch = self._input_grad(inp)
        self._linear_backward(f"{p}.mlp.fc", dinp, dfc, A[inp], dscratch)
        self._lora_backward(f"{p}.mlp.fc", dinp, dfc, A[inp])

    # ---------------------------------------------------------------- linears

    def _linear_forward(self, site: str, out: np.ndarray, x: np.ndarray) -> None:
        """out = x W + b of linear `site` (e.g. h0.attn.qkv); under QLoRA W decoded tile by tile from NF4."""
        A, P, w = self.acts, self.p, f"{site}.w"
        if self.qbase is not None and w in self.qbase:
            qlora_linear_forward(out, x, self.qbase[w], P[f"{site}.b"], A["qlora_tile"])
        else:
            self.k.linear_forward(out, x, P[w], P[f"{site}.b"])

    def _linear_backward(self, site: str, dx: np.ndarray, dout: np.ndarray, x: np.ndarray,
                         dscratch: np.ndarray | None = None) -> None:
        """The linear's gradients: dx (written, or added through dscratch), and W's and b's unless frozen."""
        G, w = self.g, f"{site}.w"
        if self.qbase is not None and w in self.qbase:  # frozen: only the input gradient
            qlora_linear_backward(dx, dout, self.qbase[w], self.acts["qlora_tile"], self.acts["qlora_prod"],
                                  add=dscratch is not None)
        else:
            self.k.linear_backward(dx, G.get(w), G.get(f"{site}.b"), dout, x, self.p[w], dscratch)

    # ---------------------------------------------------------------- LoRA

    def _lora_forward(self, site: str, out: np.ndarray, x: np.ndarray) -> None:
        """Adds linear `site`'s adapter output s (x' A^T) B^T into `out`, x' being x after LoRA dropout."""
        if site not in self._lora_sites:
            return
        A, P, lora = self.acts, self.p, self.lora
        N, (d_in, d_out) = x.shape[0], self._lora_sites[site]
        dropped = lora.dropout > 0 and self.training
        self._lora_dropped[site] = dropped
        if dropped:  # inverted dropout on the adapter's input only: x' = x * mask
            xd = A["lora_x"][:N * d_in].reshape(N, d_in)
            uniform = A["uniform"][:N * d_in].reshape(N, d_in)
            self.dropout_rng.random(out=uniform, dtype=self.dtype)
            cpu_act.dropout_forward(xd, A[f"{site}.lora_mask"], x, uniform, lora.dropout)
            x = xd
        lora_forward(out, A[f"{site}.lora_u"], x, P[f"{site}.lora_A"], P[f"{site}.lora_B"], lora.scale,
                     A["lora_tmp"][:N * d_out].reshape(N, d_out))

    def _lora_backward(self, site: str, dx: np.ndarray | None, dout: np.ndarray, x: np.ndarray) -> None:
        """Adds the adapter's gradients into d(A), d(B) and its input gradient into `dx` (already written by
        the frozen linear's backward)."""
        if site not in self._lora_sites:
            return
        A, P, G = self.acts, self.p, self.g
        N, (d_in, _) = x.shape[0], self._lora_sites[site]
        mask = None
        if self._lora_dropped.get(site, False):  # x' again, from the forward's mask
            mask = A[f"{site}.lora_mask"]
            xd = A["lora_x"][:N * d_in].reshape(N, d_in)
            np.multiply(x, mask, out=xd)
            x = xd
        lora_backward(dx, G[f"{site}.lora_A"], G[f"{site}.lora_B"], dout, x, A[f"{site}.lora_u"],
                      P[f"{site}.lora_A"], P[f"{site}.lora_B"], self.lora.scale, A["lora_du"],
                      A["lora_tmp"][:N * d_in].reshape(N, d_in), mask)

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
        A, bk = self.acts, self.bk
        x, mask = A[site], A[f"{site}.mask"]
        if not self.training:  # classic at inference: every unit is on, so scale to the training expectation
            bk.fill(mask, 1.0 - p)
            bk.multiply(x, x, mask)
            return
        # the CPU draws the uniforms from the dropout stream; a device draws its mask from a key off that stream
        bk.dropout_forward(x, mask, A["uniform"][:x.size].reshape(x.shape), self.dropout_rng, p, classic)

    def _input_grad(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """d(name) for linear_backward and the scratch it adds through: None while d(name) is zero (then written).

        A branch that reads the stream itself (post-norm, no norm) finds the
        residual's share there already; every other input gradient is zero.
        """
        D = self.grads_acts
        if D.is_zero(name):
            return D.for_writing(name), None
        return D[name], self.acts["dscratch"]

    def _dropout_backward(self, site: str) -> np.ndarray:
        """The gradient before `site`'s dropout: d(site) through the mask, added into its own buffer; or d(site)."""
        D = self.grads_acts
        if not self._dropout_on.get(site, False):
            return D[site]
        self.k.dropout_backward(D[f"{site}.undropped"], D[site], self.acts[f"{site}.mask"])
        return D[f"{site}.undropped"]

    # ---------------------------------------------------------- head, loss

    def _head_weight(self, grads=False) -> np.ndarray:
        src = self.g if grads else self.p
        return self.bk.transposed(src["wte"]) if self.cfg.tie_embeddings else src["lm_head.w"]  # (C, V)

    def _head_forward(self) -> Tensors:
        A = self.acts
        self.k.linear_forward(A["logits"], A[self.final], self._head_weight(), None)  # (N, V)
        return {"logits": A["logits"]}

    def _head_backward(self) -> Tensors:
        A = self.acts
        self.zero_grad()  # the first backward op of a step: every gradient adds up from zero here
        dfinal, dscratch = self._input_grad(self.final)
        dhead = None if self.lora else self._head_weight(grads=True)  # frozen under LoRA
        self.k.linear_backward(dfinal, dhead, None, A["dlogits"], A[self.final], self._head_weight(), dscratch)
        if self.lora:
            return {f"d {self.final}": dfinal}
        name = "d wte" if self.cfg.tie_embeddings else "d lm_head.w"
        return {f"d {self.final}": dfinal, name: self._head_weight(grads=True)}

    def loss_and_dlogits(self) -> float:
        """Mean cross-entropy of the current logits against `self.targets`; writes dlogits (fused).

        With padding (set_lengths) the mean runs over the real tokens only: pad
        rows get loss 0 and dlogits 0.
        """
        A, bk = self.acts, self.bk
        bk.sync(self._targets_k, self.targets)
        targets = self._targets_k.reshape(-1)
        if not self.padded:
            N = A["losses"].shape[0]
            self.k.crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], targets, 1.0 / N)
            return bk.mean64(A["losses"])
        n_real = max(int(self.kv_len.sum()), 1)
        self.k.crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], targets, 1.0 / n_real)
        bk.scale_rows(A["dlogits"], A["rowmask"])
        return self._real_mean(n_real)

    def loss_only(self) -> float:
        """Mean cross-entropy of the current logits (no gradient), for evaluation; real tokens only."""
        A, bk = self.acts, self.bk
        bk.sync(self._targets_k, self.targets)
        self.k.crossentropy_forward(A["losses"], A["logits"], self._targets_k.reshape(-1))
        if not self.padded:
            return bk.mean64(A["losses"])
        return self._real_mean(max(int(self.kv_len.sum()), 1))

    def _real_mean(self, n_real: int) -> float:
        losses = self.acts["losses"]
        self.bk.multiply(losses, losses, self.acts["rowmask"])  # pad rows: 0
        return self.bk.sum64(losses) / n_real

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
        """Runs every op's backward in reverse order (the head's, the first, calls zero_grad)."""
        for op in reversed(self.ops):
            op.backward()

    def logits(self) -> np.ndarray:
        """The logits of the last forward, (B, T, V)."""
        B, T = self.shape
        return self.acts["logits"].reshape(B, T, -1)
