"""Ingesting sweeps: folders with and without a manifest, scrapes matched by time, the saturation
overrides, pinned acceptance, GuideLLM versions and the catalogue's models table."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bayes_sd.traces.formats import read_format
from bayes_sd.traces.ingest import ingest_paths
from bayes_sd.traces.manifest import Point, write_manifest
from bayes_sd.traces.schema import TraceError

pytestmark = pytest.mark.filterwarnings("ignore::bayes_sd.traces.formats.TraceWarning")

DATA = Path(__file__).resolve().parents[1] / "data"
DER = DATA / "derived"
LLAMA = DATA / "guidellm-0.8.1-llamacpp-speculative.json"
MOCK = DATA / "guidellm-0.8.1-generated-benchmarks.json"
CFG = {"name": "q8-k4", "verifier": "Qwen/Qwen3-8B", "drafter": "Qwen/Qwen3-0.6B", "k": 4, "hardware": "cpu",
       "dataset": "prompts"}


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def sweep(tmp_path):
    """A sweep folder as a driver writes it: reports, scrapes, a manifest (real reports inside)."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "metrics").mkdir()
    for name in ("measured", "pinned"):
        shutil.copy(LLAMA, tmp_path / "reports" / f"{name}.json")
        shutil.copy(DER / "llamacpp-metrics-before.prom", tmp_path / "metrics" / f"{name}.before.prom")
        shutil.copy(DER / "llamacpp-metrics-after.prom", tmp_path / "metrics" / f"{name}.after.prom")
    shutil.copy(MOCK, tmp_path / "reports" / "mock.json")
    tool, engine = {"name": "guidellm", "version": "0.8.1"}, {"name": "llama.cpp", "version": "b6500"}

    def files(name):
        return {"report": f"reports/{name}.json", "metrics_before": f"metrics/{name}.before.prom",
                "metrics_after": f"metrics/{name}.after.prom"}
    points = [
        Point(id="q8-k4@rate-4", status="done", configuration=CFG, load={"type": "rate", "value": 4.0},
              files=files("measured"), tool=tool, engine=engine),
        Point(id="q8-k4-pinned@rate-4", status="done", configuration={**CFG, "acceptance": "pinned"},
              load={"type": "rate", "value": 4.0}, files=files("pinned"), tool=tool, engine=engine),
        Point(id="q8-k0@c1", status="done", configuration={**CFG, "drafter": "none", "k": 0},
              load={"type": "concurrency", "value": 1}, files={"report": "reports/mock.json"}, tool=tool),
        Point(id="q8-k4@rate-8", status="failed", configuration=CFG, load={"type": "rate", "value": 8.0},
              files={}, error="server crashed"),
    ]
    for p in points:  # absolute paths, as read_manifest returns them
        p.files = {k: str(tmp_path / v) for k, v in p.files.items()}
    write_manifest(points, tmp_path / "manifest.json")
    return tmp_path


# --- a folder with a manifest ----------------------------------------------------------------------

def test_manifest_folder_ingests_its_done_points(sweep):
    before = {p: sha(p) for p in sweep.rglob("*") if p.is_file()}
    res = ingest_paths(sweep)
    assert {p: sha(p) for p in sweep.rglob("*") if p.is_file()} == before  # only read
    runs = res.runs.set_index("run_id")
    assert sorted(runs.index) == ["q8-k0@c1", "q8-k4-pinned@rate-4", "q8-k4@rate-4"]
    row = runs.loc["q8-k4@rate-4"]
    assert (row["verifier"], row["drafter"], row["k"], row["hardware"]) == (
        "Qwen/Qwen3-8B", "Qwen/Qwen3-0.6B", 4, "cpu")
    assert row["acceptance_length"] == pytest.approx(3.2) and row["num_drafts"] == 800  # the scrapes' delta
    assert (row["tool"], row["tool_version"], row["engine"], row["engine_version"]) == (
        "guidellm", "0.8.1", "llama.cpp", "b6500")
    assert not row["acceptance_pinned"] and not row["saturated"]
    k0 = runs.loc["q8-k0@c1"]
    assert (k0["load_type"], k0["concurrency"], k0["drafter"], k0["k"]) == ("concurrency", 1.0, "none", 0)
    assert any("q8-k4@rate-8 (failed: server crashed)" in w for w in res.warnings)
    assert res.formats[str(sweep / "manifest.json")] == "manifest"
    # the manifest file itself is as good as its folder
    assert sorted(ingest_paths(sweep / "manifest.json").runs["run_id"]) == sorted(runs.index)


