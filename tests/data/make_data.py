"""Regenerate tests/data/derived/ and tests/data/bad/ from the real fixtures beside this file.

    python tests/data/make_data.py

Deterministic (no clock, fixed seeds). See tests/data/SOURCES.md for what each file is.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
D, B = HERE / "derived", HERE / "bad"
G08 = "guidellm-0.8.1-generated-benchmarks.json"
G05 = "guidellm-0.5.4-generated-benchmarks.json"
VLLM = "vllm-0.32.0-generated-bench-serve-detailed.json"
LABELS = {"verifier": "llama-3.1-8b-instruct", "drafter": "eagle3-llama3.1-8b", "k": "4", "hardware": "mock-cpu",
          "dataset": "robot-stories"}


def load(name):
    return json.loads((HERE / name).read_text())


def small(name):
    """A GuideLLM report without its aggregates (``metrics``) and texts: small bad-corpus files."""
    t = load(name)
    for b in t["benchmarks"]:
        b["metrics"] = {}
        for lst in b["requests"].values():
            for r in lst or []:
                r["output"] = r["request_args"] = None
    return t


def dump_json(tree, path, **kw):
    path.write_text(json.dumps(tree, **kw))  # GuideLLM / vLLM: json.dumps, one line


def guidellm_derived():
    g = small(G08)
    one = copy.deepcopy(g)
    one["benchmarks"] = one["benchmarks"][:1]
    (D / "guidellm-0.8.1-sync.yaml").write_text(yaml.dump(one))  # GuideLLM's YAML output: yaml.dump of the dict
    spec = copy.deepcopy(g)
    spec["config"]["metadata"]["labels"] = dict(LABELS)
    b = spec["benchmarks"][2]
    b["config"]["strategy"] = {"type_": "poisson", "worker_count": 10, "max_concurrency": 512, "rate": 5.0,
                               "random_seed": 42}
    for r in b["requests"]["successful"]:
        out = r["output_tokens"]
        steps = round((out - 1) / 3)
        acc = out - 1 - steps
        r["response_metrics"] = {"time_to_first_token_ms": 30.0, "speculative_decoding": {
            "mean_acceptance_length": 1 + acc / steps, "draft_acceptance_rate": acc / (4 * steps),
            "acceptance_histogram": [0, 0, 0, 0, 0], "num_spec_steps": steps, "num_accepted_draft_tokens": acc,
            "num_draft_tokens": 4 * steps, "num_spec_tokens": 4}}
    spec["benchmarks"] = [b]
    dump_json(spec, D / "guidellm-0.8.1-specdec.json")
    dump_json(spec, D / "guidellm-0.8.1-specdec-indented.json", indent=2)
    g5 = small(G05)
    b = copy.deepcopy(g5["benchmarks"][2])
    b["config"]["strategy"] = {"type_": "concurrent", "worker_count": 4, "max_concurrency": 4, "streams": 4}
    reqs = sorted(b["requests"]["successful"], key=lambda r: r["request_start_time"])
    sm = b["scheduler_metrics"]
    sm["measure_start_time"] = reqs[1]["request_start_time"] - 1e-4  # warm-up: the first request is outside
    b["warmup_duration"] = sm["measure_start_time"] - sm["request_start_time"]
    e = copy.deepcopy(reqs[0])
    e["info"]["status"] = "errored"
    e["request_id"] = "errored-1"
    b["requests"]["errored"] = [e]
    b["scheduler_metrics"]["requests_made"] = {"successful": 6, "errored": 1, "incomplete": 0, "total": 7}
    g5["benchmarks"] = [b]
    dump_json(g5, D / "guidellm-0.5.4-concurrent-warmup.json")
    g4 = small(G05)
    del g4["metadata"]
    dump_json(g4, D / "guidellm-0.4-style.json")


def vllm_derived():
    v = load(VLLM)
    s = {k: x for k, x in v.items() if k not in ("input_lens", "output_lens", "start_times", "ttfts", "itls",
                                                "generated_texts", "errors", "server_queue_times", "server_ttfts",
                                                "latencies", "queue_times")}
    dump_json(s, D / "vllm-0.32.0-summary.json")
    old = {k: x for k, x in v.items() if k not in ("latencies", "start_times", "queue_times", "rtfx")}
    dump_json(old, D / "vllm-0.14-style-detailed-no-start-times.json")
    a = dict(s, request_rate=2.0, hardware="H100", verifier="meta-llama/Llama-3.1-8B-Instruct",
             drafter="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", dataset="sharegpt",
             spec_decode_acceptance_rate=55.0, spec_decode_acceptance_length=3.2, spec_decode_num_drafts=120,
             spec_decode_draft_tokens=480, spec_decode_accepted_tokens=264,
             spec_decode_per_position_acceptance_rates=[0.85, 0.62, 0.45, 0.28])
    b = dict(a, request_rate="inf", max_concurrency=4)
    (D / "vllm-appended-specdec.jsonl").write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")


SGL_INFO = {"model_path": "meta-llama/Llama-3.1-8B-Instruct", "speculative_algorithm": "EAGLE3",
            "speculative_draft_model_path": "jamesliu1/sglang-EAGLE3-Llama-3.1-Instruct-8B",
            "speculative_num_steps": 3, "speculative_eagle_topk": 1, "speculative_num_draft_tokens": 4,
            "internal_states": [{"avg_spec_accept_length": 2.9}]}


def sglang_derived():
    base = {"tag": None, "backend": "sglang-oai", "dataset_name": "random", "request_rate": float("inf"),
            "max_concurrency": 8, "sharegpt_output_len": None, "random_input_len": 64, "random_output_len": 32,
            "random_range_ratio": 1.0, "server_info": SGL_INFO, "duration": 3.2, "completed": 12,
            "total_input_tokens": 768, "total_output_tokens": 384, "request_throughput": 3.75,
            "output_throughput": 120.0, "mean_e2e_latency_ms": 310.0, "median_e2e_latency_ms": 305.0,
            "std_e2e_latency_ms": 20.0, "p90_e2e_latency_ms": 335.0, "p99_e2e_latency_ms": 350.0,
            "mean_ttft_ms": 42.0, "median_ttft_ms": 41.0, "mean_tpot_ms": 8.6, "mean_itl_ms": 25.0,
            "concurrency": 1.2, "accept_length": 2.9}
    v = load(VLLM)
    det = dict(base, request_rate=4.0, max_concurrency=None, input_lens=v["input_lens"], output_lens=v["output_lens"],
               ttfts=v["ttfts"], itls=v["itls"], errors=v["errors"], generated_texts=v["generated_texts"])
    (D / "sglang-bench-serving.jsonl").write_text(json.dumps(base) + "\n" + json.dumps(det) + "\n")


def prom(drafts, draft_tok, acc, pos, engine="0"):
    lab = f'engine="{engine}",model_name="llama"'
    lines = ["# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.",
             "# TYPE vllm:spec_decode_num_drafts_total counter",
             f"vllm:spec_decode_num_drafts_total{{{lab}}} {drafts:.1f}",
             f"vllm:spec_decode_num_drafts_created{{{lab}}} 1.7e9",
             f"vllm:spec_decode_num_draft_tokens_total{{{lab}}} {draft_tok:.1f}",
             f"vllm:spec_decode_num_accepted_tokens_total{{{lab}}} {acc:.1f}"]
    lines += [f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{lab},position="{j}"}} {x:.1f}'
              for j, x in enumerate(pos)]
    return "\n".join(lines) + "\n"


def metrics_and_logs():
    before = prom(1000, 4000, 2000, [800, 600, 400, 200]) + prom(500, 2000, 1000, [400, 300, 200, 100], "1")
    after = prom(1100, 4400, 2230, [890, 670, 450, 220]) + prom(560, 2240, 1130, [450, 340, 230, 110], "1")
    (D / "vllm-metrics-before.prom").write_text("vllm:num_requests_running{engine=\"0\"} 0.0\n" + before)
    (D / "vllm-metrics-after.prom").write_text(after)
    (D / "vllm-metrics-two-scrapes.prom").write_text(before + after)
    pre = "(APIServer pid=1) INFO 11-22 01:59:{s:02d} [metrics.py:96] "
    v033 = [pre.format(s=10) + "Engine 000: Avg prompt throughput: 120.0 tokens/s, Avg generation throughput: 80.0 "
            "tokens/s, Running: 4 reqs, Waiting: 0 reqs",
            pre.format(s=10) + "SpecDecoding metrics: Mean acceptance length: 3.49, Accepted throughput: 9.20 tokens/s,"
            " Drafted throughput: 25.90 tokens/s, Accepted: 92 tokens, Drafted: 148 tokens, Per-position acceptance "
            "rate: 0.757, 0.622, 0.432, 0.250, Avg Draft acceptance rate: 62.2%",
            pre.format(s=20) + "SpecDecoding metrics: Mean acceptance length: 2.50, Accepted throughput: 6.00 tokens/s,"
            " Drafted throughput: 16.00 tokens/s, Accepted: 60 tokens, Drafted: 160 tokens, Per-position acceptance "
            "rate: 0.600, 0.400, 0.300, 0.200, Avg Draft acceptance rate: 37.5%"]
    (D / "vllm-0.33-serve.log").write_text("\n".join(["INFO starting vLLM API server"] + v033) + "\n")
    v010 = ["INFO 05-02 10:00:00 [metrics.py:80] SpecDecoding metrics: Draft acceptance rate: 38.8%, Mean acceptance "
            "length: 2.16, Accepted: 150 tokens, Drafted: 387 tokens, "
            "Per-position acceptance rate: 0.543, 0.357, 0.264"]
    (D / "vllm-0.10-serve.log").write_text("\n".join(v010) + "\n")
    v0 = ["INFO 10-01 12:00:00 metrics.py:400] Speculative metrics: Draft acceptance rate: 0.500, System efficiency: "
          "0.400, Number of speculative tokens: 3, Number of accepted tokens: 4000, Number of draft tokens: 9000, "
          "Number of emitted tokens: 6000.",
          "INFO 10-01 12:00:05 metrics.py:400] Speculative metrics: Draft acceptance rate: 0.642, System efficiency: "
          "0.598, Number of speculative tokens: 3, Number of accepted tokens: 8547, Number of draft tokens: 13311, "
          "Number of emitted tokens: 10616."]
    (D / "vllm-v0-serve.log").write_text("\n".join(v0) + "\n")
    (D / "sidecar.yaml").write_text("verifier: llama-3.1-8b-instruct\ndrafter: eagle3-llama3.1-8b\nk: 4\n"
                                    "hardware: mock-cpu\ndataset: robot-stories\nruns:\n  \"1\": {k: 2}\n"
                                    "files:\n  guidellm-0.8.1-generated-benchmarks.csv: {hardware: other-cpu}\n")


def bad():
    g = json.dumps(small(G08)).encode()
    (B / "truncated-guidellm.json").write_bytes(g[:30_000])
    (B / "not-json.json").write_text("this is not { json at all\n")
    (B / "empty.json").write_text("")
    (B / "binary.bin").write_bytes(bytes(range(256)) * 4)
    t = small(G08)
    t["metadata"]["version"] = 3
    dump_json(t, B / "guidellm-unknown-version.json")
    t = small(G08)
    del t["benchmarks"][0]["config"]["strategy"]
    dump_json(t, B / "guidellm-missing-strategy.json")
    t = small(G05)
    for b in t["benchmarks"]:
        for r in b["requests"]["successful"]:
            for k in ("request_start", "first_token_iteration", "last_token_iteration", "request_end"):
                r["info"]["timings"][k] = r["info"]["timings"][k] * 1000.0
            r["request_start_time"] *= 1000.0
            r["request_end_time"] *= 1000.0
    dump_json(t, B / "guidellm-epoch-milliseconds.json")
    t = small(G05)
    for b in t["benchmarks"]:
        for r in b["requests"]["successful"]:
            del r["info"]["timings"]
            r["time_to_first_token_ms"] *= 1000.0  # microseconds written as ms: TTFT > latency
    dump_json(t, B / "guidellm-ttft-scaled.json")
    t = small(G08)
    t["benchmarks"][1]["requests"]["successful"][2]["info"]["timings"]["first_token_iteration"] = float("nan")
    dump_json(t, B / "guidellm-nan-time.json")
    t = small(G08)
    r = t["benchmarks"][0]["requests"]["successful"][0]
    r["request_start_time"] = r["info"]["timings"]["request_start"] = -5.0
    dump_json(t, B / "guidellm-negative-time.json")
    t = small(G08)
    r = t["benchmarks"][0]["requests"]["successful"][3]["info"]["timings"]
    r["first_token_iteration"] = r["request_start"] - 0.5
    dump_json(t, B / "guidellm-out-of-order.json")
    t = small(G08)
    ok = t["benchmarks"][2]["requests"]["successful"]
    ok.append(copy.deepcopy(ok[0]))
    dump_json(t, B / "guidellm-duplicated-request.json")
    t = small(G08)
    b = t["benchmarks"][0]
    b["requests"]["errored"] = b["requests"]["successful"]
    b["requests"]["successful"] = []
    dump_json(t, B / "guidellm-empty-run.json")
    t["benchmarks"] = [b]
    dump_json(t, B / "guidellm-all-runs-empty.json")
    v = load(VLLM)
    dump_json(dict(v, ttfts=[x * 1000 for x in v["ttfts"]]), B / "vllm-ttfts-in-ms.json")
    dump_json(dict(v, itls=v["itls"][:-1], latencies=v["latencies"][:-1]), B / "vllm-list-length-mismatch.json")
    w = dict(v)
    del w["request_rate"]
    dump_json(w, B / "vllm-missing-request-rate.json")
    errs = list(v["errors"])
    ol, tt = list(v["output_lens"]), list(v["ttfts"])
    for i in (2, 5, 7):
        errs[i], ol[i], tt[i] = "ClientConnectorError: connection refused", 0, 0.0
    dump_json(dict(v, errors=errs, output_lens=ol, ttfts=tt, completed=9, failed=3), B / "vllm-with-failures.json")
    dump_json(dict(v, ramp_up_strategy="linear", ramp_up_start_rps=1, ramp_up_end_rps=8), B / "vllm-ramp-up.json")
    s = {k: x for k, x in v.items() if not isinstance(x, list)}
    dump_json(dict(s, spec_decode_acceptance_rate=0.55, spec_decode_acceptance_length=3.2, spec_decode_num_drafts=120,
                   spec_decode_draft_tokens=480, spec_decode_accepted_tokens=264), B / "vllm-spec-rate-fraction.json")
    dump_json(dict(s, **{"mean_ttft_ms": math.nan}), B / "vllm-nan-aggregate.json")
    (B / "sglang-trace-rate.jsonl").write_text(json.dumps({"backend": "sglang", "request_rate": "trace",
                                                           "server_info": SGL_INFO, "completed": 3}) + "\n")
    (B / "vllm-metrics-counter-reset.prom").write_text(prom(1000, 4000, 2000, [1, 1, 1, 1])
                                                       + prom(10, 40, 20, [1, 1, 1, 1]))
    (B / "metrics-without-spec-decode.prom").write_text("# TYPE vllm:num_requests_running gauge\n"
                                                        "vllm:num_requests_running{engine=\"0\"} 3.0\n")
    (B / "vllm-log-accepted-gt-drafted.log").write_text(
        "INFO SpecDecoding metrics: Mean acceptance length: 3.00, Accepted: 500 tokens, Drafted: 100 tokens\n")
    (B / "sidecar-typo.yaml").write_text("verifier: llama\ndrafter: eagle3\nkk: 4\nhardware: H100\n")
    y = (D / "guidellm-0.8.1-sync.yaml").read_text()
    (B / "truncated-guidellm.yaml").write_text(y[: len(y) // 2] + '\n  - "unterminated')


if __name__ == "__main__":
    D.mkdir(exist_ok=True)
    B.mkdir(exist_ok=True)
    guidellm_derived()
    vllm_derived()
    sglang_derived()
    metrics_and_logs()
    bad()
    print("wrote", len(list(D.iterdir())), "derived and", len(list(B.iterdir())), "bad files")
