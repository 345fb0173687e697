"""The window's parts that need no window: import rules, bounded histories, snapshots, summaries, labels."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

from simulator.api import is_public
from simulator.config import RunConfig
from simulator.presets import load_preset
from simulator.records import StepRecord
from ui.history import RunHistory, Series, config_diff, layer_of, stacked_y
from ui.panels.controls import GROUPS, SAMPLING_GROUP, SPECS, escape, tooltip_text, unescape
from ui.plots.stepthrough import diagram_columns
from ui.worker import Snapshots, histogram, summarise

UI = Path(__file__).resolve().parents[2] / "ui"


def simulator_imports(path: Path):
    """(module, names) of each import of the engine in one file; `from simulator import config` is simulator.config."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names if a.name.split(".")[0] == "simulator")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "simulator":
            if node.module == "simulator":
                yield from ((f"simulator.{a.name}", []) for a in node.names)
            else:
                yield node.module, [a.name for a in node.names]


def test_ui_imports_only_the_public_api():
    """ui/ imports the engine only through the modules simulator/api.py lists, and no private name of them."""
    seen = set()
    for path in UI.rglob("*.py"):
        for module, names in simulator_imports(path):
            seen.add(module)
            assert is_public(module), f"{path.name} imports {module}, which simulator/api.py does not list"
            # `_` is the translation function (simulator.i18n), not a private name
            private = [n for n in names if n.startswith("_") and n != "_"]
            assert not private, f"{path.name} imports a private name of {module}"
    assert {"simulator.session", "simulator.presets", "simulator.records"} <= seen


