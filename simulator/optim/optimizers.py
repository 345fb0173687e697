"""Optimizers over one flat parameter buffer; each step is one numba kernel call.

With g the gradient, w the weight, lr the scheduled rate, t the optimizer's own
1-based count of updates (since it was created or restored, not the session's
step: an optimizer switched to mid-run starts at t = 1, exactly as a fresh one) and
wd = weight_decay on tensors of the decay group (0 elsewhere), per coordinate:

    sgd        g += wd*w; then as momentum below when optim.momentum > 0 (torch.optim.SGD), else w -= lr*g
    momentum   g += wd*w; buf = g at its first step, else momentum*buf + (1-dampening)*g; w -= lr*buf
    nesterov   as momentum, then w -= lr*(g + momentum*buf)     (torch's nesterov=True; dampening must be 0)
    adagrad    g += wd*w; s += g^2; w -= lr*g/(sqrt(s)+eps)
    rmsprop    g += wd*w; a = rho*a + (1-rho)*g^2; u = g/(sqrt(a)+eps);
               with momentum: buf = momentum*buf + u (buf starts at 0); w -= lr*buf, else w -= lr*u
    adam       g += wd*w (coupled L2, as torch.optim.Adam); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
               w -= lr*(m/c1)/(sqrt(v/c2)+eps) with c = 1-beta^t, or c = 1 when bias_correction is false
    adam_l2    the same update as adam, named for the coupled-vs-decoupled lesson
    adamw      adam without the wd*w term in g; instead w -= lr*wd*w (decoupled, never divided by sqrt(v))
    ftrl       FTRL-Proximal (McMahan et al. 2013) with alpha = lr, beta = ftrl_beta:
               sigma = (sqrt(n+g^2)-sqrt(n))/alpha; z += g - sigma*w; n += g^2;
               w = 0 if |z| <= l1 else -(z - sign(z)*l1) / ((beta+sqrt(n))/alpha + l2)

The decay group (parameter groups): matrices always; embeddings when
decay_embeddings; norm gains and biases when decay_norms_and_biases. FTRL's l1
and l2 use the same group. FTRL's weights are a closed form of z and n, which
start at 0. From zero weights that is the paper's start. From non-zero weights
w0 (a GPT's initialisation, or a switch mid-run), w0 enters only through the
first update's sigma*w term, z = g - (|g|/alpha)*w0, so before L1/L2 the first
new weight is (|g|*w0 - alpha*g) / (beta + |g|): w0 moved by alpha*sign(g) when
beta = 0, and otherwise also pulled toward zero by |g| / (beta + |g|); from then
on only z and n matter. It is meant for sparse linear models (see the sparse
FTRL lesson); with a changing lr its sigma uses the current alpha.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from simulator.backend import cpu_backend
from simulator.config import OPTIMIZERS, OptimConfig
from simulator.i18n import _
from simulator.model.layout import ParamLayout
from simulator.optim.clip import ClipError, check_clip
from simulator.optim.schedules import ScheduleError, check_schedule, schedule_problem
from simulator.rules import Problem, setting_of


class OptimError(ValueError):
    """A person's optimizer setting or checkpoint does not fit (one sentence says where and what)."""


def decay_kinds(cfg: OptimConfig) -> set[str]:
    """Which ParamSpec kinds weight decay touches under `cfg`."""
    kinds = {"matrix"}
    if cfg.decay_embeddings:
        kinds.add("embedding")
    if cfg.decay_norms_and_biases:
        kinds |= {"norm", "bias"}
    return kinds


def _update_problem(cfg: OptimConfig, name: Callable[[str], str]) -> Problem | None:
    """The optimizer's own cross-field problem (a setting its update rule needs or ignores), or None."""
    if cfg.name in ("momentum", "nesterov") and cfg.momentum <= 0:
        return Problem("optim.momentum", _("must be greater than 0 for optimizer {name}, got {momentum!r}").format(
                                             name=cfg.name, momentum=cfg.momentum),
                       "e.g. 0.9", at=("optim.momentum", "optim.name"))
    if cfg.name == "nesterov" and cfg.dampening != 0:
        return Problem("optim.dampening", _("must be 0 for optimizer nesterov, got {dampening!r}").format(
                                              dampening=cfg.dampening))
    if cfg.name == "ftrl" and cfg.weight_decay != 0:
        return Problem("optim.weight_decay", _("is not used by ftrl"), _("set optim.l1 / optim.l2 instead"),
                       at=("optim.weight_decay", "optim.name"))
    return None


