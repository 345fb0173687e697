"""Early stopping on the validation loss: patience, min_delta, and the best evaluation's step and loss.

`EarlyStopping` is the bookkeeping alone (no weights, no model), so the GPT session and any lesson
with a validation set can use it: call `observe(step, val_loss, patience, min_delta)` after each
evaluation; it answers "improved" (keep these weights as the best), "waiting" or "stop". An
evaluation improves when it is lower than the best so far by more than `min_delta` (Keras's rule:
`val < best - min_delta`); the first evaluation always does. After `patience` evaluations in a row
without one, the run stops, and `stopped` says why (an `EarlyStop`).

Training on after a stop (the window's Run, `train --resume RUN --steps N`) calls `resume()`: the
best so far is kept and the validation loss gets another `patience` evaluations to improve on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from simulator.i18n import _, ngettext


@dataclass(frozen=True)
class EarlyStop:
    """Why a run stopped early: where, the best validation loss and its step, the rule, what was restored."""

    step: int  # the step of the evaluation that ran out of patience
    best_step: int
    best_loss: float
    patience: int
    min_delta: float
    restored: bool  # the weights of best_step were put back

    def sentence(self) -> str:
        """One line a person reads (the CLI prints it, the window's status line shows it)."""
        if self.min_delta > 0:
            stop = ngettext("early stop at step {step}: the validation loss has not improved by more than "
                            "{min_delta:g} for {patience} evaluation",
                            "early stop at step {step}: the validation loss has not improved by more than "
                            "{min_delta:g} for {patience} evaluations", self.patience)
        else:
            stop = ngettext("early stop at step {step}: the validation loss has not improved for {patience} "
                            "evaluation",
                            "early stop at step {step}: the validation loss has not improved for {patience} "
                            "evaluations", self.patience)
        best = (_("best {best:.4f} at step {best_step}, the weights of step {best_step} are restored")
                if self.restored else _("best {best:.4f} at step {best_step}, the weights are those of step {step}"))
        values = dict(step=self.step, min_delta=self.min_delta, patience=self.patience, best=self.best_loss,
                      best_step=self.best_step)
        return _("{stop}; {best}").format(stop=stop.format(**values), best=best.format(**values))


class EarlyStopping:
    """The best validation loss so far, its step, the evaluations since, and the stop once patience runs out."""

    def __init__(self):
        self.best_loss = math.inf
        self.best_step: Optional[int] = None
        self.waited = 0  # evaluations since the best without an improvement
        self.stopped: Optional[EarlyStop] = None

    def observe(self, step: int, val_loss: float, patience: int, min_delta: float, restore_best: bool) -> str:
        """Takes one evaluation: "improved", "waiting" or "stop" (then `stopped` is set). NaN never improves."""
        if val_loss < self.best_loss - min_delta:  # the first finite loss improves on inf; NaN never does
            self.best_loss, self.best_step, self.waited = float(val_loss), step, 0
            return "improved"
        self.waited += 1
        if patience and self.waited >= patience and self.best_step is not None:
            self.stopped = EarlyStop(step, self.best_step, self.best_loss, patience, min_delta, restore_best)
            return "stop"
        return "waiting"

    def resume(self) -> None:
        """Training goes on after a stop: the best is kept; the count of evaluations without improvement restarts."""
        if self.stopped is not None:
            self.stopped = None
            self.waited = 0

    # ------------------------------------------------------------------ state (checkpoints, snapshots)
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything above as arrays for a checkpoint ("early." keys)."""
        s = self.stopped
        # no best yet is an empty array, not inf: every float a checkpoint holds stays finite
        return {"early.best_loss": np.array([] if self.best_step is None else [self.best_loss], dtype=np.float64),
                "early.best_step": np.array(-1 if self.best_step is None else self.best_step, dtype=np.int64),
                "early.waited": np.array(self.waited, dtype=np.int64),
                "early.stopped": np.array([] if s is None else [s.step, s.best_step, s.patience, int(s.restored)],
                                          dtype=np.int64),
                "early.stopped_min_delta": np.array(0.0 if s is None else s.min_delta, dtype=np.float64)}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restores `state_arrays`; a checkpoint without them (older, or no early stopping) starts afresh."""
        self.__init__()
        if "early.best_step" not in arrays:
            return
        step, loss = int(arrays["early.best_step"]), np.asarray(arrays["early.best_loss"], dtype=np.float64).ravel()
        if step < 0 or loss.size != 1:
            return
        self.best_step, self.best_loss = step, float(loss[0])
        self.waited = int(arrays["early.waited"])
        stopped = arrays.get("early.stopped")
        if stopped is not None and stopped.size == 4 and self.best_step is not None:
            at, best, patience, restored = (int(v) for v in stopped)
            self.stopped = EarlyStop(at, best, self.best_loss, patience, float(arrays["early.stopped_min_delta"]),
                                     bool(restored))
