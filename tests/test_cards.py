"""Lesson cards: the `lesson:` schema (one line per mistake, exit 2), the claim evaluator on records built by
hand, the course, the `lesson` command, and every shipped card run headless at its seed with every claim holding."""

from __future__ import annotations

import math

import pytest

from simulator.cli import main
from simulator.lessons.cards import Claim, card_names, load_card, run_card
from simulator.lessons.cards_course import load_course, parse_course
from simulator.lessons.cards_metrics import Run, measure
from simulator.lessons.deep_mlp import MLPRecord
from simulator.presets import PresetError, find_preset, list_presets, load_any
from simulator.records import NonFinite, StepRecord

ROOT = find_preset("tiny-gpt").parent.parent

CARD = """\
lesson:
  title: A card
  why: Because.
  steps:
    - text: Run it.
      run: 3
  prediction:
    question: What happens?
    answers: [this, that]
    expected: this
  claims:
    - text: The loss falls.
      metric: loss
      comparison: "<"
      threshold: 10.0
"""


def write_card(tmp_path, preset: str, card: str, name="card.yaml"):
    """A copy of a shipped preset (its text) with `card` as its lesson section."""
    text = find_preset(preset).read_text(encoding="utf-8").split("\nlesson:")[0]
    path = tmp_path / name
    path.write_text(text.rstrip() + "\n\n" + card, encoding="utf-8")
    return path


def card_error(tmp_path, card: str, preset="leaf-flower") -> str:
    path = write_card(tmp_path, preset, card)
    with pytest.raises(PresetError) as info:
        load_card(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}:"), message
    offset = path.read_text(encoding="utf-8").splitlines().index("lesson:")  # lines are counted within CARD
    line, rest = message.removeprefix(f"{path}:").split(":", 1)
    return f"{int(line) - offset}:{rest}"


def replace_claim(**fields) -> str:
    lines = CARD.split("    - text: The loss falls.\n")[0] + "    - text: The loss falls.\n"
    return lines + "".join(f"      {k}: {v}\n" for k, v in fields.items())


# ------------------------------------------------------------------------------------------- schema
@pytest.mark.parametrize("fields,line,message", [
    ({"metric": "losss", "comparison": '"<"', "threshold": 1}, 13,
     "lesson.claims[0].metric: 'losss' is not a metric (did you mean 'loss'?) (leaf_flower runs measure: loss,"),
    ({"metric": "loss", "comparison": "'=<'", "threshold": 1}, 14, "lesson.claims[0].comparison: '=<' is not one of"),
    ({"metric": "loss", "comparison": '"<"'}, 14, "lesson.claims[0].threshold: is missing"),
    ({"metric": "loss", "comparison": '"<"', "threshold": "a lot"}, 15, "threshold: expected a number"),
    ({"metric": "loss", "comparison": '"<"', "threshold": 1, "other": "no-such-preset"}, 16,
     "lesson.claims[0].other: the run to compare with cannot be loaded: no preset named 'no-such-preset'"),
    ({"metric": "loss", "comparison": '"<"', "threshold": 1, "other": "tiny-gpt"}, 16,
     "other: 'tiny-gpt' is a gpt preset; a leaf_flower run compares with its own kind"),
    ({"metric": "val_accuracy", "comparison": '">"', "threshold": 1}, 13,
     "metric: 'val_accuracy' is not measured in a leaf_flower run (leaf_flower runs measure: loss, loss_after"),
    ({"metric": "loss", "comparison": "is", "value": "x"}, 14, "comparison: 'is' compares a name"),
    ({"metric": "loss", "comparison": "within", "threshold": -1}, 15, "'within' needs a tolerance of at least 0"),
    ({"metric": "loss", "comparison": '"<"', "threshold": 1, "target": 2}, 16, "only 'within' takes a target"),
    ({"metric": "loss_drop", "comparison": '"<"', "threshold": 1, "step": 2}, 16, "'loss_drop' is one number"),
    ({"metric": "loss", "comparison": '"<"', "threshold": 1, "of": "W1"}, 16, "'loss' is one number per run"),
    ({"metric": "loss", "comparison": '"<"', "threshold": 1, "tolerance": 2}, 16,
     "lesson.claims[0].tolerance: unknown key 'tolerance'"),
])
def test_a_bad_claim_is_one_line_naming_file_line_and_key(tmp_path, fields, line, message):
    got = card_error(tmp_path, replace_claim(**fields))
    assert got.startswith(f"{line}: ") and message in got, got