def optim_problem(cfg: OptimConfig, name: Callable[[str], str] = str) -> Problem | None:
    """The first cross-field problem of an OptimConfig (schedule, then update rule), or None.

    The one place these checks live: the preset validation reports the Problem with its file and line,
    `check_optim` raises it as one sentence. `name` is how a message names another field.
    """
    return schedule_problem(cfg, name) or _update_problem(cfg, name)


def check_optim(cfg: OptimConfig) -> None:
    """Raise OptimError with one sentence if `cfg` cannot drive its optimizer."""
    try:
        check_schedule(cfg)
        check_clip(cfg)
    except (ScheduleError, ClipError) as err:
        raise OptimError(str(err)) from None
    if cfg.name not in OPTIMIZERS:
        raise OptimError(_("optim.name: unknown optimizer {name!r}; choose one of {items}").format(
                             name=cfg.name, items=', '.join(OPTIMIZERS)))
    for f in dataclasses.fields(cfg):  # each field's own rule, as config.py declares it (also catches NaN)
        rule = setting_of(f).rule
        what = rule(getattr(cfg, f.name)) if rule is not None else None
        if what:
            raise OptimError(f"optim.{f.name}: {what}")

    problem = _update_problem(cfg, str)
    if problem is not None:
        raise OptimError(problem.sentence())


