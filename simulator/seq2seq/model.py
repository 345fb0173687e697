"""The encoder-decoder: a bidirectional GPT (the encoder) and a causal GPT whose blocks also cross-attend.

Encoder: `GPT` with `mask: none` and padding through kv_len; its ops up to the final norm run, its head
never does, and its output (the final stream, B Te x C) is the decoder's memory. Decoder: `CrossDecoder`,
a causal `GPT` whose block gains a third sublayer between self-attention and the MLP, with the model's
norm placement (the original Transformer's decoder):

    pre-norm:  x += attn(norm1(x));  x += cross(norm3(x), memory);  x += mlp(norm2(x))
    post-norm: x = norm1(x + attn(x));  x = norm3(x + cross(x, memory));  x = norm2(x + mlp(x))

Its extra tensors (per block: norm3, cross.q, cross.kv, cross.proj) extend the GPT's layout, so the
decoder's weights stay one flat buffer with one optimizer; its extra activations sit in an arena of their
own. The backward: the decoder's (its head zeroes its gradients), which adds every layer's share of
d(memory) into `dmemory`; then the encoder's ops in reverse from d(final) = dmemory.

The loss of both models here (`weighted_loss`) counts the target tokens only: per row a weight (1 / the
number of target tokens, 0 elsewhere), so a prompt's source positions cost nothing.
"""

from __future__ import annotations

import numpy as np

from simulator.config import ModelConfig
from simulator.kernels.cpu.softmax import crossentropy_softmax_backward
from simulator.model.arena import Arena
from simulator.model.gpt import GPT, Op
from simulator.model.layout import ParamLayout
from simulator.seq2seq.cross_attention import (
    WEIGHTS,
    allocate,
    cache_shapes,
    cross_attention_backward,
    cross_attention_forward,
    scratch_shapes,
    weight_shapes,
)


def cross_entries(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...], str]]:
    """The decoder's tensors beyond the GPT's, per block: norm3's and the cross-attention's."""
    C, out = cfg.d_model, []
    for i in range(cfg.n_layer):
        if cfg.norm in ("layernorm", "rmsnorm"):
            out.append((f"h{i}.norm3.w", (C,), "norm"))
        if cfg.norm == "layernorm":
            out.append((f"h{i}.norm3.b", (C,), "norm"))
        for name, shape in weight_shapes(C).items():
            out.append((f"h{i}.cross.{name}", shape, "bias" if name.endswith(".b") else "matrix"))
    return out


class CrossDecoder(GPT):
    """A causal GPT whose blocks cross-attend to `memory` (B src_len x C), the encoder's output (CPU only)."""

    def __init__(self, cfg: ModelConfig, src_len: int, dtype=np.float32):
        assert cfg.attention.causal and cfg.residual and cfg.norm != "batchnorm" and not cfg.lora.on, cfg
        super().__init__(cfg, dtype)
        self.src_len = src_len
        self.layout = ParamLayout([(s.name, s.shape, s.kind) for s in self.layout] + cross_entries(cfg))
        self.params = np.zeros(self.layout.size, self.dtype)
        self.grads = np.zeros(self.layout.size, self.dtype)
        self.p, self.g = self.layout.views(self.params), self.layout.views(self.grads)

    def init_weights(self, rng: np.random.Generator) -> None:
        super().init_weights(rng)  # every tensor of the layout by its kind, the cross ones included
        if self.cfg.init == "gpt2":  # the cross projection adds onto the stream too: scaled as the others
            for i in range(self.cfg.n_layer):
                self.p[f"h{i}.cross.proj.w"] /= np.sqrt(2.0 * self.cfg.n_layer)

    def _build_ops(self) -> None:
        B, T = self.shape
        C, NH, Te, N = self.cfg.d_model, self.cfg.n_head, self.src_len, B * T
        shapes: dict[str, tuple[int, ...]] = {}
        for i in range(self.cfg.n_layer):
            shapes.update({f"h{i}.cross.{k}": s for k, s in cache_shapes(B, T, Te, C, NH).items()})
            shapes.update({f"h{i}.cross": (N, C), f"h{i}.res3": (N, C)})
            if self.cfg.norm != "none":
                site = f"h{i}.norm3"
                shapes.update({site: (N, C), f"{site}.mean": (N,), f"{site}.rstd": (N,), f"{site}.var": (N,)})
        self.cross_arena = Arena(shapes, self.dtype)
        self.acts.arrays.update(self.cross_arena.arrays)  # looked up by name as the GPT's own activations
        self.cross_scratch = allocate(scratch_shapes(B, T, Te, C, NH), self.dtype)
        self.memory = np.zeros((B * Te, C), self.dtype)
        self.dmemory = np.zeros((B * Te, C), self.dtype)
        self.memory_len = np.full(B, Te, np.int32)
        super()._build_ops()

    def _block(self, i: int, x: str) -> str:
        def norm(site: str, inp: str) -> str:
            return self._norm(f"block{i}.{site}", f"h{i}.{site}", inp)

        if self.cfg.norm_position == "pre":
            x = self._branch(i, "attn", norm("norm1", x), stream=x)
            x = self._cross(i, norm("norm3", x), stream=x)
            return self._branch(i, "mlp", norm("norm2", x), stream=x)
        x = norm("norm1", self._branch(i, "attn", x, stream=x))
        x = norm("norm3", self._cross(i, x, stream=x))
        return norm("norm2", self._branch(i, "mlp", x, stream=x))

    def _cross(self, i: int, inp: str, stream: str) -> str:
        """Appends op block{i}.cross: out = cross(inp, memory), res = stream + out; returns res."""
        A, p = self.acts, f"h{i}"
        out, res = f"{p}.cross", f"{p}.res3"
        self._grad(out)
        self._grad(res, same_as=stream)  # x = x + f: the stream keeps its gradient buffer
        W = {k: self.p[f"{p}.cross.{k}"] for k in WEIGHTS}
        dW = {k: self.g[f"{p}.cross.{k}"] for k in WEIGHTS}
        cache = {k: A[f"{p}.cross.{k}"] for k in cache_shapes(1, 1, 1, 1, 1)}

        def forward():
            cross_attention_forward(A[out], A[inp], self.memory, self.memory_len, W, cache)
            self.k.residual_forward(A[res], A[stream], A[out])
            return {out: A[out], res: A[res]}

        def backward():
            D = self.grads_acts
            self.bk.copy(D.for_writing(out), D[res])  # d(out) = d(res)
            cross_attention_backward(D[inp], self.dmemory, dW, D[out], A[inp], self.memory, self.memory_len, W,
                                     cache, self.cross_scratch)
            return {f"d {inp}": D[inp], "d memory": self.dmemory, **{f"d {p}.cross.{k}": dW[k] for k in WEIGHTS}}

        self.ops.append(Op(f"block{i}.cross", forward, backward))
        return res

    def cross_attention(self, layer: int) -> np.ndarray:
        """(B, NH, Td, Te) the cross-attention probabilities of `layer` in the last forward."""
        return self.acts[f"h{layer}.cross.att"]


