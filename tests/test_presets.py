"""Presets: shipped files load, every kind of mistake gets its one-line FILE:LINE: key: message, dump/load, override."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simulator import config as C
from simulator import lessons
from simulator.config import RunConfig
from simulator.presets import (
    RULES,
    PresetError,
    dump_config,
    find_preset,
    list_presets,
    load_any,
    load_preset,
    one_of,
    override,
    parse_dataclass,
    parse_preset_text,
    positive,
    positive_int,
    presets_dir,
)
from simulator.rules import setting

SHIPPED = ["no-norm-deep", "postnorm", "rmsnorm", "tiny-gpt"]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    """The message load_preset raises for a preset file (the test fails if it loads)."""
    with pytest.raises(PresetError) as info:
        load_preset(path)
    message = str(info.value)
    assert "\n" not in message, "messages are one line"
    return message


# ----------------------------------------------------------------------------------------- shipped
def test_shipped_presets_are_listed_with_their_summaries():
    infos = [p for p in list_presets() if p.name in SHIPPED]
    assert [p.name for p in infos] == SHIPPED
    assert presets_dir() == Path(__file__).resolve().parent.parent / "presets"
    for info in infos:
        full = load_preset(info.path).description
        assert info.description == full.splitlines()[0] and len(info.description) > 20
        assert len(full.strip().splitlines()) >= 3, f"{info.name}: the description should say what to look at"


def test_every_file_in_the_presets_folder_loads_whatever_its_kind():
    for info in list_presets():
        cfg = load_any(info.path)
        assert cfg.name == info.name and cfg.description.startswith(info.description)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_preset_loads_by_name_and_by_path(name):
    cfg = load_preset(name)
    assert isinstance(cfg, RunConfig) and cfg.name == name
    assert load_preset(f"{name}.yaml") == cfg == load_preset(presets_dir() / f"{name}.yaml")
    assert cfg.model.d_model % cfg.model.n_head == 0 and cfg.train.watch_layer < cfg.model.n_layer


def test_shipped_lessons_differ_from_the_default_where_they_say():
    base = load_preset("tiny-gpt")
    m, o, t = base.model, base.optim, base.train
    shape = (m.d_model, m.n_layer, m.n_head, m.seq_len, t.batch_size, t.steps, t.eval_every)
    assert shape == (64, 2, 4, 64, 16, 300, 50)
    assert (o.name, o.warmup_steps, o.decay_steps, base.data.kind) == ("adamw", 20, 600, "builtin")
    assert load_preset("postnorm").model == dataclasses.replace(m, norm_position="post")
    assert load_preset("rmsnorm").model == dataclasses.replace(m, norm="rmsnorm")
    deep = load_preset("no-norm-deep")
    assert (deep.model.n_layer, deep.model.norm, deep.model.residual) == (8, "none", True)
    assert deep.optim.lr > o.lr


# ------------------------------------------------------------------------------------ bad input
BAD = [
    # (yaml text, line, substrings the message must hold)
    ("name: x\nmodel:\n  d_model: [1, 2\n", 4, ["YAML syntax error", "flow sequence on line 3"]),
    ("name: x\n model: 3\n  a: b\n", 2, ["YAML syntax error", "mapping values are not allowed"]),
    ("- a\n- b\n", 1, ["expected a mapping of settings at the top level, got a list"]),
    ("", 1, ["the preset is empty"]),
    ("a: 1\n---\nb: 2\n", 2, ["more than one YAML document"]),
    ("name: x\nmodel:\n  d_modle: 64\n", 3, ["model.d_modle: unknown key 'd_modle' (did you mean 'd_model'?)"]),
    ("nmae: x\n", 1, ["nmae: unknown key 'nmae' (did you mean 'name'?)"]),
    ("model:\n  zzz: 1\n", 2, ["model.zzz: unknown key 'zzz'", "model takes: vocab_size, d_model"]),
    ("model:\n  d_model: abc\n", 2, ["model.d_model: expected an integer, got 'abc'"]),
    ("model:\n  n_layer: true\n", 2, ["model.n_layer: expected an integer, got true"]),
    ("model:\n  d_model: 64.0\n", 2, ["model.d_model: expected an integer, got 64.0"]),
    ("model:\n  d_model: null\n", 2, ["model.d_model: expected an integer, got null", "leave the key out"]),
    ("name: 5\n", 1, ["name: expected a string, got 5 (put it in quotes)"]),
    ("model: 5\n", 1, ["model: expected a mapping of model settings, got 5"]),
    ("model:\n  attention: [a]\n", 2, ["model.attention: expected a mapping of model.attention settings, got a list"]),
    ("model:\n  residual: 1\n", 2, ["model.residual: expected true or false, got 1"]),
    ("optim:\n  lr: fast\n", 2, ["optim.lr: expected a number, got 'fast'"]),
    ("optim:\n  lr: .inf\n", 2, ["optim.lr: must be a finite number"]),
    ("optim:\n  lr: 0\n", 2, ["optim.lr: must be greater than 0, got 0.0"]),
    ("optim:\n  lr: -1.0e-3\n", 2, ["optim.lr: must be greater than 0, got -0.001"]),
    ("optim:\n  beta2: 1.0\n", 2, ["optim.beta2: must be in [0, 1), got 1.0"]),
    ("optim:\n  eps: 0.0\n", 2, ["optim.eps: must be greater than 0"]),
    ("optim:\n  weight_decay: -0.1\n", 2, ["optim.weight_decay: must be at least 0, got -0.1"]),
    ("model:\n  dropout: 1.0\n", 2, ["model.dropout: must be in [0, 1), got 1.0"]),
    ("data:\n  val_fraction: 0.6\n", 2, ["data.val_fraction: must be in (0, 0.5], got 0.6"]),
    ("data:\n  val_fraction: 0\n", 2, ["data.val_fraction: must be in (0, 0.5], got 0.0"]),
    ("train:\n  steps: 0\n", 2, ["train.steps: must be at least 1, got 0"]),
    ("train:\n  batch_size: -3\n", 2, ["train.batch_size: must be at least 1, got -3"]),
    ("model:\n  seq_len: 0\n", 2, ["model.seq_len: must be at least 1"]),
    ("model:\n  norm: batchnrm\n", 2,
     ["model.norm: 'batchnrm' is not one of layernorm, rmsnorm, batchnorm, none (did you mean 'batchnorm'?)"]),
    ("optim:\n  schedule: cosin\n", 2, ["optim.schedule: 'cosin' is not one of", "(did you mean 'cosine'?)"]),
    ("train:\n  dtype: float16\n", 2, ["train.dtype: 'float16' is not one of float32, float64"]),
    ("model:\n  d_model: 64\n  n_head: 5\n", 3, ["model.n_head: 5 does not divide model.d_model 64", "1, 2, 4, 8, 16"]),
    ("model:\n  d_model: 66\n", 2, ["model.d_model: 66 is not divisible by model.n_head 4"]),
    ("model:\n  d_model: 64\n  n_layer: 2\ntrain:\n  watch_layer: 2\n", 5,
     ["train.watch_layer: 2 is not a layer of a 2-layer model (use 0 to 1)"]),
    ("model:\n  n_head: 2\ntrain:\n  watch_head: 3\n", 4, ["train.watch_head: 3 is not a head of a 2-head model"]),
    ("model:\n  d_model: 64\n  d_model: 32\n", 3, ["model.d_model: is given twice (first on line 2)"]),
    ("kind: rce\n", 1, ["kind: 'rce' is not one of gpt", "optimizer_race"]),
    ("optim:\n  lr: 0.001\n  min_lr: 0.01\n", 3, ["optim.min_lr: 0.01 is larger than optim.lr 0.001"]),
    ("optim:\n  warmup_steps: 3000\n  decay_steps: 600\n", 2,
     ["optim.warmup_steps: 3000 is not less than optim.decay_steps 600"]),
    ("optim:\n  name: momentum\n", 2, ["optim.momentum: must be greater than 0 for optimizer momentum"]),
    ("data:\n  kind: text_file\n", 2, ["data.kind: text_file needs data.path"]),
    ("data:\n  path: corpus.txt\n", 2, ["data.path: is set but data.kind is builtin"]),
    ("model:\n  vocab_size: 10\n", 2, ["model.vocab_size: 10 is smaller than the", "distinct characters"]),
    ("model:\n  seq_len: 40000\n", 2, ["model.seq_len: the validation split", "fewer than model.seq_len + 1 = 40001"]),
    ("sampling:\n  prompt: Hello\n", 2, ["sampling.prompt: character 'H' at position 0 does not occur"]),
    ("sampling:\n  top_p: 0\n", 2, ["sampling.top_p: must be in (0, 1], got 0.0"]),
    ("name: \x07x\n", 1, ["character #x0007 is not allowed in YAML"]),
]


@pytest.mark.parametrize("text,line,parts", BAD, ids=[str(i) for i in range(len(BAD))])
def test_each_mistake_names_file_line_key_and_what(tmp_path, text, line, parts):
    message = error_of(write(tmp_path, "lesson.yaml", text))
    prefix = f"{tmp_path / 'lesson.yaml'}:{line}: "
    assert message.startswith(prefix), message
    for part in parts:
        assert part in message, message


def test_numbers_are_read_as_a_person_means_them():
    cfg = parse_preset_text("optim:\n  lr: 3e-3\n  min_lr: 0\n  grad_clip: 1\n", "t.yaml")
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.grad_clip) == (0.003, 0.0, 1.0)
    assert isinstance(cfg.optim.min_lr, float) and isinstance(cfg.optim.grad_clip, float)
    assert parse_preset_text("model:\n  vocab_size: null\n").model.vocab_size is None
    with pytest.raises(PresetError, match=r"^t.yaml:2: optim.lr: expected a number, got '3e-3'$"):
        parse_preset_text("optim:\n  lr: '3e-3'\n", "t.yaml")  # quoted: the person wrote text


def test_omitted_keys_take_the_dataclass_defaults():
    cfg = parse_preset_text("name: bare\nmodel:\n  n_layer: 3\n", "t.yaml")
    assert cfg == RunConfig(name="bare", model=dataclasses.replace(RunConfig().model, n_layer=3))


# --------------------------------------------------------------------------------------- data files
def bad_bytes(folder: Path) -> Path:
    path = folder / "bad.txt"
    path.write_bytes("héllo\nwo".encode() + b"\xff rld")  # é is two bytes: the 0xff is byte 9
    return path


def a_folder(folder: Path) -> Path:
    (folder / "sub").mkdir()
    return folder / "sub"


@pytest.mark.parametrize("make,expected", [
    (lambda d: d / "nope.txt", "does not exist"),
    (lambda d: write(d, "empty.txt", ""), "is empty"),
    (a_folder, "is a folder, not a text file"),
    (bad_bytes, "is not UTF-8 text: byte 0xff at byte offset 9 (line 2)"),
])
def test_bad_data_files_are_reported_at_the_data_path_line(tmp_path, make, expected):
    target = make(tmp_path)
    preset = write(tmp_path, "p.yaml", f"name: p\ndata:\n  kind: text_file\n  path: {target.name}\n")
    message = error_of(preset)
    assert message.startswith(f"{preset}:4: data.path: '{target}' "), message
    assert expected in message, message


def test_relative_data_path_resolves_against_the_preset_folder(tmp_path, monkeypatch):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    write(lessons, "corpus.txt", "the cat sat on the mat.\n" * 10)
    write(lessons, "p.yaml", "data:\n  kind: text_file\n  path: corpus.txt\nmodel:\n  seq_len: 16\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the path must not resolve against the working folder
    cfg = load_preset("lessons/p.yaml")
    assert cfg.data.path == str(lessons / "corpus.txt") and Path(cfg.data.path).is_absolute()
    short = write(lessons, "short.yaml", "data:\n  kind: text_file\n  path: corpus.txt\n")  # seq_len 64
    message = error_of(short)
    assert ":3: data.path: the validation split (last 10%)" in message
    assert "fewer than model.seq_len + 1 = 65" in message


# -------------------------------------------------------------------------------------- dump, override
@pytest.mark.parametrize("name", SHIPPED)
def test_dump_then_parse_gives_the_same_config(name):
    cfg = load_preset(name)
    text = dump_config(cfg)
    assert parse_preset_text(text, "config.yaml") == cfg
    assert text.index("model:") < text.index("optim:") < text.index("data:") < text.index("train:")


def test_dump_round_trips_unusual_values(tmp_path):
    write(tmp_path, "c.txt", "ab \n\"'\t: #é" * 40)
    cfg = parse_preset_text("data:\n  kind: text_file\n  path: c.txt\nmodel:\n  seq_len: 8\n  vocab_size: 12\n",
                            "t.yaml", tmp_path)
    cfg = dataclasses.replace(cfg, description="two lines\n  indented: yes\n", name="yes",
                              sampling=dataclasses.replace(cfg.sampling, prompt=" #: '\"é", temperature=1e-8))
    assert parse_preset_text(dump_config(cfg), "config.yaml") == cfg


def test_override_changes_only_what_it_names():
    base = load_preset("tiny-gpt")
    new = override(base, **{"train.steps": 10, "train.seed": 3})
    assert (new.train.steps, new.train.seed) == (10, 3)
    assert new == dataclasses.replace(base, train=dataclasses.replace(base.train, steps=10, seed=3))
    assert base.train.steps == 300  # the original stays as it was
    text = override(base, **{"optim.lr": "3e-4", "model.n_layer": "3", "model.vocab_size": "null",
                             "model.residual": "false", "sampling.prompt": "the"})
    assert (text.optim.lr, text.model.n_layer, text.model.vocab_size, text.model.residual) == (3e-4, 3, None, False)
    assert text.sampling.prompt == "the"


@pytest.mark.parametrize("dotted,expected", [
    ({"train.steps": "abc"}, "--steps: expected an integer, got 'abc'"),
    ({"train.steps": 0}, "--steps: must be at least 1, got 0"),
    ({"train.steps": 2.5}, "--steps: expected an integer, got 2.5"),
    ({"train.seed": -1}, "--train.seed: must be at least 0, got -1"),
    ({"optim.lr": True}, "--lr: expected a number, got true"),
    ({"model.n_head": 5}, "--n-head: 5 does not divide model.d_model 64"),
    ({"model.d_model": 66}, "--d-model: 66 is not divisible by model.n_head 4"),
    ({"train.stepz": 3}, "--stepz: is not a setting (did you mean 'train.steps'?)"),
    ({"data.kind": "text_file"}, "--kind: text_file needs data.path"),
    ({"data.kind": "text_file", "data.path": "no-such-file.txt"}, "does not exist"),
])
def test_override_reports_a_bad_value_with_flag_naming(dotted, expected):
    with pytest.raises(PresetError) as info:
        override(load_preset("tiny-gpt"), **dotted)
    assert expected in str(info.value) and str(info.value).startswith("--"), str(info.value)


def test_override_uses_the_flag_names_it_is_given():
    with pytest.raises(PresetError, match=r"^--iters: must be at least 1, got -5$"):
        override(load_preset("tiny-gpt"), flag_names={"train.steps": "--iters"}, **{"train.steps": -5})


# -------------------------------------------------------------------------------------- finding presets
def test_find_preset_accepts_names_files_and_says_what_exists(tmp_path):
    assert find_preset("tiny-gpt") == find_preset("tiny-gpt.yaml") == presets_dir() / "tiny-gpt.yaml"
    own = write(tmp_path, "mine.yaml", "name: mine\n")
    assert find_preset(str(own)) == own
    with pytest.raises(PresetError) as info:
        find_preset("tiny-gtp")
    assert "no preset named 'tiny-gtp'" in str(info.value) and "did you mean 'tiny-gpt'?" in str(info.value)
    assert "available: " + ", ".join(p.name for p in list_presets()) in str(info.value)
    with pytest.raises(PresetError, match="does not exist"):
        find_preset(tmp_path / "other.yaml")
    with pytest.raises(PresetError, match="is a folder"):
        load_preset(tmp_path)


def test_list_presets_of_a_folder_reads_the_first_description_line(tmp_path):
    write(tmp_path, "b.yaml", "name: b\ndescription: |\n  First line.\n  Second line.\n")
    write(tmp_path, "a.yaml", "name: a\n")
    write(tmp_path, "notes.txt", "not a preset")
    infos = list_presets(tmp_path)
    assert [(i.name, i.description) for i in infos] == [("a", ""), ("b", "First line.")]


# ---------------------------------------------------------------------------------- other preset kinds
@dataclass(frozen=True)
class Contestant:
    optimizer: str = "sgd"
    lr: float = 0.1


@dataclass(frozen=True)
class RaceConfig:
    name: str = "race"
    steps: int = 100
    tags: tuple[str, ...] = ()
    target: float | None = None
    first: Contestant = field(default_factory=Contestant)
    pair: tuple[int, int] = (1, 2)


def check_race(cfg, ctx):
    if cfg.target is not None and cfg.target > cfg.steps:
        ctx.fail("target", f"{cfg.target} is beyond steps {cfg.steps}", at=("target",))
    return dataclasses.replace(cfg, name=cfg.name.strip())


def even(v):
    return None if v % 2 == 0 else f"must be even, got {v}"


RACE_RULES = {"first.optimizer": one_of(("sgd", "adam")), "first.lr": positive, "steps": even}


@pytest.fixture(autouse=True)
def race_kind():
    """A lesson of the test's own, registered only while a test of this file runs."""
    lessons.register(lessons.Lesson("test-race", "Test race", RaceConfig, RACE_RULES, check_race,
                                    run=lambda cfg, steps, cancelled: [], summary=lambda cfg, frames: ""))
    yield
    lessons.unregister("test-race")


