"""TrainingSession: one model, its optimizer, data and random streams, stepped whole or phase by phase.

`step()` is `step_into()` run to the end of the step: one code path, so the
step-through view can never disagree with a real training step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Optional

import numpy as np

from simulator.backend import BackendError, backend_problem, backend_setting, get_backend
from simulator.backend.host import host_model, host_tensors
from simulator.config import LIVE_FIELDS, RunConfig, changed_paths
from simulator.data import TextDataset, load_dataset
from simulator.early_stopping import EarlyStop, EarlyStopping
from simulator.i18n import _
from simulator.kv_cache import CachedDecoder
from simulator.model.gpt import GPT
from simulator.observe import attention_probs, step_statistics
from simulator.optim import clip_gradients, decay_kinds, lr_at, make_optimizer
from simulator.records import NonFinite, PhaseEvent, StepRecord


class SessionError(Exception):
    """A request the session cannot honour as asked (one sentence)."""


class NeedsRebuild(SessionError):
    """A structural config change: build a new session from the new config."""


class _Phase:
    """One named unit of work inside a step."""

    __slots__ = ("name", "kind", "run")

    def __init__(self, name: str, kind: str, run: Callable[[], dict]):
        self.name, self.kind, self.run = name, kind, run


class TrainingSession:
    """Owns a GPT, an optimizer, a dataset and seeded RNG streams; emits StepRecords."""

    def __init__(self, config: RunConfig, dataset: Optional[TextDataset] = None):
        dataset = dataset if dataset is not None else load_dataset(config.data)
        vocab = dataset.tokenizer.vocab_size
        if config.model.vocab_size is None:
            config = replace(config, model=replace(config.model, vocab_size=vocab))
        elif config.model.vocab_size < vocab:
            raise SessionError(_("model.vocab_size {vocab_size} is smaller than the data's {vocab} characters; "
                                 "leave it out to take it from the data").format(
                                   vocab_size=config.model.vocab_size, vocab=vocab))
        dataset.check_fits(config.model.seq_len)
        self.config = config
        self.dataset = dataset
        # called after a step's heavy statistics and before its evaluation (which overwrites the activations): a
        # reader of that step's own tensors, such as the window's watched histograms and attention maps
        self.on_statistics: Optional[Callable[[], None]] = None
        self._statistics_asked = False  # request_statistics(): the next whole step is a statistics step
        self.tokenizer = dataset.tokenizer
        self.backend = _backend_for(config)  # train.backend: where the arrays live and which kernels run
        self.model = GPT(config.model, dtype=np.dtype(config.train.dtype), backend=self.backend)
        # three independent streams from one seed: weights, batches, dropout masks
        init_seq, data_seq, drop_seq = np.random.SeedSequence(config.train.seed).spawn(3)
        self.model.init_weights(np.random.default_rng(init_seq))
        if config.model.init_from is not None:  # a fine-tuning run: the base weights come from a checkpoint
            from simulator.lora_io import apply_init_from  # imported here: it reads checkpoints
            apply_init_from(self.model, config.model.init_from, self.tokenizer)
        self.data_rng = np.random.default_rng(data_seq)
        self.model.dropout_rng = np.random.default_rng(drop_seq)
        self.optimizer = make_optimizer(config.optim, self.model.layout, self.model.dtype, self.backend)
        self.step_count = 0  # completed steps
        self.diverged: Optional[NonFinite] = None
        B, T = config.train.batch_size, config.model.seq_len
        self.model.ensure_shape(B, T)
        self._phases = self._build_phases()
        self._cursor = 0  # next phase of the current step
        self._step_state: dict = {}
        self.last_record: Optional[StepRecord] = None
        self._generator: Optional[CachedDecoder] = None
        self._generator_key: Optional[tuple] = None  # what the cached keys and values were computed with
        self._training = True  # the mode: see train() / eval()
        # what the gradient buffer holds: "none" yet, "raw" (backward only) or "clipped" (after a clip phase)
        self._grads_state = "none"
        self._unclipped: Optional[np.ndarray] = None  # a copy before clipping, kept only while clipping is on
        self.early = EarlyStopping()  # train.early_stopping's bookkeeping on the validation loss
        self._best: Optional[dict[str, np.ndarray]] = None  # host copies of the best evaluation's weights and buffers

    # ------------------------------------------------------------- phases

    def _build_phases(self) -> list[_Phase]:
        m = self.model
        phases = [_Phase("batch", "data", self._phase_batch)]
        phases += [_Phase(f"forward.{op.name}", "forward", op.forward) for op in m.ops]
        phases.append(_Phase("loss", "loss", self._phase_loss))
        phases += [_Phase(f"backward.{op.name}", "backward", op.backward) for op in reversed(m.ops)]
        phases.append(_Phase("clip", "clip", self._phase_clip))
        phases.append(_Phase("update", "update", self._phase_update))
        return phases

    @property
    def backend_name(self) -> str:
        """The backend that runs ("cpu" or "cuda"; train.backend auto has been resolved)."""
        return self.backend.name

    @property
    def backend_description(self) -> str:
        """What runs the kernels, in words: "CPU (numba)", "GPU", "CUDA simulator", or the CPU with why not the GPU."""
        return self.backend.description

    @property
    def backend_message(self) -> tuple[str, dict]:
        """The same as a message id and its fields, for a reader that translates it later (the window)."""
        return self.backend.description_msg

    @property
    def preclip_copy_bytes(self) -> int:
        """Bytes of the gradients' pre-clip copy, which the clip phase keeps while clipping is on (else 0)."""
        return 0 if self._unclipped is None else self._unclipped.nbytes

    @property
    def phase_names(self) -> list[str]:
        """The names of a step's phases in the order `step_into` visits them."""
        return [p.name for p in self._phases]

    @property
    def in_step(self) -> bool:
        """True between the first and the last phase of a step."""
        return self._cursor > 0

    def _phase_batch(self) -> dict:
        m = self.model
        # a padded dataset (data.kind: lines) returns how many tokens of each row are real
        m.set_lengths(self.dataset.sample_batch("train", self.data_rng, m.ids, m.targets))
        return {"ids": m.ids, "targets": m.targets, **({"lengths": m.kv_len} if m.padded else {})}

    def _phase_loss(self) -> dict:
        loss = self.model.loss_and_dlogits()
        self._step_state["loss"] = loss
        if not np.isfinite(loss):
            self._stop_nonfinite()
        return {"losses": self.model.acts["losses"], "dlogits": self.model.acts["dlogits"]}

    def _phase_clip(self) -> dict:
        if self.config.optim.grad_clip > 0:  # one copy of the flat buffer, so gradient(clipped=False) is exact
            if self._unclipped is None:
                self._unclipped = self.backend.empty_like(self.model.grads)
            self.backend.copy(self._unclipped, self.model.grads)
        else:
            self._unclipped = None
        norm, fired = clip_gradients(self.model.grads, self.config.optim, self.backend)
        self._grads_state = "clipped"
        self._step_state.update(grad_norm=norm, clipped=fired)
        if not np.isfinite(norm):
            self._stop_nonfinite()
        return {"grads": self.model.grads}

    def _phase_update(self) -> dict:
        m, st = self.model, self._step_state
        lr = lr_at(self.step_count, self.config.optim)
        st["lr"] = lr
        heavy = self._heavy_now()
        before = self.backend.clone(m.params) if heavy else None
        self.optimizer.step(m.params, m.grads, lr)
        st["params_before"] = before
        return {"params": m.params}

    def _stop_nonfinite(self) -> None:
        """Names the first tensor (in phase order) that is not finite, and ends the step without an update."""
        where = NonFinite(self.step_count, "loss", "loss")
        as_host = self.backend.as_host  # a device backend copies each tensor here: only when a step diverged
        for phase, tensors in self._step_state["produced"]:
            bad = next((name for name, t in tensors.items()
                        if t.dtype.kind == "f" and not np.isfinite(as_host(t)).all()), None)
            if bad is not None:
                where = NonFinite(self.step_count, phase, bad)
                break
        self._step_state["nonfinite"] = where
        raise _Diverged()

    # ------------------------------------------------------------- stepping

    def step_into(self) -> PhaseEvent:
        """Runs the next phase of the current step (starting a step if none is open)."""
        if self._cursor == 0:
            self._begin_step()
        phase = self._phases[self._cursor]
        t0 = time.perf_counter()
        try:
            with np.errstate(all="ignore"):  # a diverging run is reported by the session, not by warnings
                tensors = phase.run()
        except _Diverged:
            tensors = {}
            self._step_state["phase_seconds"][phase.kind] += time.perf_counter() - t0
            return self._end_step(phase, len(self._phases) - 1)
        dt = time.perf_counter() - t0
        self._step_state["phase_seconds"][phase.kind] += dt
        self._step_state["produced"].append((phase.name, tensors))
        index = self._cursor
        if self._cursor == len(self._phases) - 1:
            return self._end_step(phase, index, tensors, dt)
        self._cursor += 1
        return PhaseEvent(self.step_count, index, phase.name, phase.kind, host_tensors(tensors, self.backend), dt,
                          last=False)

    def step(self) -> StepRecord:
        """Runs one whole training step (or the rest of the open one) and returns its record."""
        while not self.step_into().last:
            pass
        return self.last_record

    def run(self, n: int, on_record: Optional[Callable[[StepRecord], bool]] = None) -> list[StepRecord]:
        """Runs up to n steps; stops sooner on divergence, an early stop, or when on_record returns False."""
        out = []
        for _i in range(n):
            rec = self.step()
            out.append(rec)
            if rec.nonfinite is not None or rec.early_stop is not None:
                if on_record is not None:
                    on_record(rec)
                break
            if on_record is not None and on_record(rec) is False:
                break
        return out

    def _begin_step(self) -> None:
        self.diverged = None
        self.early.resume()  # a step after an early stop trains on: the validation loss gets new patience
        self._grads_state = "raw"  # the backward phases build the gradients; the clip phase clips them
        self.model.training = self._training
        self.model.dropout = self.config.model.dropout
        self.model.dropout_mode = self.config.model.dropout_mode
        self._step_state = {"produced": [],
                            "phase_seconds": dict.fromkeys(("data", "forward", "loss", "backward", "clip",
                                                            "update"), 0.0)}

    def _end_step(self, phase: _Phase, index: int, tensors=None, dt=0.0) -> PhaseEvent:
        st, cfg = self._step_state, self.config
        seconds = sum(st["phase_seconds"].values())  # compute time: pauses between step_into calls don't count
        nonfinite = st.get("nonfinite")
        B, T = self.model.shape
        record = StepRecord(
            step=self.step_count + (0 if nonfinite else 1), loss=st.get("loss", float("nan")),
            lr=st.get("lr", lr_at(self.step_count, cfg.optim)), grad_norm=st.get("grad_norm", float("nan")),
            clipped=st.get("clipped", False), tokens=B * T, seconds=seconds, phase_seconds=st["phase_seconds"],
            nonfinite=nonfinite, mode=self.mode)
        self._cursor = 0
        if nonfinite is not None:
            self.diverged = nonfinite
        else:
            self.step_count += 1
            if self._heavy_now(completed=True):
                # on a device the norms and moments are reduced there and few tensors cross (backend/device_stats.py)
                step_statistics(record, self.model, st["params_before"], cfg.train)
                self._statistics_asked = False
                if self.on_statistics is not None:
                    self.on_statistics()
            every = cfg.train.eval_every
            if every and self.step_count % every == 0:
                record.val_loss = self.evaluate()
                record.early_stop = self._early_stopping(record.val_loss)
        self.last_record = record
        return PhaseEvent(self.step_count, index, phase.name, phase.kind, host_tensors(tensors or {}, self.backend),
                          dt, last=True)

    def _early_stopping(self, val_loss: float) -> Optional[EarlyStop]:
        """Takes an evaluation for train.early_stopping; the EarlyStop when patience ran out (weights restored)."""
        es = self.config.train.early_stopping
        if not es.patience:
            return None
        verdict = self.early.observe(self.step_count, val_loss, es.patience, es.min_delta, es.restore_best)
        if verdict == "improved":  # kept whatever restore_best says now: it is live and may be on at the stop
            self._best = self._host_weights()
        elif verdict == "stop" and es.restore_best and self._best is not None:
            self._restore_best()
        return self.early.stopped

    def _restore_best(self) -> None:
        """Puts back the weights (and BatchNorm's running statistics) of the best evaluation; the step count stays."""
        self.backend.upload(self.model.params, self._best["params"])
        for k, buf in self.model.buffers.items():
            self.backend.upload(buf, self._best[f"buffer.{k}"])
        self._generator_key = None  # new weights: the KV cache is stale

    def _host_weights(self) -> dict[str, np.ndarray]:
        """Host copies of the weights and BatchNorm buffers (the best evaluation's, kept as a checkpoint keeps them)."""
        to_host = self.backend.to_host
        buffers = {f"buffer.{k}": to_host(v) for k, v in self.model.buffers.items()}
        return {"params": to_host(self.model.params), **buffers}

    @property
    def early_stop(self) -> Optional[EarlyStop]:
        """Why the run stopped early (None while it has not, or once it trains on)."""
        return self.early.stopped

    def request_statistics(self) -> None:
        """Makes the next step a statistics step as well (while `train.stats_every` is not 0, which turns them off).

        A display that shows statistics steps asks for them when its reader would wait longer than it can see
        (the window at a few per second). A statistics step only reads the model: the weights, batches and
        losses of the run are the same with or without the extra ones."""
        if self.config.train.stats_every and not self.in_step:
            self._statistics_asked = True

    def _heavy_now(self, completed: bool = False) -> bool:
        every = self.config.train.stats_every
        n = self.step_count if completed else self.step_count + 1
        return bool(every) and (n % every == 0 or n == 1 or self._statistics_asked)

    # ------------------------------------------------------------- mode

    @property
    def mode(self) -> str:
        """The mode, "train" or "eval": how the steps' forward passes treat dropout and BatchNorm."""
        return "train" if self._training else "eval"

    def train(self) -> None:
        """Train mode (the default): dropout draws masks; BatchNorm uses batch statistics and moves its running ones."""
        self._set_mode(True)

    def eval(self) -> None:
        """Eval mode: dropout off (classic: scaled by 1-p), BatchNorm on its running statistics (frozen).

        Steps still train in eval mode, as model.eval() in PyTorch allows: the
        gradients are then those of the eval-mode network. LayerNorm and RMSNorm
        do the same in both modes.
        """
        self._set_mode(False)

    def _set_mode(self, training: bool) -> None:
        if self.in_step:
            raise SessionError(_("finish the current step before switching between train and eval mode"))
        self._training = training
        self.model.training = training

    # ------------------------------------------------------------- evaluation

    def evaluate(self, split: str = "val") -> float:
        """Mean loss over `train.eval_batches` fixed batches of a split, in eval mode; training state untouched."""
        if self.in_step:
            raise SessionError(_("finish the current step before evaluating"))
        m, cfg = self.model, self.config.train
        ids, targets, lengths = m.ids.copy(), m.targets.copy(), m.kv_len.copy()
        m.training = False
        try:
            total = 0.0
            for batch_ids, batch_targets, batch_lengths in self._eval_batches(split):
                m.forward(batch_ids, batch_targets, batch_lengths)
                total += m.loss_only()
        finally:
            m.training = self._training
            m.ids[...], m.targets[...] = ids, targets
            m.set_lengths(lengths)
        return total / cfg.eval_batches

    def eval_batches(self, split: str = "val") -> list[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        """The `train.eval_batches` fixed batches `evaluate(split)` averages over, as (ids, targets, lengths) copies.

        ids and targets are (B, T) int32; lengths (B,) counts each row's real tokens for padded data
        (data.kind: lines) and is None otherwise. `forward_backward(*batch)` takes one.
        """
        return [(ids.copy(), targets.copy(), None if lengths is None else np.array(lengths))
                for ids, targets, lengths in self._eval_batches(split)]

    def _eval_batches(self, split: str):
        """Yields the evaluation batches into two scratch arrays (overwritten by the next batch)."""
        B, T = self.model.shape
        rng = np.random.default_rng(self.config.train.seed + 1)  # the same batches at every evaluation
        ids, targets = np.empty((B, T), np.int32), np.empty((B, T), np.int32)
        for _i in range(self.config.train.eval_batches):
            lengths = self.dataset.sample_batch(split, rng, ids, targets)
            yield ids, targets, lengths

    def forward_backward(self, ids, targets, lengths=None) -> float:
        """Loss and gradients of a batch the caller supplies, in the current mode; returns the mean loss.

        ids and targets are (B, T) integer arrays of the session's batch shape; `lengths` (B,) as
        `eval_batches` gives it for padded data. The gradients stay in place, unclipped (read them with
        `gradient(name, clipped=False)`); nothing is clipped or updated, and the training RNG streams
        and BatchNorm's running statistics are as they were.
        """
        if self.in_step:
            raise SessionError(_("finish the current step before running forward_backward"))
        m = self.model
        ids, targets = self._check_batch(ids, "ids"), self._check_batch(targets, "targets")
        rng_state = m.dropout_rng.bit_generator.state
        buffers = {k: self.backend.clone(v) for k, v in m.buffers.items()}
        mcfg = self.config.model
        m.training, m.dropout, m.dropout_mode = self._training, mcfg.dropout, mcfg.dropout_mode
        try:
            with np.errstate(all="ignore"):  # a non-finite loss is returned, as a step reports it
                m.forward(ids, None, lengths)
                m.targets[...] = targets
                loss = m.loss_and_dlogits()
                m.backward()
        finally:
            m.dropout_rng.bit_generator.state = rng_state
            for k, buf in m.buffers.items():
                self.backend.copy(buf, buffers[k])
        self._grads_state = "raw"
        return loss

    def _check_batch(self, a, what: str) -> np.ndarray:
        a = np.asarray(a)
        V = self.config.model.vocab_size
        if a.shape != self.model.shape:
            raise SessionError(_("{what} must have the session's batch shape (B, T) = {shape}, got {shape2}").format(
                                   what=what, shape=self.model.shape, shape2=a.shape))
        if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= V:
            raise SessionError(_("{what} must be token ids, integers in [0, {V})").format(what=what, V=V))
        return a.astype(np.int32, copy=False)

    def next_logits(self, ids: np.ndarray) -> np.ndarray:
        """Logits (V,) for the token after `ids` on the current weights, in eval mode (for sampling).

        V is the tokenizer's vocabulary: a model.vocab_size set larger than the data's alphabet
        has logits no token ever trains toward, and sampling never draws them (they are cut off).

        Token by token a KV cache serves it (simulator/kv_cache.py): when `ids` extends the last
        call's sequence only the new token runs. Past seq_len tokens each call recomputes over the
        last seq_len; a bidirectional model (attention.mask: none) always recomputes.
        """
        if self.in_step:
            raise SessionError(_("finish the current step before generating"))
        mcfg = self.config.model
        bk = self.backend
        if self._generator is None:  # same weights, own activations: training buffers stay untouched
            # a device model generates on the CPU from host copies of its weights, refreshed with the key below
            # (the KV-cache decoder has no CUDA twin yet; one token at a time is not where a GPU helps anyway)
            params = self.model.params if bk.on_host else bk.to_host(self.model.params)
            buffers = self.model.buffers if bk.on_host else {k: bk.to_host(v) for k, v in self.model.buffers.items()}
            self._generator = CachedDecoder(mcfg, self.model.dtype, params, buffers, frozen=self.model.frozen,
                                            qbase=self.model.qbase)
        # cached keys and values belong to one set of weights, running statistics and dropout setting
        key = (self.step_count, mcfg.dropout, mcfg.dropout_mode,
               b"".join(bk.as_host(buf).tobytes() for buf in self.model.buffers.values()))
        if key != self._generator_key:
            if not bk.on_host:  # the host copies follow the device weights
                self._generator.full.params[...] = bk.to_host(self.model.params)
                for k, buf in self.model.buffers.items():
                    self._generator.full.buffers[k][...] = bk.to_host(buf)
            self._generator.reset()
            self._generator.set_dropout(mcfg.dropout, mcfg.dropout_mode)  # classic dropout scales by 1-p
            self._generator_key = key
        return self._generator.next_logits(ids)[:self.tokenizer.vocab_size]

    # ------------------------------------------------------------- reading tensors (copies)

    @property
    def parameter_names(self) -> list[str]:
        """The model's parameter tensors, in forward order."""
        return [spec.name for spec in self.model.layout]

    @property
    def parameter_count(self) -> int:
        """How many numbers the model trains."""
        return int(self.model.layout.size)

    @property
    def activation_sites(self) -> list[str]:
        """The activations `activation()` can read, in forward order."""
        return list(self.model.activation_sites)

    def parameter(self, name: str) -> np.ndarray:
        """A copy of parameter tensor `name` (see parameter_names)."""
        return self.backend.to_host(self._view(self.model.params, name))

    def set_parameter(self, name: str, value) -> None:
        """Writes parameter tensor `name` from an array of the same shape (cast to the model's dtype)."""
        if self.in_step:
            raise SessionError(_("finish the current step before writing a parameter"))
        view = self._view(self.model.params, name)
        value = np.asarray(value)
        if value.shape != view.shape:
            raise SessionError(_("{name} has shape {shape}; the new value has shape {shape2}").format(
                                   name=name, shape=view.shape, shape2=value.shape))
        self.backend.upload(view, value)
        self._generator_key = None  # new weights: the KV cache is stale

    def parameter_kinds(self) -> dict[str, str]:
        """Parameter tensor -> its kind: "matrix", "bias", "norm" or "embedding" (what weight decay groups by)."""
        return {spec.name: spec.kind for spec in self.model.layout}

    def parameter_kind(self, name: str) -> str:
        """The kind of parameter tensor `name`: "matrix", "bias", "norm" or "embedding"."""
        self._view(self.model.params, name)  # an unknown name: one sentence
        return self.model.layout.by_name[name].kind

    def decays(self, name: str) -> bool:
        """Whether weight decay (and FTRL's l1/l2) touches tensor `name` under the current optim config."""
        return self.parameter_kind(name) in decay_kinds(self.config.optim)

    def gradient(self, name: str, clipped: bool = True) -> np.ndarray:
        """A copy of the gradient of tensor `name`: after clipping (what the update used) or, clipped=False, before.

        After forward_backward, or inside a step before its clip phase, the gradients are not
        clipped yet: ask for clipped=False.
        """
        view = self._view(self.model.grads, name)
        if clipped:
            if self._grads_state == "raw":
                raise SessionError(_("the gradients are not clipped yet (forward_backward or a step before its clip "
                                     "phase); read gradient(name, clipped=False)"))
            return self.backend.to_host(view)
        if self._grads_state == "clipped" and self._unclipped is not None:
            return self.backend.to_host(self._view(self._unclipped, name))
        return self.backend.to_host(view)  # not clipped yet, or clipping off: one and the same

    def _view(self, flat: np.ndarray, name: str) -> np.ndarray:
        if name not in self.model.layout.by_name:
            raise SessionError(_("the model has no parameter tensor named {name!r}; parameter_names lists them").format(
                                   name=name))
        return self.model.layout.views(flat)[name]

    def activation(self, site: str) -> np.ndarray:
        """A copy of activation `site` (N, C) from the last forward pass."""
        return self.backend.to_host(self.model.acts[site])

    def attention_map(self, layer: int, row: int = 0) -> np.ndarray:
        """A float32 copy of the attention probabilities (NH, T, T) of one layer for batch row `row`."""
        return np.array(attention_probs(host_model(self.model), layer)[row], dtype=np.float32)

    def batch_text(self, row: int = 0) -> str:
        """The characters of batch row `row` of the last forward pass."""
        return self.tokenizer.decode(self.model.ids[row])

    def head_tensors(self, layer: int, head: int, row: int = 0) -> dict[str, np.ndarray]:
        """Float64 copies of one head's q, k, v and output (T, HS) from the last forward pass."""
        if self.in_step:
            raise SessionError(_("finish the current step before reading q, k and v"))
        A, host = self.model.acts, self.backend.as_host
        nh, nkv = A[f"h{layer}.q"].shape[1], A[f"h{layer}.k"].shape[1]
        kv = head // (nh // nkv)  # grouped-query attention: query heads share key/value heads
        out = {n: np.array(host(A[f"h{layer}.{n}"])[row, head], dtype=np.float64) for n in ("q", "yh")}
        out.update({n: np.array(host(A[f"h{layer}.{n}"])[row, kv], dtype=np.float64) for n in ("k", "v")})
        return {"q": out["q"], "k": out["k"], "v": out["v"], "y": out["yh"]}

    # ------------------------------------------------------------- live changes

    def apply_config(self, new: RunConfig) -> list[str]:
        """Takes the live fields of `new` now; returns a sentence per change; NeedsRebuild if structural.

        A new optimizer type is live too: the weights stay, the optimizer state starts fresh.
        """
        if self.in_step:
            raise SessionError(_("finish the current step before changing the configuration"))
        new = replace(new, model=replace(new.model, vocab_size=self.config.model.vocab_size))
        changed = changed_paths(self.config, new)
        structural = [p for p in changed if p not in LIVE_FIELDS]
        if structural:
            raise NeedsRebuild("this change rebuilds the model: " + ", ".join(structural))
        notes = []
        for path in changed:
            old_value, new_value = _value_at(self.config, path), _value_at(new, path)
            note = f"{path}: {old_value} -> {new_value}"
            if path == "optim.name":
                note += " (weights kept; the optimizer state starts fresh)"
            notes.append(note)
        if "optim.name" in changed:
            self.optimizer = make_optimizer(new.optim, self.model.layout, self.model.dtype, self.backend)
        else:
            self.optimizer.set_config(new.optim)
        self.config = new
        return notes

    # ------------------------------------------------------------- state

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue bit-identically: weights, optimizer state, step, RNG states."""
        import json
        host = self.backend.to_host  # checkpoints hold host arrays: the same file from either backend
        out = {"params": host(self.model.params), "step": np.array(self.step_count, dtype=np.int64),
               "rng.data": np.array(json.dumps(self.data_rng.bit_generator.state)),
               "rng.dropout": np.array(json.dumps(self.model.dropout_rng.bit_generator.state))}
        out.update({f"optim.{k}": np.array(v, copy=True) for k, v in self.optimizer.state_dict().items()})
        out.update({f"buffer.{k}": host(v) for k, v in self.model.buffers.items()})  # BatchNorm running statistics
        if self.model.frozen is not None:  # LoRA: params are the adapters; the base weights travel beside them
            out["frozen"] = self.model.frozen.copy()
        if self.model.qbase is not None:  # QLoRA: the NF4 codes and scales themselves (no float base to re-quantize)
            out.update(self.model.qbase.state_arrays())
        out.update(self.early.state_arrays())
        restored = self.early.stopped is not None and self.early.stopped.restored
        if self._best is not None and not restored:  # once restored, the best weights are the weights
            out.update({f"early.best.{k}": v.copy() for k, v in self._best.items()})
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restores what `state_arrays` saved (shapes must match this session's model and optimizer)."""
        import json
        if self.in_step:
            raise SessionError(_("finish the current step before loading a state"))
        params = arrays["params"]
        if params.shape != self.model.params.shape:
            raise SessionError(_("the saved weights have shape {shape} but this model's have shape {shape2}: the "
                                 "checkpoint belongs to another model").format(
                                   shape=params.shape, shape2=self.model.params.shape))
        frozen = self.model.frozen
        if frozen is not None and ("frozen" not in arrays or arrays["frozen"].shape != frozen.shape):
            raise SessionError(_("the saved state has no frozen base weights of this model's shape: the checkpoint "
                                 "belongs to another model"))
        qbase = self.model.qbase
        if qbase is not None:  # checked on a copy first: a refused state changes nothing
            from simulator.model.qlora import QuantizedBase
            problem = QuantizedBase(self.model.cfg).load_state_arrays(arrays)
            if problem:
                raise SessionError(_("{problem}: the checkpoint belongs to another model").format(problem=problem))
        missing = [k for k in self.model.buffers if f"buffer.{k}" not in arrays]
        if missing:
            raise SessionError(_("the saved state has no {value}: the checkpoint belongs to another model").format(
                                   value=missing[0]))
        self.optimizer.load_state_dict({k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")})
        self.backend.upload(self.model.params, params)
        if frozen is not None:
            frozen[...] = arrays["frozen"]
        if qbase is not None:
            qbase.load_state_arrays(arrays)
        for k, buf in self.model.buffers.items():
            self.backend.upload(buf, arrays[f"buffer.{k}"])
        self.step_count = int(arrays["step"])
        self.data_rng.bit_generator.state = json.loads(str(arrays["rng.data"]))
        self.model.dropout_rng.bit_generator.state = json.loads(str(arrays["rng.dropout"]))
        self.diverged = None
        self._generator_key = None  # new weights: the KV cache is stale
        self.early.load_state_arrays(arrays)
        best = {k[len("early.best."):]: v for k, v in arrays.items() if k.startswith("early.best.")}
        if best:
            if best["params"].shape != params.shape:
                raise SessionError(_("the saved best weights do not fit this model: the checkpoint is damaged"))
            self._best = {k: v.copy() for k, v in best.items()}
        elif self.early.best_step is not None and self.early.stopped is not None and self.early.stopped.restored:
            self._best = self._host_weights()
        else:
            self._best = None


def _value_at(cfg, path: str):
    """The value at a dotted path of a config ("train.early_stopping.patience")."""
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _backend_for(config: RunConfig):
    """The backend object `train.backend` names (auto resolved), or SessionError saying why it cannot run."""
    problem = backend_problem(config)
    if problem is not None:
        raise SessionError(problem.sentence())
    try:
        return get_backend(backend_setting(config))  # auto with a feature cuda lacks (local attention, LoRA): cpu
    except BackendError as e:
        raise SessionError(str(e)) from None


class _Diverged(Exception):
    """Internal: a phase found a non-finite value; the step ends without an update."""