class Optimizer:
    """Shared bookkeeping: config, decay mask, named flat state buffers, counters, checkpoints.

    The buffers and the update kernel come from a backend (simulator/backend/; the CPU's by default), so
    the state lives where the weights do; `state_dict` returns host copies, `load_state_dict` takes host arrays.
    """

    required: tuple[str, ...] = ()  # state buffers every step needs
    optional: tuple[str, ...] = ()  # buffers allocated only when a setting asks for them (momentum)

    def __init__(self, cfg: OptimConfig, layout: ParamLayout, dtype, backend=None):
        self.bk = backend if backend is not None else cpu_backend()
        self.k = self.bk.k  # the update kernels by name
        self.layout = layout
        self.size = layout.size
        self.dtype = np.dtype(dtype)
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0  # updates applied so far
        self.cfg: OptimConfig | None = None
        self.decay_mask: np.ndarray | None = None  # (N,) uint8, 1 where weight decay applies
        self._mask_key = None
        self._unused = self.bk.zeros(0, self.dtype)  # stands in for a buffer a kernel will not touch
        self.set_config(cfg)

    def wanted(self, cfg: OptimConfig) -> tuple[str, ...]:
        """The state buffers `cfg` needs."""
        return self.required

    def set_config(self, cfg: OptimConfig) -> None:
        """Take new hyper-parameters from the next step on; state is kept."""
        if self.cfg is not None and cfg.name != self.cfg.name:
            raise OptimError(_("optim.name cannot change from {old} to {new} on a live optimizer; build a new one")
                             .format(old=self.cfg.name, new=cfg.name))
        check_optim(cfg)
        key = (cfg.decay_embeddings, cfg.decay_norms_and_biases)
        if key != self._mask_key:
            mask = self.layout.mask(decay_kinds(cfg), dtype=np.uint8)
            self.decay_mask = mask if self.bk.on_host else self.bk.from_host(mask)
            self._mask_key = key
        self.cfg = cfg
        for name in self.wanted(cfg):
            if name not in self.state:
                self.state[name] = self.bk.zeros(self.size, self.dtype)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """One update of `params` in place from `grads`; the optimizer counts its own steps (t = steps + 1)."""
        assert params.shape == (self.size,) and grads.shape == (self.size,), (params.shape, grads.shape, self.size)
        assert params.dtype == self.dtype and grads.dtype == self.dtype, (params.dtype, grads.dtype, self.dtype)
        self._update(params, grads, float(lr), self.steps + 1)
        self.steps += 1

    def _update(self, params, grads, lr, t):
        raise NotImplementedError

    def _counters(self) -> dict[str, int]:
        return {"steps": self.steps}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state buffers plus the optimizer name and counters as 0-d arrays."""
        out = {name: self.bk.to_host(buf) for name, buf in self.state.items()}
        out["optimizer"] = np.array(self.cfg.name)
        out.update({k: np.array(v, dtype=np.int64) for k, v in self._counters().items()})
        return out

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        """Restore from state_dict(); refuses a different optimizer or a different parameter count."""
        if "optimizer" not in d:
            raise OptimError(_("the optimizer state has no 'optimizer' entry; it was not written by state_dict()"))
        name = str(np.asarray(d["optimizer"]))
        if name != self.cfg.name:
            raise OptimError(_("the checkpoint holds {name} optimizer state but optim.name is {name2}").format(
                                 name=name, name2=self.cfg.name))
        counters = set(self._counters())
        buffers = {k: v for k, v in d.items() if k != "optimizer" and k not in counters}
        for key, value in buffers.items():
            if key not in self.required + self.optional:
                raise OptimError(_("the checkpoint's {name} state has an entry {key!r} that {name} does not keep")
                                 .format(name=name, key=key))

            if np.shape(value) != (self.size,):
                raise OptimError(_("the checkpoint's optimizer state {key!r} has shape {shape} but the model has "
                                   "{size} parameters").format(key=key, shape=np.shape(value), size=self.size))
        missing = [k for k in self.required if k not in buffers]
        if missing:
            raise OptimError(_("the checkpoint's {name} state lacks {items}").format(
                                 name=name, items=', '.join(missing)))
        self.state = {k: self.bk.from_host(v, self.dtype) for k, v in buffers.items()}
        for key in counters:
            setattr(self, key, int(d[key]) if key in d else 0)
        self.set_config(self.cfg)  # zero-fills any buffer the current settings want but the checkpoint lacks


class SGD(Optimizer):
    """sgd, momentum and nesterov (torch.optim.SGD semantics)."""

    optional = ("buf",)

    def __init__(self, cfg, layout, dtype, backend=None):
        self.buf_steps = 0  # steps the momentum buffer has seen: torch starts it at the gradient itself
        super().__init__(cfg, layout, dtype, backend)

    def wanted(self, cfg):
        return ("buf",) if cfg.momentum != 0 else ()

    def _counters(self):
        return {"steps": self.steps, "buf_steps": self.buf_steps}

    def _update(self, params, grads, lr, t):
        c = self.cfg
        buf = self.state.get("buf", self._unused)
        self.k.sgd_update(params, buf, grads, self.decay_mask, lr, float(c.momentum), float(c.dampening),
                           float(c.weight_decay), c.name == "nesterov", self.buf_steps == 0)
        if c.momentum != 0:
            self.buf_steps += 1


class AdaGrad(Optimizer):
    """adagrad: accumulated squared gradients."""

    required = ("sum_sq",)

    def _update(self, params, grads, lr, t):
        c = self.cfg
        self.k.adagrad_update(params, self.state["sum_sq"], grads, self.decay_mask, lr, float(c.eps),
                               float(c.weight_decay))


class RMSProp(Optimizer):
    """rmsprop: a leaky average of squared gradients, optional momentum (torch.optim.RMSprop)."""

    required = ("square_avg",)
    optional = ("buf",)

    def wanted(self, cfg):
        return ("square_avg", "buf") if cfg.momentum != 0 else ("square_avg",)

    def _update(self, params, grads, lr, t):
        c = self.cfg
        buf = self.state.get("buf", self._unused)
        self.k.rmsprop_update(params, self.state["square_avg"], buf, grads, self.decay_mask, lr, float(c.rho),
                               float(c.eps), float(c.weight_decay), float(c.momentum))


class Adam(Optimizer):
    """adam, adam_l2 (coupled L2) and adamw (decoupled decay); bias correction from its own update count t."""

    required = ("m", "v")

    def _update(self, params, grads, lr, t):
        c = self.cfg
        bc1 = 1.0 - c.beta1 ** t if c.bias_correction else 1.0
        bc2 = 1.0 - c.beta2 ** t if c.bias_correction else 1.0
        self.k.adam_update(params, self.state["m"], self.state["v"], grads, self.decay_mask, lr, float(c.beta1),
                            float(c.beta2), float(c.eps), float(c.weight_decay), c.name == "adamw", bc1, bc2)


class FTRL(Optimizer):
    """ftrl: FTRL-Proximal with per-coordinate rates; exact zeros from L1."""

    required = ("z", "n")

    def _update(self, params, grads, lr, t):
        c = self.cfg
        if lr <= 0:
            raise OptimError(_("ftrl got learning rate {lr} at step {t}; lr is its alpha and must stay > 0 (use "
                               "optim.min_lr > 0 or a constant schedule)").format(lr=lr, t=t))
        self.k.ftrl_update(params, self.state["z"], self.state["n"], grads, self.decay_mask, lr,
                            float(c.ftrl_beta), float(c.l1), float(c.l2))


CLASSES = {"sgd": SGD, "momentum": SGD, "nesterov": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp,
           "adam": Adam, "adam_l2": Adam, "adamw": Adam, "ftrl": FTRL}


def make_optimizer(cfg: OptimConfig, layout: ParamLayout, dtype=np.float32, backend=None) -> Optimizer:
    """Build the optimizer `cfg.name` names, with its state buffers allocated for `layout` (on `backend`'s arrays)."""
    check_optim(cfg)
    return CLASSES[cfg.name](cfg, layout, dtype, backend)
