"""The training session in its own thread: commands in through one queue, plain messages out through another.

The Tk main loop never touches the session. It sends `Command`s (`worker.send("step")`) and drains
`worker.out` with `after()`, drawing only the newest state. Everything that crosses back is plain
data: `StepRecord`s, phase summaries (copies, never views into live buffers), token events, snapshots'
step numbers, one-sentence errors. Kernels release the GIL, so the window stays responsive while a
step runs.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.checkpoint import CheckpointError, load_checkpoint
from simulator.data import DataError
from simulator.gradcheck import GradCheckError
from simulator.presets import PresetError
from simulator.records import StepRecord
from simulator.sampling import SamplingError, generate
from simulator.session import NeedsRebuild, SessionError, TrainingSession

# The person's mistakes the worker reports as one sentence; anything else is a bug and is re-raised.
PERSON_ERRORS = (SessionError, DataError, PresetError, SamplingError, CheckpointError, GradCheckError)

PREVIEW = 48  # largest side of the small heatmap a phase inspector shows
HIST_BINS = 41


@dataclass
class Message:
    """One thing the worker tells the window: `kind` names it, `data` is plain data."""

    kind: str
    data: Any = None


@dataclass
class TensorSummary:
    """What the step-through inspector shows of one tensor: shape, moments, extremes and a small 2-D preview."""

    name: str
    shape: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    finite: bool
    preview: np.ndarray  # (rows, cols) float32, at most PREVIEW x PREVIEW, strided from the leading rows


@dataclass
class PhaseView:
    """One phase that ran under Step into, summarised in the worker (the event's tensors are live views)."""

    step: int
    index: int
    count: int  # phases in a step
    name: str
    kind: str
    tensors: list[TensorSummary]
    seconds: float
    last: bool


@dataclass
class Probe:
    """Histograms and per-head attention read from the session after a statistics step (plain copies)."""

    step: int
    grad_tensor: str
    grad_hist: tuple[np.ndarray, np.ndarray] | None  # (counts, edges) of the chosen tensor's gradient
    act_site: str
    act_hist: tuple[np.ndarray, np.ndarray] | None  # (counts, edges) of the chosen activation site
    attn_layer: int
    attn_sample: int
    attention: np.ndarray | None  # (NH, T, T) probabilities of the chosen layer and batch row
    tokens: str  # the characters of that batch row (axis labels)


@dataclass
class SessionInfo:
    """What the window needs to know about a freshly built session."""

    config: Any  # the RunConfig as the window gave it (vocab_size as in the preset)
    phase_names: list[str]
    tensor_names: list[str]
    activation_sites: list[str]
    n_layer: int
    n_head: int
    batch_size: int
    vocab: tuple[str, ...]
    n_params: int
    step: int
    snapshot_every: int


@dataclass
class Watch:
    """Which tensor, site, layer and batch row the probes read (the window's choices)."""

    grad_tensor: str = ""
    act_site: str = ""
    attn_layer: int = 0
    attn_sample: int = 0


def summarise(name: str, t: np.ndarray) -> TensorSummary:
    """Moments and a strided 2-D preview of one tensor, copied out of the live buffer."""
    x = np.asarray(t)
    xf = x.astype(np.float64, copy=False)
    finite = bool(np.isfinite(xf).all()) if x.dtype.kind == "f" else True
    two = xf.reshape(-1, x.shape[-1]) if x.ndim >= 2 else xf.reshape(1, -1)
    rs, cs = max(1, -(-two.shape[0] // PREVIEW)), max(1, -(-two.shape[1] // PREVIEW))
    preview = np.array(two[::rs, ::cs][:PREVIEW, :PREVIEW], dtype=np.float32)  # a copy, never a view
    with np.errstate(all="ignore"):
        return TensorSummary(name, tuple(x.shape), float(xf.mean()), float(xf.std()), float(xf.min()),
                             float(xf.max()), finite, preview)


def histogram(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Counts over HIST_BINS symmetric bins spanning the finite values of x; None when none are finite."""
    v = np.asarray(x, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    m = float(np.abs(v).max()) or 1e-12
    return np.histogram(v, bins=HIST_BINS, range=(-m, m))


class Snapshots:
    """Session states every `every` steps under a byte budget; when over it, every other old one is dropped."""

    def __init__(self, every: int = 10, budget_bytes: int = 96 * 2**20):
        self.every, self.budget = every, budget_bytes
        self.states: dict[int, dict[str, np.ndarray]] = {}

    def steps(self) -> list[int]:
        """The steps a Rewind can go back to, ascending."""
        return sorted(self.states)

    def nbytes(self) -> int:
        """Memory the snapshots hold."""
        return sum(a.nbytes for s in self.states.values() for a in s.values())

    def maybe_take(self, session: TrainingSession) -> bool:
        """Keeps the session's state when its step is a multiple of `every`; True when one was taken."""
        step = session.step_count
        if step % self.every or step in self.states:
            return False
        self.states[step] = session.state_arrays()
        while self.nbytes() > self.budget and len(self.states) > 2:
            old = self.steps()[:-1]  # thin the older ones, keep step 0 and the newest
            for s in old[1::2]:
                del self.states[s]
        return True

    def drop_after(self, step: int) -> None:
        """Forgets the states of a branch that a Rewind left."""
        for s in [s for s in self.states if s > step]:
            del self.states[s]


class Worker(threading.Thread):
    """Owns one TrainingSession; runs commands from `commands`, posts `Message`s to `out`."""

    def __init__(self, config, snapshot_every: int = 10):
        super().__init__(name="training-worker", daemon=True)
        self.commands: queue.Queue = queue.Queue()
        self.out: queue.Queue = queue.Queue()
        self.session: TrainingSession | None = None
        self.config = config  # the window's config of the current session
        self.snapshots = Snapshots(snapshot_every)
        self.watch = Watch()
        self.running = False
        self.remaining: int | None = None  # Run N: steps left; None: until paused
        self.steps_per_second = 0.0  # 0: full speed
        self._next_due = 0.0
        self._quit = False

    # ------------------------------------------------------------------ window side
    def send(self, name: str, **kwargs) -> None:
        """Queues a command (called from the Tk thread)."""
        self.commands.put((name, kwargs))

    def stop(self, timeout: float = 5.0) -> None:
        """Asks the thread to finish after the current step and waits for it."""
        self.running = False
        self.send("quit")
        if self.is_alive():
            self.join(timeout)

    # ------------------------------------------------------------------ thread side
    def post(self, kind: str, data: Any = None) -> None:
        """Hands a message to the window."""
        self.out.put(Message(kind, data))

    def run(self) -> None:
        """The loop: handle every waiting command, then take one training step while running."""
        if self._build(self.config):
            self._warm_up()
        while not self._quit:
            try:
                name, kwargs = self.commands.get(block=not self.running, timeout=self._wait())
            except queue.Empty:
                if self.running and time.perf_counter() >= self._next_due:
                    try:
                        self._train_one()
                    except Exception as err:  # noqa: BLE001 - a bug: say so and keep serving the window
                        traceback.print_exc()
                        self._set_running(False)
                        self.post("error", f"internal error while training ({type(err).__name__}: {err}); "
                                  "the details are in the terminal")
                continue
            try:
                getattr(self, "_cmd_" + name)(**kwargs)
            except PERSON_ERRORS as err:
                self.post("error", str(err))
            except Exception as err:  # noqa: BLE001 - a bug: say so and keep serving the window
                traceback.print_exc()
                self._set_running(False)
                self.post("error", f"internal error while running '{name}' ({type(err).__name__}: {err}); "
                          "the details are in the terminal")

    def _warm_up(self) -> None:
        """One step of a throwaway twin session, so the kernels are compiled (or loaded) before the first Step."""
        self.post("status", "preparing kernels (the first launch compiles them once: a few seconds)")
        t0 = time.perf_counter()
        try:
            TrainingSession(self.config).step()
        except PERSON_ERRORS:  # the real session was built: the person will meet the problem on Step
            return
        self.post("status", f"ready (kernels prepared in {time.perf_counter() - t0:.1f} s)")

    def _wait(self) -> float | None:
        if not self.running:
            return None
        return max(0.0, self._next_due - time.perf_counter())

    def _set_running(self, on: bool) -> None:
        if on != self.running:
            self.running = on
            self._next_due = time.perf_counter()
            self.post("running", on)
        if not on:
            self.remaining = None

    def _build(self, config) -> bool:
        """A new session from `config`; the old one stays when the new one cannot be built."""
        self.post("status", "building the model")
        try:
            session = TrainingSession(config)
        except PERSON_ERRORS as err:
            self.post("error", str(err))
            if self.session is not None:
                self.post("config", self.config)
            else:
                self.post("fatal", str(err))
            return False
        self._install(session, config)
        return True

    def _install(self, session: TrainingSession, config) -> None:
        """Makes `session` the current one and tells the window what it is."""
        self._set_running(False)
        self.session, self.config = session, config
        self.snapshots = Snapshots(self.snapshots.every, self.snapshots.budget)
        self.snapshots.maybe_take(session)
        sites = session.activation_sites
        names = session.parameter_names
        if self.watch.grad_tensor not in names:
            self.watch.grad_tensor = names[0]
        if self.watch.act_site not in sites:
            self.watch.act_site = sites[-1] if sites else ""
        self.watch.attn_layer = min(self.watch.attn_layer, config.model.n_layer - 1)
        self.watch.attn_sample = min(self.watch.attn_sample, config.train.batch_size - 1)
        self.post("ready", SessionInfo(config, list(session.phase_names), names, sites, config.model.n_layer,
                                       config.model.n_head, config.train.batch_size,
                                       tuple(session.tokenizer.chars), session.parameter_count,
                                       session.step_count, self.snapshots.every))
        self.post("snapshots", self.snapshots.steps())

    def _train_one(self) -> None:
        """One whole step while running; Run stops on divergence and at the end of Run N."""
        rec = self.session.step()
        self._after_step(rec)
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self._set_running(False)
        if self.steps_per_second > 0:
            self._next_due = max(self._next_due + 1.0 / self.steps_per_second, time.perf_counter() - 1.0)

    def _after_step(self, rec: StepRecord) -> None:
        self.post("record", rec)
        if rec.nonfinite is not None:
            self._set_running(False)
            self.post("diverged", rec.nonfinite.sentence())
            return
        if rec.grad_norms:
            # an evaluation ran after the statistics and overwrote the activations: only gradients are current
            self.post("probe", self._probe(activations=rec.val_loss is None))
        if self.snapshots.maybe_take(self.session):
            self.post("snapshots", self.snapshots.steps())

    def _probe(self, activations: bool = True) -> Probe:
        """Reads the watched tensors of the model (in this thread, between steps) into plain copies."""
        s, w = self.session, self.watch
        g = s.gradient(w.grad_tensor) if w.grad_tensor in s.parameter_names else None
        layer, row = w.attn_layer, w.attn_sample
        a = att = None
        tokens = ""
        if activations:
            a = s.activation(w.act_site) if w.act_site else None
            att = s.attention_map(layer, row)  # (NH, T, T)
            tokens = s.batch_text(row)
        return Probe(s.step_count, w.grad_tensor, histogram(g) if g is not None else None, w.act_site,
                     histogram(a) if a is not None else None, layer, row, att, tokens)

    # ------------------------------------------------------------------ commands
    def _cmd_quit(self) -> None:
        self._quit = True

    def _cmd_step(self) -> None:
        self._set_running(False)
        self._after_step(self.session.step())

    def _cmd_step_into(self) -> None:
        self._set_running(False)
        s = self.session
        ev = s.step_into()
        tensors = [summarise(k, v) for k, v in ev.tensors.items()]
        self.post("phase", PhaseView(ev.step, ev.index, len(s.phase_names), ev.name, ev.kind, tensors, ev.seconds,
                                     ev.last))
        if ev.last:
            self._after_step(s.last_record)

    def _cmd_run(self, n: int | None = None) -> None:
        if self.session.diverged is not None:
            self.post("diverged", self.session.diverged.sentence())
            return
        self._set_running(True)
        self.remaining = n

    def _cmd_pause(self) -> None:
        self._set_running(False)

    def _cmd_speed(self, steps_per_second: float) -> None:
        self.steps_per_second = float(steps_per_second)
        self._next_due = time.perf_counter()

    def _cmd_reset(self) -> None:
        self._build(self.config)

    def _cmd_rebuild(self, config) -> None:
        self._build(config)

    def _cmd_apply(self, config) -> None:
        try:
            changed = self.session.apply_config(config)
        except NeedsRebuild:
            self._build(config)
            return
        except PERSON_ERRORS:
            self.post("config", self.config)
            raise
        self.config = config
        self.post("applied", changed)

    def _cmd_watch(self, **choices) -> None:
        for k, v in choices.items():
            setattr(self.watch, k, v)
        last = self.session.last_record
        if last is not None and last.nonfinite is None and not self.session.in_step and self.session.step_count > 0:
            self.post("probe", self._probe(activations=last.val_loss is None))

    def _cmd_qkv(self, layer: int, head: int, row: int = 0) -> None:
        """Copies one head's q, k, v (T, HS) of the last forward, and that head's attention output."""
        t = self.session.head_tensors(layer, head, row)
        self.post("qkv", (t["q"], t["k"], t["v"], t["y"], layer, head, row, self.session.step_count))

    def _cmd_rewind(self, step: int) -> None:
        if step not in self.snapshots.states:
            raise SessionError(f"no snapshot of step {step} is kept; choose one of {self.snapshots.steps()}")
        self._set_running(False)
        if self.session.in_step:  # the open step is abandoned: run it out, then go back
            self.session.step()
        self.session.load_state_arrays(self.snapshots.states[step])
        self.snapshots.drop_after(step)
        self.post("rewound", step)
        self.post("snapshots", self.snapshots.steps())

    def _cmd_generate(self, sampling) -> None:
        s = self.session
        was = self.running
        self._set_running(False)
        self.post("generating", True)
        try:
            text, _ = generate(s.next_logits, s.tokenizer, sampling, on_token=lambda ev: self.post("token", ev))
        finally:
            self.post("generating", False)
        self.post("generated", text)
        if was:
            self._set_running(True)

    def _cmd_call(self, fn, reply: str, **kwargs) -> None:
        """Runs fn(session, **kwargs) in this thread and posts its result as `reply` (checkpoints, checks)."""
        self._set_running(False)
        self.post(reply, fn(self.session, **kwargs))

    def _cmd_load_checkpoint(self, path: str) -> None:
        """Replaces the session by one restored from a checkpoint (its config comes with it)."""
        session = load_checkpoint(path)
        self._install(session, session.config)

def drain(q: queue.Queue, limit: int = 10000) -> list[Message]:
    """Takes every waiting message (up to `limit`) without blocking, oldest first."""
    out = []
    for _ in range(limit):
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            break
    return out
