"""The encoder: the GPT's ops with bidirectional attention, a segment table, an MLM loss on the chosen
positions and a sentence-pair head on [CLS].

Everything between the embedding and the logits is `GPT`'s (its blocks, norms, attention kernels with
`mask: none` and padding through kv_len, tied output head), so the encoder differs only where BERT does:

* embedding: x0 = wte[ids] + wpe[t] + wse[segment]: the GPT's embedding kernel, then the segment kernel;
* MLM loss: the tied decoder on the chosen rows only, gathered first (BERT's `gather_indexes`: 15 % of the
  rows, so the largest product shrinks by that much), and the fused cross-entropy kernel on them. With
  `gather=False` the GPT's head runs on every row and each row's gradient is scaled by chosen / n_chosen,
  so a position that was not chosen gets exactly 0 at its logits; a test holds the two paths equal;
* pair head (BERT's pooler and classifier): h = x_final[:, 0] ([CLS]), pooled = tanh(h Wp + bp),
  pair_logits = pooled Wc + bc, a two-way cross-entropy; its gradient is added into d(x_final) at [CLS].
  `n_classes` widens the classifier: fine-tuning on [CLS] (the topic task, `encoder/topics.py`) is the same
  head with one logit per class, trained with no position chosen for the MLM.

The extra tensors live in a small layout of their own (`extra`: wse, pool.w, pool.b, cls.w, cls.b) beside
the GPT's flat buffer; `zero_grad` clears both and the trainer steps an optimizer over each.
"""

from __future__ import annotations

import numpy as np

from simulator.config import ModelConfig
from simulator.encoder.kernels import segment_embedding_backward, segment_embedding_forward
from simulator.kernels.cpu.activations import tanh_backward, tanh_forward
from simulator.kernels.cpu.linear import linear_backward, linear_forward
from simulator.kernels.cpu.softmax import crossentropy_softmax_backward
from simulator.model.gpt import GPT
from simulator.model.layout import ParamLayout

N_SEGMENTS, N_CLASSES = 2, 2


def extra_layout(C: int, n_classes: int = N_CLASSES) -> ParamLayout:
    """The encoder's tensors beyond the GPT's: the segment table and the [CLS] head (pooler, classifier)."""
    return ParamLayout([("wse", (N_SEGMENTS, C), "embedding"), ("pool.w", (C, C), "matrix"), ("pool.b", (C,), "bias"),
                        ("cls.w", (C, n_classes), "matrix"), ("cls.b", (n_classes,), "bias")])