def test_pinned_point_keeps_no_acceptance_evidence(sweep):
    runs = ingest_paths(sweep).runs.set_index("run_id")
    pinned = runs.loc["q8-k4-pinned@rate-4"]
    assert pinned["acceptance_pinned"] and pinned["pinned_acceptance_length"] == pytest.approx(3.2)
    for col in ("acceptance_length", "num_drafts", "accepted_tokens", "draft_tokens"):
        assert np.isnan(pinned[col]), col
    # its latency statistics are kept: cost data
    assert pinned["latency_mean_s"] == pytest.approx(runs.loc["q8-k4@rate-4", "latency_mean_s"])


def test_manifest_load_must_match_the_report(sweep):
    text = (sweep / "manifest.json").read_text().replace('"value": 4.0', '"value": 5.0', 1)
    (sweep / "manifest.json").write_text(text)
    with pytest.raises(TraceError, match="manifest says rate 5 but the report ran rate 4 req/s") as e:
        ingest_paths(sweep)
    assert "measured.json" in str(e.value) and "'load'" in str(e.value)


def test_manifest_report_without_a_configuration_field(sweep):
    text = (sweep / "manifest.json").read_text().replace('"hardware": "cpu",', "")
    (sweep / "manifest.json").write_text(text)
    with pytest.raises(TraceError, match="missing hardware"):
        ingest_paths(sweep)
    assert ingest_paths(sweep, labels={"hardware": "cpu"}).runs["hardware"].eq("cpu").all()


def test_aiperf_export_takes_its_load_from_the_manifest(tmp_path):
    shutil.copy(DER / "aiperf" / "profile_export.jsonl", tmp_path / "profile_export.jsonl")
    write_manifest([Point(id="a@rate-2", status="done", configuration=CFG, load={"type": "rate", "value": 2.0},
                          files={"report": str(tmp_path / "profile_export.jsonl")},
                          tool={"name": "aiperf", "version": "0.5.0"})], tmp_path / "manifest.json")
    row = ingest_paths(tmp_path).runs.iloc[0]
    assert (row["run_id"], row["load_type"], row["rate_rps"], row["tool_version"]) == ("a@rate-2", "rate", 2.0, "0.5.0")


# --- a folder without a manifest ------------------------------------------------------------------

def test_folder_with_a_sidecar_mapping_files_to_configurations(tmp_path):
    (tmp_path / "eagle" / "k2").mkdir(parents=True)
    (tmp_path / "base").mkdir()
    (tmp_path / ".cache").mkdir()
    shutil.copy(MOCK, tmp_path / "eagle" / "k2" / "sweep.json")
    shutil.copy(DATA / "guidellm-0.8.1-generated-benchmarks.csv", tmp_path / "base" / "sweep.csv")
    (tmp_path / ".cache" / "junk.json").write_text("{")  # hidden: never read
    (tmp_path / "notes.txt").write_text("what we ran\n")  # no known format: skipped, with a warning
    (tmp_path / "spec.yaml").write_text(
        "hardware: mock-cpu\ndataset: robot\nfiles:\n"
        '  "eagle/*/*.json": {verifier: Qwen/Qwen3-30B-A3B, drafter: eagle3, k: 2, engine: vllm, max_num_seqs: 256,'
        ' kv_cache_size: 193307}\n'
        '  "base/*": {verifier: Qwen/Qwen3-30B-A3B, drafter: none, k: 0}\n')
    res = ingest_paths(tmp_path)
    runs = res.runs
    assert len(runs) == 6 and (runs["hardware"] == "mock-cpu").all() and (runs["dataset"] == "robot").all()
    eagle = runs[runs["source"].str.endswith("sweep.json")]
    base = runs[runs["source"].str.endswith("sweep.csv")]
    assert (eagle["k"] == 2).all() and (eagle["engine"] == "vllm").all() and (base["drafter"] == "none").all()
    assert (eagle["max_num_seqs"] == 256).all() and base["max_num_seqs"].isna().all()  # the server's batch cap
    assert (eagle["kv_cache_tokens"] == 193307).all() and base["kv_cache_tokens"].isna().all()  # and its KV cache
    assert any("notes.txt" in w and "skipped" in w for w in res.warnings)
    assert not any(".cache" in p for p in res.formats)
    # the catalogue knows the verifier: an MoE with 128 experts, top-8
    (model,) = res.models.to_dict("records")
    assert (model["name"], model["experts"], model["experts_per_token"]) == ("Qwen/Qwen3-30B-A3B", 128, 8)