def test_another_kind_loads_through_the_same_machinery(tmp_path):
    path = write(tmp_path, "race.yaml", "kind: test-race\nname: ' fast '\ntags: [a, b]\ntarget: 7\n"
                                        "first:\n  optimizer: adam\n  lr: 1\npair: [3, 4]\n")
    cfg = load_any(path)
    assert cfg == RaceConfig(name="fast", tags=("a", "b"), target=7.0, first=Contestant("adam", 1.0), pair=(3, 4))
    text = dump_config(cfg)
    assert text.startswith("kind: test-race\n") and load_any(write(tmp_path, "again.yaml", text)) == cfg
    with pytest.raises(PresetError, match=r"race.yaml: kind: this is a 'test-race' preset, not a gpt preset"):
        load_preset(path)


@pytest.mark.parametrize("text,expected", [
    ("kind: test-race\nfirst:\n  optimizer: adm\n", ":3: first.optimizer: 'adm' is not one of sgd, adam"),
    ("kind: test-race\nsteps: 3\n", ":2: steps: must be even, got 3"),
    ("kind: test-race\ntags: [a, [b]]\n", ":2: tags[1]: expected a string, got a list"),
    ("kind: test-race\npair: [1, 2, 3]\n", ":2: pair: expected a list of 2 items, got 3"),
    ("kind: test-race\ntarget: 500\n", ":2: target: 500.0 is beyond steps 100"),
    ("kind: test-race\nfirst:\n  lr: 0\n", ":3: first.lr: must be greater than 0"),
])
def test_another_kind_gets_the_same_messages(tmp_path, text, expected):
    with pytest.raises(PresetError) as info:
        load_any(write(tmp_path, "race.yaml", text))
    assert f"race.yaml{expected}" in str(info.value), str(info.value)


