"""A griffe extension for the API pages (``mkdocs.yml``): the docstrings use a few
reStructuredText habits that markdown would print literally. ``:func:`x``` (and ``:class:``,
``:mod:``, ``:meth:``, ``:attr:``, ``:data:``, ``:obj:``, ``:exc:``) become ``x`` as code, and a
paragraph ending in ``::`` (a literal block follows) ends in ``:``. Nothing else is changed."""
from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):`~?([^`]+)`")
LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(r"`\1`", obj.docstring.value)
            obj.docstring.value = LITERAL.sub(r"\1:", text)
