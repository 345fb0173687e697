"""Plain-data records the engine emits: what the UI and the CLI read, never engine objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class PhaseEvent:
    """One phase of a training step has run (`TrainingSession.step_into`)."""

    step: int  # the step this phase belongs to (0-based count of completed steps)
    index: int  # position of the phase within the step
    name: str  # e.g. "forward.block0.attn", "loss", "backward.block1.mlp", "clip", "update"
    kind: str  # "forward" | "loss" | "backward" | "clip" | "update"
    tensors: dict[str, np.ndarray]  # name -> the tensor the phase produced (read-only views; copy to keep)
    seconds: float  # wall time the phase took
    last: bool  # True when this phase completed the step


@dataclass
class NonFinite:
    """Where a run first went NaN/Inf: the step, the phase and the tensor (in phase order)."""

    step: int
    phase: str
    tensor: str

    def sentence(self) -> str:
        """One line a person reads."""
        return (f"training diverged at step {self.step + 1}: {self.tensor} became NaN/Inf "
                f"during {self.phase}; the update was not applied and the weights are those of step {self.step}")


@dataclass
class StepRecord:
    """Everything a person can look at after one training step."""

    step: int  # steps completed, counting this one (1 after the first step)
    loss: float
    lr: float
    grad_norm: float  # global norm before clipping
    clipped: bool
    tokens: int  # tokens processed in this step
    seconds: float  # wall time of the step
    phase_seconds: dict[str, float]  # phase kind -> seconds ("forward", "loss", "backward", "clip", "update")
    val_loss: Optional[float] = None  # every `train.eval_every` steps
    # Heavy statistics, filled every `train.stats_every` steps, else empty:
    grad_norms: dict[str, float] = field(default_factory=dict)  # parameter tensor -> grad norm
    update_ratios: dict[str, float] = field(default_factory=dict)  # tensor -> |update| / |param|
    param_norms: dict[str, float] = field(default_factory=dict)
    activations: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # site -> (mean, std, max|x|)
    attention: Optional[np.ndarray] = None  # (T, T) probabilities of the watched layer/head, first sequence
    nonfinite: Optional[NonFinite] = None  # set when this step diverged (the update was not applied)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")