def scrape(path: Path, drafts: int, accepted: int, when: float) -> Path:
    path.write_text(f'vllm:spec_decode_num_drafts_total{{engine="0"}} {drafts}\n'
                    f'vllm:spec_decode_num_draft_tokens_total{{engine="0"}} {4 * drafts}\n'
                    f'vllm:spec_decode_num_accepted_tokens_total{{engine="0"}} {accepted}\n')
    os.utime(path, (when, when))
    return path


@pytest.fixture
def timed(tmp_path):
    """The real 0.8.1 report (3 runs, epoch times) and a /metrics scrape before, between and after them."""
    shutil.copy(MOCK, tmp_path / "sweep.json")
    spans = [r.span for r in read_format(MOCK).runs]
    scrape(tmp_path / "m0.prom", 100, 150, spans[0][0] - 1)
    scrape(tmp_path / "m1.prom", 200, 350, spans[1][0] - 1)
    scrape(tmp_path / "m2.prom", 300, 450, spans[2][0] - 1)
    scrape(tmp_path / "m3.prom", 400, 650, spans[2][1] + 1)
    return tmp_path


LABELS = {"verifier": "v", "drafter": "d", "k": 4, "hardware": "cpu"}


def test_scrapes_matched_to_runs_by_time(timed):
    when = (timed / "m3.prom").stat().st_mtime
    with open(timed / "m3.prom", "a") as f:  # the last run's closing scrape also gives the server's KV cache
        f.write('vllm:cache_config_info{block_size="16",num_gpu_blocks="100"} 1.0\n')
    os.utime(timed / "m3.prom", (when, when))
    res = ingest_paths(timed, labels=LABELS)
    runs = res.runs.sort_values("run_id")
    # deltas: m0->m1 100 drafts 200 accepted, m1->m2 100/100, m2->m3 100/200
    assert runs["acceptance_length"].tolist() == pytest.approx([3.0, 2.0, 3.0])
    assert (runs["num_drafts"] == 100).all() and (runs["engine"] == "vllm").all()
    assert runs["kv_cache_tokens"].tolist() == pytest.approx([np.nan, np.nan, 1600.0], nan_ok=True)
    assert any("modification times" in w for w in res.warnings)


def test_scrapes_bracketing_two_runs_are_an_error_that_says_what_to_do(timed):
    (timed / "m1.prom").unlink()
    with pytest.raises(TraceError, match="brackets run sweep:0:synchronous and also run sweep:1:throughput") as e:
        ingest_paths(timed, labels=LABELS)
    assert "manifest" in str(e.value) and "--attach-to" in str(e.value)
    # --attach-to names the run: the old pairing (two scrapes at most) applies
    (timed / "m2.prom").unlink()
    runs = ingest_paths(timed, labels={**LABELS, "attach_to": "1:throughput"}).runs.set_index("run_id")
    assert runs.loc["sweep:1:throughput", "num_drafts"] == 300
    assert runs["num_drafts"].isna().sum() == 2


