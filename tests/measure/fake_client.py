"""A small load generator for the sweep tests (stdlib only): streams completions at a constant rate
or a fixed concurrency to an OpenAI-compatible server and writes a ``vllm bench serve
--save-result --save-detailed`` result JSON, with the ``spec_decode_*`` keys taken from the
server's llama.cpp counters scraped before and after (as ``vllm bench serve`` does with vLLM's).

    python fake_client.py --url http://127.0.0.1:8123 --rate 4 --max-requests 10 --max-seconds 5 \\
        --output out.json [--metadata k=4 ...] [--hang]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import sys
import threading
import time
import urllib.request
from datetime import datetime
from urllib.parse import urlsplit

_COUNTER = re.compile(r"^llamacpp:spec_decode_num_(drafts|draft_tokens|accepted_tokens)_total\s+(\S+)", re.M)


def scrape(url: str) -> dict:
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in _COUNTER.finditer(text)}


def one_request(host: str, port: int, model: str, prompt_words: int, output_tokens: int, timeout: float) -> dict:
    prompt = " ".join(f"word{i}" for i in range(prompt_words))
    payload = {"model": model, "prompt": prompt, "max_tokens": output_tokens, "stream": True,
               "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    out = {"start": start, "ttft": 0.0, "itl": [], "latency": 0.0, "out": 0, "in": prompt_words, "error": "",
           "text": ""}
    try:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request("POST", "/v1/completions", json.dumps(payload), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            out["error"] = f"HTTP {resp.status}"
            return out
        last, text, usage = None, [], None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            piece = chunk["choices"][0].get("text", "") if chunk.get("choices") else ""
            if not piece:
                continue
            now = time.perf_counter()
            if last is None:
                out["ttft"] = now - start
            else:
                out["itl"].append(now - last)
            last = now
            text.append(piece)
        out["latency"] = time.perf_counter() - start
        out["text"] = "".join(text)
        out["out"] = int(usage["completion_tokens"]) if usage else len(out["text"].split())
        if usage:
            out["in"] = int(usage["prompt_tokens"])
        conn.close()
    except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def pct(values, q):
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def stats(name: str, values_s: list, out: dict) -> None:
    ms = [1e3 * v for v in values_s]
    mean = sum(ms) / len(ms) if ms else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in ms) / len(ms)) if ms else math.nan
    out.update({f"mean_{name}_ms": mean, f"median_{name}_ms": pct(ms, 50), f"std_{name}_ms": sd,
                f"p50_{name}_ms": pct(ms, 50), f"p90_{name}_ms": pct(ms, 90), f"p99_{name}_ms": pct(ms, 99)})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--rate", type=float)
    g.add_argument("--concurrency", type=int)
    p.add_argument("--max-requests", type=int, required=True)
    p.add_argument("--max-seconds", type=float, required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="")
    p.add_argument("--prompt-words", type=int, default=8)
    p.add_argument("--output-tokens", type=int, default=12)
    p.add_argument("--metadata", action="append", default=[], help="KEY=VALUE written at the top level")
    p.add_argument("--hang", action="store_true", help="never finish (tests the hard time-out)")
    args = p.parse_args(argv)
    print(f"fake client: {args.url} rate {args.rate} concurrency {args.concurrency}", flush=True)
    if args.hang:
        while True:
            time.sleep(1)
    parts = urlsplit(args.url)
    host, port = parts.hostname, parts.port
    before = scrape(args.url)
    t0 = time.perf_counter()
    results: list = []
    lock = threading.Lock()

    def send():
        r = one_request(host, port, args.model, args.prompt_words, args.output_tokens, timeout=30)
        with lock:
            results.append(r)

    threads = []
    if args.rate:
        for i in range(args.max_requests):
            due = t0 + i / args.rate
            if due - t0 > args.max_seconds:
                break
            time.sleep(max(0.0, due - time.perf_counter()))
            t = threading.Thread(target=send)
            t.start()
            threads.append(t)
    else:
        counter = iter(range(args.max_requests))
        counter_lock = threading.Lock()

        def stream():
            while time.perf_counter() - t0 < args.max_seconds:
                with counter_lock:
                    if next(counter, None) is None:
                        return
                send()

        threads = [threading.Thread(target=stream) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
    for t in threads:
        t.join()
    duration = time.perf_counter() - t0
    after = scrape(args.url)
    results.sort(key=lambda r: r["start"])
    ok = [r for r in results if not r["error"]]
    total_out = sum(r["out"] for r in ok)
    total_in = sum(r["in"] for r in ok)
    d = {"date": datetime.now().strftime("%Y%m%d-%H%M%S"), "endpoint_type": "openai", "backend": "openai",
         "label": None, "model_id": args.model or "fake-model", "tokenizer_id": "fake-tokenizer",
         "num_prompts": args.max_requests, "request_rate": args.rate if args.rate else "inf", "burstiness": 1.0,
         "max_concurrency": args.concurrency, "duration": duration, "completed": len(ok),
         "failed": len(results) - len(ok), "total_input_tokens": total_in, "total_output_tokens": total_out,
         "request_throughput": len(ok) / duration, "request_goodput": None,
         "output_throughput": total_out / duration, "total_token_throughput": (total_in + total_out) / duration,
         "input_lens": [r["in"] for r in results], "output_lens": [r["out"] for r in results],
         "ttfts": [r["ttft"] for r in results], "itls": [r["itl"] for r in results],
         "latencies": [r["latency"] for r in results], "start_times": [r["start"] for r in results],
         "errors": [r["error"] for r in results], "generated_texts": [r["text"] for r in results]}
    stats("ttft", [r["ttft"] for r in ok], d)
    stats("tpot", [(r["latency"] - r["ttft"]) / (r["out"] - 1) for r in ok if r["out"] > 1], d)
    stats("itl", [x for r in ok for x in r["itl"]], d)
    stats("e2el", [r["latency"] for r in ok], d)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("drafts", "draft_tokens", "accepted_tokens")}
    if delta["drafts"] > 0:
        d.update({"spec_decode_num_drafts": int(delta["drafts"]),
                  "spec_decode_draft_tokens": int(delta["draft_tokens"]),
                  "spec_decode_accepted_tokens": int(delta["accepted_tokens"]),
                  "spec_decode_acceptance_rate": 100 * delta["accepted_tokens"] / delta["draft_tokens"],
                  "spec_decode_acceptance_length": 1 + delta["accepted_tokens"] / delta["drafts"]})
    for item in args.metadata:
        key, _, value = item.partition("=")
        d[key] = value
    with open(args.output, "w") as fh:
        json.dump(d, fh)
    print(f"fake client: {len(ok)} of {len(results)} requests in {duration:.2f} s -> {args.output}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
