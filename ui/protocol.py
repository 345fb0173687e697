"""What the window and the worker say to each other: one dataclass per command and per message.

Commands go in (`worker.send(Step())`), messages come out (`Record`, `Probe`, `Ready`, ...). Both sides
dispatch on the type through a table, so following a button to the session is reading typed calls.
Everything that crosses is plain data: numbers, strings, frozen configs and copies of arrays, never a
view into a live buffer. `Bus` hands each message, on the Tk thread, to whoever subscribed to its type.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

# ---------------------------------------------------------------------- commands: window -> worker


@dataclass(frozen=True)
class Quit:
    """Finish the thread after the current step."""


@dataclass(frozen=True)
class Step:
    """One whole training step."""


@dataclass(frozen=True)
class StepInto:
    """One phase of the current step."""


@dataclass(frozen=True)
class Run:
    """Train until paused, or `n` steps."""

    n: int | None = None


@dataclass(frozen=True)
class Pause:
    """Stop training after the current step."""


@dataclass(frozen=True)
class Speed:
    """Steps per second while running (0: full speed)."""

    steps_per_second: float


@dataclass(frozen=True)
class StatisticsRate:
    """Statistics steps at least this many times a second while running (0: every `train.stats_every` steps
    only): the tab on screen draws them, and at the preset's pace it would wait longer than it can draw."""

    per_second: float


@dataclass(frozen=True)
class Reset:
    """A fresh session from the worker's current config."""


@dataclass(frozen=True)
class Rebuild:
    """A new session from `config` (a structural change or another preset)."""

    config: Any


@dataclass(frozen=True)
class Apply:
    """A live change: the session takes `config` on its next step (rebuilds when it cannot)."""

    config: Any


@dataclass(frozen=True)
class Watch:
    """Which gradient tensor, activation site, attention layer and batch row the probes read.

    The window owns the selection and sends the whole of it. Both sides fit their copy to each new
    session with `fit` (the same rule on the same names), so they agree without asking each other.
    """

    grad_tensor: str = ""
    act_site: str = ""
    attn_layer: int = 0
    attn_sample: int = 0

    def fit(self, tensors, sites, n_layer: int, batch_size: int) -> Watch:
        """The same choices where they exist in a session of these names and sizes, a default where not."""
        return replace(self, grad_tensor=self.grad_tensor if self.grad_tensor in tensors else tensors[0],
                       act_site=self.act_site if self.act_site in sites else (sites[-1] if sites else ""),
                       attn_layer=min(self.attn_layer, n_layer - 1),
                       attn_sample=min(self.attn_sample, batch_size - 1))


@dataclass(frozen=True)
class HeadTensors:
    """One head's q, k, v and attention output of the last forward (the tiled-attention trace)."""

    layer: int
    head: int
    row: int = 0


@dataclass(frozen=True)
class Rewind:
    """Go back to the snapshot of `step`."""

    step: int


@dataclass(frozen=True)
class Generate:
    """Generate text from the current weights with `sampling`."""

    sampling: Any


@dataclass(frozen=True)
class GradCheck:
    """Compare the gradients of `tensors` with central differences on the current batch."""

    tensors: tuple[str, ...]


@dataclass(frozen=True)
class SaveCheckpoint:
    """Write the session to `path`."""

    path: str


@dataclass(frozen=True)
class LoadCheckpoint:
    """Replace the session by the one saved at `path` (its config comes with it)."""

    path: str


# ---------------------------------------------------------------------- messages: worker -> window


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
class Ready:
    """A session was built (or restored): what the window needs to know about it."""

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
    backend: str = "CPU (numba)"  # where the kernels run, as the session says it
    backend_msg: tuple = ("CPU (numba)", {})  # the same as a message id and fields, composed in the window's language


@dataclass
class Record:
    """One step ended: its record (a plain copy)."""

    record: Any  # simulator.records.StepRecord


@dataclass
class Phase:
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
class Running:
    """Training started (`on`) or stopped."""

    on: bool


@dataclass
class Diverged:
    """The run diverged: which tensor went non-finite first, as one sentence."""

    sentence: str


@dataclass
class Error:
    """A person's mistake (or a bug) as one sentence; the run is unchanged."""

    text: str


@dataclass
class Fatal:
    """Not even a first session could be built."""

    text: str


