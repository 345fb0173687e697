"""The translation layer: language choice, fallback, plural forms, listeners, and complete catalogs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import polib
import pytest

from main import main
from simulator import i18n, i18n_catalogs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_language():
    before = i18n.language()
    yield
    i18n.set_language(before)


@pytest.mark.parametrize(
    "code, expected",
    [("zh_CN.UTF-8", "zh_CN"), ("zh-Hans", "zh_CN"), ("zh", "zh_CN"), ("en_GB.UTF-8", "en"), ("de_DE", "en")],
)
def test_locale_names_map_to_a_catalog(code, expected):
    assert i18n.normalize(code) == expected


def test_the_system_language_is_read_in_gettexts_order(monkeypatch):
    for var in ("TRANSFORMER_SIM_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    assert i18n.system_language() == "en"
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert i18n.system_language() == "zh_CN"
    monkeypatch.setenv("LC_ALL", "C")  # C says nothing: the next variable decides
    assert i18n.system_language() == "zh_CN"
    monkeypatch.setenv("LANGUAGE", "en_US:zh_CN")
    assert i18n.system_language() == "en"
    monkeypatch.setenv("TRANSFORMER_SIM_LANG", "zh")
    assert i18n.system_language() == "zh_CN"


def test_translation_plural_and_fallback_from_a_catalog(tmp_path, monkeypatch, restore_language):
    po = polib.POFile()
    po.append(polib.POEntry(msgid="Loss", msgstr="损失"))
    po.append(polib.POEntry(msgid="{n} step", msgid_plural="{n} steps", msgstr_plural={0: "{n} 步"}))
    po.append(polib.POEntry(msgid="Draft", msgstr="草稿", flags=["fuzzy"]))
    (tmp_path / "zh_CN").mkdir()
    po.save(str(tmp_path / "zh_CN" / "t.po"))
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    monkeypatch.setattr(i18n, "_tables", {})
    seen = []
    unregister = i18n.on_language_change(seen.append)
    try:
        i18n.set_language("en")
        assert i18n._("Loss") == "Loss"
        assert i18n.ngettext("{n} step", "{n} steps", 2) == "{n} steps"
        i18n.set_language("zh_CN")
        assert seen[-1] == "zh_CN"
        assert i18n._("Loss") == "损失"
        assert i18n.ngettext("{n} step", "{n} steps", 3).format(n=3) == "3 步"
        assert i18n._("Draft") == "Draft"  # a fuzzy entry is not trusted
        assert i18n._("Not in any catalog") == "Not in any catalog"
        assert i18n.N_("Loss") == "Loss"  # marks, never translates
    finally:
        unregister()


def test_the_extractor_finds_literal_calls_only(tmp_path, monkeypatch):
    src = tmp_path / "m.py"
    src.write_text('x = _("One")\ny = N_("Two")\nz = ngettext("{n} file", "{n} files", k)\nw = _(name)\n')
    found = i18n_catalogs.python_messages(src)
    assert [(m, p) for m, p, _line in found] == [("One", None), ("Two", None), ("{n} file", "{n} files")]


def test_placeholders_are_compared_by_name():
    assert i18n_catalogs.placeholders("step {step} of {total:,}") == ["step", "total"]
    assert i18n_catalogs.placeholders("第 {step} 步，共 {total:,} 步") == ["step", "total"]


@pytest.mark.parametrize("area", ["ui", "plots", "cli", "lessons"])
def test_every_message_is_translated_in_both_languages(area):
    """Each message of the code has a non-fuzzy translation with the same placeholders in en and zh_CN."""
    found = i18n_catalogs.problems(area)
    assert not found, f"{len(found)} catalog problems, first: " + "; ".join(found[:5])


# ------------------------------------------------------------------------------- the CLI in Chinese
BROKEN = "name: broken\nmodel:\n  d_model: 64\n  n_head: 4\noptim:\n  lr: -0.5\n"


def _in(code, text):
    """`text` (a msgid) in language `code`, read from the catalogs as the program reads them."""
    before = i18n.language()
    i18n.set_language(code)
    try:
        return i18n._(text)
    finally:
        i18n.set_language(before)


def test_check_of_a_broken_preset_is_one_chinese_line_with_file_line_and_key(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    assert main(["--lang", "zh_CN", "check", str(bad)]) == 2
    zh = capsys.readouterr().err
    assert main(["check", str(bad)]) == 2  # the language was the command's only: English again
    en = capsys.readouterr().err
    assert en == f"error: {bad}:6: optim.lr: must be greater than 0, got -0.5\n"
    assert zh.count("\n") == 1 and f"{bad}:6: optim.lr: " in zh and "-0.5" in zh
    # the sentence is the catalog's, with the file, line, key and value kept
    what = _in("zh_CN", "must be greater than {lo}, got {value!r}").format(lo=0, value=-0.5)
    assert what != "must be greater than 0, got -0.5" and re.search(r"[\u4e00-\u9fff]", what)
    assert zh == _in("zh_CN", "error: {message}").format(message=f"{bad}:6: optim.lr: {what}") + "\n"


def test_lang_may_follow_the_command_and_a_bad_code_is_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN.replace("lr: -0.5", "lrr: 0.1"))
    assert main(["check", str(bad), "--lang=zh_CN"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6: optim.lrr: " in err and "'lrr'" in err and "'lr'" in err and re.search(r"[\u4e00-\u9fff]", err)
    assert main(["--lang", "fr", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lang" in err and "zh_CN" in err


def test_the_environment_variable_chooses_chinese_too(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    env = dict(os.environ, TRANSFORMER_SIM_LANG="zh_CN", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "check", str(bad)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and f"{bad}:6: optim.lr: " in done.stderr
    assert done.stderr.startswith(_in("zh_CN", "error: {message}").split("{")[0])


def _verdicts(out: str) -> list[str]:
    return [line.strip()[0] for line in out.splitlines() if line.strip()[:1] in ("✓", "✗")]


@pytest.mark.parametrize("card", ["leaf-flower", "worked-examples"])
def test_a_card_in_chinese_shows_its_translated_text_and_the_same_verdicts(card, capsys):
    from simulator.lessons.cards import load_card

    en_code = main(["lesson", card])
    en = capsys.readouterr().out
    zh_code = main(["--lang", "zh_CN", "lesson", card])
    zh = capsys.readouterr().out
    assert zh_code == en_code and _verdicts(zh) == _verdicts(en) and _verdicts(en)
    _cfg, c = load_card(card)
    for text in (c.title, c.prediction.question, *(cl.text for cl in c.claims)):
        translated = _in("zh_CN", text.strip())
        assert translated != text.strip() and re.search(r"[\u4e00-\u9fff]", translated)
        assert "".join(translated.split())[:20] in "".join(zh.split())  # wrapped, but there
        assert text.strip()[:30] in " ".join(en.split())
    for frame in ("Steps:", "Claims:", "Runs:"):
        assert frame in en and _in("zh_CN", frame) in zh and frame not in zh


def test_chinese_card_text_wraps_by_terminal_columns_and_keeps_latin_words_whole(restore_language):
    from simulator.lessons.cards import _wrap
    from simulator.textcols import display_width

    text = "把 model.attention.scale 设为 sqrt_dk，" * 12 + "然后走同样的一步。"
    lines = _wrap(text, "  1. ")
    assert len(lines) > 2 and all(display_width(line) <= 110 for line in lines)
    assert all(line.startswith("       ") for line in lines[1:])
    joined = "".join(line.strip() for line in lines)
    assert joined.count("model.attention.scale") == 12 and joined.count("sqrt_dk") == 12


def test_chinese_preset_list_shows_the_first_line_of_each_translated_description(capsys):
    from simulator.presets import list_presets

    assert main(["--lang", "zh_CN", "presets"]) == 0
    zh = capsys.readouterr().out
    i18n.set_language("zh_CN")
    try:
        shown = {p.name: p.description for p in list_presets()}
    finally:
        i18n.set_language("en")
    english = {p.name: p.description for p in list_presets()}
    for name, summary in shown.items():
        assert summary in zh
        if english[name]:
            assert summary != english[name] and "\n" not in summary


def test_help_and_argparse_words_are_translated(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--lang", "zh_CN", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert _in("zh_CN", "usage: ") in out and _in("zh_CN", "train headless and write a run folder") in out
    assert "--lang" in out and "usage:" not in out


@pytest.mark.parametrize("body, key, line", [
    ("name: n\noptim:\n  name: nesterov\n  momentum: 0.9\n  dampening: 0.5\n", "optim.dampening", 5),  # optimizer's own
    ("name: n\nsampling:\n  max_new: 2000000\n", "sampling.max_new", 3),  # the sampler's own check
    ("name: n\nmodel:\n  d_model: 64\n  n_head: 5\n", "model.n_head", 4),  # a cross-field check with a hint
    ("name: n\ntrain:\n  stepz: 3\n", "train.stepz", 3),  # did you mean
])
def test_every_kind_of_preset_mistake_keeps_file_line_and_key_in_chinese(tmp_path, capsys, body, key, line):
    """The optimizer's and sampler's messages are parsed for their key (presets._backstop): it must survive."""
    bad = tmp_path / "p.yaml"
    bad.write_text(body)
    assert main(["check", str(bad)]) == 2
    en = capsys.readouterr().err
    assert main(["--lang", "zh_CN", "check", str(bad)]) == 2
    zh = capsys.readouterr().err
    where = f"{bad}:{line}: {key}: "
    assert where in en and where in zh and zh.count("\n") == 1 and zh != en
    assert re.search(r"[\u4e00-\u9fff]", zh.split(where)[1])
    numbers = re.findall(r"\d[\d,.]*", en.split(where)[1])
    assert all(n in zh for n in numbers)  # every number of the English sentence is in the Chinese one


# ------------------------------------------------------------------------------- the memory bill in Chinese
def _cell_ends(line: str) -> list[int]:
    """Terminal columns at which each cell of a table line ends (cells are two or more spaces apart)."""
    from simulator.textcols import display_width

    return [display_width(line[:m.end()]) for m in re.finditer(r"\S+(?: \S+)*", line)]


def _tables(out: str, first_cells: list[str], last_cells: list[str]) -> list[list[str]]:
    """The lines of each table, in order: from a line starting with its `first_cells` heading to the next one
    starting with its `last_cells` label."""
    lines, found, end = out.splitlines(), [], 0
    for head, last in zip(first_cells, last_cells, strict=True):
        start = next(i for i in range(end, len(lines)) if lines[i].startswith(head))
        end = next(i for i in range(start, len(lines)) if lines[i].startswith(last))
        found.append(lines[start:end + 1])
    return found


def test_the_memory_tables_in_chinese_have_translated_headings_the_same_numbers_and_aligned_columns(capsys):
    argv = ["memory", "tiny-gpt", "--what-if", "7b"]
    assert main(argv) == 0
    en = capsys.readouterr().out
    assert main(["--lang", "zh_CN", *argv]) == 0
    zh = capsys.readouterr().out
    headings = ["row", "predicted", "measured", "weights stored as", "bits per weight",
                "full fine-tuning with AdamW, GB", "mixed precision", "activations kept for the backward",
                "fp32 master weights"]
    for text in headings:
        translated = _in("zh_CN", text)
        assert text in en and translated in zh and re.search(r"[\u4e00-\u9fff]", translated)
        assert not re.search(rf"(^|  ){re.escape(text)}(  |$)", zh, re.M)  # the English cell is gone
    # every number of the English report, and no other, in the Chinese one (sentences may reorder them)
    number = r"[0-9](?:[0-9,.]*[0-9])?"
    assert sorted(re.findall(number, en)) == sorted(re.findall(number, zh))
    # each table's numbers end in the same terminal column on every line, its heading's too
    firsts = {code: [_in(code, t) for t in ("row", "weights stored as", "weights stored as",
                                             "full fine-tuning with AdamW, GB")] for code in ("en", "zh_CN")}
    lasts = {code: [_in(code, t) for t in ("total", "bits per weight", "GB", "total")] for code in ("en", "zh_CN")}
    en_tables = _tables(en, firsts["en"], lasts["en"])
    zh_tables = _tables(zh, firsts["zh_CN"], lasts["zh_CN"])
    for en_rows, zh_rows in zip(en_tables, zh_tables, strict=True):
        assert len(en_rows) == len(zh_rows) >= 2
        for rows in (en_rows, zh_rows):
            numbers = len(_cell_ends(rows[1])) - 1  # the label's cell, then right-aligned ones
            ends = {tuple(_cell_ends(row)[-numbers:]) for row in rows}
            assert len(ends) == 1, rows
        for e, z in zip(en_rows[1:], zh_rows[1:], strict=True):  # the same cells of numbers, row by row
            assert re.split(r"\s{2,}", e.strip())[1:] == re.split(r"\s{2,}", z.strip())[1:]
    # the Chinese labels are wider on a terminal than in characters: padding by len() would not line them up
    assert any(len(row) != len(zh_tables[0][0]) for row in zh_tables[0])


def test_the_fine_tuning_summary_in_chinese_keeps_its_numbers_and_columns(restore_language):
    from simulator.lessons.finetune import FinetuneConfig, FinetuneFrame, FinetunePoint, Learner, summary

    cfg = FinetuneConfig(ranks=(4,), qlora_rank=4)
    learners = (Learner("full", 0, 1000, 17000, 90000, base_bytes=4000),
                Learner("LoRA r=4", 4, 100, 1700, 80000, base_bytes=4000),
                Learner("QLoRA r=4", 4, 100, 1700, 70000, base_bytes=1500, nf4_bytes=500, nf4_float32_bytes=3500))
    points = [FinetunePoint(x.label, 1.0, 2.0 + i / 7, 2.5 - i / 9) for i, x in enumerate(learners)]
    frame = FinetuneFrame(3, points, learners, base_new=3.25, base_old=2.125, stored={"float32": 2.125, "nf4": 2.25},
                          base_loss={"float32": (3.25, 2.125), "nf4": (3.5, 2.375)})
    i18n.set_language("en")
    en = summary(cfg, [frame])
    i18n.set_language("zh_CN")
    zh = summary(cfg, [frame])
    number = r"[0-9](?:[0-9,.]*[0-9])?"
    assert sorted(re.findall(number, en)) == sorted(re.findall(number, zh))
    for text in ("learner", "state bytes", "new text", "full"):
        assert _in("zh_CN", text) in zh and re.search(r"[\u4e00-\u9fff]", _in("zh_CN", text))
    for out, head in ((en, "learner"), (zh, _in("zh_CN", "learner"))):
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith(head))
        table = lines[start:start + 1 + len(learners)]
        assert len({tuple(_cell_ends(row)[-4:]) for row in table}) == 1, table  # four right-aligned columns
