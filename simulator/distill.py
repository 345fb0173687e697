"""Knowledge distillation: a small student GPT learns from a trained teacher's soft targets and hidden states.

The loss of a batch is

    alpha * CE(student, hard targets) + beta * T^2 * KL(teacher_T || student_T) + gamma * (1 - cos(h_s, h_t))

averaged over its tokens, where `_T` is a softmax at temperature T and h the final hidden states (what
the head reads). T^2 keeps the soft term's gradient the same size at any temperature (Hinton et al.
2015: for large T it is (z_s - z_t) / (V T^2), times T^2). When the widths differ, the student's hidden
state is mapped to the teacher's width by a learned linear projection, trained with the student.

The three terms follow the "add the losses, call backward once" rule: each kernel adds its gradient
into the student's `dlogits` or into `dh` (the gradient of the final hidden state), and the student's
own backward runs once (`student_backward`), with `dh` added where the head's backward leaves the
gradient of the final hidden state. The teacher only runs forward, in eval mode.

`init_every_other_layer` starts a student of the teacher's width from one of every two of its blocks
(block i <- teacher block 2i, the embeddings, final norm and head as they are), as DistilBERT did.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from simulator.config import ModelConfig, OptimConfig
from simulator.kernels.cpu.distill import (
    cosine_backward,
    cosine_forward,
    hard_ce_backward,
    hard_ce_forward,
    soft_kl_backward,
    soft_kl_forward,
)
from simulator.kernels.cpu.linear import linear_backward, linear_forward
from simulator.model.gpt import GPT
from simulator.model.layout import ParamLayout
from simulator.optim import clip_gradients, lr_at, make_optimizer

EPS = 1e-8  # the norms of the cosine are sqrt(h . h + EPS^2): smooth at h = 0


@dataclass(frozen=True)
class LossWeights:
    """alpha (hard labels), beta (soft targets, times T^2), gamma (hidden-state cosine) and the temperature."""

    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 0.0
    temperature: float = 2.0

    def only(self, term: str) -> LossWeights:
        """The same weights with every other term off (a test adds the three back together)."""
        keep = {"ce": "alpha", "kl": "beta", "cos": "gamma"}[term]
        return replace(self, **{k: (getattr(self, k) if k == keep else 0.0) for k in ("alpha", "beta", "gamma")})


@dataclass(frozen=True)
class Terms:
    """The three terms' means over a batch (unweighted) and the weighted total the student minimises."""

    ce: float
    kl: float
    cos: float
    total: float


def final_hidden(model: GPT) -> np.ndarray:
    """The final hidden state (N, C) of the last forward: what the head reads (after the final norm, if any)."""
    return model.acts[model.final]


class Projection:
    """A learned linear map from the student's width to the teacher's, h_s @ W (no bias), with its optimizer."""

    def __init__(self, c_student: int, c_teacher: int, optim: OptimConfig, rng: np.random.Generator,
                 dtype=np.float32):
        self.layout = ParamLayout([("proj.w", (c_student, c_teacher), "matrix")])
        # unit-variance outputs for unit-variance inputs; the cosine does not care about the scale
        self.params = (rng.standard_normal(self.layout.size) / np.sqrt(c_student)).astype(dtype)
        self.grads = np.zeros_like(self.params)
        self.w = self.params.reshape(c_student, c_teacher)
        self.dw = self.grads.reshape(c_student, c_teacher)
        self.optimizer = make_optimizer(optim, self.layout, np.dtype(dtype))

    def forward(self, out: np.ndarray, hs: np.ndarray) -> None:
        """out (N, C_t) = hs (N, C_s) @ W."""
        linear_forward(out, hs, self.w, None)

    def backward(self, dhs: np.ndarray, dout: np.ndarray, hs: np.ndarray, scratch: np.ndarray) -> None:
        """Accumulates dW += hs^T dout and dhs += dout W^T (through `scratch`, (N, C_s))."""
        linear_backward(dhs, self.dw, None, dout, hs, self.w, scratch)


