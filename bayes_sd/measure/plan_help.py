"""The sweep plan's documentation as the CLI prints it: a complete example plan and the help text
(``bayes-sd sweep --help``); the format is described in ``docs/sweep.md``."""

from __future__ import annotations

__all__ = ["PLAN_EXAMPLE", "PLAN_HELP"]

#: a complete plan (valid TOML, checked by the tests): vLLM, EAGLE-3 at k = 2 and 4 against k = 0
PLAN_EXAMPLE = """\
[server]                        # one server per configuration, started and stopped by the sweep
command = '''vllm serve {verifier} --host {host} --port {port} --speculative-config
             '{"method": "{method}", "model": "{drafter}", "num_speculative_tokens": {k}}' '''
host = "127.0.0.1"              # loopback only: 127.0.0.1, localhost or ::1
port = 8000
health_path = "/health"         # HTTP 200 = ready (a 404 falls back to /v1/models)
startup_timeout_s = 900
warmup_requests = 4             # after each start, not recorded
env = { CUDA_VISIBLE_DEVICES = "0" }

[client]                        # GuideLLM: pip install "bayes_sd[sweep]"
kind = "guidellm"
data = "kind=synthetic_text,prompt_tokens=256,output_tokens=128"    # GuideLLM --data
# or: kind = "command" and a template whose report `bayes-sd ingest` reads, e.g.
# command = "vllm bench serve --base-url {url} --request-rate {rate} --num-prompts {max_requests} ..."

[loads]
type = "rate"                   # requests/s (open loop), or "concurrency" (streams)
values = [1, 2, 4]
max_requests = 200              # per point
max_seconds = 120               # per point

[[configurations]]
name = "base"
verifier = "meta-llama/Llama-3.1-8B-Instruct"
drafter = "none"                # k = 0 exactly when drafter = "none"
k = 0
hardware = "H100"
dataset = "synthetic-256-128"
server_command = "vllm serve {verifier} --host {host} --port {port}"

[[configurations]]
name = "eagle3-k2"
verifier = "meta-llama/Llama-3.1-8B-Instruct"
drafter = "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"
k = 2
hardware = "H100"
dataset = "synthetic-256-128"
acceptance = "measured"         # or "pinned": the engine fixed it (cost-only data)
vars = { method = "eagle3" }    # more placeholders

[[configurations]]
name = "eagle3-k4"
verifier = "meta-llama/Llama-3.1-8B-Instruct"
drafter = "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"
k = 4
hardware = "H100"
dataset = "synthetic-256-128"
vars = { method = "eagle3" }
"""

PLAN_HELP = f"""\
Plan file (TOML; docs/sweep.md has SGLang and llama.cpp examples and every key):

{PLAN_EXAMPLE}
More keys: [server] stop_timeout_s, warmup_tokens, engine, version_command; [client] model,
request_format, backend (more GuideLLM backend keys), args, seed, timeout_grace_s (the hard
time-out is max_seconds + this), env; kind = "command": command, output_ext, tool, version_command;
[loads] arrivals ("constant", or "poisson": exponential gaps); a configuration's env.
Placeholders, in server and client templates: {{host}} {{port}} {{name}}
{{verifier}} {{drafter}} {{k}} {{k_plus_1}} {{hardware}} {{dataset}} {{acceptance}} and the
configuration's vars; in client templates also {{url}} {{rate}} or {{concurrency}} {{max_requests}}
{{max_seconds}} {{output}} {{seed}} {{model}} {{point}}."""


# ------------------------------------------------------------------------------------------- the plan
