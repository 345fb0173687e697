"""Leaf or flower: a hand-sized MLP whose weight update a person follows number by number.

4 inputs (R, G, B, volume), 3 sigmoid hidden units, 2 softmax outputs (leaf, flower), round
starting weights. Each step is plain SGD on one example; `update_text` is what `explain mlp` prints
and what the tab shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.i18n import N_, _
from simulator.lessons import Lesson, check, register
from simulator.lessons.worked_examples import num, nums
from simulator.rules import non_empty, one_of, positive, positive_int
from simulator.yamlconfig import ParseContext

LEAF_FLOWER_FEATURES = ("R", "G", "B", "volume")
LEAF_FLOWER_CLASSES = ("leaf", "flower")
LEAF_FLOWER_LOSSES = ("cross_entropy", "l1")


def leaf_flower_network() -> dict[str, np.ndarray]:
    """The hand-sized network: W1 (4, 3), b1 (3,), W2 (3, 2), b2 (2,), round numbers a person can follow."""
    return {
        "W1": np.array([[0.5, -0.4, 0.3], [-0.6, 0.7, -0.2], [0.4, -0.3, 0.6], [0.2, 0.1, -0.5]]),
        "b1": np.array([0.1, -0.1, 0.0]),
        "W2": np.array([[0.8, -0.6], [-0.7, 0.9], [0.5, -0.4]]),  # rows: hidden units; columns: leaf, flower
        "b2": np.array([0.0, 0.0]),
    }


def leaf_flower_examples() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two examples, features scaled to [0, 1]: a small green leaf and a larger reddish flower."""
    return {"leaf": (np.array([0.2, 0.8, 0.1, 0.3]), np.array([1.0, 0.0])),
            "flower": (np.array([0.9, 0.3, 0.6, 0.5]), np.array([0.0, 1.0]))}