def weighted_loss(model: GPT, targets: np.ndarray, weights: np.ndarray, grads: bool = True) -> float:
    """sum_n weights[n] * cross-entropy of row n; with `grads`, writes dlogits of that sum."""
    A = model.acts
    model.targets[...] = targets
    t = model.targets.reshape(-1)
    crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], t, 1.0)
    if grads:
        dlogits = A["dlogits"]
        dlogits *= weights.astype(model.dtype)[:, None]
    return float(np.dot(A["losses"].astype(np.float64), weights))


class EncoderDecoder:
    """An encoder GPT (mask none) and a CrossDecoder reading its output; one forward, one backward."""

    def __init__(self, enc_cfg: ModelConfig, dec_cfg: ModelConfig, dtype=np.float32):
        assert not enc_cfg.attention.causal and enc_cfg.tie_embeddings, enc_cfg
        self.encoder = GPT(enc_cfg, dtype)  # tied: its wte is only the input table (its head never runs)
        self.decoder = CrossDecoder(dec_cfg, enc_cfg.seq_len, dtype)

    @property
    def n_params(self) -> int:
        return self.encoder.layout.size + self.decoder.layout.size

    def init_weights(self, rng: np.random.Generator) -> None:
        self.encoder.init_weights(rng)
        self.decoder.init_weights(rng)

    def encode(self, src: np.ndarray, src_len: np.ndarray) -> None:
        """The encoder's ops up to its final norm on (B, Te) sources; its output becomes the decoder's memory."""
        E = self.encoder
        E.ensure_shape(*src.shape)
        E.set_lengths(src_len)
        E.ids[...] = src
        for op in E.ops[:-1]:  # not the head
            op.forward()
        self._memory_len = np.asarray(src_len, np.int32).copy()

    def decode(self, tgt_in: np.ndarray, tgt_len: np.ndarray | None = None) -> None:
        """The decoder's ops on (B, Td) inputs, reading the memory of the last `encode`."""
        E, D = self.encoder, self.decoder
        assert E.shape is not None and E.shape[0] == tgt_in.shape[0], "encode the batch's sources first"
        D.ensure_shape(*tgt_in.shape)
        D.memory[...] = E.acts[E.final]  # the encoder's output, (B Te, C); copied in: D's arena is its own
        D.memory_len[...] = self._memory_len
        D.set_lengths(tgt_len)
        D.ids[...] = tgt_in
        for op in D.ops:
            op.forward()

    def backward(self) -> None:
        """Every gradient of the decoder's loss (its dlogits written): the decoder's, then the encoder's."""
        E, D = self.encoder, self.decoder
        D.dmemory.fill(0.0)
        D.backward()
        E.zero_grad()
        E.grads_acts.for_writing(E.final)[...] = D.dmemory
        for op in reversed(E.ops[:-1]):
            op.backward()
