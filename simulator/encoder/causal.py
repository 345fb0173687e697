"""The causal GPT the encoder is compared with: same sizes, same sentence pairs, next-token loss.

Fill in the blank asks both models for a hidden word: the encoder reads the whole sentence, the GPT only
what comes before the blank. To make that a comparison of what each model may read, the GPT is trained
by the lesson itself on what the encoder trains on: the packed rows `[CLS] A [SEP] B [SEP]` of the same
WordPiece tokens (the pairs of the encoder's task, unmasked), with the encoder's d_model, layers, heads,
batch, AdamW settings and steps. Its loss is the GPT's own: cross-entropy of each real position against
the next token (the last real token predicts nothing), padding hidden by kv_len. The GPT predicts every
position of a row, the encoder only the 15 % it masks: per step the GPT sees about six times as many targets.
"""

from __future__ import annotations

import numpy as np

from simulator.config import AttentionConfig, ModelConfig, OptimConfig
from simulator.encoder.pairs import PAD, PairCorpus, draw_batch
from simulator.encoder.train import WEIGHT_DECAY, EncoderShape
from simulator.model.gpt import GPT
from simulator.optim import make_optimizer


def causal_config(s: EncoderShape) -> ModelConfig:
    """The GPT's config: the encoder's sizes with a causal mask (naive attention, learned positions)."""
    return ModelConfig(vocab_size=s.vocab_size, d_model=s.d_model, n_layer=s.n_layer, n_head=s.n_head,
                       seq_len=s.seq_len, attention=AttentionConfig(impl="naive", mask="causal"))


def next_token_rows(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, targets, lengths) of packed rows for next-token prediction: position t predicts ids[t + 1]."""
    # ids is (B, T) with lengths real tokens per row; the row's last real token has no next one, so a row of
    # n real tokens gives n - 1 predictions
    targets = np.full_like(ids, PAD)
    targets[:, :-1] = ids[:, 1:]
    return ids, targets, np.maximum(lengths - 1, 1).astype(np.int32)


class CausalLearner:
    """A causal GPT trained on the lesson's sentence pairs (of `task`, unmasked) by next-token prediction."""

    def __init__(self, s: EncoderShape, corpus: PairCorpus, seed: int, task: str):
        self.shape, self.corpus, self.task = s, corpus, task
        self.model = GPT(causal_config(s))
        self.model.init_weights(np.random.default_rng([seed, 0]))
        self.opt = make_optimizer(OptimConfig(name="adamw", lr=s.lr, weight_decay=WEIGHT_DECAY, schedule="constant"),
                                  self.model.layout)
        self.rng = np.random.default_rng([seed, 4])  # its own stream of pairs
        self.steps = 0

    def lr(self) -> float:
        """The encoder's schedule: linear warmup over `warmup` steps, then constant."""
        s = self.shape
        return s.lr * min(1.0, (self.steps + 1) / max(s.warmup, 1))

    def step(self) -> float:
        """One update on a fresh batch of pairs; the batch's next-token loss before it."""
        s = self.shape
        b = draw_batch(self.corpus, self.task, s.batch_size, s.seq_len, self.rng)
        ids, targets, lengths = next_token_rows(b.ids, b.lengths)
        M = self.model
        M.forward(ids, lengths=lengths)
        M.targets[...] = targets
        loss = M.loss_and_dlogits()
        M.backward()
        self.opt.step(M.params, M.grads, self.lr())
        self.steps += 1
        return loss
