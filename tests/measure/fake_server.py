"""A small OpenAI-compatible streaming server for the sweep tests (stdlib only, threaded, no GPU).

Speculative decoding is imitated at the k of its command line: each step drafts k tokens, accepts
each in turn with probability ``--acceptance`` (until the first rejection), emits the accepted ones
plus one, and counts them in llama.cpp's Prometheus counters
(``llamacpp:spec_decode_num_draft_tokens_total``, ``..._accepted_tokens_total``,
``..._drafts_total``). A step takes ``--step-delay`` seconds times (1 + ``--load-factor`` x (requests
in flight - 1)), so latency grows with the load.

Endpoints: ``/health``, ``/v1/models``, ``/props``, ``/metrics``, ``/v1/completions`` and
``/v1/chat/completions`` (SSE streaming or not). Failure modes for the tests: ``--never-healthy``,
``--exit-at-start``, ``--die-after N`` (exit after N generation requests), ``--ignore-sigterm``.

    python fake_server.py --port 8123 --k 4 [--pid-file F]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.inflight = 0
        self.requests = 0
        self.counters = {"prompt_tokens_total": 0, "tokens_predicted_total": 0, "n_decode_total": 0,
                         "spec_decode_num_draft_tokens_total": 0, "spec_decode_num_accepted_tokens_total": 0,
                         "spec_decode_num_drafts_total": 0}
        self.ready_at = time.monotonic() + args.startup_delay

    def step(self) -> int:
        """One decoding step: tokens emitted (counters updated)."""
        k = self.args.k
        with self.lock:
            self.counters["n_decode_total"] += 1
            if k == 0:
                return 1
            accepted = 0
            while accepted < k and self.rng.random() < self.args.acceptance:
                accepted += 1
            self.counters["spec_decode_num_drafts_total"] += 1
            self.counters["spec_decode_num_draft_tokens_total"] += k
            self.counters["spec_decode_num_accepted_tokens_total"] += accepted
            return accepted + 1


def make_handler(state: State):
    args = state.args

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):  # one line per request on stdout (the server log)
            print(f"{self.command} {self.path} {a[1] if len(a) > 1 else ''}", flush=True)

        def _json(self, status: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            ready = not args.never_healthy and time.monotonic() >= state.ready_at
            if self.path == "/health":
                return self._json(200 if ready else 503, {"status": "ok" if ready else "loading"})
            if not ready:
                return self._json(503, {"error": "loading"})
            if self.path == "/v1/models":
                return self._json(200, {"object": "list", "data": [{"id": args.model, "object": "model",
                                                                      "owned_by": "llamacpp"}]})
            if self.path == "/props":
                return self._json(200, {"build_info": "b9999-fake", "model_path": args.model})
            if self.path == "/metrics" and not args.no_metrics:
                with state.lock:
                    c = dict(state.counters)
                    inflight, requests = state.inflight, state.requests
                lines = []
                for name, v in c.items():
                    lines += [f"# HELP llamacpp:{name} {name}", f"# TYPE llamacpp:{name} counter",
                              f"llamacpp:{name} {v:g}"]
                lines += ["# TYPE llamacpp:requests_processing gauge", f"llamacpp:requests_processing {inflight}",
                          "# TYPE fake_requests_total counter", f"fake_requests_total {requests}"]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None
            return self._json(404, {"error": f"no route {self.path}"})

        def do_POST(self):
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                return self._json(404, {"error": f"no route {self.path}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            except ValueError:
                return self._json(400, {"error": "bad JSON"})
            chat = self.path.endswith("chat/completions")
            text = (" ".join(str(m.get("content", "")) for m in body.get("messages", [])) if chat
                    else str(body.get("prompt", "")))
            n_prompt = max(1, len(text.split()))
            n_out = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
            with state.lock:
                state.requests += 1
                state.inflight += 1
                state.counters["prompt_tokens_total"] += n_prompt
                count = state.requests
            try:
                if args.die_after and count > args.die_after:
                    print(f"fake server: dying after {args.die_after} requests", flush=True)
                    os._exit(3)
                return self._generate(body, chat, n_prompt, n_out)
            finally:
                with state.lock:
                    state.inflight -= 1

        def _delay(self) -> None:
            with state.lock:
                load = state.inflight
            time.sleep(args.step_delay * (1 + args.k * args.draft_cost) * (1 + args.load_factor * (load - 1)))

        def _generate(self, body, chat, n_prompt, n_out):
            rid = f"cmpl-{time.monotonic_ns()}"
            kind = "chat.completion" if chat else "text_completion"
            usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
            time.sleep(args.prefill_delay)
            if not body.get("stream"):
                done = 0
                while done < n_out:
                    self._delay()
                    done += state.step()
                with state.lock:
                    state.counters["tokens_predicted_total"] += n_out
                text = " ".join(["tok"] * n_out)
                choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                          if chat else {"index": 0, "text": text, "finish_reason": "length"})
                return self._json(200, {"id": rid, "object": kind, "model": args.model, "choices": [choice],
                                        "usage": usage})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()

            def send(obj) -> None:
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

            chunk_kind = "chat.completion.chunk" if chat else "text_completion"
            done = 0
            while done < n_out:
                self._delay()
                emit = min(state.step(), n_out - done)
                done += emit
                with state.lock:
                    state.counters["tokens_predicted_total"] += emit
                piece = "tok " * emit
                choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": None} if chat
                          else {"index": 0, "text": piece, "finish_reason": None})
                send({"id": rid, "object": chunk_kind, "model": args.model, "choices": [choice]})
            last = ({"index": 0, "delta": {}, "finish_reason": "length"} if chat
                    else {"index": 0, "text": "", "finish_reason": "length"})
            send({"id": rid, "object": chunk_kind, "model": args.model, "choices": [last], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return None

    return Handler


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--k", type=int, default=0, help="draft tokens per step (0: no speculation)")
    p.add_argument("--acceptance", type=float, default=0.7, help="probability that each draft token is accepted")
    p.add_argument("--step-delay", type=float, default=0.002, help="seconds per decoding step at one request")
    p.add_argument("--draft-cost", type=float, default=0.1, help="extra step time per draft token (fraction)")
    p.add_argument("--prefill-delay", type=float, default=0.002, help="seconds before the first token")
    p.add_argument("--load-factor", type=float, default=0.5, help="step slowdown per extra request in flight")
    p.add_argument("--model", default="fake-model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--startup-delay", type=float, default=0.0, help="seconds of 503 on /health after the start")
    p.add_argument("--never-healthy", action="store_true")
    p.add_argument("--exit-at-start", action="store_true")
    p.add_argument("--die-after", type=int, default=0, help="exit after this many generation requests")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--no-metrics", action="store_true")
    p.add_argument("--pid-file", help="append this process's pid here")
    args = p.parse_args(argv)
    if args.pid_file:
        with open(args.pid_file, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    print(f"fake server: pid {os.getpid()} k {args.k} on {args.host}:{args.port}", flush=True)
    if args.exit_at_start:
        print("fake server: error: exiting at start as asked (--exit-at-start)", flush=True)
        return 4
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(State(args)))
    server.daemon_threads = True
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