class Encoder(GPT):
    """A GPT run as a BERT-style encoder (CPU backend; `cfg.attention.mask` must be none, positions learned)."""

    def __init__(self, cfg: ModelConfig, dtype=np.float32, gather: bool = True, n_classes: int = N_CLASSES):
        assert cfg.attention.mask == "none" and cfg.positional == "learned" and not cfg.lora.on, cfg
        assert cfg.tie_embeddings, "the MLM decoder is the token table (tied), as BERT's"
        super().__init__(cfg, dtype)
        self.pair_weight = 1.0  # the pair loss's weight in the sum the backward differentiates
        self.gather = gather  # MLM logits on the chosen rows only (BERT), or on every row (the GPT's head)
        self.n_classes = n_classes  # logits of the [CLS] head: 2 for NSP / SOP, one per topic when fine-tuning
        self.extra_layout = extra_layout(cfg.d_model, n_classes)
        self.extra = np.zeros(self.extra_layout.size, self.dtype)
        self.extra_grads = np.zeros(self.extra_layout.size, self.dtype)
        self.q = self.extra_layout.views(self.extra)
        self.gq = self.extra_layout.views(self.extra_grads)

    def init_weights(self, rng: np.random.Generator) -> None:
        """The GPT's weights from `rng`, then the extra tensors (normal, the GPT's init_std; biases 0)."""
        super().init_weights(rng)
        std = self.cfg.init_std
        for spec in self.extra_layout:
            self.q[spec.name][...] = 0.0 if spec.kind == "bias" else rng.normal(0.0, std, spec.shape)

    def ensure_shape(self, B: int, T: int) -> None:
        if self.shape == (B, T):
            return
        super().ensure_shape(B, T)
        C, dt = self.cfg.d_model, self.dtype
        self.segments = np.zeros((B, T), np.int32)
        self.chosen = np.zeros((B, T), bool)
        self.labels = np.zeros(B, np.int32)
        self.head = {name: np.zeros(shape, dt) for name, shape in (
            ("cls", (B, C)), ("pool_pre", (B, C)), ("pool", (B, C)), ("pair_logits", (B, self.n_classes)),
            ("pair_losses", (B,)), ("dpair_logits", (B, self.n_classes)), ("dpool", (B, C)), ("dpool_pre", (B, C)),
            ("dcls", (B, C)), ("row_weight", (B * T,)), ("gathered", (B * T, C)), ("dgathered", (B * T, C)))}
        self.rows = np.zeros(0, np.intp)

    def zero_grad(self) -> None:
        super().zero_grad()
        self.extra_grads.fill(0.0)

    # ------------------------------------------------------------------ embedding: token + position + segment
    def _embed_forward(self):
        B, T = self.shape
        x0 = self.acts["x0"].reshape(B, T, -1)
        self.k.embedding_forward(x0, self.ids, self.p["wte"], self.p["wpe"][:T])
        segment_embedding_forward(x0, self.segments, self.q["wse"])
        self._apply_dropout("x0")
        return {"x0": self.acts["x0"]}

    def _embed_backward(self):
        B, T = self.shape
        d = self._dropout_backward("x0").reshape(B, T, -1)
        self.k.embedding_backward(self.g["wte"], self.g["wpe"][:T], d, self.ids)
        segment_embedding_backward(self.gq["wse"], d, self.segments)
        return {"d wte": self.g["wte"], "d wpe": self.g["wpe"], "d wse": self.gq["wse"]}

    # ------------------------------------------------------------------ heads: MLM logits and the pair head
    def _head_forward(self):
        if self.gather:  # BERT's gather_indexes: the tied decoder on the chosen rows only (M of N)
            A, M = self.acts, len(self.rows)
            np.take(A[self.final], self.rows, axis=0, out=self.head["gathered"][:M])
            linear_forward(A["logits"][:M], self.head["gathered"][:M], self._head_weight(), None)  # (M, V)
            out = {"logits": A["logits"][:M]}
        else:
            out = super()._head_forward()  # logits (N, V) on every row, the GPT's head
        H, Q, (B, T) = self.head, self.q, self.shape
        H["cls"][...] = self.acts[self.final].reshape(B, T, -1)[:, 0]  # (B, C), the [CLS] row
        linear_forward(H["pool_pre"], H["cls"], Q["pool.w"], Q["pool.b"])  # (B, C)
        tanh_forward(H["pool"], H["pool_pre"])
        linear_forward(H["pair_logits"], H["pool"], Q["cls.w"], Q["cls.b"])  # (B, 2)
        return {**out, "pair_logits": H["pair_logits"]}

    def _head_backward(self):
        if self.gather:
            A, H, M = self.acts, self.head, len(self.rows)
            self.zero_grad()  # the first backward op of a step, as the GPT's head
            dg = H["dgathered"][:M]
            linear_backward(dg, self._head_weight(grads=True), None, A["dlogits"][:M], H["gathered"][:M],
                            self._head_weight())  # writes dg, adds into d(wte)
            dfinal = self.grads_acts[self.final]  # zero: rows that were not chosen get nothing from the MLM
            dfinal[self.rows] += dg
            out = {f"d {self.final}": dfinal, "d wte": self.g["wte"]}
        else:
            out = super()._head_backward()  # zero_grad, then d(final) from every row's logits
        H, Q, G, (B, T) = self.head, self.q, self.gq, self.shape
        linear_backward(H["dpool"], G["cls.w"], G["cls.b"], H["dpair_logits"], H["pool"], Q["cls.w"])  # writes dpool
        H["dpool_pre"].fill(0.0)
        tanh_backward(H["dpool_pre"], H["pool_pre"], H["dpool"])
        linear_backward(H["dcls"], G["pool.w"], G["pool.b"], H["dpool_pre"], H["cls"], Q["pool.w"])  # writes dcls
        dfinal = self.grads_acts[self.final].reshape(B, T, -1)
        dfinal[:, 0] += H["dcls"]  # the pair task's share of d(x_final), at [CLS] only
        return {**out, "d cls.w": G["cls.w"], "d pool.w": G["pool.w"]}

    # ------------------------------------------------------------------ a batch, the losses
    def run_forward(self, ids: np.ndarray, segments: np.ndarray, lengths: np.ndarray, chosen: np.ndarray,
                    targets: np.ndarray, labels: np.ndarray) -> None:
        """Every op's forward on a packed, batch (ids, segments, targets, chosen: (B, T); lengths, labels: (B,))."""
        B, T = ids.shape
        self.ensure_shape(B, T)
        self.set_lengths(lengths)
        self.ids[...] = ids
        self.segments[...] = segments
        self.targets[...] = targets
        self.chosen[...] = chosen
        self.rows = np.flatnonzero(chosen.reshape(-1))
        self.labels[...] = labels
        for op in self.ops:
            op.forward()

    def mlm_loss_and_dlogits(self) -> float:
        """Mean cross-entropy over the chosen positions; writes dlogits (gathered: of those rows; else of every
        row, exactly 0 on the rows not chosen)."""
        A, H = self.acts, self.head
        if self.gather:
            M = len(self.rows)
            if M == 0:
                return 0.0
            targets = self.targets.reshape(-1)[self.rows]
            crossentropy_softmax_backward(A["losses"][:M], A["dlogits"][:M], A["logits"][:M], targets, 1.0 / M)
            return float(A["losses"][:M].astype(np.float64).mean())
        chosen = self.chosen.reshape(-1)
        n = max(int(chosen.sum()), 1)
        crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], self.targets.reshape(-1), 1.0)
        np.divide(chosen, n, out=H["row_weight"])
        dlogits = A["dlogits"]
        dlogits *= H["row_weight"][:, None]
        return float(np.sum(A["losses"].astype(np.float64) * chosen) / n)

    def pair_loss_and_dlogits(self) -> float:
        """Mean two-way cross-entropy of the pair head; writes dpair_logits (of pair_weight x that mean)."""
        H = self.head
        B = self.labels.shape[0]
        crossentropy_softmax_backward(H["pair_losses"], H["dpair_logits"], H["pair_logits"], self.labels,
                                      self.pair_weight / B)
        return float(H["pair_losses"].astype(np.float64).mean())

    def loss_and_grads(self) -> tuple[float, float]:
        """(MLM loss, pair loss) of the batch run_forward read, and every gradient of their sum."""
        mlm, pair = self.mlm_loss_and_dlogits(), self.pair_loss_and_dlogits()
        self.backward()
        return mlm, pair

    def pair_predictions(self) -> np.ndarray:
        """(B,) the pair head's predicted labels for the last forward."""
        return np.argmax(self.head["pair_logits"], axis=1).astype(np.int32)

    def cls_attention(self, layer: int) -> np.ndarray:
        """(B, NH, T) attention probabilities of [CLS] over the positions, in `layer` (naive attention only)."""
        return self.acts[f"h{layer}.att"][:, :, 0, :].copy()
