"""Scenarios 9 (cold start), 10 (restart) and 11 (memory, every slot filled) of the fair bench, on synthetic numbers and a fake
server pool: the rows, the targets with their noise and verdicts, the servers they start, and the
restart keeping XiaoQ's data directory."""

from __future__ import annotations

import types
from pathlib import Path

import httpx

from bench import report, run
from bench import scenarios as S
from bench.servers import ServerSpec
from tests.bench.test_bench_smoke import FakeOpenAI


def _cold(first: float, ready: float = 0.0, errors: tuple[str, ...] = ()) -> dict:
    return {"cold_start": {"ready": ready or first - 0.2, "first_token": first, "request_ttft": 0.2,
                           "errors": list(errors)}}


def _restart(resumed: float, cold: float) -> dict:
    return {"restart": {"resumed_ttft": resumed, "cold_ttft": cold, "resumed_cached": 900, "prompt_tokens": 1000,
                        "errors": []}}


def _results(reps: list[dict], scenarios: list[str]) -> dict:
    return {"config": {"scenarios": scenarios}, "sides": {}, "reps": reps}


def test_cold_start_target_is_xiaoq_over_llama_server_with_the_noise_of_llama_server_b():
    reps = [{"xiaoq": _cold(2.0), "llama-server": _cold(2.5), "llama-server-b": _cold(2.55)} for _ in range(3)]
    r = _results(reps, ["9"])
    t = {x["target"]: x for x in report.targets(r)}
    cold = t["cold start: process start to first token"]
    assert cold["value"] == 0.8 and cold["goal"] == "<=1.00" and round(cold["noise"], 2) == 1.02
    assert cold["verdict"] == "✓ met"
    md = report.render(r)
    assert "## 9. Cold start" in md
    assert "| process start to first token | 2,000 ms | 2,500 ms | 0.80 ✓ | <=1.00 | 1.02 | ✓ met |" in md
    assert "| process start to /health 200 | 1,800 ms | 2,300 ms | 0.78 |" in md
    assert "_Repetitions without error: XiaoQ 3 of 3; llama-server 3 of 3; llama-server B 3 of 3" in md
    r["lifecycle_sides"] = {"xiaoq": ["xiaoq", "serve", "--kv-disk-mb", "2048"]}
    assert "- scenarios 9 and 10, **XiaoQ** (a new port and data directory each start): `xiaoq serve --kv-disk-mb 2048`" in report.render(r)
    reps[0]["xiaoq"] = _cold(2.0, errors=("start: xiaoq exited with code 1 while loading:",))
    reps[1]["xiaoq"] = _cold(2.0, errors=("first request: HTTP 503",))
    t = {x["target"]: x for x in report.targets(r)}
    assert t["cold start: process start to first token"]["verdict"] == "✗ missed (failed)"
    assert "XiaoQ 1 of 3" in report.render(r)


def test_restart_target_is_xiaoq_resumed_over_its_own_cold_prefill_with_llama_server_as_the_noise():
    reps = [{"xiaoq": _restart(1.0, 5.0), "llama-server": _restart(5.2, 5.0)} for _ in range(3)]
    r = _results(reps, ["10"])
    t = {x["target"]: x for x in report.targets(r)}
    res = t["a conversation resumed after a restart, TTFT"]
    assert res["value"] == 0.2 and res["goal"] == "<=0.30" and round(res["noise"], 2) == 1.04
    assert res["verdict"] == "✓ met"
    assert "XiaoQ resumed / XiaoQ cold prefill" in res["measure"]
    md = report.render(r)
    assert "## 10. A conversation resumed after a server restart" in md
    assert "no persistence" in md
    assert "| resumed turn: TTFT | 1,000 ms | 5,200 ms |" in md
    assert "| cold prefill of the same length: TTFT | 5,000 ms | 5,000 ms |" in md
    assert "| resumed / cold prefill | 0.20 ✓ | 1.04 | <=0.30 |" in md
    one = _results(reps[:1], ["10"])
    word = {x["target"]: x for x in report.targets(one)}["a conversation resumed after a restart, TTFT"]["verdict"]
    assert word == "? 1 repetition(s), fewer than 3: no verdict"