def test_a_learner_must_be_named_and_exist(tmp_path):
    claim = replace_claim(metric="zero_fraction", comparison='">"', threshold=0.5)
    assert "lesson.claims[0].of: 'zero_fraction' is measured per learner: say which (one of FTRL l1=0.1" in \
        card_error(tmp_path, claim, "ftrl-sparse")
    claim = replace_claim(metric="zero_fraction", of="FTRL", comparison='">"', threshold=0.5)
    assert card_error(tmp_path, claim, "ftrl-sparse").startswith("14: lesson.claims[0].of: 'FTRL' is not one of")


def test_the_rest_of_a_card_is_checked_too(tmp_path):
    assert "lesson.prediction.expected: 'thus' is not one of the answers (did you mean 'this'?)" in \
        card_error(tmp_path, CARD.replace("expected: this", "expected: thus"))
    assert card_error(tmp_path, CARD.replace("[this, that]", "[this]")).startswith(
        "9: lesson.prediction.answers: a question has two to four answers, got 1")
    two_runs = CARD.replace("      run: 3\n", "      run: 3\n    - text: Again.\n      run: 4\n")
    assert "lesson.steps[1].run: a card has one run, and step 1 already runs" in card_error(tmp_path, two_runs)
    bad = CARD.replace("      run: 3\n", "      settings: {lr: -1.0}\n      run: 3\n")
    assert card_error(tmp_path, bad).startswith("6: lesson.steps[0].settings.lr: must be greater than 0, got -1.0")
    unknown = CARD.replace("      run: 3\n", "      settings: {optim.lr: 0.1}\n      run: 3\n")
    assert "lesson.steps[0].settings.optim.lr: is not a setting" in card_error(tmp_path, unknown)
    assert card_error(tmp_path, CARD.replace("  why: Because.\n", "")).endswith("lesson.why: is missing")
    no_claims = CARD.split("  claims:")[0]
    assert "lesson.claims: a card needs one or more claims" in card_error(tmp_path, no_claims)


