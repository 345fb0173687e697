"""The training session in its own thread: commands in through one queue, plain messages out through another.

The Tk main loop never touches the session. It sends the commands of `ui.protocol` (`worker.send(Step())`),
which `Worker.HANDLERS` maps by type to one method each, and drains `worker.out` with `after()`. Everything
that crosses back is one of the protocol's messages, plain data: `Record`s, phase summaries (copies,
never views into live buffers), token events, snapshots' step numbers, one-sentence errors. Kernels
release the GIL, so the window stays responsive while a step runs.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback

import numpy as np

from simulator.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from simulator.data import DataError
from simulator.gradcheck import GradCheckError, check_gradients
from simulator.i18n import N_, _
from simulator.presets import PresetError
from simulator.records import StepRecord
from simulator.sampling import SamplingError, generate
from simulator.session import NeedsRebuild, SessionError, TrainingSession
from ui.protocol import (
    Applied,
    Apply,
    CheckpointSaved,
    ConfigKept,
    Diverged,
    Error,
    Fatal,
    Generate,
    Generated,
    Generating,
    GradCheck,
    GradChecked,
    HeadQKV,
    HeadTensors,
    LoadCheckpoint,
    Outbox,
    Pause,
    Phase,
    Probe,
    Quit,
    Ready,
    Rebuild,
    Record,
    Reset,
    Rewind,
    Rewound,
    Run,
    Running,
    SaveCheckpoint,
    SnapshotSteps,
    Speed,
    StatisticsRate,
    Status,
    Step,
    StepInto,
    TensorSummary,
    Token,
    Watch,
)

# The person's mistakes the worker reports as one sentence; anything else is a bug and is re-raised.
PERSON_ERRORS = (SessionError, DataError, PresetError, SamplingError, CheckpointError, GradCheckError)

PREVIEW = 48  # largest side of the small heatmap a phase inspector shows
HIST_BINS = 41


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
    """Owns one TrainingSession; runs the commands of `commands`, posts messages to `out` (ui.protocol)."""

    def __init__(self, config, snapshot_every: int = 10):
        super().__init__(name="training-worker", daemon=True)
        self.commands: queue.Queue = queue.Queue()
        # the newest Probe replaces an undrawn older one: only the newest is drawn (ui.protocol.Outbox)
        self.out = Outbox(latest_only=(Probe,))
        self.session: TrainingSession | None = None
        self._stats_probe: Probe | None = None  # taken by session.on_statistics, posted after the step
        self.config = config  # the window's config of the current session
        self.snapshots = Snapshots(snapshot_every)
        self.watch = Watch()  # this thread's copy of the window's selection, fitted to the session
        self.running = False
        self.remaining: int | None = None  # Run N: steps left; None: until paused
        self.steps_per_second = 0.0  # 0: full speed
        self.statistics_per_second = 0.0  # StatisticsRate: extra statistics steps for the tab on screen
        self._last_statistics = 0.0  # when the last statistics step ended (perf_counter)
        self._next_due = 0.0
        self._quit = False

    # ------------------------------------------------------------------ window side
    def send(self, command) -> None:
        """Queues a command, one of ui.protocol's (called from the Tk thread)."""
        self.commands.put(command)

    def stop(self, timeout: float = 5.0) -> None:
        """Asks the thread to finish after the current step and waits for it."""
        self.running = False
        self.send(Quit())
        if self.is_alive():
            self.join(timeout)

    # ------------------------------------------------------------------ thread side
    def post(self, message) -> None:
        """Hands a message to the window."""
        self.out.put(message)

    def run(self) -> None:
        """The loop: handle every waiting command, then take one training step while running."""
        _one_kernel_thread()
        _short_gil_waits()
        if self._build(self.config):
            self._warm_up()
        while not self._quit:
            try:
                command = self.commands.get(block=not self.running, timeout=self._wait())
            except queue.Empty:
                if self.running and time.perf_counter() >= self._next_due:
                    try:
                        self._train_one()
                    except Exception as err:  # noqa: BLE001 - a bug: say so and keep serving the window
                        traceback.print_exc()
                        self._set_running(False)
                        self.post(Error(_("internal error while training ({kind}: {error}); the details are in "
                                          "the terminal").format(kind=type(err).__name__, error=err)))
                continue
            try:
                self.HANDLERS[type(command)](self, command)
            except PERSON_ERRORS as err:
                self.post(Error(str(err)))
            except Exception as err:  # noqa: BLE001 - a bug: say so and keep serving the window
                traceback.print_exc()
                self._set_running(False)
                self.post(Error(_("internal error while running {command} ({kind}: {error}); the details are in the "
                                  "terminal").format(command=type(command).__name__, kind=type(err).__name__,
                                                     error=err)))

    def _warm_up(self) -> None:
        """One step of a throwaway twin session, so the kernels are compiled (or loaded) before the first Step."""
        self.post(Status(N_("preparing kernels (the first launch compiles them once: a few seconds)")))
        t0 = time.perf_counter()
        try:
            TrainingSession(self.config).step()
        except PERSON_ERRORS:  # the real session was built: the person will meet the problem on Step
            return
        self.post(Status(N_("ready (kernels prepared in {seconds:.1f} s)"), {"seconds": time.perf_counter() - t0}))

    def _wait(self) -> float | None:
        if not self.running:
            return None
        return max(0.0, self._next_due - time.perf_counter())

    def _set_running(self, on: bool) -> None:
        if on != self.running:
            self.running = on
            self._next_due = time.perf_counter()
            self.post(Running(on))
        if not on:
            self.remaining = None

    def _build(self, config) -> bool:
        """A new session from `config`; the old one stays when the new one cannot be built."""
        self.post(Status(N_("building the model")))
        try:
            session = TrainingSession(config)
        except PERSON_ERRORS as err:
            self.post(Error(str(err)))
            if self.session is not None:
                self.post(ConfigKept(self.config))
            else:
                self.post(Fatal(str(err)))
            return False
        self._install(session, config)
        return True

    def _fit_watch(self, watch: Watch) -> Watch:
        s = self.session
        return watch.fit(s.parameter_names, s.activation_sites, self.config.model.n_layer,
                         self.config.train.batch_size)

    def _install(self, session: TrainingSession, config) -> None:
        """Makes `session` the current one and tells the window what it is."""
        self._set_running(False)
        self.session, self.config = session, config
        self._stats_probe = None
        session.on_statistics = self._capture_probe
        self.snapshots = Snapshots(self.snapshots.every, self.snapshots.budget)
        self.snapshots.maybe_take(session)
        self.watch = self._fit_watch(self.watch)
        self.post(Ready(config, list(session.phase_names), session.parameter_names, session.activation_sites,
                        config.model.n_layer, config.model.n_head, config.train.batch_size,
                        tuple(session.tokenizer.chars), session.parameter_count, session.step_count,
                        self.snapshots.every, session.backend_description, session.backend_message))
        self.post(SnapshotSteps(self.snapshots.steps()))

    def _train_one(self) -> None:
        """One whole step while running; Run stops on divergence and at the end of Run N."""
        if self.statistics_per_second > 0 and \
                time.perf_counter() - self._last_statistics >= 1.0 / self.statistics_per_second:
            self.session.request_statistics()
        rec = self.session.step()
        self._after_step(rec)
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self._set_running(False)
        if self.steps_per_second > 0:
            self._next_due = max(self._next_due + 1.0 / self.steps_per_second, time.perf_counter() - 1.0)

    def _after_step(self, rec: StepRecord) -> None:
        self.post(Record(rec))
        if rec.nonfinite is not None:
            self._set_running(False)
            self.post(Diverged(rec.nonfinite.sentence()))
            return
        if rec.early_stop is not None:  # Run stops where early stopping did; the status line says why
            self._set_running(False)
            self.post(Status(rec.early_stop.sentence()))
        if rec.grad_norms:
            self._last_statistics = time.perf_counter()
            # read inside the step (session.on_statistics), before an evaluation could overwrite the activations
            probe, self._stats_probe = self._stats_probe, None
            self.post(probe if probe is not None else self._probe(activations=rec.val_loss is None))
        if self.snapshots.maybe_take(self.session):
            self.post(SnapshotSteps(self.snapshots.steps()))

    def _capture_probe(self) -> None:
        """The watched tensors of a statistics step, taken before its evaluation (the session's hook)."""
        self._stats_probe = self._probe()

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

    # ------------------------------------------------------------------ commands, one handler per type
    def _on_quit(self, _: Quit) -> None:
        self._quit = True

    def _on_step(self, _: Step) -> None:
        self._set_running(False)
        self._after_step(self.session.step())

    def _on_step_into(self, _: StepInto) -> None:
        self._set_running(False)
        s = self.session
        ev = s.step_into()
        tensors = [summarise(k, v) for k, v in ev.tensors.items()]
        self.post(Phase(ev.step, ev.index, len(s.phase_names), ev.name, ev.kind, tensors, ev.seconds, ev.last))
        if ev.last:
            self._after_step(s.last_record)

    def _on_run(self, cmd: Run) -> None:
        if self.session.diverged is not None:
            self.post(Diverged(self.session.diverged.sentence()))
            return
        self._set_running(True)
        self.remaining = cmd.n

    def _on_pause(self, _: Pause) -> None:
        self._set_running(False)

    def _on_speed(self, cmd: Speed) -> None:
        self.steps_per_second = float(cmd.steps_per_second)
        self._next_due = time.perf_counter()

    def _on_statistics_rate(self, cmd: StatisticsRate) -> None:
        self.statistics_per_second = max(0.0, float(cmd.per_second))

    def _on_reset(self, _: Reset) -> None:
        self._build(self.config)

    def _on_rebuild(self, cmd: Rebuild) -> None:
        self._build(cmd.config)

    def _on_apply(self, cmd: Apply) -> None:
        try:
            changed = self.session.apply_config(cmd.config)
        except NeedsRebuild:
            self._build(cmd.config)
            return
        except PERSON_ERRORS:
            self.post(ConfigKept(self.config))
            raise
        self.config = cmd.config
        self.post(Applied(changed))

    def _on_watch(self, cmd: Watch) -> None:
        self.watch = self._fit_watch(cmd)
        last = self.session.last_record
        if last is not None and last.nonfinite is None and not self.session.in_step and self.session.step_count > 0:
            self.post(self._probe(activations=last.val_loss is None))

    def _on_head_tensors(self, cmd: HeadTensors) -> None:
        """Copies one head's q, k, v (T, HS) of the last forward, and that head's attention output."""
        t = self.session.head_tensors(cmd.layer, cmd.head, cmd.row)
        self.post(HeadQKV(t["q"], t["k"], t["v"], t["y"], cmd.layer, cmd.head, cmd.row, self.session.step_count))

    def _on_rewind(self, cmd: Rewind) -> None:
        if cmd.step not in self.snapshots.states:
            raise SessionError(_("no snapshot of step {step} is kept; choose one of {steps}").format(
                step=cmd.step, steps=self.snapshots.steps()))
        self._set_running(False)
        if self.session.in_step:  # the open step is abandoned: run it out, then go back
            self.session.step()
        self.session.load_state_arrays(self.snapshots.states[cmd.step])
        self.snapshots.drop_after(cmd.step)
        self.post(Rewound(cmd.step))
        self.post(SnapshotSteps(self.snapshots.steps()))

    def _on_generate(self, cmd: Generate) -> None:
        s = self.session
        was = self.running
        self._set_running(False)
        self.post(Generating(True))
        try:
            text, _events = generate(s.next_logits, s.tokenizer, cmd.sampling, on_token=lambda ev: self.post(Token(ev)))
        finally:
            self.post(Generating(False))
        self.post(Generated(text))
        if was:
            self._set_running(True)

    def _on_grad_check(self, cmd: GradCheck) -> None:
        """The gradient check on the session's current batch."""
        self._set_running(False)
        self.post(GradChecked(check_gradients(self.session, n_per_tensor=2, tensors=list(cmd.tensors))))

    def _on_save_checkpoint(self, cmd: SaveCheckpoint) -> None:
        self._set_running(False)
        self.post(CheckpointSaved(str(save_checkpoint(cmd.path, self.session))))

    def _on_load_checkpoint(self, cmd: LoadCheckpoint) -> None:
        """Replaces the session by one restored from a checkpoint (its config comes with it)."""
        session = load_checkpoint(cmd.path)
        self._install(session, session.config)

    HANDLERS = {Quit: _on_quit, Step: _on_step, StepInto: _on_step_into, Run: _on_run, Pause: _on_pause,
                Speed: _on_speed, StatisticsRate: _on_statistics_rate, Reset: _on_reset, Rebuild: _on_rebuild,
                Apply: _on_apply, Watch: _on_watch,
                HeadTensors: _on_head_tensors, Rewind: _on_rewind, Generate: _on_generate,
                GradCheck: _on_grad_check, SaveCheckpoint: _on_save_checkpoint, LoadCheckpoint: _on_load_checkpoint}



