"""The GuideLLM command of a point, argument by argument in GuideLLM 0.8.1's syntax (no GuideLLM
needed); and, where GuideLLM is installed, parsed by GuideLLM's own command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bayes_sd.measure.guidellm import guidellm_command, option_value


def test_rate_point_command_in_guidellm_081_syntax():
    argv = guidellm_command(target="http://127.0.0.1:8000", load_type="rate", load_value=2.0, max_requests=200,
                            max_seconds=120, data="kind=synthetic_text,prompt_tokens=256,output_tokens=128",
                            output="/sweep/reports/eagle3-k4@rate-2.json", seed=7,
                            labels={"verifier": "meta-llama/Llama-3.1-8B-Instruct", "k": 4})
    assert argv == [
        "guidellm", "run",
        "--backend", "kind=openai_http,target=http://127.0.0.1:8000",
        "--profile", "kind=constant,rate=2",
        "--constraint", "kind=max_requests,count=200",
        "--constraint", "kind=max_duration,seconds=120",
        "--data", "kind=synthetic_text,prompt_tokens=256,output_tokens=128",
        "--seed", "kind=static,value=7",
        "--output", "kind=json,path=/sweep/reports/eagle3-k4@rate-2.json",
        "--label", "verifier=meta-llama/Llama-3.1-8B-Instruct",
        "--label", "k=4",
        "--disable-console-interactive",
    ]


def test_concurrency_point_and_backend_keys():
    argv = guidellm_command(target="http://[::1]:9000", load_type="concurrency", load_value=8, max_requests=50,
                            max_seconds=30.5, data={"kind": "json_file", "path": "/data/prompts.jsonl"},
                            output="/o/p.json", executable="/venv/bin/guidellm", model="my-model",
                            request_format="/v1/completions", backend={"extras": {"body": {"temperature": 0}}},
                            extra_args=["--tokenizer", "kind=huggingface_auto,model=/tok"])
    assert argv[0] == "/venv/bin/guidellm"
    assert argv[argv.index("--profile") + 1] == "kind=concurrent,streams=8"
    assert argv[argv.index("--constraint") + 3] == "kind=max_duration,seconds=30.5"
    assert argv[argv.index("--data") + 1] == "kind=json_file,path=/data/prompts.jsonl"
    # a nested table cannot be key=value: the backend goes as JSON
    assert json.loads(argv[argv.index("--backend") + 1]) == {
        "kind": "openai_http", "target": "http://[::1]:9000", "model": "my-model",
        "request_format": "/v1/completions", "extras": {"body": {"temperature": 0}}}
    assert argv[-3:] == ["--disable-console-interactive", "--tokenizer", "kind=huggingface_auto,model=/tok"]


@pytest.mark.parametrize("value", ["/a,b/out.json", "x=y", "on", "1:30", " padded", "{k}"])
def test_values_the_key_value_parser_would_misread_go_as_json(value):
    text = option_value({"kind": "json", "path": value})
    assert json.loads(text) == {"kind": "json", "path": value}


def test_bad_loads_are_refused():
    common = dict(target="http://127.0.0.1:1", load_value=1, max_seconds=1, data="d", output="o")
    with pytest.raises(ValueError, match="'rate' or 'concurrency'"):
        guidellm_command(load_type="qps", max_requests=1, **common)
    with pytest.raises(ValueError, match="> 0"):
        guidellm_command(load_type="rate", max_requests=0, **common)


def _guidellm_python() -> str | None:
    """The interpreter of an installed `guidellm` (its script's shebang)."""
    exe = shutil.which("guidellm") or ("/work/tools/venv/bin/guidellm"
                                       if os.access("/work/tools/venv/bin/guidellm", os.X_OK) else None)
    if not exe:
        return None
    first = Path(exe).read_text(errors="replace").splitlines()[0]
    return first[2:].strip() if first.startswith("#!") else None


_PARSE = """
import json, sys
import guidellm.entrypoints as entry
from guidellm.cli.run import run
seen = {}
async def capture(args, progress=True, console=None, **kw):
    seen["args"] = args
    return None, []
entry.benchmark_generative_text = capture
run.main(args=json.loads(sys.argv[1])[2:], standalone_mode=False)
print(json.dumps(seen["args"].model_dump(mode="json"), default=str))
"""


@pytest.mark.skipif(_guidellm_python() is None, reason="GuideLLM is not installed (pip install 'bayes_sd[sweep]')")
def test_guidellm_itself_parses_the_command_as_meant(tmp_path):
    argv = guidellm_command(target="http://127.0.0.1:8000", load_type="rate", load_value=2.5, max_requests=100,
                            max_seconds=60, data="kind=synthetic_text,prompt_tokens=256,output_tokens=128",
                            output=str(tmp_path / "a,b@rate-2.5.json"), labels={"k": 4, "sweep_point": "a@rate-2.5"},
                            backend={"extras": {"body": {"temperature": 0}}})
    done = subprocess.run([_guidellm_python(), "-c", _PARSE, json.dumps(argv)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    scenario = json.loads(done.stdout.strip().splitlines()[-1])
    spec = scenario["spec"]
    assert spec["backend"]["target"] == "http://127.0.0.1:8000"
    assert spec["backend"]["extras"]["body"] == {"temperature": 0}
    assert (spec["profile"]["kind"], spec["profile"]["rate"]) == ("constant", [2.5])
    assert [(c["kind"], c.get("count", c.get("seconds"))) for c in spec["constraints"]] == [
        ("max_requests", 100), ("max_duration", 60)]
    assert spec["data"][0]["prompt_tokens"] == 256 and spec["data"][0]["output_tokens"] == 128
    assert spec["outputs"] == [{"kind": "json", "path": str(tmp_path / "a,b@rate-2.5.json")}]
    assert spec["seed"]["value"] == 42
    assert scenario["metadata"]["labels"] == {"k": "4", "sweep_point": "a@rate-2.5"}