def test_check_and_lesson_commands_exit_2_on_a_bad_card(tmp_path, capsys):
    path = write_card(tmp_path, "leaf-flower", replace_claim(metric="losss", comparison='"<"', threshold=1))
    for argv in (["check", str(path)], ["lesson", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"error: {path}:") and ": lesson.claims[0].metric: 'losss' is not a metric" in err


def test_a_step_settings_change_goes_through_override_and_reaches_the_run(tmp_path):
    path = write_card(tmp_path, "leaf-flower", CARD.replace("      run: 3\n",
                                                            "      settings: {lr: 0.1, loss: l1}\n      run: 3\n"))
    cfg, card = load_card(path)
    assert (cfg.lr, cfg.loss) == (0.5, "cross_entropy") and (card.config.lr, card.config.loss) == (0.1, "l1")
    assert card.steps[0].settings == (("lr", 0.1), ("loss", "l1")) and card.run_steps == 3
    result = run_card(card)
    assert len(result.runs[0].frames) == 3 and result.runs[0].frames[0].lr == 0.1 and result.holds
    assert load_any(path) == cfg, "a preset with a card still loads as its config"


# ---------------------------------------------------------------------------------------- evaluator
def rec(step, loss, val=None, ident=None, nonfinite=None) -> StepRecord:
    return StepRecord(step=step, loss=loss, lr=0.1, grad_norm=1.0, clipped=step % 2 == 0, tokens=1, seconds=0.1,
                      phase_seconds={}, val_loss=val, identity_fraction=ident or {}, nonfinite=nonfinite)


THIS = Run("this", None, "gpt", [rec(1, 3.0, ident={"h0.attn": 1.0, "h0.mlp": 0.5}), rec(2, 2.0, val=2.5),
                                 rec(3, 2.5), rec(4, 1.0, val=1.5, ident={"h0.attn": 0.8, "h0.mlp": 0.4})], 0.0)
OTHER = Run("other", None, "gpt", [rec(1, 3.5), rec(2, 3.0, val=3.1), rec(3, 2.0), rec(4, 2.0, val=2.0)], 0.0)


def claim(**kw) -> Claim:
    return Claim(**{"text": "t", "metric": "loss", "comparison": "<", "threshold": 0.0, **kw})


@pytest.mark.parametrize("kw,value,holds", [
    ({"threshold": 1.5}, 1.0, True), ({"threshold": 1.0}, 1.0, False),  # <, at the last step
    ({"comparison": "<=", "threshold": 1.0}, 1.0, True), ({"comparison": "<=", "threshold": 0.9}, 1.0, False),
    ({"comparison": ">", "threshold": 0.5}, 1.0, True), ({"comparison": ">", "threshold": 1.0}, 1.0, False),
    ({"comparison": ">=", "threshold": 1.0}, 1.0, True), ({"comparison": ">=", "threshold": 1.1}, 1.0, False),
    ({"comparison": "within", "target": 1.2, "threshold": 0.25}, 1.0, True),
    ({"comparison": "within", "target": 1.3, "threshold": 0.25}, 1.0, False),
    ({"at": "first", "threshold": 3.5}, 3.0, True), ({"step": 3, "threshold": 2.5}, 2.5, False),
    ({"at": "best", "threshold": 1.1}, 1.0, True), ({"average": 2, "comparison": ">", "threshold": 1.7}, 1.75, True),
    ({"step": 3, "average": 3, "comparison": ">", "threshold": 2.5}, 2.5, False),
    ({"metric": "val_loss", "threshold": 1.5}, 1.5, False), ({"metric": "val_loss", "at": "first", "threshold": 3},
                                                             2.5, True),
    ({"metric": "identity_fraction", "of": "h0.attn", "comparison": ">=", "threshold": 0.8}, 0.8, True),
    ({"metric": "identity_fraction", "reduce": "min", "step": 1, "threshold": 0.5}, 0.5, False),
    ({"metric": "identity_fraction", "reduce": "product", "threshold": 0.33}, 0.32, True),
    ({"metric": "identity_fraction", "threshold": 0.6}, 0.6, False),  # the mean by default
    ({"metric": "identity_fraction", "of": "h0.mlp", "other_of": "h0.attn", "threshold": -0.39}, -0.4, True),
    ({"metric": "clipped_fraction", "comparison": "within", "target": 0.5, "threshold": 0}, 0.5, True),
    ({"metric": "steps_run", "comparison": ">=", "threshold": 5}, 4.0, False),
    ({"metric": "nonfinite_step", "comparison": ">", "threshold": 1e9}, math.inf, True),
    ({"metric": "nonfinite_tensor", "comparison": "is", "threshold": None, "value": "none"}, "none", True),
    ({"metric": "nonfinite_tensor", "comparison": "is", "threshold": None, "value": "h0.attn"}, "none", False),
])
def test_each_comparison_and_metric_true_and_false(kw, value, holds):
    v = measure(claim(**kw), THIS, None)
    assert v.value == pytest.approx(value) and v.holds is holds, (v.measured, v.test)
    assert ("this" in v.measured) and v.test


def test_a_claim_against_another_run_compares_the_difference():
    v = measure(claim(threshold=-0.5), THIS, OTHER)  # 1.0 - 2.0
    assert v.holds and v.value == -1.0 and "1 (this) vs 2 (other); difference -1" in v.measured
    assert not measure(claim(threshold=-1.0), THIS, OTHER).holds
    v = measure(claim(metric="val_loss", comparison="within", threshold=0.5), THIS, OTHER)
    assert v.holds and v.value == -0.5 and v.test == "|-0.5| <= 0.5"
    assert not measure(claim(metric="val_loss", at="first", comparison="within", threshold=0.5), THIS, OTHER).holds


def test_a_diverged_run_names_its_tensor_and_a_nan_holds_no_comparison():
    bad = Run("bad", None, "gpt", [rec(1, 3.0), rec(2, math.nan, nonfinite=NonFinite(1, "forward.block0.attn",
                                                                                       "h0.attn"))], 0.0)
    assert measure(claim(metric="nonfinite_tensor", comparison="is", threshold=None, value="h0.attn"), bad, None).holds
    assert measure(claim(metric="nonfinite_step", comparison="<=", threshold=2), bad, None).value == 2.0
    for comparison in ("<", ">", "within"):
        assert not measure(claim(comparison=comparison, threshold=1e9), bad, None).holds


def test_what_a_run_lacks_is_a_lookup_error_naming_it():
    with pytest.raises(LookupError, match="no value at step 5"):
        measure(claim(step=5), THIS, None)
    with pytest.raises(LookupError, match="'h9.attn' is not measured in this run"):
        measure(claim(metric="identity_fraction", of="h9.attn"), THIS, None)
    with pytest.raises(LookupError, match="needs 9 records"):
        measure(claim(average=9), THIS, None)


def test_deep_mlp_metrics_read_the_lesson_records():
    def mlp(step, g, s, nonfinite=False):
        return MLPRecord(step, 1.0, 2.0, False, nonfinite, g, s, [], [], [], val_accuracy=0.5,
                         first_nonfinite="z3" if nonfinite else None)
    from simulator.lessons.deep_mlp import DeepMLPConfig
    cfg = DeepMLPConfig(n_layer=1)
    run = Run("mlp", cfg, "deep_mlp", [mlp(1, [1e-3, 1.0, 10.0], [100.0, 1.0]), mlp(2, [1, 1, 1], [1, 1], True)], 0)
    assert measure(claim(metric="input_output_grad_ratio", at="first", threshold=1e-3), run, None).value == 1e-4
    assert measure(claim(metric="stream_grad_ratio", at="first", comparison=">", threshold=99), run, None).holds
    assert measure(claim(metric="grad_norm_spread", at="first", comparison=">", threshold=999), run, None).holds
    assert measure(claim(metric="nonfinite_tensor", comparison="is", threshold=None, value="z3"), run, None).holds
    assert measure(claim(metric="tensor_grad_norm", of="out.w", at="first", comparison=">", threshold=9), run,
                   None).holds



def test_finetune_metrics_read_the_learners_of_the_frames():
    from simulator.lessons.finetune import FinetuneConfig, FinetuneFrame, FinetunePoint, Learner

    cfg = FinetuneConfig(ranks=(4,))
    learners = (Learner("full", 0, 1000, 4000, 9000), Learner("LoRA r=4", 4, 100, 600, 8000))

    def frame(step, full, lora):
        return FinetuneFrame(step, [FinetunePoint("full", 1.0, *full), FinetunePoint("LoRA r=4", 1.0, *lora)],
                             learners, base_new=3.0, base_old=2.0, stored={})
    run = Run("ft", cfg, "finetune", [frame(1, (2.5, 2.2), (2.4, 2.6)), frame(2, (None, None), (None, None)),
                                      frame(3, (2.2, 2.5), (2.3, 2.9))], 0.0)
    assert measure(claim(metric="trainable_share", of="LoRA r=4", threshold=0.11), run, None).value == 0.1
    assert measure(claim(metric="state_bytes_share", of="LoRA r=4", threshold=0.1), run, None).value == 0.15
    assert measure(claim(metric="val_new", of="LoRA r=4", threshold=2.0), run, None).value == 2.3  # step 3
    assert measure(claim(metric="val_new", reduce="max", at="first", threshold=2.0), run, None).value == 2.5
    assert measure(claim(metric="val_old", of="full", step=1, threshold=2.0), run, None).value == 2.2
    v = measure(claim(metric="forgetting", of="LoRA r=4", other_of="full", comparison=">", threshold=0.3), run, None)
    assert v.value == pytest.approx(0.4) and v.holds  # (2.9 - 2.0) - (2.5 - 2.0)
    with pytest.raises(LookupError, match="no value at step 2"):
        measure(claim(metric="val_new", of="full", step=2), run, None)


def test_tokenizer_metrics_split_the_sentence_at_each_size():
    from simulator.lessons.tokenizers import TokenizersConfig

    cfg = TokenizersConfig(sentence="the the the", learned=(0, 40))
    run = Run("tok", cfg, "tokenizers", [], 0.0)
    assert measure(claim(metric="sentence_tokens", of="0", threshold=0), run, None).value == 11  # one per byte
    assert measure(claim(metric="sentence_tokens", of="40", threshold=0), run, None).value < 11
    assert measure(claim(metric="chars_per_token", of="0", threshold=0), run, None).value == 1.0
    run.cache["splits"] = {"0": list("abc"), "40": list("abcd"), "9": list("ab")}  # 9 < 40: 3, 2, 4 rises once
    assert measure(claim(metric="sentence_token_rises", threshold=0), run, None).value == 1.0


def test_tfidf_metrics_against_numpy():
    import dataclasses

    import numpy as np

    from simulator.lessons.tfidf import TfidfConfig
    from simulator.text.tfidf import fit_tfidf

    t = fit_tfidf(["a cat sat", "a cat ran", "the dog ran", "a dog"])
    cfg = TfidfConfig(corpus="builtin", pairs=("cat ran",))
    run = Run("tfidf", cfg, "tfidf", [t], 0.0)
    assert measure(claim(metric="idf_formula_error", threshold=1e-12), run, None).holds
    bad = Run("bad", cfg, "tfidf", [dataclasses.replace(t, idf=t.idf + np.arange(len(t.idf)) * 0.25)], 0.0)
    assert measure(claim(metric="idf_formula_error", threshold=1e-12), bad, None).value == 0.25 * (len(t.idf) - 1)
    a, b = t.matrix[:, t.vocab.index("cat")], t.matrix[:, t.vocab.index("ran")]
    cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # they share document 1 of 4
    assert 0 < cosine < 1
    assert measure(claim(metric="term_cosine", of="cat ran", threshold=1), run, None).value == pytest.approx(cosine)
    with pytest.raises(LookupError, match="topics only in corpus world"):
        measure(claim(metric="topic_cosine_ratio", threshold=1), run, None)


# ------------------------------------------------------------------------------------------- shipped
NAMES = card_names()


def test_every_lesson_preset_has_a_card():
    presets = {info.name for info in list_presets()}
    without = {"tiny-gpt", "postnorm", "rmsnorm", "no-norm-deep"}
    # tiny-gpt-bpe is tiny-gpt on another tokenizer, a preset to train and watch like tiny-gpt: the tokens are
    # the tokenizers card's lesson, and its point (loss per character, not per token) would need two 300-step
    # GPT runs and a per-character metric
    without |= {"tiny-gpt-bpe"}
    assert set(NAMES) == presets - without, "cards listed in the README"


@pytest.mark.parametrize("name", NAMES)
def test_every_card_holds_at_its_shipped_seed(name):
    _, card = load_card(name)
    result = run_card(card)
    said = "\n".join(f"{'ok ' if v.holds else 'NOT'} {v.claim.text.strip()} | {v.measured} | {v.test}"
                     for v in result.verdicts)
    assert len(result.verdicts) == len(card.claims) >= 1 and result.holds, said


def test_the_course_orders_every_card_once(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    course = load_course()
    assert sorted(course.cards) == sorted(NAMES) and len(course.cards) == len(set(course.cards))
    titles = [s.title for s in course.sections]
    assert titles[:3] == ["A neuron and gradient descent", "Norms and residuals", "Dropout and overfitting"]
    assert titles[-1] == "Representations" and all(s.cards or s.note for s in course.sections)
    bad = "title: t\nsections:\n  - title: one\n    cards: [leaf-flower, overfitt]\n"
    with pytest.raises(PresetError, match=r"^c.yaml:4: sections\[0\].cards\[1\]: 'overfitt' is not a preset with a "
                                          r"lesson card \(did you mean 'overfit'\?\)$"):
        parse_course(bad, "c.yaml")
    with pytest.raises(PresetError, match=r"^c.yaml:4: .*'leaf-flower' is already in section 1$"):
        parse_course(bad.replace("overfitt", "leaf-flower"), "c.yaml")
    assert "course" not in {info.name for info in list_presets()}, "the course is not a preset"
    bad_file = tmp_path / "course.yaml"
    bad_file.write_text(bad, encoding="utf-8")
    assert main(["check", str(bad_file)]) == 2
    assert f"{bad_file}:4: sections[0].cards[1]: 'overfitt'" in capsys.readouterr().err
    assert main(["check", "presets/course.yaml"]) == 0 and f"a course of {len(NAMES)} cards" in capsys.readouterr().out


def test_the_lesson_command(tmp_path, capsys):
    assert main(["lesson"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)
    assert main(["lesson", "--course"]) == 0
    out = capsys.readouterr().out
    assert out.index("leaf-flower") < out.index("prenorm-deep") < out.index("flash-trace") < out.index("sampling")
    assert "no card yet" not in out  # generation has its card now: every section has one

    assert main(["lesson", "leaf-flower"]) == 0
    out = capsys.readouterr().out
    assert "Predict:" in out and "✓ The step lowers the example's loss." in out and "1 of 1 claims hold" in out
    wrong = write_card(tmp_path, "leaf-flower", CARD.replace("threshold: 10.0", "threshold: 0.0"))
    assert main(["lesson", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "✗ The loss falls." in out and "does not hold in this run" in out and "not an error" in out
    for argv, message in ((["lesson", "tiny-gpt"], "'tiny-gpt' has no lesson card"),
                          (["lesson", "worked-examples", "--seed", "3"], "has no seed"),
                          (["lesson", "leaf-flower", "--course"], "--course lists the course"),
                          (["lesson", "nope"], "no preset named 'nope'")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_another_seed_runs_again_and_is_reported(capsys):
    assert main(["lesson", "deep-exploding-clipped", "--seed", "5"]) == 0
    assert "seed 5" in capsys.readouterr().out


def test_sampling_metrics_read_a_sample_of_the_trained_model_and_share_its_training(monkeypatch):
    """sample_* read `sampling.max_new` tokens drawn by the run's rule; runs differing only in sampling train once."""
    import dataclasses

    import numpy as np

    from simulator.lessons import cards
    from simulator.lessons.cards_metrics import METRICS
    from simulator.presets import override
    from simulator.sampling import generate

    small = {"model.d_model": 16, "model.n_layer": 1, "model.n_head": 2, "model.seq_len": 16, "train.steps": 3,
             "train.batch_size": 2, "train.eval_every": 0, "sampling.max_new": 40}
    cfg = override(load_any("sampling"), **small)
    trainings = []
    real = cards.train_run
    monkeypatch.setattr(cards, "train_run", lambda *a, **k: trainings.append(a[0]) or real(*a, **k))
    cards.clear_cache()
    try:
        runs = {}
        for name, change in (("plain", {}), ("cold", {"temperature": 0.5}), ("top_p", {"top_p": 0.5}),
                             ("greedy", {"greedy": True})):
            c = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, **change))
            runs[name] = cards.cached_run(c, 3, name)
        assert len(trainings) == 1 and len({id(r.session) for r in runs.values()}) == 1
        for name, run in runs.items():
            events = generate(run.session.next_logits, run.session.tokenizer, run.cfg.sampling)[1]
            assert len(events) == 40
            # the entropy by its definition, from the kept probabilities each token was drawn from
            entropy = np.mean([-np.sum(e.kept_probs * np.log(e.kept_probs)) for e in events])
            read = {k: METRICS[k].impls["gpt"].read(run) for k in ("sample_entropy", "sample_kept",
                                                                    "sample_distinct", "sample_token_prob")}
            assert read["sample_entropy"] == pytest.approx(entropy, abs=1e-12), name
            assert read["sample_kept"] == np.mean([len(e.after_min_p) for e in events])
            assert read["sample_distinct"] == len({e.token for e in events})
            assert read["sample_token_prob"] == pytest.approx(np.mean([e.prob for e in events]))
        greedy = runs["greedy"]
        assert METRICS["sample_entropy"].impls["gpt"].read(greedy) == 0.0
        assert METRICS["sample_kept"].impls["gpt"].read(greedy) == 1.0
        vocab = runs["plain"].session.tokenizer.vocab_size
        assert METRICS["sample_kept"].impls["gpt"].read(runs["plain"]) == vocab  # no filter keeps every token
        assert METRICS["sample_kept"].impls["gpt"].read(runs["top_p"]) < vocab
        v = measure(Claim(text="t", metric="sample_entropy", comparison=">", threshold=0.0), runs["plain"],
                    runs["cold"])  # this minus the other: temperature 1 against 0.5
        assert v.value == pytest.approx(METRICS["sample_entropy"].impls["gpt"].read(runs["plain"])
                                        - METRICS["sample_entropy"].impls["gpt"].read(runs["cold"]))
    finally:
        cards.clear_cache()
