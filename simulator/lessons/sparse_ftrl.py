"""The sparse FTRL lesson: click-through-style logistic regression on hashed IDs, FTRL vs AdaGrad.

Each example has one categorical ID per field (`fields` of them); IDs within a field are
Zipf-distributed (a few popular, a long tail of rare ones) and hashed with the field into one of
`n_features` weights, as the hashing trick does. The true model is a sparse weight vector (a
`true_density` fraction of buckets nonzero, drawn in proportion to how often a bucket is
active); labels are drawn from sigmoid(sum of the active true
weights). Every optimizer trains on the same stream of examples with the same optimizer classes as
the GPT (dense gradients over the flat buffer: a weight whose feature is absent gets g = 0). Each
step reports, per optimizer, the batch log-loss before the update, the validation log-loss after
it and the fraction of weights that are exactly zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.i18n import N_, _
from simulator.lessons import Lesson, check, check_optim_at, optim_rules, register
from simulator.lessons.optimizer_race import RaceEntry
from simulator.model.layout import ParamLayout
from simulator.optim import lr_at, make_optimizer
from simulator.rules import in_range, non_empty, non_negative, positive_int
from simulator.yamlconfig import ParseContext

_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (64-bit golden ratio)

@dataclass(frozen=True)
class SparseLogRegConfig:
    """A sparse logistic-regression lesson: the data generator and the learners."""

    name: str = "ftrl-sparse"
    description: str = ""
    n_features: int = 16384  # hashed buckets = weights
    fields: int = 20  # active features per example (one ID per field)
    ids_per_field: int = 1000
    zipf: float = 1.1  # ID popularity within a field: p(rank k) proportional to 1 / k^zipf
    true_density: float = 0.02  # fraction of buckets with a nonzero true weight
    true_scale: float = 1.0  # std of the nonzero true weights
    batch_size: int = 64
    steps: int = 400
    val_size: int = 4000
    seed: int = 0
    optimizers: tuple[RaceEntry, ...] = ()  # the learners: a label and optimizer settings each


@dataclass
class LessonPoint:
    """One learner after one step."""

    label: str
    step: int  # steps taken, counting this one
    train_loss: float  # log-loss of this step's batch, before the update
    val_loss: float  # log-loss on the validation set after the update
    zero_fraction: float  # fraction of weights exactly 0.0
    lr: float


@dataclass
class SparseFrame:
    """One step of every learner, with the two losses that frame them."""

    points: list[LessonPoint]  # one per learner, in the config's order
    baseline_loss: float  # validation log-loss of always predicting the base rate
    true_loss: float  # validation log-loss of the true weights


def validate(cfg: SparseLogRegConfig, ctx: ParseContext) -> SparseLogRegConfig:
    """Sizes of at least 1, a density in (0, 1], distinct labels and each learner's optimizer checks."""
    for name in ("n_features", "fields", "ids_per_field", "batch_size", "steps", "val_size"):
        if getattr(cfg, name) < 1:
            ctx.fail(name, _("must be at least 1, got {getattr}").format(getattr=getattr(cfg, name)))
    if not 0 < cfg.true_density <= 1:
        ctx.fail("true_density", _("must lie in (0, 1], got {true_density}").format(true_density=cfg.true_density))
    for name in ("zipf", "true_scale"):
        if not getattr(cfg, name) >= 0:
            ctx.fail(name, _("must be >= 0, got {getattr}").format(getattr=getattr(cfg, name)))
    if not cfg.optimizers:
        ctx.fail("optimizers", _("the lesson needs at least one optimizer entry"))
    labels = [e.label for e in cfg.optimizers]
    for i, entry in enumerate(cfg.optimizers):
        if labels.index(entry.label) != i:
            ctx.fail(f"optimizers[{i}].label", _("{label!r} is used twice").format(label=entry.label))
        check_optim_at(ctx, f"optimizers[{i}].optim", entry.optim)
    return cfg


