"""Host copies of what the display code reads from a model, for a model whose arrays live on a device.

simulator/observe.py (the StepRecord's heavy statistics every `train.stats_every` steps, the attention
map) is numpy code over a model's tensors. On the CPU backend it reads the model itself (no copy, the
numbers of before); on a device backend `host_model` gives it this stand-in, whose tensors are copied
to the host only when read: a weight by name (its slice of the flat buffer), an activation by name,
the BatchNorm buffers, and the whole weight or gradient buffer only if `params` / `grads` is read.
A deliberate copy, made only when statistics or a view are asked for, never in a plain training step.
The statistics' norms and moments are reduced on the device (device_stats.py), so they read only the
few tensors they need whole through this. `host_tensors` does the same for the tensors of a
PhaseEvent (step_into), copied only when read.
"""

from __future__ import annotations

from collections.abc import Mapping


class HostArrays(Mapping):
    """A name -> array mapping whose arrays are host copies of device arrays, each made on first use."""

    def __init__(self, arrays, backend):
        self._arrays, self._bk, self._copies = arrays, backend, {}

    def __getitem__(self, name):
        if name not in self._copies:
            self._copies[name] = self._bk.to_host(self._arrays[name])
        return self._copies[name]

    def __contains__(self, name) -> bool:
        return name in self._arrays

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class HostSlices(Mapping):
    """name -> a host copy of that tensor's slice of a flat device buffer laid out by `layout`, copied on first use."""

    def __init__(self, flat, layout, backend):
        self._flat, self._layout, self._bk, self._copies = flat, layout, backend, {}

    def __getitem__(self, name):
        if name not in self._copies:
            s = self._layout.by_name[name]
            self._copies[name] = self._bk.to_host(self._flat[s.offset:s.offset + s.size]).reshape(s.shape)
        return self._copies[name]

    def __contains__(self, name) -> bool:
        return name in self._layout.by_name

    def __iter__(self):
        return (s.name for s in self._layout)

    def __len__(self) -> int:
        return len(self._layout)


class HostModel:
    """The parts of a GPT that observe.py reads, as host arrays copied when read (read-only by intent)."""

    def __init__(self, model):
        bk = model.bk
        self._model = model
        self.cfg, self.dtype, self.layout, self.frozen_layout = model.cfg, model.dtype, model.layout, None
        self.frozen = self.qbase = None  # LoRA and QLoRA run on the CPU backend only
        self.p = HostSlices(model.params, self.layout, bk)
        self.buffers = {k: bk.to_host(v) for k, v in model.buffers.items()}
        self.acts = HostArrays(model.acts, bk)
        self.kv_len, self.norm_trained, self.shape = model.kv_len, model.norm_trained, model.shape
        self.activation_sites = model.activation_sites
        self.attention_scale = model.attention_scale
        self._params = self._grads = None

    @property
    def params(self):
        """The whole flat weight buffer (copied on first read)."""
        if self._params is None:
            self._params = self._model.bk.to_host(self._model.params)
        return self._params

    @property
    def grads(self):
        """The whole flat gradient buffer (copied on first read)."""
        if self._grads is None:
            self._grads = self._model.bk.to_host(self._model.grads)
        return self._grads


def host_model(model):
    """`model` itself on the CPU backend; a HostModel copy of it on a device."""
    return model if model.bk.on_host else HostModel(model)


def host_tensors(tensors: dict, backend):
    """A phase's tensors for its PhaseEvent: the dict itself on the CPU; on a device, host copies made only for
    the names a reader looks at (the step-through view), so a plain step() copies nothing."""
    return tensors if backend.on_host else HostArrays(tensors, backend)
