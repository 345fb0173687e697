"""Training an encoder on MLM + one pair task, and measuring it on held-out pairs.

One `Learner` per pair task: its own encoder (weights drawn from the lesson's seed, so the NSP and the
SOP learner start equal), AdamW over the GPT's buffer and over the encoder's extra tensors, and a batch
stream of its own. A step draws B pairs, packs them, masks them, and takes one update of
MLM loss + pair loss. `evaluate` runs fixed held-out pairs, masked once, in batches of the training
shape (so the arena is never rebuilt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import AttentionConfig, ModelConfig, OptimConfig
from simulator.encoder.masking import Masked, mask_batch
from simulator.encoder.model import Encoder
from simulator.encoder.pairs import PairBatch, PairCorpus, draw_batch, draw_pair, pack
from simulator.optim import make_optimizer

WEIGHT_DECAY = 0.01  # BERT's


@dataclass(frozen=True)
class EncoderShape:
    """What the encoder and its training are: sizes, masking, optimizer."""

    vocab_size: int
    seq_len: int
    d_model: int
    n_layer: int
    n_head: int
    batch_size: int
    masking: str
    mask_rate: float
    lr: float
    warmup: int


def model_config(s: EncoderShape) -> ModelConfig:
    """The GPT config the encoder runs: bidirectional naive attention (it keeps the maps), learned positions."""
    return ModelConfig(vocab_size=s.vocab_size, d_model=s.d_model, n_layer=s.n_layer, n_head=s.n_head,
                       seq_len=s.seq_len, attention=AttentionConfig(impl="naive", mask="none"))


@dataclass
class EvalSet:
    """Fixed held-out pairs of one task, packed and masked once."""

    batches: list[tuple[PairBatch, Masked]]


def eval_set(c: PairCorpus, task: str, n: int, s: EncoderShape, rng: np.random.Generator) -> EvalSet:
    """n pairs (rounded up to whole batches) of `task` from `c`, packed and masked with `rng`."""
    batches = []
    for _ in range(-(-n // s.batch_size)):
        b = pack([draw_pair(c, task, rng) for _ in range(s.batch_size)], s.seq_len)
        batches.append((b, mask_batch(b.ids, b.starts, c.vocab_ids, s.mask_rate, s.masking, rng)))
    return EvalSet(batches)


@dataclass(frozen=True)
class Evaluation:
    """A learner on its held-out pairs: MLM loss over the chosen positions, pair accuracy and loss."""

    mlm_loss: float
    mlm_accuracy: float  # share of chosen positions whose top prediction is the original token
    pair_accuracy: float
    pair_loss: float


class Learner:
    """An encoder trained on MLM and one pair task."""

    def __init__(self, task: str, s: EncoderShape, corpus: PairCorpus, seed: int, stream: int):
        self.task, self.shape, self.corpus = task, s, corpus
        self.model = Encoder(model_config(s))
        self.model.init_weights(np.random.default_rng([seed, 0]))  # the same start for every task
        optim = OptimConfig(name="adamw", lr=s.lr, weight_decay=WEIGHT_DECAY, schedule="constant")
        self.opt = make_optimizer(optim, self.model.layout)
        self.opt_extra = make_optimizer(optim, self.model.extra_layout)
        self.rng = np.random.default_rng([seed, 1, stream])
        self.steps = 0

    def lr(self) -> float:
        """Linear warmup over `warmup` steps, then constant."""
        s = self.shape
        return s.lr * min(1.0, (self.steps + 1) / max(s.warmup, 1))

    def feed(self, b: PairBatch, m: Masked) -> None:
        self.model.run_forward(m.ids, b.segments, b.lengths, m.chosen, m.targets, b.labels)

    def step(self) -> tuple[float, float]:
        """One update on a fresh batch: (MLM loss, pair loss) before it."""
        s, c = self.shape, self.corpus
        b = draw_batch(c, self.task, s.batch_size, s.seq_len, self.rng)
        m = mask_batch(b.ids, b.starts, c.vocab_ids, s.mask_rate, s.masking, self.rng)
        self.feed(b, m)
        mlm, pair = self.model.loss_and_grads()
        lr = self.lr()
        self.opt.step(self.model.params, self.model.grads, lr)
        self.opt_extra.step(self.model.extra, self.model.extra_grads, lr)
        self.steps += 1
        return mlm, pair

    def evaluate(self, ev: EvalSet, shown: int = 0) -> tuple[Evaluation, tuple[np.ndarray, np.ndarray, int]]:
        """Losses and accuracies on the held-out pairs (no update), and of row `shown` of the first batch its
        top predictions (T,), the last layer's attention from [CLS] (NH, T) and its predicted pair label."""
        M = self.model
        n_chosen = hits = right = 0
        mlm_sum = pair_sum = 0.0
        n_pairs = 0
        example = None
        for i, (b, m) in enumerate(ev.batches):
            self.feed(b, m)
            k = len(M.rows)
            pred = np.zeros(0, np.intp)
            if k:
                mlm_sum += M.mlm_loss_and_dlogits() * k
                pred = np.argmax(M.acts["logits"][:k], axis=1)  # (k,): the chosen rows, gathered in order
                hits += int(np.sum(pred == m.targets.reshape(-1)[M.rows]))
            n_chosen += k
            pair_sum += M.pair_loss_and_dlogits() * len(b.labels)
            right += int(np.sum(M.pair_predictions() == b.labels))
            n_pairs += len(b.labels)
            if i == 0:  # the shown row: its targets where nothing was predicted, the top prediction where chosen
                T = b.ids.shape[1]
                row = m.targets[shown].copy()
                mine = (M.rows >= shown * T) & (M.rows < (shown + 1) * T)
                row[M.rows[mine] - shown * T] = pred[mine]
                example = (row.astype(np.int32), M.cls_attention(M.cfg.n_layer - 1)[shown],
                           int(M.pair_predictions()[shown]))
        return (Evaluation(mlm_sum / max(n_chosen, 1), hits / max(n_chosen, 1), right / n_pairs, pair_sum / n_pairs),
                example)
