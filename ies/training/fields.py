"""Typed dataclass fields from text: attribute docstrings, casting strings (CLI, papermill, JSON) to a
field's type, and type checks with the field named. ``Config`` uses these; they know nothing of it."""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import types
import typing


@functools.cache
def attribute_docs(cls: type) -> dict[str, str]:
    """The docstring under each annotated attribute of class ``cls`` (white space folded), read once
    from its source."""
    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


@functools.cache
def base_types(cls: type) -> dict[str, type]:
    """Each field's type, with ``X | None`` read as ``X``."""
    hints = typing.get_type_hints(cls)
    for name, hint in hints.items():
        if isinstance(hint, types.UnionType):
            hints[name] = next(a for a in typing.get_args(hint) if a is not type(None))
    return hints


def cast(name: str, kind: type, value: typing.Any) -> typing.Any:
    """Cast ``value`` (possibly a string) to ``kind`` (bool, int, float or str); ValueError naming
    ``name`` if impossible. ``"1e3"`` is an int, ``"yes"``/``"off"`` are booleans, ``None`` is ``""``."""
    if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off", ""):
                return False
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
        elif kind is int:
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)  # exact, also beyond a float's 53 bits
            if isinstance(value, str):
                number = float(value.strip())
                if number.is_integer():
                    return int(number)
            elif isinstance(value, float) and value.is_integer():
                return int(value)
        elif kind is float:
            if isinstance(value, (int, str)) and not isinstance(value, bool):
                return float(value)
        elif kind is str:
            if value is None:
                return ""
            if hasattr(value, "__fspath__"):
                return str(value)
    except ValueError:
        pass
    raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")


def check_type(name: str, kind: type, value: typing.Any) -> None:
    """ValueError naming ``name`` unless ``value`` is a ``kind`` (an int passes as a float, a bool never
    as a number)."""
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r} (use Config.from_dict to cast strings)")


def suggest(word: str, options: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