def loss_terms(s_logits, t_logits, targets, hs, ht, temperature: float, rows: np.ndarray) -> tuple[float, ...]:
    """(CE, KL, 1 - cos), each the mean over the N rows; `rows` (N,) is scratch for the per-row losses."""
    out = []
    for kernel, args in ((hard_ce_forward, (s_logits, targets)),
                         (soft_kl_forward, (s_logits, t_logits, 1.0 / temperature)),
                         (cosine_forward, (hs, ht, EPS))):
        kernel(rows, *args)
        out.append(float(rows.mean(dtype=np.float64)))
    return tuple(out)


def add_gradients(dlogits, dh, s_logits, t_logits, targets, hs, ht, w: LossWeights) -> None:
    """Adds each weighted term's gradient: CE and KL into dlogits (N, V), the cosine into dh (N, C_t).

    hs is the student's hidden state at the teacher's width (projected when the widths differ), dh its
    gradient. A term whose weight is 0 adds nothing and costs nothing.
    """
    n = s_logits.shape[0]
    if w.alpha:
        hard_ce_backward(dlogits, s_logits, targets, w.alpha / n)
    if w.beta:
        soft_kl_backward(dlogits, s_logits, t_logits, 1.0 / w.temperature, w.beta * w.temperature ** 2 / n)
    if w.gamma:
        cosine_backward(dh, hs, ht, EPS, w.gamma / n)


def student_backward(model: GPT, dh: np.ndarray | None) -> None:
    """The student's backward once from its dlogits, with `dh` added to the final hidden state's gradient.

    The head's backward (the first op back, which zeroes every gradient) writes the gradient of the
    final hidden state; `dh` joins it there, before any op reads it.
    """
    for op in reversed(model.ops):
        op.backward()
        if op.name == "head" and dh is not None:
            dfinal = model.grads_acts[model.final]
            dfinal += dh


def teacher_model(cfg: ModelConfig, tensors: dict[str, np.ndarray], dtype=np.float32) -> GPT:
    """A GPT in eval mode holding a trained teacher's weights (by name; every tensor must be given)."""
    teacher = GPT(cfg, dtype=np.dtype(dtype))
    for name, view in teacher.layout.views(teacher.params).items():
        view[...] = tensors[name]
    teacher.training = False
    return teacher


def layer_map(n_student: int) -> list[int]:
    """The teacher block each student block starts from: one of every two (0, 2, 4, ...)."""
    return [2 * i for i in range(n_student)]


# What must agree for a student to start from a teacher's blocks: every tensor's shape but the depth
SAME_SHAPES = ("vocab_size", "d_model", "n_head", "mlp_ratio", "norm", "norm_position", "tie_embeddings",
               "positional", "activation")


def init_problem(student: ModelConfig, teacher: ModelConfig) -> str | None:
    """Why the student cannot start from every other teacher block (one sentence), or None."""
    for name in SAME_SHAPES:
        a, b = getattr(student, name), getattr(teacher, name)
        if a != b:
            return f"the student's {name} is {a}, the teacher's {b}: the blocks must have the same shapes"
    if student.attention.n_kv_head != teacher.attention.n_kv_head:
        return "the student and the teacher have different key/value heads"
    if 2 * (student.n_layer - 1) >= teacher.n_layer:
        return (f"a student of {student.n_layer} blocks needs a teacher of at least {2 * student.n_layer - 1} "
                f"(one of every two), the teacher has {teacher.n_layer}")
    if student.seq_len > teacher.seq_len and student.positional == "learned":
        return f"the student's seq_len {student.seq_len} is longer than the teacher's {teacher.seq_len}"
    return None


def init_every_other_layer(student: GPT, teacher_cfg: ModelConfig,
                           teacher_tensors: dict[str, np.ndarray]) -> dict[str, str]:
    """Copies teacher block 2i into student block i and every other tensor by name; returns student <- teacher.

    A learned position table longer than the student's keeps its first rows.
    """
    problem = init_problem(student.cfg, teacher_cfg)
    if problem:
        raise ValueError(problem)
    blocks = layer_map(student.cfg.n_layer)
    mapping = {}
    for name, view in student.layout.views(student.params).items():
        source = name
        if name.startswith("h") and name[1].isdigit():  # h{i}.attn.qkv.w and the like
            block, rest = name[1:].split(".", 1)
            source = f"h{blocks[int(block)]}.{rest}"
        t = teacher_tensors[source]
        view[...] = t[:view.shape[0]] if name == "wpe" else t
        mapping[name] = source
    return mapping