def tiny_forward(params: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """z1 = x W1 + b1, h = sigmoid(z1), z2 = h W2 + b2, p = softmax(z2)."""
    z1 = x @ params["W1"] + params["b1"]
    h = 1.0 / (1.0 + np.exp(-z1))
    z2 = h @ params["W2"] + params["b2"]
    e = np.exp(z2 - z2.max())
    return {"x": x, "z1": z1, "h": h, "z2": z2, "p": e / e.sum()}


def l1_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Sum of absolute differences between prediction and target: |1 - 0.6| + |0 - 0.4| = 0.8."""
    return float(np.sum(np.abs(np.asarray(y, np.float64) - np.asarray(p, np.float64))))


def tiny_loss(p: np.ndarray, y: np.ndarray, loss: str) -> float:
    """Cross-entropy -sum(y ln p) or the L1 loss of one prediction."""
    return float(-np.sum(y * np.log(p))) if loss == "cross_entropy" else l1_loss(p, y)


def tiny_backward(params: dict[str, np.ndarray], cache: dict[str, np.ndarray], y: np.ndarray,
                  loss: str) -> dict[str, np.ndarray]:
    """Gradients of tiny_loss with respect to W1, b1, W2, b2."""
    p, h, x = cache["p"], cache["h"], cache["x"]
    if loss == "cross_entropy":
        dz2 = p - y  # softmax and cross-entropy together
    else:
        dp = np.sign(p - y)  # d|y - p|/dp
        dz2 = p * (dp - np.dot(p, dp))  # through the softmax: J^T dp, J = diag(p) - p p^T
    dh = params["W2"] @ dz2
    dz1 = dh * h * (1.0 - h)
    return {"W1": np.outer(x, dz1), "b1": dz1, "W2": np.outer(h, dz2), "b2": dz2}


@dataclass
class WorkedUpdate:
    """One SGD step of the leaf/flower network on one example, every number kept."""

    example: str
    loss_name: str
    lr: float
    before: dict[str, np.ndarray]  # tiny_forward's tensors before the step
    target: np.ndarray
    loss: float
    grads: dict[str, np.ndarray]
    weight: tuple[str, int, int]  # the weight followed, e.g. ("W2", 1, 0): hidden unit 1 -> leaf
    old: float
    grad: float
    new: float  # old - lr * grad
    after: dict[str, np.ndarray]  # tiny_forward after every weight took its step
    loss_after: float
    params_after: dict[str, np.ndarray]  # every weight after the step: where the next step starts


def leaf_flower_update(loss: str = "cross_entropy", lr: float = 0.5, example: str = "leaf",
                       weight: tuple[str, int, int] = ("W2", 1, 0), params=None) -> WorkedUpdate:
    """One SGD step (every weight: new = old - lr * grad) on one example, from `params` (default the hand-set ones)."""
    check(LeafFlowerConfig(loss=loss, lr=lr, example=example))
    params = leaf_flower_network() if params is None else params
    x, y = leaf_flower_examples()[example]
    before = tiny_forward(params, x)
    grads = tiny_backward(params, before, y, loss)
    name, i, j = weight
    old, grad = float(params[name][i, j]), float(grads[name][i, j])
    new_params = {k: v - lr * grads[k] for k, v in params.items()}
    after = tiny_forward(new_params, x)
    return WorkedUpdate(example, loss, lr, before, y, tiny_loss(before["p"], y, loss), grads, weight, old, grad,
                        float(new_params[name][i, j]), after, tiny_loss(after["p"], y, loss), new_params)


def mlp_text(loss: str = "cross_entropy", lr: float = 0.5) -> str:
    """What `explain mlp` prints: one SGD step of the leaf/flower network, number by number."""
    return update_text(leaf_flower_update(loss, lr))


def update_text(u: WorkedUpdate) -> str:
    """One step of the leaf/flower network, number by number (its first line names the network)."""
    b, a = u.before, u.after
    name, i, j = u.weight
    leaf, flower = LEAF_FLOWER_CLASSES
    # the class and feature names are the program's words (leaf, flower, R, G, B, volume): kept as they are
    lines = [
        _("leaf or flower? a 4-3-2 MLP: inputs (R, G, B, volume), 3 sigmoid hidden units, softmax over (leaf, "
          "flower)"),
        _("input x ({features}) = ({x}), a {example}: target ({leaf}, {flower}) = ({target})").format(
            features=", ".join(LEAF_FLOWER_FEATURES), x=nums(b["x"], 4), example=u.example, leaf=leaf, flower=flower,
            target=nums(u.target)),
        _("hidden  z1 = x W1 + b1 = ({z1});  h = sigmoid(z1) = ({h})").format(z1=nums(b["z1"], 4), h=nums(b["h"], 4)),
        _("output  z2 = h W2 + b2 = ({z2});  p = softmax(z2) = ({leaf} {p0}, {flower} {p1})").format(
            z2=nums(b["z2"], 4), leaf=leaf, p0=num(b["p"][0], 4), flower=flower, p1=num(b["p"][1], 4)),
    ]
    p0, p1 = b["p"]
    h = b["h"][i]
    if u.loss_name == "cross_entropy":
        lines.append(_("loss (cross-entropy) = -ln p_{leaf} = -ln {p0} = {loss}").format(
            leaf=leaf, p0=num(p0, 4), loss=num(u.loss, 4)))
        why = f"(p_{leaf} - 1) x h{i} = ({num(p0, 4)} - 1) x {num(h, 4)}"
    else:
        lines.append(_("loss (L1) = |1 - p_{leaf}| + |0 - p_{flower}| = |1 - {p0}| + |0 - {p1}| = {loss}").format(
            leaf=leaf, flower=flower, p0=num(p0, 4), p1=num(p1, 4), loss=num(u.loss, 4)))
        why = f"-2 p_{leaf} p_{flower} x h{i} = -2 x {num(p0, 4)} x {num(p1, 4)} x {num(h, 4)}"
    lines += [
        _("gradient of {name}[{i},{j}] (hidden unit {i} -> {cls}) = {why} = {grad}").format(
            name=name, i=i, j=j, cls=LEAF_FLOWER_CLASSES[j], why=why, grad=num(u.grad, 6)),
        _("update: new = old - lr x grad = {old} - {lr} x ({grad}) = {new}").format(
            old=num(u.old, 4), lr=num(u.lr, 4), grad=num(u.grad, 6), new=num(u.new, 6)),
        _("after the step (every weight updated the same way): p_{leaf} {p0} -> {p1}, loss {loss} -> {after}").format(
            leaf=leaf, p0=num(p0, 4), p1=num(a["p"][0], 4), loss=num(u.loss, 4), after=num(u.loss_after, 4)),
        _("the textbook's L1 example: |1 - 0.6| + |0 - 0.4| = {loss}").format(
            loss=num(l1_loss([0.6, 0.4], [1.0, 0.0]))),

    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- lesson
@dataclass(frozen=True)
class LeafFlowerConfig:
    """A leaf/flower lesson: which loss, how large a step, on which example, how many steps."""

    name: str = "leaf-flower"
    description: str = ("One SGD step of a 4-3-2 network on one example, every number shown: the forward pass, the "
                        "loss, one weight's gradient and its update.")
    loss: str = "cross_entropy"
    lr: float = 0.5
    example: str = "leaf"
    steps: int = 1


def validate(cfg: LeafFlowerConfig, ctx: ParseContext) -> LeafFlowerConfig:
    """A known loss and example, a positive learning rate, at least one step."""
    if cfg.loss not in LEAF_FLOWER_LOSSES:
        ctx.fail("loss", _("must be one of {items}, got {loss!r}").format(
                             items=', '.join(LEAF_FLOWER_LOSSES), loss=cfg.loss))
    if cfg.example not in LEAF_FLOWER_CLASSES:
        ctx.fail("example", _("must be one of {items}, got {example!r}").format(
                                items=', '.join(LEAF_FLOWER_CLASSES), example=cfg.example))
    if not cfg.lr > 0:
        ctx.fail("lr", _("must be greater than 0, got {lr}").format(lr=cfg.lr))
    if cfg.steps < 1:
        ctx.fail("steps", _("must be at least 1, got {steps}").format(steps=cfg.steps))
    return cfg


def run(cfg: LeafFlowerConfig, steps: int | None = None, cancelled=lambda: False) -> list[WorkedUpdate]:
    """`steps` SGD steps (default the config's), each from the weights the one before left."""
    frames, params = [], None
    for _i in range(cfg.steps if steps is None else steps):
        if cancelled():
            break
        frames.append(leaf_flower_update(cfg.loss, cfg.lr, cfg.example, params=params))
        params = frames[-1].params_after
    return frames


def summary(cfg: LeafFlowerConfig, frames: list[WorkedUpdate]) -> str:
    """The first step number by number, then the loss after each further step."""
    lines = [update_text(frames[0])]
    lines += [_("step {step}: loss {loss} -> {after}").format(step=k, loss=num(u.loss, 4), after=num(u.loss_after, 4))
              for k, u in enumerate(frames[1:], 2)]

    return "\n".join(lines)


_RULES = {"name": non_empty, "loss": one_of(LEAF_FLOWER_LOSSES), "example": one_of(LEAF_FLOWER_CLASSES),
          "lr": positive, "steps": positive_int}
LESSON = register(Lesson("leaf_flower", N_("Leaf or flower"), LeafFlowerConfig, _RULES, validate, run, summary))
