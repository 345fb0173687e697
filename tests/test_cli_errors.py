"""Mistakes on the command line are one line and exit 2; stops are one line and exit 130; no tracebacks."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from main import main
from simulator.config import SamplingConfig
from simulator.sampling import MAX_NEW, SamplingError, generate, validate_sampling

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: err-tiny
model: {d_model: 16, n_layer: 1, n_head: 2, seq_len: 16}
train: {steps: 2, batch_size: 2, eval_every: 0, stats_every: 0}
"""


@pytest.mark.parametrize("argv", [["frob"], ["train", "--steps", "abc"], ["sample"], ["explain", "zscore"]])
def test_argparse_mistakes_are_one_line_with_a_pointer_to_help(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--help" in err


def test_explain_takes_negative_numbers_and_refuses_non_finite_ones(capsys):
    assert main(["explain", "zscore", "20", "-50", "-1.5e2", "60"]) == 0
    assert "-150" in capsys.readouterr().out
    for bad in (["nan", "1"], ["inf"], ["1e308", "-1e308"]):
        assert main(["explain", "zscore", *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("finite" in err or "too large" in err)
    assert main(["explain", "norms", "1,nan", "2,3"]) == 2


def test_absurd_sample_lengths_are_refused_and_events_are_kept_only_when_asked():
    with pytest.raises(SamplingError, match="at most"):
        validate_sampling(SamplingConfig(max_new=MAX_NEW + 1))

    class Tok:
        vocab_size, chars = 3, ["a", "b", "c"]

        def encode(self, text):
            import numpy as np
            return np.array(["abc".index(c) for c in text], dtype=np.int32)

        def decode(self, ids):
            return "".join("abc"[i] for i in ids)

    import numpy as np
    seen = []
    text, events = generate(lambda ids: np.zeros(3), Tok(), SamplingConfig(prompt="a", max_new=50), keep_events=False,
                            on_token=seen.append)
    assert len(text) == 50 and events == [] and len(seen) == 50


def test_ctrl_c_during_sample_is_one_line_and_130(tmp_path):
    preset = tmp_path / "err.yaml"
    preset.write_text(TINY)
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "runs"), "--quiet"]) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "sample", "--checkpoint", str(run), "--max-new",
                             str(MAX_NEW), "--prompt", "the"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, proc.kill)  # a sample that never prints fails the test instead of hanging it
    watchdog.start()
    try:
        first = proc.stdout.read(4)  # the prompt and the first sampled character: generation is under way
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
    out = first + out
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and "interrupted" in err
    assert out.startswith("the") and len(out) > 3  # the text streamed out before the stop


def test_a_vocabulary_larger_than_the_alphabet_trains_and_samples(tmp_path, capsys):
    """The extra logits are never a target; sampling cuts them off, so every drawn id is a character."""
    preset = tmp_path / "wide.yaml"
    preset.write_text(TINY.replace("seq_len: 16}", "seq_len: 16, vocab_size: 80}"))
    assert main(["check", str(preset)]) == 0
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "runs"), "--quiet"]) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run), "--max-new", "30", "--prompt", "the", "--explain"]) == 0
    assert capsys.readouterr().out.startswith("the")


def test_a_deep_mlp_lesson_that_diverges_exits_3_naming_the_first_bad_tensor(capsys):
    assert main(["train", "--preset", "deep-exploding"]) == 3
    captured = capsys.readouterr()
    assert "NaN/Inf" in captured.out  # the summary still shows the per-layer table
    assert captured.err.count("\n") == 1 and "error: step 2: activation z" in captured.err
    assert main(["train", "--preset", "deep-exploding-clipped"]) == 0


def test_a_run_folder_whose_text_is_gone_still_samples(tmp_path, capsys):
    text = tmp_path / "own.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    preset = tmp_path / "own.yaml"
    preset.write_text(TINY + "data: {kind: text_file, path: own.txt}\nsampling: {prompt: 'the'}\n")
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "runs"), "--quiet"]) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    text.unlink()  # as on another machine
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run), "--max-new", "20"]) == 0
    assert capsys.readouterr().out.startswith("the")
    assert main(["train", "--resume", str(run), "--steps", "1", "--quiet"]) == 2  # training needs the text
    assert "own.txt" in capsys.readouterr().err
