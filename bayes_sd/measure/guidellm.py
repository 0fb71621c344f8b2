"""The ``guidellm run`` command of one sweep point, in the argument syntax of GuideLLM 0.8.

GuideLLM 0.8 takes each structured option as ``kind=...,key=value`` (values read as YAML) or as a
JSON object; a value holding a comma, an ``=`` or anything YAML would read as another type (a
nested table, ``on``, ``1:30``) is passed as JSON instead. One point is one benchmark: a single
rate (``--profile kind=constant,rate=R``) or a single stream count (``kind=concurrent,streams=N``),
bounded by ``--constraint kind=max_requests,count=N`` and ``--constraint kind=max_duration,seconds=S``,
written with ``--output kind=json,path=...``. The configuration goes in as ``--label``s, so the
report names its own verifier, drafter, k, hardware and dataset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import yaml

__all__ = ["guidellm_command", "option_value"]


def _plain(value) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list | tuple):
        return False
    if isinstance(value, int | float):
        return True
    text = str(value)
    if not text or any(c in text for c in ",={}[]\"'") or text != text.strip():
        return False
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def _scalar(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def option_value(fields: dict) -> str:
    """A GuideLLM structured option: ``kind=constant,rate=2`` when every value survives its
    ``key=value`` parser unchanged, else the JSON object.

    Parameters
    ----------
    fields : dict
        The option's keys, ``kind`` first.
    """
    if all(_plain(v) for v in fields.values()):
        text = ",".join(f"{k}={_scalar(v)}" for k, v in fields.items())
        try:
            if yaml.safe_load(text) == text:  # GuideLLM tries YAML on the whole string first
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(fields, separators=(",", ":"))


def guidellm_command(*, target: str, load_type: str, load_value: float, max_requests: int, max_seconds: float,
                     data, output: str, seed: int = 42, executable: str = "guidellm", model: str = "",
                     request_format: str = "", backend: dict | None = None, labels: dict | None = None,
                     extra_args: Sequence[str] = (), arrivals: str = "constant") -> list[str]:
    """The ``guidellm run`` arguments of one point (GuideLLM 0.8).

    Parameters
    ----------
    target : str
        The server's base URL (``http://127.0.0.1:8000``).
    load_type : str
        ``"rate"`` (constant requests/s) or ``"concurrency"`` (streams).
    load_value : float
        The rate or the stream count.
    max_requests, max_seconds : int, float
        The point's bounds.
    data : str, dict or list
        ``--data`` as GuideLLM takes it (``"kind=synthetic_text,prompt_tokens=256,output_tokens=128"``),
        or a table (dict) of its keys, or several of either.
    output : str
        The JSON report's path.
    seed : int
        ``--seed kind=static,value=...``.
    executable : str
        The ``guidellm`` program.
    model, request_format : str
        Backend keys, left to GuideLLM's defaults when empty.
    backend : dict, optional
        More backend keys (``extras``, ``api_key``, ``timeout``...).
    labels : dict, optional
        ``--label key=value`` pairs recorded in the report.
    extra_args : sequence of str
        Appended as given.
    arrivals : str, default "constant"
        Rate loads: ``"constant"`` (GuideLLM ``kind=constant``, evenly spaced) or ``"poisson"``
        (``kind=poisson``, exponential gaps).

    Raises
    ------
    ValueError
        On an unknown load type or a non-positive bound.
    """
    if arrivals not in ("constant", "poisson"):
        raise ValueError(f"arrivals {arrivals!r}: use 'constant' or 'poisson'")
    if load_type == "rate":
        profile = {"kind": arrivals, "rate": float(load_value)}
    elif load_type == "concurrency":
        profile = {"kind": "concurrent", "streams": int(load_value)}
    else:
        raise ValueError(f"load type {load_type!r}: use 'rate' or 'concurrency'")
    if not (max_requests > 0 and max_seconds > 0):
        raise ValueError("max_requests and max_seconds must be > 0")
    back = {"kind": "openai_http", "target": target}
    if model:
        back["model"] = model
    if request_format:
        back["request_format"] = request_format
    back.update(backend or {})
    argv = [executable, "run", "--backend", option_value(back), "--profile", option_value(profile),
            "--constraint", option_value({"kind": "max_requests", "count": int(max_requests)}),
            "--constraint", option_value({"kind": "max_duration", "seconds": _number(max_seconds)})]
    for d in data if isinstance(data, list | tuple) else [data]:
        argv += ["--data", d if isinstance(d, str) else option_value(dict(d))]
    argv += ["--seed", option_value({"kind": "static", "value": int(seed)}),
             "--output", option_value({"kind": "json", "path": str(output)})]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    argv += ["--disable-console-interactive", *extra_args]
    return argv


def _number(x: float):
    return int(x) if float(x).is_integer() else float(x)
