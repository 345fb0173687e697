"""Fine-tuning on [CLS]: which topic a sentence's document is about, after MLM pre-training or from scratch.

BERT's recipe for a sentence classification task: read `[CLS] sentence [SEP]`, put a classifier on the
pooled [CLS] vector (the pooler tanh(h Wp + bp) that pre-training trained, then a new layer, one logit per
class) and train everything, encoder included, on the labelled sentences. Here the labels are the topics
of the world corpus's documents (court, farm, sea, travel, market): each sentence of a document gets its
document's topic. Two learners run the same steps on the same batches at the same learning rate:

* pre-trained: the MLM learner's weights (blocks, embeddings, segment table, pooler) and a new classifier;
* from scratch: the same architecture from a fresh draw; its classifier starts as the pre-trained one's.

Both are measured on the sentences of the held-out documents (never trained on, by either stage).
The encoder is `Encoder(n_classes=len(topics))`: the pair head widened, no position chosen for the MLM,
so the loss is the [CLS] head's cross-entropy alone and its gradient flows into every layer through [CLS].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import OptimConfig
from simulator.encoder.model import Encoder
from simulator.encoder.pairs import CLS, PAD, SEP, Sentence
from simulator.encoder.train import WEIGHT_DECAY, EncoderShape, model_config
from simulator.optim import make_optimizer


@dataclass(frozen=True)
class Labelled:
    """Sentences packed as `[CLS] sentence [SEP]` rows, with their classes."""

    ids: np.ndarray  # (n, T) int32, padded with [PAD]
    lengths: np.ndarray  # (n,) int32
    labels: np.ndarray  # (n,) int32
    sentences: tuple[Sentence, ...]


def label_sentences(documents, classes: list[int], T: int) -> Labelled:
    """Every sentence of each document with its document's class, packed (cut to T - 2 pieces)."""
    sentences = [(s, c) for d, c in zip(documents, classes, strict=True) for s in d]
    n = len(sentences)
    ids = np.full((n, T), PAD, np.int32)
    lengths = np.zeros(n, np.int32)
    for r, (s, _c) in enumerate(sentences):
        pieces = s.ids[:T - 2]
        k = len(pieces) + 2
        ids[r, 0], ids[r, 1:k - 1], ids[r, k - 1] = CLS, pieces, SEP
        lengths[r] = k
    labels = np.array([c for _s, c in sentences], np.int32)
    return Labelled(ids, lengths, labels, tuple(s for s, _c in sentences))


class TopicLearner:
    """An encoder with a topic classifier on [CLS], fine-tuned on labelled sentences."""

    def __init__(self, s: EncoderShape, n_classes: int, seed: int, lr: float, start: Encoder | None = None):
        self.shape, self.base_lr = s, lr
        self.model = M = Encoder(model_config(s), n_classes=n_classes)
        M.init_weights(np.random.default_rng([seed, 5]))  # scratch's weights, and both learners' classifier
        if start is not None:  # everything pre-training trained; the classifier stays the fresh one
            M.params[...] = start.params
            for name in ("wse", "pool.w", "pool.b"):
                M.q[name][...] = start.q[name]
        optim = OptimConfig(name="adamw", lr=lr, weight_decay=WEIGHT_DECAY, schedule="constant")
        self.opt = make_optimizer(optim, M.layout)
        self.opt_extra = make_optimizer(optim, M.extra_layout)
        self.rng = np.random.default_rng([seed, 6])  # the same batches for both learners
        self.steps = 0

    def lr(self) -> float:
        """Linear warmup over the shape's warmup steps, then constant (as in pre-training)."""
        return self.base_lr * min(1.0, (self.steps + 1) / max(self.shape.warmup, 1))

    def feed(self, ids, lengths, labels) -> None:
        B, T = ids.shape
        self.model.run_forward(ids, np.zeros((B, T), np.int32), lengths, np.zeros((B, T), bool), ids, labels)

    def step(self, data: Labelled) -> float:
        """One update on a batch of labelled sentences drawn at random; its loss before the update."""
        rows = self.rng.integers(len(data.labels), size=self.shape.batch_size)
        self.feed(data.ids[rows], data.lengths[rows], data.labels[rows])
        loss = self.model.pair_loss_and_dlogits()
        self.model.backward()
        lr = self.lr()
        self.opt.step(self.model.params, self.model.grads, lr)
        self.opt_extra.step(self.model.extra, self.model.extra_grads, lr)
        self.steps += 1
        return loss

    def predict(self, data: Labelled) -> np.ndarray:
        """(n,) the predicted class of every sentence (batches of the training shape; the last one padded)."""
        B, n = self.shape.batch_size, len(data.labels)
        out = np.zeros(n, np.int32)
        for start in range(0, n, B):
            rows = np.minimum(np.arange(start, start + B), n - 1)
            self.feed(data.ids[rows], data.lengths[rows], data.labels[rows])
            k = min(B, n - start)
            out[start:start + k] = self.model.pair_predictions()[:k]
        return out

    def cls_attention(self, data: Labelled, row: int) -> np.ndarray:
        """(NH, n) the last layer's attention from [CLS] over sentence `row`'s real tokens."""
        B = self.shape.batch_size
        rows = np.full(B, row)
        self.feed(data.ids[rows], data.lengths[rows], data.labels[rows])
        return self.model.cls_attention(self.model.cfg.n_layer - 1)[0, :, :data.lengths[row]]


