"""Untrusted text shown through Streamlit's markdown as exactly the characters given.

``ui/app.py`` runs the page when imported, so the escaping lives here where tests
can reach it.
"""

from __future__ import annotations

# Every ASCII punctuation character CommonMark lets a backslash escape, plus what
# Streamlit adds to markdown: ``:emoji:`` and ``:red[colour]`` directives (``:``),
# LaTeX (``$``), and entities such as ``&lt;`` (``&``), which would otherwise show as
# the character they name rather than the ones typed.
_MARKDOWN_SPECIALS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def escape_markdown(text: str) -> str:
    """Text shown through markdown as exactly the characters given, never as markup."""
    return "".join("\\" + c if c in _MARKDOWN_SPECIALS else c for c in text)
