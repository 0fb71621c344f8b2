"""The canonical trace tables: column names, types, units and meaning.

Three tables, all pandas DataFrames with one row per record:

``requests``
    One row per benchmark request. Times are seconds on one clock per run
    (epoch or monotonic: only differences within a run are used).
``runs``
    One row per benchmark run: one server configuration held at one load level.
    This is what the models fit: request rows are reduced to run-level sufficient
    statistics by :func:`bayes_sd.traces.aggregate.aggregate_runs`.
``models``
    Optional. One row per verifier or drafter named in ``runs``: the size
    predictors the hierarchy and the MoE variant use.

The column lists below are the single source of truth: validation and the
``bayes-sd ingest --help`` text are generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Column",
    "REQUESTS",
    "RUNS",
    "MODELS",
    "TABLES",
    "LOAD_TYPES",
    "NO_DRAFTER",
    "TEXT_DEFAULTS",
    "TraceError",
    "schema_help",
]

#: Value of ``drafter`` for runs without speculation (k = 0).
NO_DRAFTER = "none"
#: Allowed values of ``load_type``: open loop at an offered rate, or closed loop at a concurrency.
LOAD_TYPES = ("rate", "concurrency")


class TraceError(ValueError):
    """A trace file or table that bayes_sd cannot use as it is.

    The message always names the file (or table), the column and the fix, in one line:
    ``"<source>, column '<column>': <problem>. Fix: <fix>"``.

    Parameters
    ----------
    source : str
        The file (or table) with the problem.
    column : str or None
        The column with the problem (None: the whole table).
    problem : str
        What is wrong.
    fix : str
        What to do about it.
    """

    def __init__(self, source: str, column: str | None, problem: str, fix: str):
        self.source = source
        self.column = column
        self.problem = problem
        self.fix = fix
        where = f"{source}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class Column:
    """One column of a canonical table.

    Parameters
    ----------
    name : str
        Column name.
    kind : {"str", "int", "float", "bool"}
        Value type.
    unit : str
        The physical unit ("s", "requests/s", "tokens", ...) or "" if none.
    required : bool
        Whether every table must have the column.
    description : str
        What the column holds.
    lo, hi : float, optional
        Bounds of valid values (inclusive) when not None.
    """

    name: str
    kind: str
    unit: str
    required: bool
    description: str
    lo: float | None = None
    hi: float | None = None


REQUESTS: tuple[Column, ...] = (
    Column("run_id", "str", "", True, "run this request belongs to (key into the runs table)"),
    Column("request_id", "str", "", True, "identifier of the request, unique within its run"),
    Column("start_s", "float", "s", True, "time the request was sent (one clock per run)"),
    Column("first_token_s", "float", "s", True, "time the first output token arrived"),
    Column("end_s", "float", "s", True, "time the last output token arrived"),
    Column("prompt_tokens", "int", "tokens", True, "prompt length", lo=0),
    Column("output_tokens", "int", "tokens", True, "generated tokens", lo=1),
    Column("draft_tokens", "int", "tokens", False, "tokens proposed by the drafter", lo=0),
    Column("accepted_tokens", "int", "tokens", False, "draft tokens accepted by the verifier", lo=0),
    Column("num_drafts", "int", "", False, "verify steps that carried drafts", lo=0),
    Column("acceptance_histogram", "str", "", False, "verify steps that accepted exactly 0, 1, ..., k drafts, "
           "';'-separated counts (vLLM's per-request acceptance_histogram)"),
)

RUNS: tuple[Column, ...] = (
    Column("run_id", "str", "", True, "unique identifier of the run"),
    Column("source", "str", "", True, "where the run comes from (file, benchmark, or 'synthetic:...')"),
    Column("hardware", "str", "", True, "accelerator, e.g. 'B200' or 'H100'"),
    Column("verifier", "str", "", True, "target (verifier) model name"),
    Column("drafter", "str", "", True, f"draft model name, '{NO_DRAFTER}' when k = 0"),
    Column("dataset", "str", "", True, "workload / prompt set the run used"),
    Column("k", "int", "tokens", True, "draft length (num_speculative_tokens); 0 = no speculation", lo=0, hi=64),
    Column("load_type", "str", "", True, "'rate' (open loop, offered rate) or 'concurrency' (closed loop, N streams)"),
    Column("rate_rps", "float", "requests/s", False, "offered request rate (open loop)", lo=0),
    Column("arrival_cv2", "float", "", False, "open loop: squared coefficient of variation of the inter-arrival "
           "times: 1 Poisson (vllm bench serve's default, GuideLLM 'poisson'), 0 evenly spaced (GuideLLM 'constant'), "
           "1 / burstiness for vllm bench serve --burstiness; empty (taken as Poisson) when unknown", lo=0, hi=100),
    Column("achieved_rps", "float", "requests/s", False, "completed requests per second", lo=0),
    Column("concurrency", "float", "requests", False, "streams in flight (closed loop setting)", lo=0),
    Column("in_flight_seen", "float", "requests", False, "requests in flight (itself included) that the run's "
           "requests saw, averaged over each one's life and weighted by its output tokens; from request times. A "
           "closed loop of N streams sees N in steady state and fewer where it drains at the end (a fixed number "
           "of requests, as vllm bench serve sends): the fit takes it as the closed loop's load", lo=0),
    Column("prompt_len", "float", "tokens", True, "mean prompt tokens per request", lo=0),
    Column("output_len", "float", "tokens", True, "mean output tokens per request", lo=1),
    Column("output_len_sd", "float", "tokens", False, "standard deviation of the output tokens per request: a long "
           "request holds its KV cache longer, so the batch a KV cache holds depends on it; empty when unknown "
           "(taken as outputs ended by EOS, sd = mean; 0 for a benchmark that fixes the output length)", lo=0),
    Column("n_requests", "int", "", True, "successful requests in the measured window", lo=1),
    Column("n_errored", "int", "", False, "requests that failed (kept out of every statistic)", lo=0),
    Column("n_incomplete", "int", "", False, "requests cut off unfinished by the benchmark's end (kept out)", lo=0),
    Column("latency_mean_s", "float", "s", True, "mean end-to-end request latency", lo=0),
    Column("latency_sd_s", "float", "s", False, "standard deviation of request latency", lo=0),
    Column("latency_se_s", "float", "s", False, "standard error of the mean latency; from requests, with their "
           "autocorrelation in the order they were sent (requests queued together are alike)", lo=0),
    Column("latency_p50_s", "float", "s", False, "median request latency", lo=0),
    Column("latency_p90_s", "float", "s", False, "90th percentile request latency", lo=0),
    Column("latency_p99_s", "float", "s", False, "99th percentile request latency", lo=0),
    Column("ttft_mean_s", "float", "s", False, "mean time to first token", lo=0),
    Column("ttft_p50_s", "float", "s", False, "median time to first token", lo=0),
    Column("tpot_mean_s", "float", "s", False, "mean time per output token after the first", lo=0),
    Column("output_tps", "float", "tokens/s", False, "output tokens per second, all streams (TTFT included)", lo=0),
    Column("draft_tokens", "float", "tokens", False, "draft tokens proposed in the run", lo=0),
    Column("accepted_tokens", "float", "tokens", False, "draft tokens accepted in the run", lo=0),
    Column("num_drafts", "float", "", False, "verify steps carrying drafts in the run", lo=0),
    Column("acceptance_length", "float", "tokens", False, "mean tokens per verify step, bonus token included (tau)",
           lo=1),
    Column("per_position_acceptance", "str", "", False, "share of drafts whose first j draft tokens were all "
           "accepted, j = 1..k, as fractions separated by ';' (vLLM's per-position acceptance rates), e.g. "
           "'0.81;0.62;0.47'"),
    Column("acceptance_pinned", "bool", "", False, "the engine pinned the acceptance (vLLM rejection_sample_method "
           "'synthetic', SGLang SGLANG_SIMULATE_ACC_LEN): cost-only data, never acceptance evidence (default false)"),
    Column("pinned_acceptance_length", "float", "tokens", False, "acceptance length measured on a pinned run, kept "
           "as information only (acceptance_length and the counts are left empty)", lo=1),
    Column("max_num_seqs", "float", "requests", False, "the server's batch cap: requests in service at most (vLLM "
           "and TensorRT-LLM max_num_seqs, SGLang --max-running-requests, llama.cpp --parallel); empty when unknown",
           lo=1),
    Column("kv_cache_tokens", "float", "tokens", False, "tokens of context the server's KV cache holds, draft "
           "model's included (vLLM logs 'GPU KV cache size: N tokens'; num_gpu_blocks x block_size); requests it "
           "cannot hold wait as for a batch slot; empty when unknown", lo=1),
    Column("prefill_ms_per_token", "float", "ms", False, "the engine's own timing of prompt processing per prompt "
           "token over the run (llama.cpp: delta of llamacpp:prompt_seconds_total over delta of "
           "llamacpp:prompt_tokens_total between the run's /metrics scrapes); pins the prefill cost that one prompt "
           "length leaves tied to the per-request overhead", lo=0),
    Column("saturated", "bool", "", False, "run is past the server's capacity: not steady state"),
    Column("saturation_reason", "str", "", False, "why the run was flagged saturated (rule and numbers)"),
    Column("tool", "str", "", False, "load generator that measured the run, e.g. 'guidellm', 'vllm-bench'"),
    Column("tool_version", "str", "", False, "its version, e.g. '0.8.1'"),
    Column("engine", "str", "", False, "serving engine, e.g. 'vllm', 'llama.cpp', 'sglang'"),
    Column("engine_version", "str", "", False, "its version or build, e.g. '0.11.0', 'b6500'"),
)

#: Optional text columns of ``runs`` that hold '' (not missing) when unknown.
TEXT_DEFAULTS = ("saturation_reason", "tool", "tool_version", "engine", "engine_version")

MODELS: tuple[Column, ...] = (
    Column("name", "str", "", True, "model name as used in runs.verifier / runs.drafter"),
    Column("params_b", "float", "1e9 parameters", True, "total parameters, billions", lo=0),
    Column("layers", "int", "", True, "transformer blocks", lo=1),
    Column("hidden_size", "int", "", False, "hidden width", lo=1),
    Column("experts", "float", "", False, "routed experts per MoE layer (empty for dense)", lo=1),
    Column("experts_per_token", "float", "", False, "experts each token activates (top-k)", lo=1),
)

TABLES: dict[str, tuple[Column, ...]] = {"requests": REQUESTS, "runs": RUNS, "models": MODELS}


def column_names(table: str, required_only: bool = False) -> list[str]:
    """Names of a canonical table's columns, in canonical order."""
    return [c.name for c in TABLES[table] if c.required or not required_only]


def schema_help(table: str) -> str:
    """Plain-text description of one table, as printed by ``bayes-sd ingest --help``.

    Parameters
    ----------
    table : {"requests", "runs", "models"}
        Which table.

    Returns
    -------
    str
        One line per column: name, kind, required or optional, ``[unit]`` and description.

    Raises
    ------
    KeyError
        For any other ``table``.

    Examples
    --------
    >>> print(schema_help("models").splitlines()[1])
      name               str   required model name as used in runs.verifier / runs.drafter
    """
    lines = [f"{table} table:"]
    for c in TABLES[table]:
        flag = "required" if c.required else "optional"
        unit = f" [{c.unit}]" if c.unit else ""
        lines.append(f"  {c.name:<18} {c.kind:<5} {flag:<8}{unit} {c.description}")
    return "\n".join(lines)