@dataclass(frozen=True)
class TopicCurve:
    """One learner's held-out accuracy through fine-tuning, and what it makes of the shown sentence."""

    label: str  # "pretrained" or "scratch"
    steps: tuple[int, ...]
    accuracy: tuple[float, ...]
    loss: tuple[float, ...]  # the training batch's, every step
    predicted: int  # the shown sentence's predicted class, after the last step
    attention: np.ndarray  # (NH, n) the last layer's attention from [CLS] over the shown sentence


@dataclass(frozen=True)
class TopicResult:
    """Fine-tuning on topics: both learners, and the chance levels on the held-out sentences."""

    names: tuple[str, ...]
    n_train: int
    n_test: int
    majority: float  # share of the held-out sentences in their most common topic (chance is 1 / len(names))
    curves: tuple[TopicCurve, ...]
    tokens: tuple[str, ...]  # the shown held-out sentence, [CLS] and [SEP] included
    label: int

    def accuracy(self, label: str) -> float:
        """A learner's held-out accuracy after the last step."""
        return next(c.accuracy[-1] for c in self.curves if c.label == label)


LEARNERS = ("pretrained", "scratch")


def fine_tune(s: EncoderShape, pretrained: Encoder, names, train: Labelled, test: Labelled, steps: int, lr: float,
              eval_every: int, shown: int, seed: int, pieces, cancelled=lambda: False) -> TopicResult | None:
    """Fine-tunes a pre-trained and a fresh encoder `steps` steps on `train`, measured on `test` (None: cancelled)."""
    curves = []
    for label in LEARNERS:
        learner = TopicLearner(s, len(names), seed, lr, pretrained if label == "pretrained" else None)
        at, acc, losses = [0], [float(np.mean(learner.predict(test) == test.labels))], []
        for k in range(steps):
            if cancelled():
                return None
            losses.append(learner.step(train))
            if (k + 1) % eval_every == 0 or k == steps - 1:
                at.append(k + 1)
                acc.append(float(np.mean(learner.predict(test) == test.labels)))
        predicted = int(learner.predict(Labelled(test.ids[shown:shown + 1], test.lengths[shown:shown + 1],
                                                 test.labels[shown:shown + 1], test.sentences[shown:shown + 1]))[0])
        curves.append(TopicCurve(label, tuple(at), tuple(acc), tuple(losses), predicted,
                                 learner.cls_attention(test, shown)))
    counts = np.bincount(test.labels, minlength=len(names))
    n = int(test.lengths[shown])
    return TopicResult(tuple(names), len(train.labels), len(test.labels), float(counts.max() / len(test.labels)),
                       tuple(curves), tuple(pieces[i] for i in test.ids[shown, :n]), int(test.labels[shown]))
