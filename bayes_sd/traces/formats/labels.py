"""The speculative configuration of a run: verifier, drafter, k, hardware, dataset.

Benchmark outputs do not record how the server speculated. The configuration of each
run is assembled from, most specific first:

0. a sweep manifest's configuration for the point (:mod:`bayes_sd.traces.manifest`);
1. a sidecar YAML's per-run override (``runs:`` keyed by run id, benchmark index or
   strategy label such as ``constant@4``), then its per-file override (``files:`` keyed
   by file name, path or stem, or by a glob pattern matched against the file's name and its
   path relative to the sidecar's folder, e.g. ``"eagle-k4/*.json"``; exact names first, then
   the first pattern that matches, in file order);
2. the flags (``ingest_paths(labels=...)``: ``--verifier --drafter --k --hardware --dataset``);
3. the sidecar's top-level keys;
4. what the file records: GuideLLM ``--label key=value`` (``config.metadata.labels``),
   vLLM ``--metadata key=value`` (extra top-level keys), SGLang ``server_info``
   (speculative algorithm, draft model, steps);
5. fallbacks: verifier = the model name the benchmark used, dataset = its data file or
   data set name (else ``'unknown'``, with a warning), k = the number of per-position
   acceptance rates in the acceptance data.

Label keys are matched loosely (case, ``-``/``_``) with aliases: ``draft_model``,
``num_speculative_tokens``, ``gpu``, ... and ``speculative_config`` (vLLM's JSON:
``model`` or ``method`` -> drafter, ``num_speculative_tokens`` -> k). ``k = 0`` implies
drafter ``'none'`` and vice versa. Whatever is still missing raises one TraceError naming
the file, the missing fields and the fix.

Besides the five fields, the same layers (and, last, what the reader found in the file) give
``acceptance`` (``measured`` or ``pinned``: the engine fixed the acceptance, e.g. vLLM
``speculative_config.rejection_sample_method = "synthetic"`` or SGLang
``SGLANG_SIMULATE_ACC_LEN``; a ``speculative_config`` with the synthetic method means pinned),
``tool``, ``tool_version``, ``engine`` and ``engine_version`` (:data:`EXTRA_FIELDS`).

Sidecar example::

    verifier: meta-llama/Llama-3.1-8B-Instruct
    drafter: yuhuili/EAGLE3-LLaMA3.1-Instruct-8B
    k: 4
    hardware: H100
    dataset: sharegpt
    runs:                      # optional, per run (id, benchmark index or strategy)
      "0": {k: 0, drafter: none}
    files:                     # optional, per input file (name, path, stem or glob pattern)
      sweep_k2.json: {k: 2}
      "pinned/*.json": {acceptance: pinned}
    acceptance: measured       # or pinned (cost-only data)
    engine: vllm               # tool, tool_version, engine, engine_version: when the files do not say
    attach_to: sweep:2:constant@18.08   # run that a Prometheus scrape / vLLM log belongs to
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..schema import NO_DRAFTER, TraceError
from .base import read_text, warn

__all__ = ["SPEC_FIELDS", "EXTRA_FIELDS", "Sidecar", "load_sidecar", "normalize", "resolve", "file_override", "FIX",
           "batch_cap_value", "batch_cap_from_command", "kv_cache_from_command"]

SPEC_FIELDS = ("verifier", "drafter", "k", "hardware", "dataset")
#: Optional fields resolved like the configuration: pinned acceptance, tool and engine names and versions, and
#: the server's batch cap (requests in service at most) and KV cache size (tokens).
EXTRA_FIELDS = ("acceptance", "tool", "tool_version", "engine", "engine_version", "max_num_seqs", "kv_cache_tokens")
ACCEPTANCE_VALUES = ("measured", "pinned")
FIX = ("pass --verifier/--drafter/--k/--hardware (and --dataset) or a sidecar YAML (--sidecar spec.yaml with keys "
       "verifier, drafter, k, hardware, dataset), or label the benchmark (GuideLLM --label k=4, vLLM --metadata k=4)")
_ALIASES = {
    "verifier": ("verifier", "verifier_model", "target_model", "base_model"),
    "drafter": ("drafter", "draft_model", "draft", "drafter_model", "speculative_model", "spec_model",
                "spec_method", "speculative_method"),
    "k": ("k", "num_speculative_tokens", "num_spec_tokens", "spec_k", "draft_length", "spec_tokens",
          "speculative_tokens"),
    "hardware": ("hardware", "gpu", "accelerator", "device", "hw"),
    "dataset": ("dataset", "workload", "dataset_name"),
    "acceptance": ("acceptance", "acceptance_mode"),
    "tool": ("tool", "load_generator", "benchmark_tool"),
    "tool_version": ("tool_version", "load_generator_version"),
    "engine": ("engine", "serving_engine", "server"),
    "engine_version": ("engine_version", "server_version"),
    "max_num_seqs": ("max_num_seqs", "max_running_requests", "max_batch_size", "n_parallel", "parallel"),
    "kv_cache_tokens": ("kv_cache_tokens", "kv_cache_size", "gpu_kv_cache_tokens", "kv_tokens"),
}
_LOOKUP = {a: f for f, al in _ALIASES.items() for a in al}
_SPEC_CONFIG = ("speculative_config", "spec_config")


def _norm_key(k) -> str:
    return str(k).strip().lower().replace("-", "_")


def _whole(v, least: int) -> float:
    """``v`` as a float when it is a whole number >= ``least`` (text or number, not a bool), else NaN."""
    if isinstance(v, bool):
        return math.nan
    try:
        f = float(str(v).strip()) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) and f >= least and f == int(f) else math.nan


def _k(v, source: str, where: str) -> int:
    f = _whole(v, 0)
    if math.isnan(f):
        raise TraceError(source, "k", f"{where}: k = {v!r} is not a whole number of draft tokens",
                         "give k as an integer >= 0 (0 = no speculation)")
    return int(f)


def normalize(d, source: str, where: str, strict: bool = False) -> dict:
    """Speculative-configuration fields found in a labels / metadata dict. With
    ``strict`` (flags, sidecar), unknown keys raise TraceError (typos)."""
    out: dict = {}
    if not isinstance(d, dict):
        return out
    for key, v in d.items():
        nk = _norm_key(key)
        if nk in _SPEC_CONFIG:
            cfg = v
            if isinstance(v, str):
                try:
                    cfg = json.loads(v)
                except json.JSONDecodeError:
                    raise TraceError(source, str(key), f"{where}: not a JSON object", "give vLLM's "
                                     "--speculative-config JSON, e.g. '{\"method\": \"eagle3\", ...}'") from None
            if isinstance(cfg, dict):
                dm = cfg.get("model") or cfg.get("method")
                if dm:
                    out.setdefault("drafter", str(dm))
                if cfg.get("num_speculative_tokens") is not None:
                    out.setdefault("k", _k(cfg["num_speculative_tokens"], source, f"{where} {key}"))
                if str(cfg.get("rejection_sample_method", "")).lower() == "synthetic":
                    out["acceptance"] = "pinned"
            continue
        f = _LOOKUP.get(nk)
        if f is None:
            if strict:
                raise TraceError(source, str(key), f"{where}: unknown key", f"use {', '.join(SPEC_FIELDS)}, "
                                 f"{', '.join(EXTRA_FIELDS)} (and in a sidecar: runs, files, attach_to, "
                                 "speculative_config)")
            continue
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        if f == "acceptance":
            out[f] = _acceptance(v, source, f"{where} {key}", strict)
            if out[f] is None:
                del out[f]
            continue
        if f == "max_num_seqs":
            out[f] = batch_cap_value(v, source, f"{where} {key}")
            continue
        if f == "kv_cache_tokens":
            out[f] = _setting(v, source, f"{where} {key}", f, "a number of tokens", "give the server's KV cache "
                              "size in tokens as an integer >= 1 (vLLM logs 'GPU KV cache size: N tokens' at start), "
                              "or leave it out when unknown")
            continue
        out[f] = _k(v, source, f"{where} {key}") if f == "k" else str(v).strip()
    return out


def batch_cap_value(v, source: str, where: str) -> float:
    """A batch cap (``max_num_seqs``) as a float, or TraceError naming the fix."""
    return _setting(v, source, where, "max_num_seqs", "a number of requests", "give the server's batch cap as an "
                    "integer >= 1 (vLLM --max-num-seqs, SGLang --max-running-requests, llama.cpp --parallel), or "
                    "leave it out when unknown")


def _setting(v, source: str, where: str, field: str, what: str, fix: str) -> float:
    """A server setting that is a whole number >= 1, as a float, or TraceError naming the fix."""
    f = _whole(v, 1)
    if math.isnan(f):
        raise TraceError(source, field, f"{where}: {field} = {v!r} is not {what}", fix)
    return f


def _acceptance(v, source: str, where: str, strict: bool) -> str | None:
    val = str(v).strip().lower()
    if val in ("synthetic", "simulated", "fixed"):
        val = "pinned"
    if val in ACCEPTANCE_VALUES:
        return val
    if strict:
        raise TraceError(source, "acceptance", f"{where}: acceptance = {v!r}",
                         "use 'measured' or 'pinned' (the engine fixed the acceptance: cost-only data)")
    return None


@dataclass
class Sidecar:
    path: str = ""
    defaults: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    attach_to: object = None


def load_sidecar(path) -> Sidecar:
    """Read a sidecar YAML (see the module docstring)."""
    import yaml

    src = str(path)
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise TraceError(src, None, f"not valid YAML ({str(e).splitlines()[0]})",
                         "write the sidecar as YAML: `k: 4` lines, see `bayes-sd ingest --help`") from None
    if not isinstance(data, dict):
        raise TraceError(src, None, "a sidecar is a YAML mapping (verifier: ..., k: ...)", FIX)
    runs, files = data.pop("runs", None) or {}, data.pop("files", None) or {}
    attach = data.pop("attach_to", None)
    for name, val in (("runs", runs), ("files", files)):
        if not isinstance(val, dict) or not all(isinstance(v, dict) for v in val.values()):
            raise TraceError(src, name, f"'{name}' must map names to mappings of overrides",
                             f"write e.g. `{name}:` then `  \"0\": {{k: 2}}`")
    return Sidecar(path=src, defaults=normalize(data, src, "sidecar", strict=True),
                   runs={str(k): normalize(v, src, f"runs[{k}]", strict=True) for k, v in runs.items()},
                   files={str(k): normalize(v, src, f"files[{k}]", strict=True) for k, v in files.items()},
                   attach_to=attach)


def file_override(side: Sidecar, source: str) -> dict:
    """The sidecar's ``files:`` entry for ``source``: by full path, name or stem, else the first glob
    pattern (in file order) matching its name, its path relative to the sidecar's folder or its path."""
    if not side.files:
        return {}
    p = Path(source)
    for n in (source, p.name, p.stem):
        if n in side.files:
            return side.files[n]
    paths = [p.name, p.as_posix()]
    if side.path:
        try:
            paths.insert(1, p.resolve().relative_to(Path(side.path).resolve().parent).as_posix())
        except ValueError:
            pass
    for pattern, over in side.files.items():
        if any(ch in pattern for ch in "*?[") and any(fnmatch.fnmatchcase(q, pattern) for q in paths):
            return over
    return {}


