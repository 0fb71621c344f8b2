"""Bad input: every file of tests/data/bad/ gives one clear TraceError or warning naming the
file, the field and the fix; mutated valid files either parse or raise TraceError (never
another exception type)."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_sd.traces.formats import TraceWarning
from bayes_sd.traces.ingest import ingest_paths
from bayes_sd.traces.schema import TraceError

DATA = Path(__file__).resolve().parents[1] / "data"
BAD, DER = DATA / "bad", DATA / "derived"
FLAGS = {"verifier": "v", "drafter": "eagle3", "k": 4, "hardware": "H100", "dataset": "x"}
SUMMARY = DER / "vllm-0.32.0-summary.json"

# file -> (field named in the message or None, words of the message)
ERRORS = {
    "binary.bin": (None, "cannot tell what this file is"),
    "empty.json": (None, "empty"),
    "not-json.json": (None, "cannot tell what this file is"),
    "truncated-guidellm.json": (None, "truncated"),
    "truncated-guidellm.yaml": (None, "not valid YAML"),
    "guidellm-unknown-version.json": ("metadata.version", "unknown GuideLLM report schema version 3"),
    "guidellm-missing-strategy.json": ("benchmarks[0].config.strategy", "no strategy"),
    "guidellm-epoch-milliseconds.json": ("request_start_time", "epoch milliseconds"),
    "guidellm-ttft-scaled.json": ("time_to_first_token_ms", "milliseconds vs seconds"),
    "guidellm-negative-time.json": ("info.timings.request_start", "negative"),
    "guidellm-out-of-order.json": ("info.timings.first_token_iteration", "first token before the request was sent"),
    "guidellm-all-runs-empty.json": ("benchmarks", "no benchmark with successful requests"),
    "vllm-ttfts-in-ms.json": ("ttfts", "not in seconds"),
    "vllm-list-length-mismatch.json": ("latencies", "expected a list of 12"),
    "vllm-missing-request-rate.json": ("request_rate", "does not record its request rate"),
    "vllm-ramp-up.json": ("ramp_up_strategy", "ramps its request rate"),
    "sglang-trace-rate.jsonl": ("request_rate", "not a fixed rate"),
    "vllm-metrics-counter-reset.prom": ("vllm:spec_decode_num_accepted_tokens_total", "went down"),
    "metrics-without-spec-decode.prom": ("vllm:spec_decode_num_drafts_total", "no vllm:spec_decode_"),
    "vllm-log-accepted-gt-drafted.log": ("Accepted", "accepted > 100 drafted"),
    "sidecar-typo.yaml": ("kk", "unknown key"),
}
# file -> (field named in the warning, words, check on the runs)
WARNINGS = {
    "guidellm-duplicated-request.json": ("request_id", "repeated request id", lambda r: (r["n_requests"] == 6).all()),
    "guidellm-empty-run.json": ("benchmarks[0].requests.successful", "no successful request", lambda r: len(r) == 2),
    "guidellm-nan-time.json": ("info.timings.first_token_iteration", "lack it (NaN", lambda r: len(r) == 3),
    "vllm-spec-rate-fraction.json": ("spec_decode_acceptance_rate", "looks like a fraction",
                                     lambda r: r["acceptance_length"].iloc[0] == pytest.approx(3.2)),
    "vllm-nan-aggregate.json": ("mean_ttft_ms", "NaN", lambda r: math.isnan(r["ttft_mean_s"].iloc[0])),
    "vllm-with-failures.json": (None, None, lambda r: r["n_errored"].iloc[0] == 3 and r["n_requests"].iloc[0] == 9),
}


def inputs(name):
    p = BAD / name
    if name.endswith((".prom", ".log")):
        return [SUMMARY, p]
    if name.startswith("sidecar"):
        return [DATA / "guidellm-0.8.1-generated-benchmarks.json", p]
    return [p]


def test_corpus_is_covered():
    assert {p.name for p in BAD.iterdir()} == set(ERRORS) | set(WARNINGS)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_file_raises_one_clear_line(name):
    fld, words = ERRORS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)
        with pytest.raises(TraceError) as e:
            ingest_paths(inputs(name), labels=FLAGS)
    msg = str(e.value)
    assert name in msg and words in msg and "Fix:" in msg and "\n" not in msg, msg
    if fld:
        assert f"'{fld}'" in msg, msg


@pytest.mark.parametrize("name", sorted(WARNINGS))
def test_bad_file_warns_and_ingests(name):
    fld, words, ok = WARNINGS[name]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = ingest_paths(inputs(name), labels=FLAGS)
    assert ok(res.runs)
    if words:
        hits = [w for w in res.warnings if words in w and name in w and "Fix:" in w and f"'{fld}'" in w]
        assert hits, res.warnings
        assert any(issubclass(r.category, TraceWarning) and words in str(r.message) for r in rec)


def test_missing_configuration_names_file_fields_and_fix():
    with pytest.raises(TraceError) as e:
        ingest_paths([DATA / "guidellm-0.5.4-generated-benchmarks.json"], labels={"hardware": "H100"})
    msg = str(e.value)
    assert "guidellm-0.5.4-generated-benchmarks.json" in msg and "missing verifier, drafter, k" in msg
    assert "--verifier/--drafter/--k/--hardware" in msg and "sidecar YAML" in msg


def test_bad_flag_values():
    with pytest.raises(TraceError, match="whole number"):
        ingest_paths([SUMMARY], labels={**FLAGS, "k": "four"})
    with pytest.raises(TraceError, match="unknown key"):
        ingest_paths([SUMMARY], labels={**FLAGS, "gpu_count": 8})
    with pytest.raises(TraceError, match="k > 0 but no drafter|drafter"):
        ingest_paths([SUMMARY], labels={**FLAGS, "drafter": "none", "k": 4})


def test_acceptance_without_a_target_run():
    files = [DATA / "guidellm-0.8.1-generated-benchmarks.json", DER / "vllm-metrics-two-scrapes.prom"]
    with pytest.raises(TraceError, match="attach_to"):
        ingest_paths(files, labels=FLAGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)
        runs = ingest_paths(files, labels={**FLAGS, "attach_to": "0:synchronous"}).runs.sort_values("run_id")
    assert runs["num_drafts"].notna().tolist() == [True, False, False]
    with pytest.raises(TraceError, match="no benchmark run"):
        ingest_paths([DER / "vllm-metrics-two-scrapes.prom"], labels=FLAGS)


# --- property tests: mutated valid files ---------------------------------------------------

def _paths(tree, prefix=()):
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree[:4]):
            out += _paths(v, prefix + (i,))
    return out


def _small_guidellm():
    t = json.loads((DER / "guidellm-0.8.1-specdec.json").read_text())
    b = t["benchmarks"][0]
    b["requests"]["successful"] = b["requests"]["successful"][:4]
    return t


SOURCES = {"guidellm": _small_guidellm(), "vllm": json.loads(SUMMARY.read_text()),
           "vllm_detailed": json.loads((DATA / "vllm-0.32.0-generated-bench-serve-detailed.json").read_text())}
PATHS = {k: _paths(v) for k, v in SOURCES.items()}
TIME_KEYS = {"request_start", "first_token_iteration", "last_token_iteration", "request_end", "request_start_time",
             "request_end_time", "ttfts", "latencies", "start_times", "itls", "measure_start_time",
             "measure_end_time", "time_to_first_token_ms", "request_latency", "mean_ttft_ms", "mean_e2el_ms"}
VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.integers(-10**6, 10**12),
                   st.floats(allow_nan=True, allow_infinity=True), st.just([]), st.just({}), st.just([1, "a"]))


def _set(tree, path, op, value):
    parent = tree
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1]
    if op == "delete":
        del parent[key]
    else:
        parent[key] = value


def _scale(tree, factor):
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k in TIME_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool):
                tree[k] = v * factor
            elif k in TIME_KEYS and isinstance(v, list):
                tree[k] = [x * factor if isinstance(x, (int, float)) else x for x in v]
            else:
                _scale(v, factor)
    elif isinstance(tree, list):
        for v in tree:
            _scale(v, factor)


def _ingest_text(text: str, suffix: str):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"mutant{suffix}"
        p.write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = ingest_paths([p], labels=FLAGS)
            except TraceError as e:
                assert str(p) in str(e) and "Fix:" in str(e)
                return None
    assert len(res.runs) >= 1 and res.runs["n_requests"].min() >= 1
    return res


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src=st.sampled_from(sorted(SOURCES)), data=st.data(), op=st.sampled_from(["delete", "set"]), value=VALUES)
def test_mutated_key_or_type(src, data, op, value):
    tree = json.loads(json.dumps(SOURCES[src]))
    path = data.draw(st.sampled_from(PATHS[src]))
    _set(tree, path, op, value)
    _ingest_text(json.dumps(tree), ".json")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src=st.sampled_from(sorted(SOURCES)), frac=st.floats(0.0, 0.999))
def test_truncated(src, frac):
    text = json.dumps(SOURCES[src])
    _ingest_text(text[: int(len(text) * frac)], ".json")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src=st.sampled_from(sorted(SOURCES)), factor=st.sampled_from([1e-3, 1e3, -1.0, 0.0, 1e6]))
def test_scaled_times(src, factor):
    tree = json.loads(json.dumps(SOURCES[src]))
    _scale(tree, factor)
    res = _ingest_text(json.dumps(tree), ".json")
    if res is not None:  # whatever passes must still be in seconds
        assert (res.runs["latency_mean_s"].dropna() < 600).all()


TEXTS = {"prom": (DER / "vllm-metrics-two-scrapes.prom").read_text(), "log": (DER / "vllm-0.33-serve.log").read_text(),
         "sglang": (DER / "sglang-bench-serving.jsonl").read_text(),
         "yaml": (DER / "guidellm-0.8.1-sync.yaml").read_text()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src=st.sampled_from(sorted(TEXTS)), data=st.data())
def test_mutated_text_formats(src, data):
    text = TEXTS[src]
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 40)))
    junk = data.draw(st.sampled_from(["", "x", "-1", "nan", "{", "\n", "Infinity", "1e999", ": ["]))
    mutant = text[:i] + junk + text[j:]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mutant.txt"
        p.write_text(mutant)
        files = [SUMMARY, p] if src in ("prom", "log") else [p]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ingest_paths(files, labels={**FLAGS, "k": None} if src in ("prom", "log") else FLAGS)
            except TraceError as e:
                assert "Fix:" in str(e)
