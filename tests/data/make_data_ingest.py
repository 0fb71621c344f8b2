"""Regenerate the derived fixtures of the folder / manifest / acceptance ingest (issue 20).

    python tests/data/make_data_ingest.py

Writes, in tests/data/derived/: llama.cpp and SGLang /metrics scrapes, a GuideLLM report with
vLLM's per-choice speculative-decoding shape, an AIPerf export (aiperf/), and a vLLM log of a run
with synthetic (pinned) acceptance. Deterministic (fixed seed, no clock). See tests/data/SOURCES.md
for what each file is and where its format comes from.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
D = HERE / "derived"
LLAMACPP_HELP = {  # names and help texts as llama-server prints them (tools/server, to_metrics)
    "prompt_tokens_total": "Number of prompt tokens processed, excluding cached tokens",
    "tokens_predicted_total": "Number of generation tokens processed",
    "spec_decode_num_draft_tokens_total": "Speculative: Total draft tokens generated",
    "spec_decode_num_accepted_tokens_total": "Speculative: Total draft tokens accepted by the target model",
    "spec_decode_num_drafts_total": "Speculative: Total speculative decoding verification steps",
}


def llamacpp_scrape(prompt, predicted, draft, accepted, drafts) -> str:
    vals = dict(zip(LLAMACPP_HELP, (prompt, predicted, draft, accepted, drafts)))
    out = []
    for name, text in LLAMACPP_HELP.items():
        out += [f"# HELP llamacpp:{name} {text}", f"# TYPE llamacpp:{name} counter", f"llamacpp:{name} {vals[name]}"]
    out += ["# HELP llamacpp:requests_processing Number of requests processing",
            "# TYPE llamacpp:requests_processing gauge", "llamacpp:requests_processing 0"]
    return "\n".join(out) + "\n"


def sglang_scrape(accept_length, accept_rate, generated) -> str:
    lab = '{model_name="meta-llama/Llama-3.1-8B-Instruct"}'
    return "\n".join([
        "# HELP sglang:generation_tokens_total Number of generation tokens processed.",
        "# TYPE sglang:generation_tokens_total counter",
        f"sglang:generation_tokens_total{lab} {generated}",
        "# HELP sglang:spec_accept_length The average acceptance length of speculative decoding.",
        "# TYPE sglang:spec_accept_length gauge",
        f"sglang:spec_accept_length{lab} {accept_length}",
        "# HELP sglang:spec_accept_rate The average acceptance rate of speculative decoding (`accepted tokens / "
        "total draft tokens` in batch).",
        "# TYPE sglang:spec_accept_rate gauge",
        f"sglang:spec_accept_rate{lab} {accept_rate}",
    ]) + "\n"


def scrapes():
    # the llama.cpp run of guidellm-0.8.1-llamacpp-speculative.json: 40 requests x 64 tokens = 2560;
    # k = 4, 800 verify steps accepting 1760 draft tokens: 800 x 3.2 = 2560 tokens
    (D / "llamacpp-metrics-before.prom").write_text(llamacpp_scrape(51210, 24000, 28000, 15400, 7000))
    (D / "llamacpp-metrics-after.prom").write_text(llamacpp_scrape(55167, 26560, 31200, 17160, 7800))
    (D / "sglang-metrics-before.prom").write_text(sglang_scrape(2.71, 0.5700, 91233))
    (D / "sglang-metrics-after.prom").write_text(sglang_scrape(2.94, 0.6467, 103521))


def histogram(steps: int, accepted: int, k: int) -> dict:
    """Steps by accepted drafts (exactly ``steps`` steps accepting ``accepted`` drafts, j <= k)."""
    base, extra = divmod(accepted, steps)
    hist = {base: steps - extra}
    if extra:
        hist[min(base + 1, k)] = extra
    return {str(j): c for j, c in sorted(hist.items())}


def guidellm_per_choice():
    """The constant benchmark of the real 0.8.1 report with vLLM's per-choice shape
    (``speculative_decoding_stats``, dict histogram) in each request's ``response_metrics``."""
    tree = json.loads((HERE / "guidellm-0.8.1-generated-benchmarks.json").read_text())
    tree["config"]["metadata"]["labels"] = {"verifier": "llama-3.1-8b-instruct", "drafter": "eagle3-llama3.1-8b",
                                            "k": "4", "hardware": "mock-cpu", "dataset": "robot-stories"}
    b = copy.deepcopy(tree["benchmarks"][2])
    b["metrics"] = {}
    for r in b["requests"]["successful"]:
        r["output"] = r["request_args"] = None
        out = r["output_tokens"]
        steps = round((out - 1) / 3)
        acc = out - 1 - steps
        r["response_metrics"] = {"speculative_decoding_stats": {
            "mean_acceptance_length": 1 + acc / steps, "draft_acceptance_rate": acc / (4 * steps),
            "acceptance_histogram": histogram(steps, acc, 4), "num_spec_steps": steps,
            "num_accepted_draft_tokens": acc, "num_draft_tokens": 4 * steps, "num_spec_tokens": 4}}
    tree["benchmarks"] = [b]
    (D / "guidellm-0.8.1-specdec-per-choice.json").write_text(json.dumps(tree))