@dataclass
class Status:
    """A line for the status bar: a message id (or a sentence already in the language) and its fields."""

    text: str
    fields: dict = field(default_factory=dict)


@dataclass
class ConfigKept:
    """A change was refused: the session still runs `config`, which the controls show again."""

    config: Any


@dataclass
class Applied:
    """A live change was taken: the dotted paths that changed."""

    paths: list[str]


@dataclass
class SnapshotSteps:
    """The steps a Rewind can go back to, ascending."""

    steps: list[int]


@dataclass
class Rewound:
    """The session went back to `step`."""

    step: int


@dataclass
class Generating:
    """Generation started (`on`) or ended."""

    on: bool


@dataclass
class Token:
    """One generated token (a simulator.sampling token event)."""

    event: Any


@dataclass
class Generated:
    """The whole generated text."""

    text: str


@dataclass
class GradChecked:
    """The gradient check's rows (simulator.gradcheck results)."""

    rows: list


@dataclass
class CheckpointSaved:
    """Where the checkpoint was written."""

    path: str


class HeadQKV(NamedTuple):
    """One head's q, k, v (T, HS) and attention output y (T, HS) of the last forward (a tuple: q, k, v = m[:3])."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    y: np.ndarray
    layer: int
    head: int
    row: int
    step: int


class Bus:
    """Hands each message to the handlers subscribed to its type, in the order they subscribed (Tk thread)."""

    def __init__(self):
        self.handlers: dict[type, list[Callable]] = defaultdict(list)

    def subscribe(self, kind: type, handler: Callable) -> None:
        """Calls handler(message) for every published message of exactly this type."""
        self.handlers[kind].append(handler)

    def publish(self, message) -> None:
        """Delivers one message."""
        for handler in self.handlers.get(type(message), ()):
            handler(message)


class Outbox:
    """The worker's messages to the window, oldest first, with the drawing's rate limiting what piles up.

    The window takes them every poll (`get_nowait`, as from a `queue.Queue`). A message of a kind in
    `latest_only` (a `Probe`: histograms and attention maps that only the newest of is drawn) replaces an
    older one of its kind that the window has not taken yet: it drops out of its place, and the newer one
    goes to the end, after the `Record` of its step. Every other message is kept in order (records feed
    the curves, token events the text), but at most `cap` are held: when the window stops taking them
    (a stalled loop), the oldest are dropped and counted in `dropped`, so the box never grows without bound.
    """

    def __init__(self, latest_only: tuple[type, ...] = (), cap: int = 4096):
        self.latest_only = tuple(latest_only)
        self.cap = cap
        self._items: deque[list] = deque()  # one-element boxes; a replaced message leaves an empty box
        self._pending: dict[type, list] = {}  # kind -> the box of its undelivered newest message
        self._lock = threading.Lock()
        self.replaced = 0
        self.dropped = 0

    def put(self, message) -> None:
        """Adds a message (worker thread)."""
        box = [message]
        with self._lock:
            kind = type(message)
            if kind in self.latest_only:
                old = self._pending.get(kind)
                if old is not None:
                    old[0] = None
                    self.replaced += 1
                self._pending[kind] = box
            self._items.append(box)
            while len(self._items) > self.cap:
                gone = self._items.popleft()
                if gone[0] is not None:
                    self.dropped += 1
                    if self._pending.get(type(gone[0])) is gone:
                        del self._pending[type(gone[0])]

    def get_nowait(self):
        """The oldest message (window thread); queue.Empty when there is none."""
        with self._lock:
            while self._items:
                box = self._items.popleft()
                message = box[0]
                if message is None:
                    continue  # replaced by a newer one further on
                if self._pending.get(type(message)) is box:
                    del self._pending[type(message)]
                return message
        raise queue.Empty

    def get(self, timeout: float = 5.0):
        """The oldest message, waiting up to `timeout` seconds for one (tests); queue.Empty when none came."""
        end = time.perf_counter() + timeout
        while True:
            try:
                return self.get_nowait()
            except queue.Empty:
                if time.perf_counter() >= end:
                    raise
                time.sleep(0.005)

    def qsize(self) -> int:
        """Messages waiting (replaced ones not counted)."""
        with self._lock:
            return sum(1 for b in self._items if b[0] is not None)

    def empty(self) -> bool:
        """True when no message waits."""
        return self.qsize() == 0