class Distiller:
    """Trains a session's student against a teacher with the distillation loss (its batches, optimizer, clip).

    The batch comes from the session's own stream, so a student trained here with alpha = 1, beta =
    gamma = 0 takes the same steps as `session.step()` would. The teacher sees the same ids.
    """

    def __init__(self, session, teacher: GPT, weights: LossWeights, projection_seed: int = 0):
        self.session, self.teacher, self.weights = session, teacher, weights
        m = session.model
        B, T = m.shape
        N, cs, ct = B * T, m.cfg.d_model, teacher.cfg.d_model
        teacher.ensure_shape(B, T)
        self.projection = None
        if cs != ct:
            self.projection = Projection(cs, ct, session.config.optim, np.random.default_rng(projection_seed),
                                         m.dtype)
        self.rows = np.zeros(N, np.float64)
        self.hp = np.zeros((N, ct), m.dtype)  # the student's hidden state at the teacher's width
        self.dhp = np.zeros((N, ct), m.dtype)  # its gradient
        self.dh = np.zeros((N, cs), m.dtype)  # the gradient of the student's own hidden state
        self.scratch = np.zeros((N, cs), m.dtype)
        self.steps = 0

    def forward(self) -> tuple[np.ndarray, np.ndarray]:
        """Runs teacher and student on the student's current ids; returns the student's hidden state at the
        teacher's width and the teacher's."""
        m = self.session.model
        self.teacher.forward(m.ids)
        m.forward(m.ids)
        hs = final_hidden(m)
        if self.projection is not None:
            self.projection.forward(self.hp, hs)
            hs = self.hp
        return hs, final_hidden(self.teacher)

    def terms(self, hs: np.ndarray, ht: np.ndarray, weights: LossWeights | None = None) -> Terms:
        """The current batch's three terms and their total weighted by `weights` (default the distiller's)."""
        m, w = self.session.model, weights or self.weights
        ce, kl, cos = loss_terms(m.acts["logits"], self.teacher.acts["logits"], m.targets.reshape(-1), hs, ht,
                                 w.temperature, self.rows)
        return Terms(ce, kl, cos, w.alpha * ce + w.beta * w.temperature ** 2 * kl + w.gamma * cos)

    def forward_backward(self, weights: LossWeights | None = None) -> Terms:
        """Loss and gradients of the student's current batch (ids, targets already in place); no update."""
        m, w = self.session.model, weights or self.weights
        hs, ht = self.forward()
        terms = self.terms(hs, ht, w)
        dlogits = m.acts["dlogits"]
        dlogits.fill(0.0)  # every term adds into it
        self.dhp.fill(0.0)
        add_gradients(dlogits, self.dhp, m.acts["logits"], self.teacher.acts["logits"], m.targets.reshape(-1),
                      hs, ht, w)
        dh = None
        if w.gamma:
            if self.projection is None:
                dh = self.dhp
            else:
                self.projection.grads.fill(0.0)
                self.dh.fill(0.0)
                self.projection.backward(self.dh, self.dhp, final_hidden(m), self.scratch)
                dh = self.dh
        student_backward(m, dh)
        return terms

    def step(self) -> Terms:
        """One training step: a batch from the session's stream, the loss, one backward, clip, update."""
        s = self.session
        m, optim = s.model, s.config.optim
        m.training = True
        lengths = s.dataset.sample_batch("train", s.data_rng, m.ids, m.targets)
        assert lengths is None, "distillation reads every position: padded data has none to skip"
        m.set_lengths(None)
        terms = self.forward_backward()
        lr = lr_at(self.steps, optim)
        clip_gradients(m.grads, optim)
        s.optimizer.step(m.params, m.grads, lr)
        if self.projection is not None and self.weights.gamma:
            clip_gradients(self.projection.grads, optim)
            self.projection.optimizer.step(self.projection.params, self.projection.grads, lr)
        self.steps += 1
        return terms


def soft_targets(logits: np.ndarray, temperatures) -> np.ndarray:
    """softmax(logits / T) for each temperature: (len(temperatures), V) float64, for showing dark knowledge."""
    z = np.asarray(logits, np.float64)[None, :] / np.asarray(temperatures, np.float64)[:, None]
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)
