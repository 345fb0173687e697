"""Deep-MLP lessons (vanishing and exploding gradients, norms, residuals, init, clipping) and the leaf/flower MLP.

The deep MLP classifies 2-D points of an interleaved spiral (`n_classes` arms).
Layer 0 maps the 2 inputs to `width` units, then come `n_layer` hidden layers
of `width` units, then the output layer to the class logits:

    layer:  z = h W + b  ->  zn = norm(z) (none, layernorm or batchnorm)  ->  a = act(zn)
    next h: a, or h + a when `residual` is on (hidden layers only: same width in and out)

It runs on the same kernels, optimizers and clipping as the GPT. Each step's
`MLPRecord` holds the gradient norm of every layer's weight matrix (input layer
first), which is where vanishing (norms falling geometrically toward the input)
and exploding (growing) gradients show. Weights start by the GPT's own schemes
(`init_tensor`) and BatchNorm switches modes by the GPT's dispatch (`batchnorm_mode`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from simulator.config import ACTIVATIONS, EarlyStoppingConfig, OptimConfig
from simulator.early_stopping import EarlyStop, EarlyStopping
from simulator.i18n import N_, _
from simulator.kernels.cpu.activations import ACTIVATION_KERNELS
from simulator.kernels.cpu.linear import linear_backward, linear_forward
from simulator.kernels.cpu.norms import layernorm_backward, layernorm_forward
from simulator.kernels.cpu.softmax import crossentropy_forward, crossentropy_softmax_backward
from simulator.lessons import Lesson, check, check_optim_at, optim_rules, register
from simulator.model.batchnorm_mode import batchnorm_mode_backward, batchnorm_mode_forward
from simulator.model.layout import ParamLayout
from simulator.model.params import init_tensor
from simulator.observe import dead_fraction, saturated_fraction
from simulator.optim import clip_gradients, lr_at, make_optimizer
from simulator.rules import at_least, in_range, non_empty, non_negative, one_of, positive, positive_int
from simulator.yamlconfig import ParseContext

MLP_NORMS = ("none", "layernorm", "batchnorm")
MLP_INITS = ("normal", "xavier", "xavier_normal", "he", "zeros", "constant")


@dataclass(frozen=True)
class DeepMLPConfig:
    """A deep-MLP lesson: the network, its data and how it trains."""

    name: str = "deep-mlp"
    description: str = ""
    n_layer: int = 20  # hidden layers of `width` units between the input layer and the output layer
    width: int = 32
    activation: str = "sigmoid"
    norm: str = "none"  # applied to z = h W + b, before the activation
    residual: bool = False  # hidden layers: h + act(norm(h W + b))
    init: str = "xavier"  # weight matrices; biases start at 0, norm gains at 1
    init_std: float = 0.1  # used by init: normal
    init_constant: float = 0.01  # used by init: constant
    batchnorm_momentum: float = 0.1  # running = (1 - momentum) * running + momentum * batch, as in PyTorch
    n_classes: int = 3  # spiral arms
    n_train: int = 600
    n_val: int = 600
    noise: float = 0.2  # std of the noise added to each point's angle (radians)
    batch_size: int = 32
    steps: int = 300
    eval_every: int = 10  # validation loss and accuracy every k steps (0: never)
    seed: int = 0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="sgd", lr=0.1, schedule="constant"))
    # on the validation loss, every eval_every steps, as the GPT's train.early_stopping (off while patience is 0)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class MLPRecord:
    """One training step of a deep MLP."""

    step: int  # steps completed, counting this one
    loss: float  # this batch's loss before the update (train mode)
    grad_norm: float  # global gradient norm before clipping
    clipped: bool
    nonfinite: bool  # the loss or a gradient was NaN/Inf: the update was skipped
    grad_norms: list[float]  # per weight matrix, input layer first, output layer last
    stream_grad_norms: list[float]  # ||dL/dh|| of each layer's output h, input layer first: the backward signal
    act_std: list[float]  # std of each layer's output h (input layer first; the output layer has logits)
    saturated: list[float]  # per layer: share of activations within 0.01 of a bound (sigmoid, tanh); else empty
    dead: list[float]  # per layer: share of ReLU units inactive on the whole batch (relu); else empty
    val_loss: Optional[float] = None  # eval mode, every `eval_every` steps
    val_accuracy: Optional[float] = None
    first_nonfinite: Optional[str] = None  # with nonfinite: which tensor went NaN/Inf first (forward, then backward)
    early_stop: Optional[EarlyStop] = None  # this evaluation ran out of early-stopping patience: the run stops


def validate(cfg: DeepMLPConfig, ctx: ParseContext) -> DeepMLPConfig:
    """Sizes, known choices, a batch no larger than the training set, and the optimizer's own checks."""
    for name in ("width", "n_classes", "n_train", "n_val", "batch_size", "steps"):
        if getattr(cfg, name) < 1:
            ctx.fail(name, _("must be at least 1, got {getattr}").format(getattr=getattr(cfg, name)))
    for name in ("n_layer", "eval_every"):
        if getattr(cfg, name) < 0:
            ctx.fail(name, _("must be at least 0, got {getattr}").format(getattr=getattr(cfg, name)))
    for name, options in {"activation": ACTIVATIONS, "norm": MLP_NORMS, "init": MLP_INITS}.items():
        if getattr(cfg, name) not in options:
            ctx.fail(name, _("{getattr!r} is not one of {items}").format(
                               getattr=getattr(cfg, name), items=', '.join(options)))
    if cfg.n_classes < 2:
        ctx.fail("n_classes", _("must be at least 2, got {n_classes}").format(n_classes=cfg.n_classes))
    if cfg.early_stopping.patience and not cfg.eval_every:
        ctx.fail("early_stopping.patience", _("{patience} needs validation losses to watch, but eval_every is 0")
                 .format(patience=cfg.early_stopping.patience), _("set eval_every to how often to evaluate"),
                 at=("early_stopping.patience", "eval_every"))
    if cfg.batch_size > cfg.n_train:
        ctx.fail("batch_size", _("{batch_size} is larger than n_train {n_train}").format(
                                   batch_size=cfg.batch_size, n_train=cfg.n_train), at=("batch_size", "n_train"))
    check_optim_at(ctx, "optim", cfg.optim)
    return cfg


