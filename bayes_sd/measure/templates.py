"""Command templates of a sweep plan: placeholders, rendering, and the secrets kept out of records.

A template is an argument list; a string is split like a shell line (``shlex``) *before* the
placeholders are filled, so a value with spaces stays one argument and JSON braces need no escaping:
only ``{identifier}`` is a placeholder, and an unknown one is an error.
"""

from __future__ import annotations

import re
import shlex

__all__ = ["PlanError", "PLACEHOLDER", "format_value", "placeholders", "render", "split_command", "secrets", "redact"]

#: a placeholder: ``{identifier}``
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PlanError(ValueError):
    """A plan that cannot be run; the message names the file, the key and the fix (one line)."""


def placeholders(template) -> set[str]:
    """The ``{identifier}`` placeholders of a template (a string or a list of arguments)."""
    items = [template] if isinstance(template, str) else list(template)
    return {m for item in items for m in PLACEHOLDER.findall(str(item))}


def format_value(value) -> str:
    """A placeholder value as text: numbers without a trailing ``.0`` (2.0 -> "2")."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render(template, variables: dict, where: str = "template") -> list[str]:
    """Fill the placeholders of a command template; returns the argument list.

    Parameters
    ----------
    template : str or list of str
        A string is split like a shell line first (``shlex.split``), then each argument is filled,
        so values with spaces stay one argument and JSON braces need no escaping.
    variables : dict
        Placeholder name -> value (numbers written without a trailing ``.0``).
    where : str
        Where the template comes from, for the error message.

    Raises
    ------
    PlanError
        On a placeholder ``variables`` does not define.
    """
    args = split_command(template, where)
    out = []
    for arg in args:
        def fill(m, arg=arg):
            name = m.group(1)
            if name not in variables:
                raise PlanError(f"{where}: unknown placeholder {{{name}}} in {arg!r}; defined here: "
                                f"{', '.join(sorted(variables))}")
            return format_value(variables[name])

        out.append(PLACEHOLDER.sub(fill, arg))
    return out


def split_command(template, where: str) -> list[str]:
    """The arguments of a command template: a string split like a shell line, or the list as strings."""
    if isinstance(template, str):
        try:
            return shlex.split(template)
        except ValueError as e:
            raise PlanError(f"{where}: cannot split the command ({e}); check its quotes") from None
    if isinstance(template, list | tuple) and all(isinstance(a, str | int | float) for a in template):
        return [str(a) for a in template]
    raise PlanError(f"{where}: give the command as a string or a list of strings")


_SECRET = re.compile(r"token|key|secret|password|passwd|credential", re.I)


def secrets(raw: dict) -> list[str]:
    """Values of a plan that must not be written out: environment variables whose name says token,
    key, secret or password, and GuideLLM's ``backend.api_key`` (values of 4 characters or more).

    Parameters
    ----------
    raw : dict
        The plan as read.
    """
    out = []
    tables = [raw.get("server", {}), raw.get("client", {}), *raw.get("configurations", [])]
    for t in tables:
        env = t.get("env", {}) if isinstance(t, dict) else {}
        if isinstance(env, dict):
            out += [str(v) for k, v in env.items() if _SECRET.search(str(k)) and len(str(v)) >= 4]
    backend = raw.get("client", {}).get("backend", {}) if isinstance(raw.get("client"), dict) else {}
    if isinstance(backend, dict) and len(str(backend.get("api_key") or "")) >= 4:
        out.append(str(backend["api_key"]))
    return sorted(set(out), key=len, reverse=True)


def redact(obj, values: list[str]):
    """``obj`` (dicts, lists, strings) with every secret value replaced by ``***``.

    Parameters
    ----------
    obj : dict, list or str
    values : list of str
        From :func:`secrets`.
    """
    if isinstance(obj, dict):
        return {k: redact(v, values) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v, values) for v in obj]
    if isinstance(obj, str):
        for v in values:
            obj = obj.replace(v, "***")
    return obj