def test_lifecycle_scenarios_are_selected_by_default_and_start_fresh_servers_each_time():
    args = run.parse_args([])
    assert args.scenario_keys[-3:] == ["9", "10", "11"]
    specs = run.lifecycle_specs(args, Path("/opt/llama/bin"), "m.gguf", 2)
    assert [(name, sorted(only)) for name, _, only in specs] == [
        ("xiaoq", ["10", "9"]), ("llama-server", ["10", "9"]), ("llama-server-b", ["9"])]
    make = dict((name, m) for name, m, _ in specs)
    a, b = make["xiaoq"](), make["xiaoq"]()
    try:
        assert a.port != b.port and a.scratch != b.scratch
        argv = a.argv
        assert argv[argv.index("--kv-disk-mb") + 1] == "2048"
        assert Path(argv[argv.index("--data-dir") + 1]) == a.scratch
    finally:
        a.scratch.rmdir()
        b.scratch.rmdir()
    assert "--cache-ram" in make["llama-server"]().argv
    quick = run.parse_args(["--quick", "--scenarios", "9"])
    assert [name for name, _, _ in run.lifecycle_specs(quick, None, "m.gguf", 2)] == ["xiaoq"]
    try:
        run.parse_args(["--scenarios", "12"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("scenario 12 accepted")


class FakePool:
    """Starts nothing: every spec 'runs' at http://fake-<port>, and start/stop calls are recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ServerSpec, bool]] = []

    def start(self, spec: ServerSpec, *, health_timeout: float = 180.0, poll: float = 0.25) -> object:
        self.calls.append(("start", spec, False))
        return types.SimpleNamespace(spec=spec, base_url=f"http://fake-{spec.port}", proc=types.SimpleNamespace(pid=1),
                                     peak_rss_mb=lambda: 700.0)

    def stop(self, server: object, *, keep_scratch: bool = False, grace: float = 10.0) -> None:
        self.calls.append(("stop", server.spec, keep_scratch))  # type: ignore[attr-defined]


async def test_restart_keeps_the_data_directory_and_resumes_the_same_conversation(tmp_path: Path):
    fake = FakeOpenAI()
    pool = FakePool()
    data = tmp_path / "data"

    def make() -> ServerSpec:
        return ServerSpec("xiaoq", ["xiaoq", "serve", "--port", "4000", "--data-dir", str(data)], 4000, scratch=data)

    sink: list = []
    wl = S.Workload(restart_doc_words=50)
    await run.run_lifecycle(pool, [("xiaoq", make, frozenset({"9", "10"}))], ["9", "10"], 1, wl, "t", sink,
                            transport=httpx.MockTransport(fake.handler))
    cold, restart = sink[0]["xiaoq"]["cold_start"], sink[0]["xiaoq"]["restart"]
    assert not cold["errors"] and cold["first_token"] >= cold["ready"] > 0 and "foreign_cores" in cold
    assert not restart["errors"] and restart["resumed_ttft"] is not None and restart["cold_ttft"] is not None
    kinds = [(kind, keep) for kind, _, keep in pool.calls]
    assert kinds == [("start", False), ("stop", False),  # scenario 9
                     ("start", False), ("stop", True), ("start", False), ("stop", False)]  # scenario 10
    second, third = pool.calls[2][1], pool.calls[4][1]
    assert second.scratch == third.scratch == data and third.port != second.port
    assert third.argv[third.argv.index("--port") + 1] == str(third.port)
    first_turn, resumed, cold_prefill = fake.requests[1:]
    assert resumed["messages"][:2] == first_turn["messages"] and len(resumed["messages"]) == 4
    assert cold_prefill["messages"][0] != resumed["messages"][0]  # a new nonce: nothing cached matches
    assert [m["role"] for m in cold_prefill["messages"]] == [m["role"] for m in resumed["messages"]]


async def test_a_spent_time_budget_starts_no_lifecycle_scenario():
    pool = FakePool()
    sink: list = []
    await run.run_lifecycle(pool, [("xiaoq", lambda: ServerSpec("x", ["--port", "1"], 1), frozenset({"9"}))], ["9"],
                            3, S.Workload(), "t", sink, deadline=0.0)
    assert pool.calls == [] and sink == []


def test_a_phase_that_starts_no_server_leaves_no_scratch_directory(tmp_path: Path):
    """`--scenarios 9` (no head-to-head scenario) or a spent budget: the specs built for the phase
    are never started, and their temporary data directories are removed."""
    args = run.parse_args(["--scenarios", "9", "--no-noise"])
    specs = run.head_to_head_specs(args, None, "m.gguf", 2)
    scratches = [spec.scratch for _, spec, _ in specs if spec.scratch]
    assert scratches and all(p.is_dir() for p in scratches)
    run.run_phase(None, specs, [], args, {"reps": []}, {}, wl=S.Workload(), run_id="t", model="m.gguf", deadline=None)
    assert not any(p.exists() for p in scratches)
    specs = run.head_to_head_specs(args, None, "m.gguf", 2)
    run.run_phase(None, specs, ["1"], args, {"reps": []}, {}, wl=S.Workload(), run_id="t", model="m.gguf", deadline=0.0)
    assert not any(spec.scratch.exists() for _, spec, _ in specs if spec.scratch)


def _fill(peak: float, errors: tuple[str, ...] = ()) -> dict:
    return {"memory_fill": {"peak_rss_mb": peak, "prompt_tokens": [3900] * 8, "errors": list(errors)}}


def test_memory_target_is_peak_rss_with_every_slot_filled_over_llama_server_with_its_noise():
    reps = [{"xiaoq": _fill(700.0), "llama-server": _fill(1000.0), "llama-server-b": _fill(1002.0)} for _ in range(3)]
    r = _results(reps, ["11"])
    t = {x["target"]: x for x in report.targets(r)}
    mem = t["peak memory, 8 slots x 4096 all filled"]
    assert mem["value"] == 0.7 and mem["goal"] == "<=0.75" and mem["noise"] == 1.002 and mem["verdict"] == "✓ met"
    md = report.render(r)
    assert "## 11. Memory with every slot filled" in md
    assert "| peak resident memory (VmHWM), every slot filled | 700 MB | 1,000 MB | 0.70 ✓ | <=0.75 | 1.00 |" in md
    assert "| prompt tokens held, all slots | 31,200 | 31,200 |" in md
    reps[0]["xiaoq"] = _fill(700.0, errors=("slot 3: HTTP 503",))
    reps[1]["xiaoq"] = _fill(700.0, errors=("start: exited",))
    t = {x["target"]: x for x in report.targets(r)}
    assert t["peak memory, 8 slots x 4096 all filled"]["verdict"].startswith("✗ missed")


def test_memory_scenario_runs_its_own_servers_with_eight_slots_and_xiaoqs_memory_settings():
    args = run.parse_args(["--scenarios", "11", "--parallel", "4"])
    specs = run.memory_specs(args, Path("/opt/llama/bin"), "m.gguf", 2, 8)
    assert [(name, sorted(only)) for name, _, only in specs] == [
        ("xiaoq", ["11"]), ("llama-server", ["11"]), ("llama-server-b", ["11"])]
    make = dict((name, m) for name, m, _ in specs)
    x = make["xiaoq"]()
    try:
        a = x.argv
        assert a[a.index("--parallel") + 1] == "8" and a[a.index("--ctx") + 1] == "4096"
        assert a[a.index("--kv-type-k") + 1] == "q8_0" and a[a.index("--kv-type-v") + 1] == "iq4_nl"
        assert a[a.index("--park-idle-after") + 1] == "0"  # finished slots stay put: no copies into RAM
        assert a[a.index("--kv-cache-mb") + 1] == "64" and a[a.index("--kv-disk-mb") + 1] == "2048"
    finally:
        x.scratch.rmdir()
    la = make["llama-server"]().argv
    assert la[la.index("-np") + 1] == "8" and la[la.index("-c") + 1] == "32768" and "-ctk" not in la


async def test_memory_scenario_fills_every_slot_at_once_with_distinct_prompts_and_reads_the_peak():
    fake = FakeOpenAI()
    pool = FakePool()
    sink: list = []
    wl = S.Workload(fill_words=40, fill_slots=8)
    make = lambda: ServerSpec("xiaoq", ["xiaoq", "serve", "--port", "4000"], 4000)  # noqa: E731
    await run.run_lifecycle(pool, [("xiaoq", make, frozenset({"11"}))], ["11"], 1, wl, "t", sink,
                            transport=httpx.MockTransport(fake.handler))
    fill = sink[0]["xiaoq"]["memory_fill"]
    assert not fill["errors"] and fill["peak_rss_mb"] == 700.0 and len(fill["prompt_tokens"]) == 8
    prompts = [req["messages"][-1]["content"] for req in fake.requests]
    assert len(prompts) == 8 and len(set(prompts)) == 8
    assert len({p[:60] for p in prompts}) == 8  # no two share a prefix the cache could reuse
    assert [kind for kind, _, _ in pool.calls] == ["start", "stop"]