def test_parse_dataclass_can_be_called_on_a_node_directly():
    import yaml

    from simulator.presets import ParseContext

    node = yaml.compose("optimizer: adam\nlr: 2\n", Loader=yaml.SafeLoader)
    ctx = ParseContext("inline", Path("."), {"x.lr": positive})
    assert parse_dataclass(Contestant, node, ctx, "x") == Contestant("adam", 2.0)
    assert ctx.lines == {"x.optimizer": 1, "x.lr": 2}


def test_a_preset_that_is_not_utf8_is_reported_with_line_and_offset(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    assert error_of(path) == (f"{path}:2: not UTF-8 text: byte 0xe9 at byte offset 24 cannot be decoded "
                              "(save the file as UTF-8)")


# ---- one declaration per setting ----

@dataclass(frozen=True)
class Declared:
    steps: int = setting(10, positive_int, live=True, help="How many.")
    mode: str = setting("a", one_of(("a", "b")))
    free: int = 3


def test_a_field_brings_its_own_rule_to_the_yaml_walk():
    import yaml

    from simulator.presets import ParseContext

    def parse(text, rules=None):
        return parse_dataclass(Declared, yaml.compose(text, Loader=yaml.SafeLoader),
                               ParseContext("d.yaml", Path("."), rules or {}), "")

    assert parse("steps: 3\nmode: b\nfree: -5\n") == Declared(3, "b", -5)
    with pytest.raises(PresetError, match=r"^d.yaml:1: steps: must be at least 1, got 0$"):
        parse("steps: 0\n")
    with pytest.raises(PresetError, match=r"^d.yaml:2: mode: 'c' is not one of a, b$"):
        parse("steps: 1\nmode: c\n")
    # a kind's own rule for a path comes before the field's
    assert parse("steps: 0\n", {"steps": lambda v: None}) == Declared(0)
    with pytest.raises(PresetError, match=r"^d.yaml:1: free: must be even, got 3$"):
        parse("free: 3\n", {"free": even})
    # an override checks the declared rule as well
    assert override(Declared(), steps=4) == Declared(4)
    with pytest.raises(PresetError, match=r"^--steps: must be at least 1, got 0$"):
        override(Declared(), steps=0)


def test_every_setting_is_declared_with_help_and_the_gpt_rules_come_from_the_declarations():
    from simulator.yamlconfig import leaf_paths

    assert list(C.SETTINGS) == leaf_paths(RunConfig)
    for path, s in C.SETTINGS.items():
        assert s.help and s.help.endswith("."), path
        assert RULES.get(path) is s.rule
    assert RULES["optim.lr"](0.0) == "must be greater than 0, got 0.0"


def test_live_fields_are_read_from_the_declarations():
    assert C.LIVE_FIELDS == frozenset(
        ["model.dropout", "model.dropout_mode", "train.eval_every", "train.stats_every", "train.watch_layer",
         "train.watch_head", "train.checkpoint_every", "train.steps", "train.eval_batches",
         "train.early_stopping.patience", "train.early_stopping.min_delta", "train.early_stopping.restore_best"]
        + [f"optim.{f.name}" for f in dataclasses.fields(C.OptimConfig)]
        + [f"sampling.{f.name}" for f in dataclasses.fields(C.SamplingConfig)])
    assert C.is_live("optim.lr") and not C.is_live("model.n_layer") and not C.is_live("name")
    base = RunConfig()
    assert not C.is_structural_change(base, override(base, **{"optim.lr": 0.01, "train.steps": 5}))
    assert C.is_structural_change(base, override(base, **{"model.n_layer": 3}))
    assert RunConfig() == RunConfig() and hash(RunConfig().optim) == hash(C.OptimConfig())


def test_optimizer_cross_field_checks_are_one_copy_for_presets_and_the_optimizer():
    from simulator.optim import OptimError, check_optim, optim_problem

    for changes, line in [("lr: 0.001\n  min_lr: 0.01", 3), ("name: momentum", 2),
                          ("name: ftrl\n  weight_decay: 0.1", 3), ("warmup_steps: 3000\n  decay_steps: 600", 2)]:
        with pytest.raises(PresetError) as info:
            parse_preset_text(f"optim:\n  {changes}\n", "o.yaml")
        cfg = C.OptimConfig(**yaml_mapping(changes))
        problem = optim_problem(cfg)
        assert str(info.value) == f"o.yaml:{line}: {problem.sentence()}"
        with pytest.raises(OptimError) as own:
            check_optim(cfg)
        assert str(own.value) == problem.sentence()


def yaml_mapping(text: str) -> dict:
    import yaml

    return yaml.safe_load(text.replace("\n  ", "\n"))