def test_scrapes_without_run_times_cannot_be_matched(tmp_path):
    shutil.copy(DER / "vllm-appended-specdec.jsonl", tmp_path / "bench.jsonl")  # two runs, perf_counter clock
    scrape(tmp_path / "a.prom", 1, 1, 1.0)
    scrape(tmp_path / "b.prom", 2, 2, 2.0)
    with pytest.raises(TraceError, match="no wall-clock times"):
        ingest_paths(tmp_path)


def test_glob_patterns_expand_like_a_shell(timed):
    runs = ingest_paths([str(timed / "*.json")], labels=LABELS).runs
    assert len(runs) == 3 and runs["acceptance_length"].isna().all()
    with pytest.raises(TraceError, match="matches no file"):
        ingest_paths([str(timed / "*.nothing")])


# --- overrides --------------------------------------------------------------------------------------

SWEEP2 = [LLAMA, MOCK]


def test_drop_run_removes_it_and_says_so():
    res = ingest_paths(SWEEP2, labels=LABELS, drop_runs=["guidellm-0.8.1-generated-benchmarks:1:throughput"])
    assert "guidellm-0.8.1-generated-benchmarks:1:throughput" not in set(res.runs["run_id"]) and len(res.runs) == 3
    assert any("guidellm-0.8.1-generated-benchmarks:1:throughput" in w and "--drop-run" in w for w in res.warnings)
    with pytest.raises(TraceError, match="no run 'nope'"):
        ingest_paths(SWEEP2, labels=LABELS, drop_runs=["nope"])


def test_keep_run_and_no_saturation_check():
    rid = "guidellm-0.8.1-generated-benchmarks:1:throughput"  # a capacity probe, flagged by design
    base = ingest_paths(SWEEP2, labels=LABELS).runs.set_index("run_id")
    assert base.loc[rid, "saturated"]
    res = ingest_paths(SWEEP2, labels=LABELS, keep_runs=[rid])
    assert not res.runs.set_index("run_id").loc[rid, "saturated"]
    assert any(rid in w and "--keep-run" in w for w in res.warnings)
    unchecked = ingest_paths(SWEEP2, labels=LABELS, saturation_check=False).runs.set_index("run_id")
    assert unchecked["saturated"].sum() == 1 and unchecked.loc[rid, "saturated"]  # only the value given
    flagged_by_rules = base.index[base["saturated"] & (base.index != rid)]
    assert len(flagged_by_rules) and not unchecked.loc[flagged_by_rules, "saturated"].any()
    with pytest.raises(TraceError, match="no run 'nope'"):
        ingest_paths(SWEEP2, labels=LABELS, keep_runs=["nope"])


# --- pinned acceptance ----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["sidecar", "label", "speculative_config", "flags-and-log"])
def test_pinned_runs_are_cost_only(tmp_path, how):
    files = [DER / "vllm-appended-specdec.jsonl"]  # spec_decode_* acceptance 3.2 in both runs
    labels = None
    if how == "sidecar":
        (tmp_path / "s.yaml").write_text("acceptance: pinned\n")
        files.append(tmp_path / "s.yaml")
    elif how == "label":
        text = (DER / "vllm-appended-specdec.jsonl").read_text().replace('"hardware": "H100"',
                                                                         '"hardware": "H100", "acceptance": "pinned"')
        (tmp_path / "r.jsonl").write_text(text)
        files = [tmp_path / "r.jsonl"]
    elif how == "speculative_config":
        (tmp_path / "s.yaml").write_text("speculative_config:\n  method: eagle3\n  num_speculative_tokens: 4\n"
                                         "  rejection_sample_method: synthetic\n  synthetic_acceptance_length: 3.2\n")
        files.append(tmp_path / "s.yaml")
    else:
        files = [DER / "vllm-0.32.0-summary.json", DER / "vllm-pinned-serve.log"]
        labels = {"verifier": "v", "drafter": "d", "hardware": "h"}
    runs = ingest_paths(files, labels=labels).runs
    assert runs["acceptance_pinned"].all()
    assert runs["acceptance_length"].isna().all() and runs["num_drafts"].isna().all()
    assert runs["pinned_acceptance_length"].notna().all()
    if how == "flags-and-log":
        assert (runs["engine_version"] == "0.11.0").all() and runs["pinned_acceptance_length"].iloc[0] == 2.5


