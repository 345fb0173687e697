"""The window's backend control: choosing cuda where no GPU is usable is one sentence, and the run keeps going."""

from __future__ import annotations

import pytest

from simulator.backend import probe


@pytest.fixture
def no_gpu(monkeypatch):
    # the CUDA tests may have asked for numba-cuda's simulator in this process: here there is neither
    monkeypatch.delenv(probe.SIMULATOR_VARIABLE, raising=False)
    monkeypatch.setattr(probe, "gpu_usable", lambda: (False, "no CUDA driver"))


def test_the_backend_is_a_control_and_cuda_without_a_gpu_is_one_message(harness, tiny, no_gpu):
    h = harness(tiny)
    controls = h.app.layout.controls
    assert "train.backend" in controls.vars and controls.vars["train.backend"].get() == "cpu"
    assert h.app.info.backend == "CPU (numba)"
    h.app._show_ready(h.app.info)  # the status line says where it runs (a tab's own note may follow it)
    assert "phases a step, on CPU (numba)" in h.app.layout.status_label.cget("text")
    h.steps(2)
    session = h.session
    controls.set_value("train.backend", "cuda")
    h.pump(timeout=0.3)
    assert len(h.errors) == 1 and "\n" not in h.errors[0], h.errors
    assert "no CUDA GPU is usable here (no CUDA driver)" in h.errors[0]
    assert h.questions == []  # refused before the rebuild question
    assert controls.vars["train.backend"].get() == "cpu" and h.app.config.train.backend == "cpu"
    h.steps(1)
    assert h.session is session and h.app.step_count == 3
    controls.set_value("train.backend", "auto")  # auto without a GPU runs on the CPU: a rebuild, no error
    h.pump(lambda: h.app.info is not None and h.session is not session, timeout=60)
    assert len(h.errors) == 1 and h.app.config.train.backend == "auto" and h.session.backend_name == "cpu"