def test_the_public_api_imports_and_the_architecture_names_it():
    """Every listed module exists (the lesson registry may still be on its way) and ARCHITECTURE.md names each."""
    import simulator.api as api
    root = UI.parent
    for module in api.PUBLIC_MODULES:
        path = root / module.replace(".", "/")
        if module == "simulator.lessons" and not path.is_dir():
            continue  # the lesson registry, listed before it lands
        assert path.is_dir() or path.with_suffix(".py").is_file(), f"{module} is listed but not in {root.name}/"
        importlib.import_module(module)
    assert all(hasattr(api, n) for n in api.__all__)
    doc = (UI.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert [m for m in api.PUBLIC_MODULES if f"`{m}`" not in doc] == []


def test_series_stays_bounded_and_keeps_recent_points_exact():
    s = Series(cap=100)
    for i in range(1000):
        s.append(i, float(i) ** 0.5)
    x, y = s.arrays()
    assert len(s) <= 100
    assert np.all(np.diff(x) > 0) and x[0] == 0 and x[-1] == 999
    np.testing.assert_array_equal(x[-40:], np.arange(960, 1000))  # the newest points are all there
    np.testing.assert_allclose(y, np.sqrt(x))
    s.truncate(500.5)
    assert s.x[-1] == 500 or s.x[-1] < 500 and all(v <= 500.5 for v in s.x)


def test_series_thins_as_lists_would_and_hands_out_copies():
    s, xs, ys = Series(cap=37), [], []
    for i in range(500):
        s.append(i, i * 0.5)
        xs.append(i)
        ys.append(i * 0.5)
        if len(xs) > 37:  # the rule, on plain lists: every other point of the older half, the newer half whole
            half = len(xs) // 2
            xs, ys = xs[:half:2] + xs[half:], ys[:half:2] + ys[half:]
        assert list(s.x) == xs and list(s.y) == ys and len(s) == len(xs) and s.last_x() == xs[-1]
    pinned = s.copy()
    s.x[:] = -1.0  # a copy: the series is untouched
    s.truncate(450.0)
    assert list(s.x) == [v for v in xs if v <= 450] and list(pinned.x) == xs
    assert stacked_y([s, s]).shape == (2, len(s)) and Series().last_x() is None


def record(step, loss=2.0, stats=False, val=None):
    r = StepRecord(step=step, loss=loss, lr=1e-3, grad_norm=1.5, clipped=False, tokens=64, seconds=0.01,
                   phase_seconds={"forward": 0.004, "backward": 0.005}, val_loss=val)
    if stats:
        r.grad_norms = {"wte": 3.0, "h0.attn.qkv.w": 4.0, "h1.mlp.fc.w": 1.0, "norm_f.w": 2.0}
        r.update_ratios = {k: 1e-3 for k in r.grad_norms}
        r.activations = {"x0": (0.0, 1.0, 3.0)}
    return r


def test_history_groups_gradient_norms_by_layer_and_rewinds():
    h = RunHistory()
    for s in range(1, 11):
        h.add(record(s, loss=3.0 - 0.1 * s, stats=s % 5 == 0, val=2.5 if s == 10 else None))
    assert [layer_of(n) for n in ("wte", "wpe", "h0.attn.qkv.w", "h12.mlp.fc.b", "norm_f.w", "lm_head.w")] == \
        ["embed", "embed", "block 0", "block 12", "head", "head"]
    assert h.layer_steps == [5, 10]
    assert h.layer_norms[-1]["block 0"] == 4.0 and h.layer_norms[-1]["embed"] == 3.0
    assert h.layer_norms[-1]["head"] == 2.0  # norm_f alone; a layer of several tensors adds in quadrature
    lines = h.csv().strip().split("\n")
    assert lines[0].startswith("step,loss,val_loss") and len(lines) == 11 and lines[-1].split(",")[2] == "2.5"
    h.truncate(7)
    assert h.loss.x[-1] == 7 and h.layer_steps == [5] and len(h.val) == 0 and h.last is None


def test_config_diff_names_what_a_pinned_run_changed():
    a = RunConfig()
    b = RunConfig(model=a.model.__class__(norm_position="post"), optim=a.optim.__class__(lr=0.01))
    assert config_diff(b, a) == "norm_position=post, lr=0.01"
    assert config_diff(a, a) == "same config"


class FakeSession:
    def __init__(self):
        self.step_count = 0

    def state_arrays(self):
        return {"params": np.full(1000, self.step_count, dtype=np.float64)}  # 8000 bytes


def test_snapshots_thin_old_ones_under_the_byte_budget():
    snaps, fake = Snapshots(every=2, budget_bytes=8000 * 5), FakeSession()
    for step in range(0, 41):
        fake.step_count = step
        snaps.maybe_take(fake)
    steps = snaps.steps()
    assert snaps.nbytes() <= 8000 * 5 and steps[0] == 0 and steps[-1] == 40
    assert all(s % 2 == 0 for s in steps)
    assert all(int(snaps.states[s]["params"][0]) == s for s in steps)  # each holds its own step's state
    snaps.drop_after(steps[1])
    assert snaps.steps() == steps[:2]


def test_summary_is_a_copy_with_true_moments():
    x = np.arange(2 * 3 * 100, dtype=np.float32).reshape(2, 3, 100)
    s = summarise("h0.att", x)
    assert s.shape == (2, 3, 100) and s.mean == pytest.approx(float(x.mean())) and s.max == 599.0
    assert s.preview.shape[1] <= 48 and s.preview[0, 0] == 0.0 and s.finite
    x[0, 0, 0] = np.nan
    assert s.preview[0, 0] == 0.0  # not a view of the live buffer
    assert not summarise("y", x).finite


def test_histogram_counts_every_finite_value():
    v = np.array([-2.0, -1.0, 0.0, 0.5, 2.0, np.inf, np.nan])
    counts, edges = histogram(v)
    assert counts.sum() == 5 and edges[0] == -2.0 and edges[-1] == 2.0
    assert histogram(np.array([np.nan])) is None


def test_prompt_escapes_round_trip():
    for text in ("\n", "a\\nb", "tab\there\n", "\\"):
        assert unescape(escape(text)) == text
    assert escape("\n") == "\\n"


def test_every_control_says_what_it_does_and_its_lesson():
    lessons = {p.stem for p in (UI.parent / "presets").glob("*.yaml")}
    for _, specs in GROUPS + SAMPLING_GROUP:
        for spec in specs:
            text = tooltip_text(spec)
            assert spec.path in text and "lesson:" in text
            assert set(spec.lesson.split(", ")) <= lessons, spec.lesson
            assert ("Rebuilds" in text) != spec.live


def test_controls_take_label_help_choices_and_liveness_from_the_config_declarations():
    from simulator import config as C

    for spec in SPECS.values():
        declared = C.SETTINGS[spec.path]
        assert spec.label == declared.label and spec.help == declared.help
        assert tooltip_text(spec).startswith(declared.help + " ") and spec.live == C.is_live(spec.path)
    assert SPECS["model.norm"].choices == C.NORMS and SPECS["model.norm"].kind == "choice"
    assert SPECS["model.residual"].kind == "bool" and SPECS["sampling.prompt"].kind == "text"
    assert SPECS["optim.lr"].kind == "float" and SPECS["model.n_layer"].kind == "int"


def test_diagram_follows_the_session_phase_order():
    from simulator.session import TrainingSession

    cfg = load_preset("postnorm")
    names = TrainingSession(cfg).phase_names
    cols = diagram_columns(names)
    boxes = [b for _, bs in cols for b in bs]
    forward = [n.split(".", 1)[1] for n in names if n.startswith("forward.")]
    assert [b for b in boxes if b not in ("batch", "loss", "clip", "update")] == forward
    assert [t for t, _ in cols][:3] == ["data", "embedding", "block0"]
    assert cols[2][1] == ["block0.attn", "block0.norm1", "block0.mlp", "block0.norm2"]  # post-norm order


def test_every_command_has_one_handler_and_the_bus_delivers_by_type():
    import dataclasses

    from ui import protocol
    from ui.worker import Worker

    commands = [protocol.Quit, protocol.Step, protocol.StepInto, protocol.Run, protocol.Pause, protocol.Speed,
                protocol.StatisticsRate, protocol.Reset, protocol.Rebuild, protocol.Apply, protocol.Watch,
                protocol.HeadTensors, protocol.Rewind, protocol.Generate, protocol.GradCheck, protocol.SaveCheckpoint,
                protocol.LoadCheckpoint]
    assert set(Worker.HANDLERS) == set(commands)
    assert all(dataclasses.is_dataclass(c) and c.__dataclass_params__.frozen for c in commands)  # safe to share
    bus, seen = protocol.Bus(), []
    bus.subscribe(protocol.Status, lambda m: seen.append(("first", m.text)))
    bus.subscribe(protocol.Status, lambda m: seen.append(("second", m.text)))
    bus.subscribe(protocol.Error, lambda m: seen.append(("error", m.text)))
    bus.publish(protocol.Status("a"))
    bus.publish(protocol.Fatal("nobody listens"))
    assert seen == [("first", "a"), ("second", "a")]


def test_watch_keeps_choices_that_exist_and_defaults_the_rest():
    from ui.protocol import Watch

    w = Watch(grad_tensor="h3.mlp.fc.w", act_site="x2", attn_layer=5, attn_sample=9)
    fitted = w.fit(["wte", "h0.mlp.fc.w"], ["x0", "x1"], n_layer=2, batch_size=4)
    assert fitted == Watch(grad_tensor="wte", act_site="x1", attn_layer=1, attn_sample=3)
    assert fitted.fit(["wte"], ["x0", "x1"], 2, 4) == fitted


def test_every_lesson_has_a_tab_registered_against_its_kind():
    from simulator.lessons import all_lessons
    from ui.lessons import TABS

    kinds = [lesson.kind for lesson in all_lessons()]
    assert sorted(TABS) == sorted(kinds)
    for lesson in all_lessons():
        assert TABS[lesson.kind].kind == lesson.kind and TABS[lesson.kind].title == lesson.title