def _one_kernel_thread() -> None:
    """Numba's parallel kernels (the optimizer's) run on one thread in this thread (the setting is per thread).

    A parallel region waits for its slowest thread; with the Tk thread drawing on one of two cores, the second
    kernel thread waits for that core and the whole step waits with it. Measured on 2 cores: one thread
    trained faster than two as soon as anything else ran. Headless training keeps numba's default.
    """
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # no numba, or a layer that refuses: the default stays
        pass


GIL_SWITCH_S = 0.001


def _short_gil_waits() -> None:
    """The interpreter's switch interval down from 5 ms to 1 ms, for the whole window process.

    Between two kernels (which release the GIL) the training thread needs the GIL for a moment of Python. While
    the Tk thread draws, it holds the GIL and gives it up only when the switch interval forces it to: each of
    the step's dozens of kernel returns could wait up to 5 ms, so a 20 ms draw stalled the step for about as
    long as it ran. With 1 ms the step goes on between the draw's slices; the cost is a few hundred more
    thread switches a second.
    """
    if sys.getswitchinterval() > GIL_SWITCH_S:
        sys.setswitchinterval(GIL_SWITCH_S)


def drain(q: queue.Queue, limit: int = 10000) -> list:
    """Takes every waiting message (up to `limit`) without blocking, oldest first."""
    out = []
    for _i in range(limit):
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            break
    return out
