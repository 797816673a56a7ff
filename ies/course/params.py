"""Notebook parameters as their declared types: one cast for every course notebook.

Papermill hands a notebook the values given on its command line (``-p THRESHOLD 5e-4``) as it parsed
them, and a word it cannot parse as a number stays a string, so ``-p THRESHOLD abc`` reaches the
notebook as ``"abc"``. :func:`cast_params` turns every parameter into the type its ``parameters`` cell
declares, or stops with one line that names the parameter, the expected type and the value.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping

#: The words a ``bool`` parameter accepts, lower-cased (papermill passes ``-p RESUME true`` as a string).
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off", "")


class ParameterError(ValueError):
    """A notebook parameter that cannot be read as its declared type."""


def cast_value(name: str, value: object, kind: type) -> object:
    """``value`` as ``kind`` (``str``, ``int``, ``float`` or ``bool``), or :class:`ParameterError`
    naming ``name``. An ``int`` takes a whole float (``5.0``) or its text; a ``float`` an int or its
    text, finite (not ``nan`` or ``inf``); a ``bool`` one of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` or
    0 / 1; a ``bool`` value is never taken for a number."""
    if kind is str:
        return value if isinstance(value, str) else str(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise _error(name, value, "a bool (True or False)")
    if kind not in (int, float):
        raise TypeError(f"{name}: cast_params handles str, int, float and bool, not {kind!r}")
    if isinstance(value, bool):
        raise _error(name, value, f"{'an int' if kind is int else 'a float'}, not a bool")
    if kind is int and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)  # exact, also beyond a float's 53 bits
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise _error(name, value, "an int" if kind is int else "a float (e.g. 0.001)") from None
    if kind is float:
        if not math.isfinite(number):
            raise _error(name, value, "a finite float")
        return number
    if isinstance(value, int):
        return value
    if not number.is_integer():
        raise _error(name, value, "an int (a whole number)")
    return int(number)


def _error(name: str, value: object, expected: str) -> ParameterError:
    return ParameterError(f"parameter {name} must be {expected}, got {value!r}")


def cast_params(namespace: MutableMapping[str, object], **types: type) -> None:
    """Replace each ``NAME`` of ``types`` in ``namespace`` (a notebook's ``globals()``) by its value
    cast to ``types[NAME]`` (see :func:`cast_value`). All are checked before any is replaced, so a
    bad value leaves the namespace as it was; a name missing from ``namespace`` is an error too.

    >>> ns = {"THRESHOLD": "5e-4", "EPOCHS": 3.0, "RESUME": "true"}
    >>> cast_params(ns, THRESHOLD=float, EPOCHS=int, RESUME=bool)
    >>> ns
    {'THRESHOLD': 0.0005, 'EPOCHS': 3, 'RESUME': True}
    """
    missing = [name for name in types if name not in namespace]
    if missing:
        raise ParameterError(f"no parameter {', '.join(missing)} in this notebook (cast_params was asked for it)")
    cast = {name: cast_value(name, namespace[name], kind) for name, kind in types.items()}
    namespace.update(cast)