def test_unknown_acceptance_value_is_an_error(tmp_path):
    (tmp_path / "s.yaml").write_text("acceptance: maybe\n")
    with pytest.raises(TraceError, match="acceptance = 'maybe'"):
        ingest_paths([DER / "vllm-appended-specdec.jsonl", tmp_path / "s.yaml"])


# --- versions and models ------------------------------------------------------------------------------

def test_guidellm_before_and_after_0_7_4_pooled_warns_once():
    files = [DATA / "guidellm-0.5.4-generated-benchmarks.json", MOCK]
    res = ingest_paths(files, labels=LABELS)
    hits = [w for w in res.warnings if "0.7.4" in w]
    assert len(hits) == 1 and "guidellm-0.5.4-generated-benchmarks.json (0.5.4)" in hits[0]
    assert "guidellm-0.8.1-generated-benchmarks.json (0.8.1)" in hits[0]
    assert not any("0.7.4" in w for w in ingest_paths([MOCK, LLAMA], labels=LABELS).warnings)


def test_models_table_from_the_catalogue_and_unknown_verifiers_named(tmp_path):
    res = ingest_paths([LLAMA], labels={**LABELS, "verifier": "Qwen/Qwen3-30B-A3B", "drafter": "Qwen/Qwen3-0.6B"})
    models = res.models.set_index("name")
    assert models.loc["Qwen/Qwen3-30B-A3B", "experts"] == 128 and models.loc["Qwen/Qwen3-0.6B", "layers"] == 28
    assert not any("no size" in w for w in res.warnings)
    res = ingest_paths([LLAMA], labels={**LABELS, "verifier": "acme/unknown-9b"})
    assert len(res.models) == 0
    assert any("no size for acme/unknown-9b" in w and "models table" in w for w in res.warnings)
    # a models table among the inputs wins over the catalogue
    (tmp_path / "models.csv").write_text("name,params_b,layers\nacme/unknown-9b,9.0,40\n")
    res = ingest_paths([LLAMA, tmp_path / "models.csv"], labels={**LABELS, "verifier": "acme/unknown-9b"})
    assert res.models["name"].tolist() == ["acme/unknown-9b"] and not any("no size" in w for w in res.warnings)


def test_a_batch_cap_comes_from_the_server_command_or_a_label_and_a_bad_one_names_the_fix(tmp_path):
    from bayes_sd.traces.formats.labels import batch_cap_from_command

    assert batch_cap_from_command("llama-server -m t.gguf -np 16 -t 2") == 16.0
    assert batch_cap_from_command(["vllm", "serve", "m", "--max-num-seqs=128"]) == 128.0
    assert batch_cap_from_command("python -m sglang.launch_server --max-running-requests 64") == 64.0
    assert batch_cap_from_command("vllm serve m") is None  # the engine's default: not guessed
    (tmp_path / "k2").mkdir()
    shutil.copy(MOCK, tmp_path / "k2" / "sweep.json")
    (tmp_path / "spec.yaml").write_text("hardware: cpu\ndataset: d\nverifier: v\ndrafter: e\nk: 2\n"
                                        "max_num_seqs: lots\n")
    with pytest.raises(TraceError, match="max_num_seqs.*Fix: give the server's batch cap"):
        ingest_paths(tmp_path)
    (tmp_path / "spec.yaml").write_text("hardware: cpu\ndataset: d\nverifier: v\ndrafter: e\nk: 2\n"
                                        "kv_cache_tokens: 0\n")
    with pytest.raises(TraceError, match="kv_cache_tokens.*Fix: give the server's KV cache size"):
        ingest_paths(tmp_path)