def aiperf():
    """An AIPerf artifact folder written from the record schema: 24 profiling requests at 2 req/s
    (one failed), one warm-up request, per-request spec-decode acceptance (vLLM, k = 3)."""
    rng = np.random.default_rng(20)
    folder = D / "aiperf"
    folder.mkdir(exist_ok=True)
    t0 = 1_795_400_000_000_000_000
    lines = []
    for i in range(-1, 24):
        start = t0 + int(i * 0.5e9)
        ttft_ms = float(40 + rng.uniform(0, 10))
        out = int(rng.integers(90, 130))
        steps = int(round((out - 1) / 2.6))
        acc = out - 1 - steps
        lat_ms = ttft_ms + (out - 1) * float(7.5 + rng.uniform(0, 1))
        md = {"session_num": i + 1, "x_request_id": f"req-{i + 1:03d}", "x_correlation_id": f"corr-{i + 1:03d}",
              "conversation_id": f"conv-{i + 1:03d}", "turn_index": 0, "request_start_ns": start,
              "request_ack_ns": start + int(2e6), "request_end_ns": start + int(lat_ms * 1e6),
              "worker_id": "worker_0a1b2c3d", "record_processor_id": "record_processor_4e5f6a7b",
              "benchmark_phase": "warmup" if i < 0 else "profiling", "was_cancelled": False,
              "cancellation_time_ns": None}
        if i == 11:
            rec = {"metadata": md, "metrics": {"error_isl": {"value": 512, "unit": "tokens"}},
                   "error": {"code": 500, "type": "ServerError", "message": "internal error"}}
        else:
            rec = {"metadata": md, "metrics": {
                "input_sequence_length": {"value": 512, "unit": "tokens"},
                "time_to_first_token": {"value": ttft_ms, "unit": "ms"},
                "request_latency": {"value": lat_ms, "unit": "ms"},
                "output_token_count": {"value": out, "unit": "tokens"},
                "output_sequence_length": {"value": out, "unit": "tokens"},
                "inter_token_latency": {"value": (lat_ms - ttft_ms) / (out - 1), "unit": "ms"}},
                "spec_decode_acceptance": {
                    "engine": "vllm", "mean_acceptance_length": 1 + acc / steps,
                    "draft_acceptance_rate": acc / (3 * steps), "acceptance_histogram": histogram(steps, acc, 3),
                    "num_accepted_draft_tokens": acc, "num_draft_tokens": 3 * steps, "num_spec_steps": steps,
                    "num_spec_tokens": 3, "completion_tokens": out},
                "error": None}
        lines.append(json.dumps(rec, separators=(",", ":")))
    (folder / "profile_export.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"records": {"request_count": {"tag": "request_count", "unit": "requests", "header": "Request Count",
                                             "avg": 23.0, "count": 1}},
               "input_config": {"endpoint": {"model_names": ["meta-llama/Llama-3.1-8B-Instruct"], "type": "chat",
                                             "streaming": True, "url": "localhost:8000"},
                                "loadgen": {"request_rate": 2.0, "request_count": 24}},
               "was_cancelled": False, "error_summary": [], "start_time": "2026-11-22T10:13:20.000000",
               "end_time": "2026-11-22T10:13:33.000000"}
    (folder / "profile_export_aiperf.json").write_text(json.dumps(summary, indent=2) + "\n")


def pinned_log():
    pre = "(APIServer pid=7) INFO 11-22 02:{m:02d}:{s:02d} [{f}] "
    lines = [
        pre.format(m=0, s=1, f="api_server.py:1805") + "vLLM API server version 0.11.0",
        pre.format(m=0, s=1, f="utils.py:328") + "non-default args: {'model': 'meta-llama/Llama-3.1-8B-Instruct', "
        "'speculative_config': {'method': 'eagle3', 'model': 'yuhuili/EAGLE3-LLaMA3.1-Instruct-8B', "
        "'num_speculative_tokens': 3, 'rejection_sample_method': 'synthetic', 'synthetic_acceptance_length': 2.5}}",
        "(EngineCore_DP0 pid=9) INFO 11-22 02:00:09 [core.py:77] Initializing a V1 LLM engine (v0.11.0) with config: "
        "model='meta-llama/Llama-3.1-8B-Instruct', speculative_config=SpeculativeConfig(method='eagle3', "
        "model='yuhuili/EAGLE3-LLaMA3.1-Instruct-8B', num_spec_tokens=3)",
        pre.format(m=1, s=10, f="metrics.py:96") + "SpecDecoding metrics: Mean acceptance length: 2.50, Accepted "
        "throughput: 12.00 tokens/s, Drafted throughput: 24.00 tokens/s, Accepted: 120 tokens, Drafted: 240 tokens, "
        "Per-position acceptance rate: 0.750, 0.500, 0.250, Avg Draft acceptance rate: 50.0%",
        pre.format(m=1, s=20, f="metrics.py:96") + "SpecDecoding metrics: Mean acceptance length: 2.50, Accepted "
        "throughput: 15.00 tokens/s, Drafted throughput: 30.00 tokens/s, Accepted: 150 tokens, Drafted: 300 tokens, "
        "Per-position acceptance rate: 0.750, 0.500, 0.250, Avg Draft acceptance rate: 50.0%",
    ]
    (D / "vllm-pinned-serve.log").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    scrapes()
    guidellm_per_choice()
    aiperf()
    pinned_log()