class SparseData:
    """The generator: hashed Zipf IDs, a sparse true weight vector, Bernoulli labels."""

    def __init__(self, cfg: SparseLogRegConfig):
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, 1])
        ranks = np.arange(1, cfg.ids_per_field + 1, dtype=np.float64)
        popularity = ranks ** -cfg.zipf
        self.cdf = np.cumsum(popularity / popularity.sum())
        # How often each bucket is active; the true effects sit on buckets drawn by that frequency, as
        # in click logs, where popular IDs carry the signal and the long tail is mostly noise.
        fields, ids = np.meshgrid(np.arange(cfg.fields), np.arange(cfg.ids_per_field), indexing="ij")
        prob = np.broadcast_to(np.diff(self.cdf, prepend=0.0), fields.shape)
        mass = np.bincount(self.bucket(fields, ids).ravel(), weights=prob.ravel(), minlength=cfg.n_features)
        n_true = min(max(1, round(cfg.true_density * cfg.n_features)), int(np.count_nonzero(mass)))
        chosen = rng.choice(cfg.n_features, n_true, replace=False, p=mass / mass.sum())
        self.true_weights = np.zeros(cfg.n_features)
        self.true_weights[chosen] = rng.normal(0, cfg.true_scale, n_true)
        self.stream = np.random.default_rng([cfg.seed, 2])  # training examples
        self.val_idx, self.val_y = self.sample(cfg.val_size, np.random.default_rng([cfg.seed, 3]))

    def bucket(self, field_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Hash (field, id) pairs into [0, n_features)."""
        key = (field_ids.astype(np.uint64) * np.uint64(self.cfg.ids_per_field) + ids.astype(np.uint64) + 1) * _HASH
        return ((key >> np.uint64(32)) % np.uint64(self.cfg.n_features)).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n examples: active bucket indices (n, fields) and 0/1 labels (n,)."""
        F = self.cfg.fields
        ids = np.minimum(np.searchsorted(self.cdf, rng.random((n, F))), self.cfg.ids_per_field - 1)
        idx = self.bucket(np.broadcast_to(np.arange(F), (n, F)), ids)  # (n, F)
        p = _sigmoid(self.true_weights[idx].sum(axis=1))
        return idx, (rng.random(n) < p).astype(np.float64)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next training batch of the shared stream."""
        return self.sample(self.cfg.batch_size, self.stream)


def _sigmoid(s):
    return 0.5 * (1.0 + np.tanh(0.5 * s))  # never overflows


def log_loss(weights: np.ndarray, idx: np.ndarray, y: np.ndarray) -> float:
    """Mean logistic loss of the linear model `weights` on examples (idx (n, F), y (n,))."""
    s = weights[idx].sum(axis=1)  # (n,) logits
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def log_loss_grad(grads: np.ndarray, weights: np.ndarray, idx: np.ndarray, y: np.ndarray) -> None:
    """Write the gradient of the mean log-loss into `grads` (dense; zero where no example is active)."""
    s = weights[idx].sum(axis=1)  # (n,)
    r = (_sigmoid(s) - y) / len(y)  # (n,) dloss/dlogit
    grads[:] = np.bincount(idx.ravel(), weights=np.repeat(r, idx.shape[1]), minlength=grads.shape[0])


class SparseLogRegLesson:
    """Trains every entry's optimizer on the same example stream; step() returns one LessonPoint each."""

    def __init__(self, cfg: SparseLogRegConfig):
        check(cfg)
        self.cfg = cfg
        self.data = SparseData(cfg)
        self.layout = ParamLayout([("w", (cfg.n_features,), "matrix")])  # in the decay group: l1/l2 apply
        self.labels = [e.label for e in cfg.optimizers]
        self.weights = {e.label: np.zeros(cfg.n_features) for e in cfg.optimizers}
        self.opts = {e.label: make_optimizer(e.optim, self.layout, np.float64) for e in cfg.optimizers}
        self.entries = {e.label: e for e in cfg.optimizers}
        self._grads = np.zeros(cfg.n_features)
        self.step_count = 0

    def step(self) -> list[LessonPoint]:
        """One batch for every learner."""
        idx, y = self.data.next_batch()
        t = self.step_count + 1
        out = []
        for label in self.labels:
            w, opt = self.weights[label], self.opts[label]
            lr = lr_at(t - 1, self.entries[label].optim)
            train = log_loss(w, idx, y)
            log_loss_grad(self._grads, w, idx, y)
            opt.step(w, self._grads, lr)
            out.append(LessonPoint(label, t, train, log_loss(w, self.data.val_idx, self.data.val_y),
                                   float(np.mean(w == 0.0)), lr))
        self.step_count = t
        return out

    def run(self, steps: int | None = None, cancelled=lambda: False) -> list[list[LessonPoint]]:
        """Take `steps` steps (default: the config's; fewer when cancelled() turns True)."""
        return [self.step() for _ in range(self.cfg.steps if steps is None else steps) if not cancelled()]

    def baseline_loss(self) -> float:
        """Validation log-loss of always predicting the training base rate: what learning must beat."""
        rate = float(np.mean(self.data.val_y))
        return -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate)) if 0 < rate < 1 else 0.0

    def true_loss(self) -> float:
        """Validation log-loss of the true weights: the best any learner can hope for."""
        return log_loss(self.data.true_weights, self.data.val_idx, self.data.val_y)


# -------------------------------------------------------------------------------------------- lesson
def run(cfg: SparseLogRegConfig, steps: int | None = None, cancelled=lambda: False) -> list[SparseFrame]:
    """Every learner's point after each step (`steps` of them, default the config's; fewer when cancelled)."""
    lesson = SparseLogRegLesson(cfg)
    baseline, best = lesson.baseline_loss(), lesson.true_loss()
    return [SparseFrame(points, baseline, best) for points in lesson.run(steps, cancelled)]


def summary(cfg: SparseLogRegConfig, frames: list[SparseFrame]) -> str:
    """Each learner's validation log-loss and share of exactly-zero weights at the end."""
    last = frames[-1].points
    lines = [_("sparse logistic regression, {steps} steps:").format(steps=last[0].step)]
    for p in last:
        row = _("validation log-loss {loss:.4f}  weights exactly zero {zero:5.1f}%")
        lines.append(f"  {p.label:<16} " + row.format(loss=p.val_loss, zero=100 * p.zero_fraction))


    return "\n".join(lines)


_RULES = {**optim_rules("optimizers.optim."), "name": non_empty, "optimizers.label": non_empty, "seed": non_negative,
          **{k: positive_int for k in ("n_features", "fields", "ids_per_field", "batch_size", "steps", "val_size")},
          "zipf": non_negative, "true_scale": non_negative, "true_density": in_range(0, 1, low_open=True)}
LESSON = register(Lesson("sparse_logreg", N_("Sparse FTRL"), SparseLogRegConfig, _RULES, validate, run, summary,
                         preset="ftrl-sparse"))