def test_the_kv_cache_size_comes_from_a_server_command_a_vllm_log_or_a_scrape(tmp_path):
    from bayes_sd.traces.formats.labels import kv_cache_from_command
    from bayes_sd.traces.formats.prometheus import server_info
    from bayes_sd.traces.formats.vllm_logs import log_server_info

    assert kv_cache_from_command("llama-server -m t.gguf -np 16 -c 16384") == 16384.0
    assert kv_cache_from_command(["/opt/bin/llama-server", "--ctx-size=8192"]) == 8192.0
    assert kv_cache_from_command("llama-server -m t.gguf -c 0") is None  # the model's context: not guessed
    assert kv_cache_from_command("python -m sglang.launch_server --max-total-tokens 200000") == 200000.0
    assert kv_cache_from_command("some-tool -c 4096") is None  # -c is llama-server's context only
    cache = ('vllm:cache_config_info{block_size="16",engine="%s",num_gpu_blocks="%s"} 1.0\n')
    assert server_info(cache % ("0", "600") + cache % ("1", "573")) == {"engine": "vllm", "kv_cache_tokens": 9168.0}
    assert server_info(cache % ("0", "None")) == {"engine": "vllm"}  # before the engine profiled its memory
    assert log_server_info("INFO [kv_cache_utils.py:1087] GPU KV cache size: 4,455,808 tokens\n") == {
        "kv_cache_tokens": 4455808.0}

    shutil.copy(MOCK, tmp_path / "mock.json")
    shutil.copy(LLAMA, tmp_path / "llama.json")
    idle = tmp_path / "idle.prom"  # a server without speculation: no counters, but its cache configuration
    idle.write_text("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0.0\n"
                    + cache % ("0", "573"))
    log = tmp_path / "serve.log"
    log.write_text("INFO 11-22 01:58:00 [kv_cache_utils.py:1087] GPU KV cache size: 1,234,560 tokens\n"
                   + (DER / "vllm-0.33-serve.log").read_text())
    rate4 = {"type": "rate", "value": 4.0}
    points = [
        Point(id="k0@c1", status="done", configuration={**CFG, "drafter": "none", "k": 0},
              load={"type": "concurrency", "value": 1},
              files={"report": "mock.json", "metrics_before": "idle.prom", "metrics_after": "idle.prom"}),
        Point(id="k4-log@rate-4", status="done", configuration=CFG, load=rate4,
              files={"report": "llama.json", "metrics_before": str(DER / "vllm-metrics-before.prom"),
                     "metrics_after": str(DER / "vllm-metrics-after.prom"), "log": "serve.log"}),
        Point(id="k4-command@rate-4", status="done", configuration=CFG, load=rate4, files={"report": "llama.json"},
              commands={"server": ["llama-server", "-np", "4", "-c", "8192"]}),
        Point(id="k4-given@rate-4", status="done", configuration={**CFG, "kv_cache_tokens": 5000}, load=rate4,
              files={"report": "llama.json", "log": "serve.log"}),
    ]
    for p in points:
        p.files = {k: str(tmp_path / v) for k, v in p.files.items()}
    write_manifest(points, tmp_path / "manifest.json")
    runs = ingest_paths(tmp_path / "manifest.json").runs.set_index("run_id")
    assert runs["kv_cache_tokens"].to_dict() == {"k0@c1": 9168.0, "k4-log@rate-4": 1234560.0,
                                                 "k4-command@rate-4": 8192.0, "k4-given@rate-4": 5000.0}
    assert runs.loc["k4-command@rate-4", "max_num_seqs"] == 4.0
    assert runs.loc["k4-log@rate-4", "acceptance_length"] == pytest.approx(1 + 360 / 160)  # scrapes' delta
    flagged = ingest_paths(tmp_path / "manifest.json", labels={"kv_cache_tokens": 7000}).runs.set_index("run_id")
    assert flagged["kv_cache_tokens"].to_dict() == {"k0@c1": 7000.0, "k4-log@rate-4": 7000.0,
                                                    "k4-command@rate-4": 7000.0, "k4-given@rate-4": 5000.0}
