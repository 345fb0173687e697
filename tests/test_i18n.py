"""The translation layer: language choice, fallback, plural forms, listeners, and complete catalogs."""

import polib
import pytest

from simulator import i18n, i18n_catalogs


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


@pytest.mark.parametrize("area", ["ui", "plots", "cli"])
def test_every_message_is_translated_in_both_languages(area):
    """Each message of the code has a non-fuzzy translation with the same placeholders in en and zh_CN."""
    found = i18n_catalogs.problems(area)
    assert not found, f"{len(found)} catalog problems, first: " + "; ".join(found[:5])
