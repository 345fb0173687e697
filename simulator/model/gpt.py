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
from simulator.kernels.cpu.attention import attention_backward, attention_forward
from simulator.kernels.cpu.embedding import embedding_backward, embedding_forward
from simulator.kernels.cpu.linear import linear_backward, linear_forward
from simulator.kernels.cpu.norms import layernorm_backward, layernorm_forward, rmsnorm_backward, rmsnorm_forward
from simulator.kernels.cpu.softmax import crossentropy_forward, crossentropy_softmax_backward
from simulator.model.arena import Arena
from simulator.model.params import build_layout, has_final_norm, init_params

Tensors = dict[str, np.ndarray]


@dataclass
class Op:
    """One forward/backward pair; each returns the tensors it produced (by display name)."""

    name: str  # e.g. "block0.attn"
    forward: Callable[[], Tensors]
    backward: Callable[[], Tensors]


class GPT:
    """Parameters, gradients and activations of one model, and its ops in forward order."""

    def __init__(self, cfg: ModelConfig, dtype=np.float32, shared_params: np.ndarray | None = None):
        assert cfg.vocab_size, "vocab_size must be resolved before building the model"
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.layout = build_layout(cfg)
        # shared_params: a second model over the same weights with its own activations (generation)
        self.params = shared_params if shared_params is not None else np.zeros(self.layout.size, dtype=self.dtype)
        self.grads = np.zeros(self.layout.size, dtype=self.dtype)
        self.p = self.layout.views(self.params)
        self.g = self.layout.views(self.grads)
        self.dropout = float(cfg.dropout)  # live: read at every forward
        self.training = True  # eval mode turns dropout off
        self.dropout_rng = np.random.default_rng(0)  # the session replaces it with its own stream
        self.shape: tuple[int, int] | None = None
        self.ops: list[Op] = []

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
        for i in range(cfg.n_layer):
            p = f"h{i}"
            for site in ("norm1", "norm2"):
                shapes.update({f"{p}.{site}": (N, C), f"{p}.{site}.mean": (N,), f"{p}.{site}.rstd": (N,)})
            shapes.update({
                f"{p}.qkv": (N, 3 * C), f"{p}.q": (B, NH, T, HS), f"{p}.k": (B, NH, T, HS),
                f"{p}.v": (B, NH, T, HS), f"{p}.att": (B, NH, T, T), f"{p}.yh": (B, NH, T, HS),
                f"{p}.y": (N, C), f"{p}.attn": (N, C), f"{p}.attn.mask": (N, C), f"{p}.res1": (N, C),
                f"{p}.fc": (N, H), f"{p}.act": (N, H), f"{p}.mlp": (N, C), f"{p}.mlp.mask": (N, C),
                f"{p}.res2": (N, C),
            })
        shapes.update({"norm_f": (N, C), "norm_f.mean": (N,), "norm_f.rstd": (N,),
                       "logits": (N, V), "losses": (N,), "uniform": (N * H,)})
        # gradient scratch: the residual stream, an op's input, inside attention and the MLP
        shapes.update({"dres": (N, C), "dz": (N, C), "dh": (N, C), "dbranch": (N, C), "dy": (N, C),
                       "dqkv": (N, 3 * C), "dq": (B, NH, T, HS), "dk": (B, NH, T, HS), "dv": (B, NH, T, HS),
                       "dyh": (B, NH, T, HS), "datt": (B, NH, T, T), "dfc": (N, H), "dact": (N, H),
                       "dlogits": (N, V)})
        self.acts = Arena(shapes, self.dtype)
        self.ids = np.zeros((B, T), dtype=np.int32)
        self.targets = np.zeros((B, T), dtype=np.int32)
        self.shape = (B, T)
        self._dropout_on: dict[str, bool] = {}
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

    # ------------------------------------------------------------ embedding

    def _embed_forward(self) -> Tensors:
        B, T = self.shape
        A = self.acts
        embedding_forward(A["x0"].reshape(B, T, -1), self.ids, self.p["wte"], self.p["wpe"])
        self._apply_dropout("x0")
        return {"x0": A["x0"]}

    def _embed_backward(self) -> Tensors:
        B, T = self.shape
        d = self._dropout_grad("x0", self.acts["dres"])
        embedding_backward(self.g["wte"], self.g["wpe"], d.reshape(B, T, -1), self.ids)
        return {"d wte": self.g["wte"], "d wpe": self.g["wpe"]}

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
        rms = self.cfg.norm == "rmsnorm"

        def forward():
            if rms:
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
            if rms:
                rmsnorm_backward(dinp, G[f"{prefix}.w"], dout, A[inp], P[f"{prefix}.w"], A[f"{out}.rstd"])
            else:
                layernorm_backward(dinp, G[f"{prefix}.w"], G[f"{prefix}.b"], dout, A[inp], P[f"{prefix}.w"],
                                   A[f"{out}.mean"], A[f"{out}.rstd"])
            names = [k for k in (f"{prefix}.w", f"{prefix}.b") if k in G]
            return {f"d {inp}": dinp, **{f"d {k}": G[k] for k in names}}

        return forward, backward

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
        A, P, (B, T) = self.acts, self.p, self.shape
        linear_forward(A[f"{p}.qkv"], A[inp], P[f"{p}.attn.qkv.w"], P[f"{p}.attn.qkv.b"])  # (N, 3C)
        attention_forward(A[f"{p}.y"].reshape(B, T, -1), A[f"{p}.q"], A[f"{p}.k"], A[f"{p}.v"], A[f"{p}.att"],
                          A[f"{p}.yh"], A[f"{p}.qkv"].reshape(B, T, -1), self._attn_scale(), True)
        linear_forward(A[out], A[f"{p}.y"], P[f"{p}.attn.proj.w"], P[f"{p}.attn.proj.b"])  # (N, C)

    def _attn_backward(self, p: str, inp: str, dout: np.ndarray, dinp: np.ndarray) -> None:
        A, P, G, (B, T) = self.acts, self.p, self.g, self.shape
        linear_backward(A["dy"], G[f"{p}.attn.proj.w"], G[f"{p}.attn.proj.b"], dout, A[f"{p}.y"],
                        P[f"{p}.attn.proj.w"])
        attention_backward(A["dqkv"].reshape(B, T, -1), A["dq"], A["dk"], A["dv"], A["datt"], A["dyh"],
                           A["dy"].reshape(B, T, -1), A[f"{p}.q"], A[f"{p}.k"], A[f"{p}.v"], A[f"{p}.att"],
                           self._attn_scale())
        linear_backward(dinp, G[f"{p}.attn.qkv.w"], G[f"{p}.attn.qkv.b"], A["dqkv"], A[inp], P[f"{p}.attn.qkv.w"])

    def _attn_scale(self) -> float:
        return 1.0 / np.sqrt(self.cfg.head_size)

    def _mlp_forward(self, p: str, inp: str, out: str) -> None:
        A, P = self.acts, self.p
        linear_forward(A[f"{p}.fc"], A[inp], P[f"{p}.mlp.fc.w"], P[f"{p}.mlp.fc.b"])  # (N, H)
        (act.gelu_forward if self.cfg.activation == "gelu" else act.relu_forward)(A[f"{p}.act"], A[f"{p}.fc"])
        linear_forward(A[out], A[f"{p}.act"], P[f"{p}.mlp.proj.w"], P[f"{p}.mlp.proj.b"])  # (N, C)

    def _mlp_backward(self, p: str, inp: str, dout: np.ndarray, dinp: np.ndarray) -> None:
        A, P, G = self.acts, self.p, self.g
        linear_backward(A["dact"], G[f"{p}.mlp.proj.w"], G[f"{p}.mlp.proj.b"], dout, A[f"{p}.act"],
                        P[f"{p}.mlp.proj.w"])
        A["dfc"].fill(0.0)
        (act.gelu_backward if self.cfg.activation == "gelu" else act.relu_backward)(A["dfc"], A[f"{p}.fc"], A["dact"])
        linear_backward(dinp, G[f"{p}.mlp.fc.w"], G[f"{p}.mlp.fc.b"], A["dfc"], A[inp], P[f"{p}.mlp.fc.w"])

    # ------------------------------------------------------------- dropout

    def _apply_dropout(self, site: str) -> None:
        """Inverted dropout in place on activation `site`, when training with a rate above 0."""
        on = self.training and self.dropout > 0.0
        self._dropout_on[site] = on
        if on:
            A = self.acts
            x = A[site]
            uniform = A["uniform"][:x.size].reshape(x.shape)
            self.dropout_rng.random(out=uniform, dtype=self.dtype)
            act.dropout_forward(x, A[f"{site}.mask"], x, uniform, self.dropout)

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
        """Mean cross-entropy of the current logits against `self.targets`; writes dlogits (fused)."""
        A = self.acts
        N = A["losses"].shape[0]
        crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], self.targets.reshape(-1), 1.0 / N)
        return float(A["losses"].mean(dtype=np.float64))

    def loss_only(self) -> float:
        """Mean cross-entropy of the current logits (no gradient), for evaluation."""
        A = self.acts
        crossentropy_forward(A["losses"], A["logits"], self.targets.reshape(-1))
        return float(A["losses"].mean(dtype=np.float64))

    # ------------------------------------------------------------- helpers

    def forward(self, ids: np.ndarray, targets: np.ndarray | None = None) -> float | None:
        """Runs every op's forward on `ids` (B, T); returns the mean loss when targets are given."""
        B, T = ids.shape
        self.ensure_shape(B, T)
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
