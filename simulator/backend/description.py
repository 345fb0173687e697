"""What runs the kernels, in words, kept as a message id and its fields so each reader translates it.

A backend is built once per process, but the window can switch language while it runs: the words are
composed when read (`description`), and the window gets the parts (`description_msg`) to compose again
after a switch. Field values are message ids too where they are fixed sentences (the probe's reasons);
anything else (an exception's text) passes through unchanged.
"""

from __future__ import annotations

from simulator.i18n import _


def compose(msgid: str, fields: dict) -> str:
    """`_(msgid)` with its fields, each translated too when it is a known message."""
    if not fields:
        return _(msgid)
    return _(msgid).format(**{k: _(v) if isinstance(v, str) else v for k, v in fields.items()})


class Described:
    """A backend's description: `describe(msgid, **fields)` sets it, `description` reads it now."""

    description_msg: tuple[str, dict] = ("", {})

    def describe(self, msgid: str, **fields) -> None:
        self.description_msg = (msgid, dict(fields))

    @property
    def description(self) -> str:
        return compose(*self.description_msg)