def resolve(*, source: str, run_id: str, names: list, file_labels: dict, run_labels: dict, recorded: dict,
            inferred: dict, flags: dict, sidecar: Sidecar | None, sink: list, forced: dict | None = None,
            info: dict | None = None) -> dict:
    """The five configuration fields of one run (see the module docstring for the order), and
    those of :data:`EXTRA_FIELDS` that some layer gives."""
    side = sidecar or Sidecar()
    file_over = file_override(side, source)
    run_over = next((side.runs[n] for n in [run_id] + list(names) if n in side.runs), {})
    file_own = {**normalize(file_labels, source, "label"), **normalize(run_labels, source, "metadata")}
    layers = [forced or {}, run_over, file_over, flags, side.defaults, file_own]
    out = {}
    for f in EXTRA_FIELDS:
        for layer in layers + [info or {}]:
            if layer.get(f) is not None:
                out[f] = layer[f]
                break
    for f in SPEC_FIELDS:
        for layer in layers:
            if layer.get(f) is not None:
                out[f] = layer[f]
                break
        if f in out and f in file_own and str(file_own[f]) != str(out[f]):
            warn(sink, source, f, f"run {run_id}: the file says {f} = {file_own[f]!r}, overridden by "
                 f"{out[f]!r} from the flags / sidecar", "drop the flag or sidecar entry if the file is right")
    if "k" not in out and "k" in inferred:
        out["k"] = inferred["k"]
    if out.get("k") == 0:
        out.setdefault("drafter", NO_DRAFTER)
    if str(out.get("drafter", "")).lower() == NO_DRAFTER:
        out["drafter"] = NO_DRAFTER
        out.setdefault("k", 0)
    for f in ("verifier", "dataset"):
        if f not in out and recorded.get(f):
            out[f] = recorded[f]
    if "dataset" not in out:
        warn(sink, source, "dataset", "no data set name recorded: using 'unknown'",
             "pass --dataset NAME (or `dataset:` in a sidecar) to tell workloads apart")
        out["dataset"] = "unknown"
    missing = [f for f in SPEC_FIELDS if f not in out]
    if missing:
        raise TraceError(source, missing[0], f"the speculative configuration is not recorded in the file: "
                         f"missing {', '.join(missing)} (run {run_id})", FIX)
    return out


