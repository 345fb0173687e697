"""The fine-tuning tab: the learners' curves (QLoRA's among them), the base's losses float32 vs NF4, the chosen
tensor's NF4 and int4 error histograms and each learner's base bytes are the engine's numbers."""

from __future__ import annotations

import numpy as np

from simulator.lessons.finetune import FinetuneConfig, run
from simulator.presets import dump_config

SMALL = FinetuneConfig(d_model=16, n_layer=1, n_head=2, seq_len=16, batch_size=4, base_steps=20, steps=10,
                       ranks=(2,), qlora_rank=2, eval_every=5, eval_batches=1)


def test_the_tab_shows_qlora_next_to_lora_and_the_quantization_errors(harness, tmp_path):
    h = harness()
    path = tmp_path / "small-finetune.yaml"
    path.write_text(dump_config(SMALL), encoding="utf-8")
    tab = h.app.layout.lesson_tabs["finetune"]
    assert h.app.files.open_preset(str(path))
    assert h.pump(lambda: h.app.layout.current_tab() is tab and tab.result is not None and not tab.playing, 120)
    frames = run(SMALL)
    first = frames[0]
    assert list(tab.lines) == ["full", "LoRA r=2", "QLoRA r=2"]
    steps, vals = tab.lines["QLoRA r=2"][0].get_data()
    assert list(steps) == [0, 5, 10]
    assert np.allclose(vals, [first.base_new] + [f.points[2].val_new for f in frames if f.points[2].val_new])
    heights = [p.get_height() for p in tab.ax_base.patches]
    assert np.allclose(heights, [*first.base_loss["float32"], *first.base_loss["nf4"]])
    assert np.allclose([p.get_height() for p in tab.ax_bytes.patches], [lr.base_bytes / 1024 for lr in first.learners])
    names = list(first.quant.names)
    assert list(tab.tensor_box.cget("values")) == names and tab.tensor_var.get() == names[0]
    for name in (names[0], names[-1]):
        tab.tensor_var.set(name)
        tab.show_tensor()
        for grid in ("nf4", "int4"):
            data = tab.stairs[grid].get_data()  # (values, edges, baseline)
            values, edges = data.values, data.edges
            assert np.allclose(values, first.quant.hist[grid][name]) and np.allclose(edges, first.quant.edges)
            assert f"{first.quant.mse[grid][name]:.2e}" in tab.stairs[grid].get_label()
    # a tensor's error shares sum to one (the outer bins take what lies beyond)
    assert abs(first.quant.hist["nf4"][names[-1]].sum() - 1) < 1e-12