def weight_names(cfg: DeepMLPConfig) -> list[str]:
    """The weight matrices, input layer first: what `MLPRecord.grad_norms` is indexed by."""
    return [f"l{k}.w" for k in range(cfg.n_layer + 1)] + ["out.w"]


def spiral(n: int, n_classes: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points (n, 2) on `n_classes` interleaved spiral arms with labels (n,): not linearly separable."""
    labels = rng.integers(0, n_classes, n)
    r = rng.uniform(0.05, 1.0, n)  # distance from the centre; the angle turns with it
    angle = labels * (2 * math.pi / n_classes) + 4.0 * r + rng.normal(0.0, noise, n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1), labels.astype(np.int32)


class DeepMLP:
    """The network: a flat parameter buffer, BatchNorm buffers and per-batch activations."""

    def __init__(self, cfg: DeepMLPConfig, dtype=np.float32):
        self.cfg, self.dtype = cfg, np.dtype(dtype)
        W = cfg.width
        self.n_weights = cfg.n_layer + 2  # input layer, hidden layers, output layer
        entries = []
        for layer in range(self.n_weights - 1):
            fan_in = 2 if layer == 0 else W
            entries += [(f"l{layer}.w", (fan_in, W), "matrix"), (f"l{layer}.b", (W,), "bias")]
            if cfg.norm != "none":
                entries += [(f"l{layer}.norm.w", (W,), "norm"), (f"l{layer}.norm.b", (W,), "norm")]
        entries += [("out.w", (W, cfg.n_classes), "matrix"), ("out.b", (cfg.n_classes,), "bias")]
        self.layout = ParamLayout(entries)
        self.params = np.zeros(self.layout.size, self.dtype)
        self.grads = np.zeros(self.layout.size, self.dtype)
        self.p, self.g = self.layout.views(self.params), self.layout.views(self.grads)
        self.buffers = {f"l{k}.running_{s}": (np.zeros if s == "mean" else np.ones)(W, self.dtype)
                        for k in range(self.n_weights - 1) for s in ("mean", "var")} if cfg.norm == "batchnorm" else {}
        self.training = True  # BatchNorm: batch statistics (and the running ones move); else the running ones
        self.trained = [True] * (self.n_weights - 1)  # per layer: the mode its last forward ran in
        self.acts: dict[int, dict[str, np.ndarray]] = {}  # batch size -> named activations
        self._last_n = 0
        self.stream_grad_norms = [0.0] * (self.n_weights - 1)  # ||dL/dh_k|| of the last backward

    def init_weights(self, rng: np.random.Generator) -> None:
        """Matrices by `cfg.init` (the GPT's schemes), biases 0, norm gains 1."""
        for spec in self.layout:
            init_tensor(self.p[spec.name], spec.kind, spec.name, self.cfg.init, rng, self.cfg.init_std,
                        self.cfg.init_constant)

    def _buffers(self, N: int) -> dict[str, np.ndarray]:
        if N not in self.acts:
            W, L, K = self.cfg.width, self.n_weights - 1, self.cfg.n_classes
            shapes = {"x": (N, 2), "logits": (N, K), "dlogits": (N, K), "losses": (N,), "targets": (N,),
                      "dh": (N, W), "dz": (N, W), "dzn": (N, W), "dtmp": (N, W), "rowmask": (N,),
                      "s1": (W,), "s2": (W,)}
            stat = (W,) if self.cfg.norm == "batchnorm" else (N,)  # per channel, or per row (layernorm)
            for k in range(L):
                shapes.update({f"z{k}": (N, W), f"zn{k}": (N, W), f"a{k}": (N, W), f"h{k}": (N, W),
                               f"mean{k}": stat, f"var{k}": stat, f"rstd{k}": stat})
            acts = {k: np.zeros(s, np.int32 if k == "targets" else self.dtype) for k, s in shapes.items()}
            acts["rowmask"].fill(1.0)
            self.acts[N] = acts
        return self.acts[N]

    def forward(self, x: np.ndarray, targets: np.ndarray) -> float:
        """Mean cross-entropy of a batch (x (N, 2), targets (N,)); keeps the activations for backward."""
        N = x.shape[0]
        A, P, cfg = self._buffers(N), self.p, self.cfg
        A["x"][...] = x
        A["targets"][...] = targets
        self._last_n = N
        h = A["x"]
        for k in range(self.n_weights - 1):
            linear_forward(A[f"z{k}"], h, P[f"l{k}.w"], P[f"l{k}.b"])  # (N, W)
            zn = self._norm_forward(k, A)
            ACTIVATION_KERNELS[cfg.activation][0](A[f"a{k}"], zn)
            if cfg.residual and k > 0:
                np.add(h, A[f"a{k}"], out=A[f"h{k}"])
            else:
                np.copyto(A[f"h{k}"], A[f"a{k}"])
            h = A[f"h{k}"]
        linear_forward(A["logits"], h, P["out.w"], P["out.b"])  # (N, K)
        crossentropy_forward(A["losses"], A["logits"], A["targets"])
        return float(A["losses"].mean(dtype=np.float64))

    def _norm_forward(self, k: int, A) -> np.ndarray:
        """zn = norm(z) for layer k (or z itself without a norm); BatchNorm's running statistics move in training."""
        cfg, P = self.cfg, self.p
        z, zn = A[f"z{k}"], A[f"zn{k}"]
        if cfg.norm == "none":
            return z
        w, b = P[f"l{k}.norm.w"], P[f"l{k}.norm.b"]
        if cfg.norm == "layernorm":
            layernorm_forward(zn, A[f"mean{k}"], A[f"rstd{k}"], z, w, b)
        else:
            running_mean, running_var = self.buffers[f"l{k}.running_mean"], self.buffers[f"l{k}.running_var"]
            self.trained[k] = batchnorm_mode_forward(zn, A[f"mean{k}"], A[f"var{k}"], A[f"rstd{k}"], z, A["rowmask"],
                                                     w, b, running_mean, running_var, cfg.batchnorm_momentum,
                                                     self.training)
        return zn

    def backward(self) -> None:
        """Gradients of the last forward's mean loss into `self.grads` (zeroed first)."""
        N = self._last_n
        A, P, G, cfg = self.acts[N], self.p, self.g, self.cfg
        self.grads.fill(0.0)
        crossentropy_softmax_backward(A["losses"], A["dlogits"], A["logits"], A["targets"], 1.0 / N)
        last = self.n_weights - 2
        linear_backward(A["dh"], G["out.w"], G["out.b"], A["dlogits"], A[f"h{last}"], P["out.w"])
        for k in range(last, -1, -1):
            # dh is dL/dh_k, which is also dL/da_k (h_k = a_k, or h_{k-1} + a_k)
            self.stream_grad_norms[k] = float(np.linalg.norm(A["dh"].astype(np.float64)))
            A["dzn"].fill(0.0)
            zn = A[f"z{k}"] if cfg.norm == "none" else A[f"zn{k}"]
            ACTIVATION_KERNELS[cfg.activation][1](A["dzn"], zn, A["dh"])
            dz = self._norm_backward(k, A)
            h_in = A["x"] if k == 0 else A[f"h{k - 1}"]
            if k == 0:  # the input needs no gradient
                linear_backward(None, G["l0.w"], G["l0.b"], dz, h_in, P["l0.w"])
            elif cfg.residual:  # the stream's gradient passes the skip unchanged; the branch's joins it
                linear_backward(A["dtmp"], G[f"l{k}.w"], G[f"l{k}.b"], dz, h_in, P[f"l{k}.w"])
                A["dh"] += A["dtmp"]
            else:
                linear_backward(A["dh"], G[f"l{k}.w"], G[f"l{k}.b"], dz, h_in, P[f"l{k}.w"])

    def _norm_backward(self, k: int, A) -> np.ndarray:
        """dz from dzn (in A["dzn"]); returns the array holding dz."""
        cfg, P, G = self.cfg, self.p, self.g
        if cfg.norm == "none":
            return A["dzn"]
        z, dz = A[f"z{k}"], A["dz"]
        dz.fill(0.0)
        w = P[f"l{k}.norm.w"]
        dw, db = G[f"l{k}.norm.w"], G[f"l{k}.norm.b"]
        if cfg.norm == "layernorm":
            layernorm_backward(dz, dw, db, A["dzn"], z, w, A[f"mean{k}"], A[f"rstd{k}"])
        else:
            batchnorm_mode_backward(dz, dw, db, A["dzn"], z, A["rowmask"], w, A[f"mean{k}"], A[f"rstd{k}"], A["s1"],
                                    A["s2"], self.trained[k])
        return dz


class DeepMLPLesson:
    """A deep MLP, its spiral data, optimizer and RNG streams; step() returns an MLPRecord."""

    def __init__(self, cfg: DeepMLPConfig, dtype=np.float32):
        check(cfg)
        self.cfg = cfg
        init_seq, data_seq, batch_seq = np.random.SeedSequence(cfg.seed).spawn(3)
        self.net = DeepMLP(cfg, dtype)
        self.net.init_weights(np.random.default_rng(init_seq))
        data_rng = np.random.default_rng(data_seq)
        self.x_train, self.y_train = spiral(cfg.n_train, cfg.n_classes, cfg.noise, data_rng)
        self.x_val, self.y_val = spiral(cfg.n_val, cfg.n_classes, cfg.noise, data_rng)
        self.batch_rng = np.random.default_rng(batch_seq)
        self.optimizer = make_optimizer(cfg.optim, self.net.layout, self.net.dtype)
        self.step_count = 0
        self.diverged = False
        self.early = EarlyStopping()
        self._best: Optional[dict[str, np.ndarray]] = None  # weights and buffers of the best evaluation

    @property
    def weight_names(self) -> list[str]:
        """The weight matrices, input layer first: what `MLPRecord.grad_norms` is indexed by."""
        return weight_names(self.cfg)

    def _first_nonfinite(self, A: dict[str, np.ndarray], loss: float) -> str:
        """The first tensor that is not finite, in the order the step computed them (as the GPT names its own)."""
        cfg, L = self.cfg, self.net.n_weights - 1
        forward = [name for k in range(L) for name in (f"z{k}", f"zn{k}", f"a{k}", f"h{k}")
                   if name[1] != "n" or cfg.norm != "none"] + ["logits"]
        for name in forward:
            if not np.isfinite(A[name]).all():
                return f"activation {name}"
        if not math.isfinite(loss):
            return "the loss"
        return next((f"gradient of {name}" for name in reversed(list(self.net.g))
                     if not np.isfinite(self.net.g[name]).all()), "the gradient norm")

    def step(self) -> MLPRecord:
        """One minibatch step in train mode; a non-finite loss or gradient skips the update and sets `diverged`."""
        cfg, net = self.cfg, self.net
        idx = self.batch_rng.choice(cfg.n_train, cfg.batch_size, replace=False)
        net.training = True
        with np.errstate(all="ignore"):  # a diverging run is reported in the record, not by warnings
            loss = net.forward(self.x_train[idx], self.y_train[idx])
            net.backward()
            A = net.acts[cfg.batch_size]
            layers = range(net.n_weights - 1)
            grad_norms = [float(np.linalg.norm(net.g[name].astype(np.float64))) for name in self.weight_names]
            act_std = [float(A[f"h{k}"].astype(np.float64).std()) for k in layers]
            sat = [saturated_fraction(A[f"a{k}"], cfg.activation) for k in layers]
            dead = [dead_fraction(A[f"z{k}"] if cfg.norm == "none" else A[f"zn{k}"], cfg.activation) for k in layers]
            norm, clipped = clip_gradients(net.grads, cfg.optim)
        nonfinite = not (math.isfinite(loss) and math.isfinite(norm))
        if nonfinite:
            self.diverged = True
            first = self._first_nonfinite(A, loss)
        else:
            self.optimizer.step(net.params, net.grads, lr_at(self.step_count, cfg.optim))
            self.step_count += 1
        record = MLPRecord(self.step_count, loss, norm, clipped, nonfinite, grad_norms, list(net.stream_grad_norms),
                           act_std, [v for v in sat if v is not None], [v for v in dead if v is not None],
                           first_nonfinite=first if nonfinite else None)
        if not nonfinite and cfg.eval_every and self.step_count % cfg.eval_every == 0:
            record.val_loss, record.val_accuracy = self.evaluate("val")
            record.early_stop = self._early_stopping(record.val_loss)
        return record

    def _early_stopping(self, val_loss: float) -> Optional[EarlyStop]:
        """As the GPT session's: keep the best weights, and put them back when patience runs out (restore_best)."""
        es, net = self.cfg.early_stopping, self.net
        if not es.patience:
            return None
        self.early.resume()
        verdict = self.early.observe(self.step_count, val_loss, es.patience, es.min_delta, es.restore_best)
        if verdict == "improved":
            self._best = {"params": net.params.copy(), **{k: v.copy() for k, v in net.buffers.items()}}
        elif verdict == "stop" and es.restore_best and self._best is not None:
            net.params[...] = self._best["params"]
            for k, buf in net.buffers.items():
                buf[...] = self._best[k]
        return self.early.stopped

    def evaluate(self, split: str = "val", training: bool = False) -> tuple[float, float]:
        """(mean loss, accuracy) over a whole split, in eval mode (BatchNorm on its running statistics).

        training=True computes what the training-mode network does instead: batches
        of `batch_size` rows normalized by their own statistics (the running ones
        are restored afterwards). LayerNorm gives the same numbers both ways.
        """
        x, y = (self.x_val, self.y_val) if split == "val" else (self.x_train, self.y_train)
        net, size = self.net, (self.cfg.batch_size if training else len(y))
        saved = {k: v.copy() for k, v in net.buffers.items()}
        net.training = training
        total, correct = 0.0, 0
        try:
            with np.errstate(all="ignore"):
                for start in range(0, len(y) - size + 1, size):  # whole batches only: a short one has other stats
                    total += net.forward(x[start:start + size], y[start:start + size]) * size
                    correct += int(np.sum(np.argmax(net.acts[size]["logits"], axis=1) == y[start:start + size]))
        finally:
            net.training = True
            for k, v in saved.items():
                net.buffers[k][...] = v
        n = (len(y) // size) * size
        return total / n, correct / n

    def run(self, steps: int | None = None, cancelled=lambda: False) -> list[MLPRecord]:
        """Takes `steps` steps (default: the config's); stops after a step that diverged, or when cancelled."""
        out = []
        for _i in range(self.cfg.steps if steps is None else steps):
            if cancelled():
                break
            out.append(self.step())
            if out[-1].nonfinite or out[-1].early_stop is not None:  # a skipped update would repeat; a stop stops
                break
        return out


# -------------------------------------------------------------------------------------------- lesson
def run(cfg: DeepMLPConfig, steps: int | None = None, cancelled=lambda: False) -> list[MLPRecord]:
    """The records of `steps` steps (default the config's); stops after a step that diverged, or when cancelled.

    The last record carries the validation loss and accuracy of where the run ended, evaluated
    when `eval_every` did not already.
    """
    lesson = DeepMLPLesson(cfg)
    records = lesson.run(steps, cancelled)
    if records and not records[-1].nonfinite and records[-1].val_loss is None:
        records[-1].val_loss, records[-1].val_accuracy = lesson.evaluate("val")
    return records


def summary(cfg: DeepMLPConfig, records: list[MLPRecord]) -> str:
    """A table a person reads: per-layer gradient norms at step 1, then the outcome."""
    first, last = records[0], records[-1]
    shape = (_("{name}: {n_layer} hidden layers of {width} {activation} units, norm {norm}, residual on, init {init}")
             if cfg.residual else
             _("{name}: {n_layer} hidden layers of {width} {activation} units, norm {norm}, residual off, init {init}"))
    lines = [shape.format(name=cfg.name, n_layer=cfg.n_layer, width=cfg.width, activation=cfg.activation,
                          norm=cfg.norm, init=cfg.init),
             _("gradient norm of each weight matrix at step 1 (input layer first):")]
    for name, g in zip(weight_names(cfg), first.grad_norms, strict=True):
        lines.append(f"  {name:<8} {g:10.3e}")
    if last.nonfinite:
        lines.append(_("step {step}: the loss or a gradient became NaN/Inf (first: {tensor}); the update was skipped "
                       "and the run stopped").format(step=last.step + 1, tensor=last.first_nonfinite))
    else:
        lines.append(_("step {step}: train loss {loss:.4f}, validation loss {val:.4f}, accuracy {accuracy:.1f}% "
                       "(chance {chance:.1f}%)").format(step=last.step, loss=last.loss, val=last.val_loss,
                                                        accuracy=100 * last.val_accuracy, chance=100 / cfg.n_classes))
    if last.early_stop is not None:
        lines.append(last.early_stop.sentence())
    clipped = sum(r.clipped for r in records)
    if cfg.optim.grad_clip > 0:
        lines.append(_("clipping fired on {clipped} of {steps} steps (max norm {max_norm:g})").format(
            clipped=clipped, steps=len(records), max_norm=cfg.optim.grad_clip))
    return "\n".join(lines)


_RULES = {**optim_rules("optim."), "name": non_empty, "seed": non_negative, "n_layer": non_negative,
          "eval_every": non_negative, "init_std": positive, "early_stopping.patience": non_negative,
          "early_stopping.min_delta": non_negative,
          **{k: positive_int for k in ("width", "n_train", "n_val", "batch_size", "steps")},
          "n_classes": at_least(2), "noise": non_negative, "activation": one_of(ACTIVATIONS),
          "norm": one_of(MLP_NORMS), "init": one_of(MLP_INITS), "batchnorm_momentum": in_range(0, 1)}
def diverged(cfg: DeepMLPConfig, records: list[MLPRecord]) -> str | None:
    """The one line the CLI prints (exit 3) when the run ended on a non-finite step, else None."""
    last = records[-1] if records else None
    if last is None or not last.nonfinite:
        return None
    return _("step {step}: {tensor} became NaN/Inf first; the update was skipped").format(
        step=last.step + 1, tensor=last.first_nonfinite)



LESSON = register(Lesson("deep_mlp", N_("Deep MLP"), DeepMLPConfig, _RULES, validate, run, summary,
                         preset="deep-sigmoid", diverged=diverged))
