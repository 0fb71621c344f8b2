"""The sweep plan: parsing, validation (loopback only, typos, placeholders), templates, the hash."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bayes_sd.measure.plan import PLAN_EXAMPLE, PLAN_HELP, PlanError, load_plan, parse_plan, placeholders, render
from bayes_sd.measure.sweep import point_commands, server_command

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sweep.md"


def _plan(**over) -> dict:
    d = tomllib.loads(PLAN_EXAMPLE)
    for dotted, value in over.items():
        *path, key = dotted.split("__")
        t = d
        for p in path:
            t = t[int(p)] if p.isdigit() else t[p]
        if value is None:
            t.pop(key, None)
        else:
            t[key] = value
    return d


def test_the_example_plan_gives_its_points_and_commands():
    plan = parse_plan(tomllib.loads(PLAN_EXAMPLE))
    assert [p.id for p in plan.points()][:4] == ["base@rate-1", "base@rate-2", "base@rate-4", "eagle3-k2@rate-1"]
    assert len(plan.points()) == 9 and plan.load_type == "rate" and plan.max_requests == 200
    argv, env = server_command(plan, plan.configurations[2])
    assert argv[:5] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--host", "127.0.0.1"]
    assert argv[-1] == ('{"method": "eagle3", "model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", '
                        '"num_speculative_tokens": 4}')
    assert env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert server_command(plan, plan.configurations[0])[0] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct",
                                                               "--host", "127.0.0.1", "--port", "8000"]
    client, _ = point_commands(plan, plan.points()[4], Path("/sweep"))
    assert client[:2] == ["guidellm", "run"] and "kind=constant,rate=2" in client
    assert "--label" in client and "k=2" in client and "sweep_point=eagle3-k2@rate-2" in client


def test_render_fills_placeholders_and_leaves_other_braces():
    v = {"k": 4, "rate": 2.0, "path": "/models/my draft.gguf"}
    assert render("x --draft {path} --json '{\"n\": {k}}' --r {rate}", v) == [
        "x", "--draft", "/models/my draft.gguf", "--json", '{"n": 4}', "--r", "2"]
    assert render(["a", "{k}{k}"], v) == ["a", "44"]
    with pytest.raises(PlanError, match=r"unknown placeholder \{drafter_path\}.*defined here: k, path, rate"):
        render("x {drafter_path}", v, "server.command")
    assert placeholders("a {b} {c_d} {\"x\": 1}") == {"b", "c_d"}


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "192.168.1.5", "example.com", "127.0.0.2", "::"])
def test_a_non_loopback_host_is_refused(host):
    with pytest.raises(PlanError, match=r"not a loopback address.*127\.0\.0\.1, localhost, ::1"):
        parse_plan(_plan(server__host=host))


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "http://127.0.0.1:8000"),
                                           ("localhost", "http://localhost:8000"),
                                           ("::1", "http://[::1]:8000"), ("[::1]", "http://[::1]:8000")])
def test_loopback_hosts_are_accepted(host, url):
    assert parse_plan(_plan(server__host=host)).server.url == url


@pytest.mark.parametrize(("over", "message"), [
    ({"server__comand": "x"}, "unknown key server.comand"),
    ({"configurations__1__kk": 3}, "unknown key configurations\\[1\\].kk"),
    ({"configurations__1__k": 0}, "k = 0 with drafter 'yuhuili.*k = 0 exactly when drafter = 'none'"),
    ({"configurations__0__drafter": "eagle"}, "k = 0 with drafter 'eagle'"),
    ({"configurations__1__k": -1}, "k = -1"),
    ({"configurations__1__vars": {}}, "unknown placeholder \\{method\\}"),
    ({"configurations__1__name": "eagle3-k4"}, "'eagle3-k4' is used twice"),
    ({"configurations__1__name": "a/b"}, "letters, digits"),
    ({"configurations__1__acceptance": "fixed"}, "'measured' or 'pinned'"),
    ({"loads__type": "qps"}, "'rate' .* or 'concurrency'"),
    ({"loads__values": [1, 1.0]}, "repeats a value"),
    ({"loads__values": [0]}, "> 0"),
    ({"loads__max_seconds": None}, "loads.max_seconds is missing"),
    ({"server__port": "8000"}, "server.port"),
    ({"server__health_path": "health"}, "starting with '/'"),
    ({"server__command": "vllm serve '{verifier}"}, "cannot split the command"),
    ({"client__kind": "locust"}, "'guidellm' or 'command'"),
    ({"client__kind": "command"}, "needs client.command"),
    ({"client__data": ""}, "GuideLLM's --data"),
    ({"configurations": []}, "no \\[\\[configurations\\]\\]"),
    ({"server": None}, "\\[server\\] is missing"),
])
def test_plan_errors_name_the_key_and_the_fix(over, message):
    with pytest.raises(PlanError, match=message):
        parse_plan(_plan(**over), "plan.toml")


def test_concurrency_loads_are_whole_streams_and_templates_must_use_their_load():
    plan = parse_plan(_plan(loads__type="concurrency", loads__values=[1, 8]))
    assert [p.id for p in plan.points()][:2] == ["base@concurrency-1", "base@concurrency-8"]
    with pytest.raises(PlanError, match="loads.values\\[0\\]"):
        parse_plan(_plan(loads__type="concurrency", loads__values=[1.5]))
    cmd = "bench --url {url} --rate {rate} -n {max_requests} -o {output}"
    assert parse_plan(_plan(client__kind="command", client__command=cmd, client__data=None)).client.kind == "command"
    with pytest.raises(PlanError, match="uses \\{rate\\} but loads.type is 'concurrency'"):
        parse_plan(_plan(client__kind="command", client__command=cmd, loads__type="concurrency"))
    with pytest.raises(PlanError, match="no \\{output\\}"):
        parse_plan(_plan(client__kind="command", client__command="bench --url {url} --rate {rate} -n 5"))
    with pytest.raises(PlanError, match="neither \\{max_requests\\} nor \\{max_seconds\\}"):
        parse_plan(_plan(client__kind="command", client__command="bench {url} {rate} {output}"))


def test_the_hash_changes_with_what_points_measure_not_with_the_grid_or_timeouts():
    h = parse_plan(_plan()).hash()
    assert h.startswith("sha256:")
    for same in ({"loads__values": [1, 2, 4, 8]}, {"server__startup_timeout_s": 60}, {"server__port": 9000},
                 {"client__timeout_grace_s": 10.0}):
        assert parse_plan(_plan(**same)).hash() == h, same
    for other in ({"loads__max_requests": 100}, {"client__data": "kind=synthetic_text,prompt_tokens=1,output_tokens=1"},
                  {"server__command": "vllm serve {verifier} --port {port} -tp 2"}, {"server__warmup_requests": 0}):
        assert parse_plan(_plan(**other)).hash() != h, other


def test_load_plan_reads_toml_and_reports_bad_toml(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN_EXAMPLE)
    assert load_plan(path).source == str(path)
    path.write_text("[server\ncommand = 1")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(path)
    with pytest.raises(FileNotFoundError):
        load_plan(tmp_path / "missing.toml")


def test_the_help_shows_the_example_and_every_documented_plan_parses():
    assert PLAN_EXAMPLE in PLAN_HELP
    text = DOCS.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    names = []
    for block in blocks:
        data = tomllib.loads(block)
        if "server" in data and "configurations" in data:
            names.append(parse_plan(data, "docs/sweep.md").configurations[0].name)
    assert len(names) >= 3, "the vLLM, SGLang and llama.cpp examples are whole plans"


def test_poisson_arrivals_reach_guidellm_and_leave_constant_plans_hash_alone():
    constant = parse_plan(_plan())
    assert constant.arrivals == "constant" and constant.hash() == parse_plan(_plan(loads__arrivals="constant")).hash()
    poisson = parse_plan(_plan(loads__arrivals="poisson"))
    assert poisson.hash() != constant.hash()  # a different arrival process: points that do not compare
    client, _ = point_commands(poisson, poisson.points()[4], Path("/sweep"))
    assert "kind=poisson,rate=2" in client
    with pytest.raises(PlanError, match="loads.arrivals = 'bursty'"):
        parse_plan(_plan(loads__arrivals="bursty"))
    with pytest.raises(PlanError, match="needs loads.type = 'rate'"):
        parse_plan(_plan(loads__arrivals="poisson", loads__type="concurrency", loads__values=[1, 2]))