#: server flags that set the batch cap: vLLM, SGLang, TensorRT-LLM (trtllm-serve), llama.cpp
_CAP_FLAGS = ("--max-num-seqs", "--max-running-requests", "--max_batch_size", "--max-batch-size", "--parallel", "-np")


#: server flags that set the KV cache size in tokens: SGLang's token pool, llama-server's context (all slots'
#: together; 0 there means the model's, which this package does not guess)
_KV_FLAGS = ("--max-total-tokens",)
_LLAMA_KV_FLAGS = ("-c", "--ctx-size")


def _words(command) -> list[str]:
    words = command.split() if isinstance(command, str) else [str(w) for w in command]
    return [p for w in words for p in w.split()]  # a command given as one string inside a list


def _flag_value(words: list[str], flags: tuple) -> tuple[str, str] | None:
    """(flag, value) of the first of ``flags`` in a command's words (``--flag v`` or ``--flag=v``)."""
    for i, w in enumerate(words):
        flag, eq, val = w.partition("=")
        if flag in flags:
            return flag, val if eq else (words[i + 1] if i + 1 < len(words) else "")
    return None


def _whole_or_none(hit: tuple[str, str] | None) -> float | None:
    """A flag's value when it is a whole number >= 1, else None (not a setting this package reads)."""
    f = _whole(hit[1], 1) if hit else math.nan
    return None if math.isnan(f) else f


def batch_cap_from_command(command) -> float | None:
    """The batch cap a server command line sets (``--max-num-seqs 256``, ``-np 16``, ``--parallel=4``, ...),
    None when it sets none (the engine's default then applies, which this package does not guess)."""
    return _whole_or_none(_flag_value(_words(command), _CAP_FLAGS)) if command else None


def kv_cache_from_command(command) -> float | None:
    """The KV cache size in tokens a server command line sets: SGLang's ``--max-total-tokens`` or
    llama-server's ``-c`` / ``--ctx-size`` (every slot's context together); None when it sets none or
    leaves it to the engine (vLLM sizes its cache from free memory: its log and ``/metrics`` say the size)."""
    if not command:
        return None
    words = _words(command)
    flags = _KV_FLAGS + (_LLAMA_KV_FLAGS if words and "llama-server" in Path(words[0]).name else ())
    return _whole_or_none(_flag_value(words, flags))
