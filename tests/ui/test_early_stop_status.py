"""Early stopping in the window: Run stops where the session stopped, and the status line says why."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "presets" / "small-corpus.txt"

# the first evaluation (step 2) is the best; the next cannot beat it by 10 nats: the run stops at step 4
PRESET = f"""\
name: es-window
description: early stopping in the window
model: {{d_model: 16, n_layer: 1, n_head: 2, seq_len: 16}}
optim: {{name: adamw, lr: 0.003, schedule: constant}}
data: {{kind: text_file, path: {CORPUS.as_posix()}, val_fraction: 0.25}}
train: {{batch_size: 4, seed: 7, eval_every: 2, eval_batches: 1, stats_every: 0,
        early_stopping: {{patience: 1, min_delta: 10.0, restore_best: true}}}}
"""


def test_run_stops_early_and_the_status_line_says_why(harness, tmp_path):
    path = tmp_path / "es-window.yaml"
    path.write_text(PRESET, encoding="utf-8")
    h = harness(str(path))
    h.app.layout.run_button.invoke()
    assert h.pump(lambda: "early stop" in h.app.message, 60), h.app.message
    assert h.pump(lambda: not h.app.running, 10)
    text = h.app.layout.status_label.cget("text")
    assert text.startswith("early stop at step 4:") and "best" in text and "step 2" in text, text
    assert h.app.step_count == 4 and h.session.step_count == 4
    h.pump(timeout=0.3)
    assert h.session.step_count == 4  # Run really stopped
    h.app.layout.step_button.invoke()  # and training on is one click away
    assert h.pump(lambda: h.app.step_count == 5, 30)
    assert h.errors == []
