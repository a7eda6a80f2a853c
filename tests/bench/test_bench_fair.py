"""The fair bench's rules on synthetic numbers: failed repetitions count, the noise line decides
what is conclusive, llama-server at matched batch sizes, XiaoQ in a scratch directory without its
disk tier (measured on its own), the same "cache off" on both servers, the throughput-latency curve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from bench import conversation_reuse, curve, report, run, stats
from bench import scenarios as S
from bench.servers import RunningServer, ServerSpec


def _rep(pause: float, *, errors: tuple[str, ...] = (), tps: float = 50.0, disk_later: float = 0.5) -> dict:
    return {"single": {"ttft": 0.1, "decode_tps": tps, "prefill_tps": 200.0, "errors": []},
            "interference": {"max_pause": pause, "errors": list(errors)},
            "concurrent": {"errors": [], "1": {"aggregate_tps": tps, "ttft": [0.1], "gaps": [0.02]},
                           "8": {"aggregate_tps": 3 * tps, "ttft": [0.3] * 8, "gaps": [0.08] * 8}},
            "disk_tier": {"mean_ttft": 1.0, "p95_ttft": 2.0, "mean_ttft_later": disk_later, "p95_ttft_later": 1.0,
                          "errors": []}}


def _results(reps: list[dict]) -> dict:
    return {"config": {"scenarios": ["1", "4", "5", "7"]}, "sides": {}, "reps": reps}


def test_a_failed_repetition_counts_as_its_sides_worst_value_and_is_listed():
    r = _results([{"xiaoq": _rep(1.0, errors=("long prompt: HTTP 500",)), "llama-server": _rep(2.0)},
                  {"xiaoq": _rep(1.0), "llama-server": _rep(2.0)},
                  {"xiaoq": _rep(1.0), "llama-server": _rep(2.0)}])
    assert report.runs_ok(r, "xiaoq", "interference") == (2, 3)
    md = report.render(r)
    assert "_Repetitions without error: XiaoQ 2 of 3; llama-server 3 of 3" in md
    assert "- rep 1, xiaoq, interference: long prompt: HTTP 500" in md
    # one failure of three: the median is the worse of the two successes (here both 1,000 ms)
    assert "| longest pause of the running stream | 1,000 ms | 2,000 ms | 0.50 ✓ |" in md
    r["reps"][1]["xiaoq"]["interference"]["errors"] = ["timed out"]
    md = report.render(r)
    assert "| longest pause of the running stream | failed | 2,000 ms | failed |" in md
    # a rate counts a failure as 0: two failed decodes of three make the median 0
    for i in (0, 1):
        r["reps"][i]["xiaoq"]["single"]["errors"] = ["decode: boom"]
    assert report.med(r, "xiaoq", "single", lambda d: d["decode_tps"], better="higher") == 0.0


def test_median_counting_failures_leaves_out_what_did_not_run():
    assert stats.median_counting_failures([3.0, None, 1.0], [False, False, False], "lower") == 2.0
    assert stats.median_counting_failures([3.0, 9.0, 1.0], [False, True, False], "lower") == 3.0
    assert stats.median_counting_failures([3.0, 9.0, 1.0], [False, True, False], "higher") == 1.0
    assert stats.median_counting_failures([], [], "lower") is None


def test_verdict_needs_a_difference_larger_than_the_noise():
    assert stats.verdict(1.06, ">=1.05", 1.02) == "✓ met"
    assert stats.verdict(1.06, ">=1.05", 0.93) == "? inconclusive"  # noise 7% away from 1
    assert stats.verdict(0.90, ">=1.00", 1.03) == "✗ missed"
    assert stats.verdict(0.99, ">=1.00", 1.03) == "? inconclusive"
    assert stats.verdict(0.10, "<=0.15", None) == "✓ met (no noise line)"
    assert stats.verdict(None, "<=0.15", 1.0) == "— not measured"


def test_noise_line_and_matched_batch_in_the_targets():
    reps = [{"xiaoq": _rep(0.5, tps=52.0), "llama-server": _rep(2.0), "llama-server-b": _rep(2.1, tps=51.0),
             "llama-server-matched": {"single": _rep(1.0)["single"], "interference": _rep(0.8)["interference"]}}
            for _ in range(3)]
    r = _results(reps)
    t = {x["target"]: x for x in report.targets(r)}
    pause = t["longest pause during a long prefill (matched batch)"]
    assert round(pause["value"], 3) == 0.625 and pause["goal"] == "<=0.50" and pause["verdict"] == "✗ missed"
    assert round(pause["noise"], 3) == 1.05
    one = t["1 stream, aggregate tokens/s"]
    assert round(one["value"], 2) == 1.04 and round(one["noise"], 2) == 1.02 and one["verdict"] == "✓ met"
    dec = t["single-stream decode tokens/s"]
    assert dec["verdict"] == "✓ met"
    md = report.render(r)
    assert "Against llama-server at XiaoQ's batch size (the target's reference):" in md
    assert "| figure | XiaoQ | llama-server, matched batch | XiaoQ / llama-server, matched batch |" in md
    assert "noise (llama-server B / A)" in md and "no noise line" not in md
    del r["reps"][0]["llama-server-b"], r["reps"][1]["llama-server-b"], r["reps"][2]["llama-server-b"]
    assert "- no noise line in this run" in report.render(r)


def test_disk_tier_is_its_own_scenario_with_its_target():
    r = _results([{"xiaoq": _rep(1.0, disk_later=0.5), "llama-server": _rep(1.0, disk_later=5.0)}])
    md = report.render(r)
    assert "## 7. The disk tier: 12 users over a 64 MB RAM cache" in md
    assert "| mean TTFT, turns 2+ | 500 ms | 5,000 ms | 0.10 ✓ | <=0.15 |" in md
    t = {x["target"]: x for x in report.targets(r)}
    disk = t["disk tier: 12 users over a 64 MB RAM cache, mean TTFT turns 2+"]
    assert disk["met"] is True and disk["verdict"] == "? 1 repetition(s), fewer than 3: no verdict"


def test_curve_svg_draws_one_line_per_server_with_stream_labels():
    r = _results([{"xiaoq": _rep(1.0, tps=50.0), "llama-server": _rep(1.0, tps=40.0)}])
    pts = report.curve_points(r, "xiaoq")
    assert pts == [(1, 20.0, 50.0), (8, 80.0, 150.0)]
    image = curve.svg({"XiaoQ": pts, "llama-server": report.curve_points(r, "llama-server")}, 25.0, "t")
    assert image.startswith("<svg") and image.rstrip().endswith("</svg>")
    assert image.count("<polyline") == 2 and image.count("<circle") == 4
    assert ">XiaoQ</text>" in image and ">8</text>" in image and "stroke-dasharray" in image
    assert "no data" in curve.svg({"XiaoQ": []})


def test_write_outputs_puts_the_curve_beside_the_report(tmp_path: Path):
    r = _results([{"xiaoq": _rep(1.0), "llama-server": _rep(1.0)}])
    r["machine"] = {"decode_ceiling_tps": 30.0}
    md = run.write_outputs(r, tmp_path / "x.json")
    assert (tmp_path / "x.svg").is_file() and (tmp_path / "x.md").read_text() == md
    assert "![aggregate tokens/s against p95 gap between tokens](x.svg)" in md


def test_xiaoq_runs_in_a_scratch_directory_without_its_disk_tier_and_llama_server_also_at_matched_batch():
    args = run.parse_args([])
    bindir = Path("/opt/llama/bin")
    specs = {name: (spec, only) for name, spec, only in run.head_to_head_specs(args, bindir, "m.gguf", 2)}
    assert set(specs) == {"xiaoq", "xiaoq-lookup", "llama-server", "llama-server-b", "llama-server-matched",
                          "llama-server-lookup"}
    lk = specs["llama-server-lookup"]
    assert lk[1] == frozenset({"8"}) and lk[0].argv[lk[0].argv.index("--spec-type") + 1] == "ngram-simple"
    specs["xiaoq-lookup"][0].scratch.rmdir()
    x = specs["xiaoq"][0]
    try:
        argv = x.argv
        assert argv[argv.index("--kv-disk-mb") + 1] == "0" and argv[argv.index("--batch") + 1] == "128"
        data = Path(argv[argv.index("--data-dir") + 1])
        assert data == x.scratch and data.is_dir() and not any(data.iterdir())
    finally:
        x.scratch.rmdir()
    m, only = specs["llama-server-matched"]
    assert m.argv[m.argv.index("-b") + 1] == "128" and m.argv[m.argv.index("-ub") + 1] == "128"
    assert only == frozenset({"1", "5"})
    assert "-b" not in specs["llama-server"][0].argv and specs["llama-server"][1] is None
    disk = {name: spec for name, spec, _ in run.disk_specs(args, bindir, "m.gguf", 2)}
    xd = disk["xiaoq"].argv
    assert xd[xd.index("--kv-cache-mb") + 1] == "64" and xd[xd.index("--kv-disk-mb") + 1] == "2048"
    disk["xiaoq"].scratch.rmdir()
    ld = disk["llama-server"].argv
    assert ld[ld.index("--cache-ram") + 1] == "64"
    quick = run.parse_args(["--quick", "--matched-scenarios", ""])
    assert {n for n, _, _ in run.head_to_head_specs(quick, bindir, "m.gguf", 2)} == {
        "xiaoq", "xiaoq-lookup", "llama-server", "llama-server-lookup"}
    for _, spec, _ in run.head_to_head_specs(quick, bindir, "m.gguf", 2):
        if spec.scratch:
            spec.scratch.rmdir()


def test_stopping_a_server_removes_its_scratch_directory(tmp_path: Path):
    scratch = tmp_path / "scratch"
    (scratch / "kv").mkdir(parents=True)
    (scratch / "kv" / "a.kv").write_bytes(b"x")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    RunningServer(ServerSpec("xiaoq", ["x"], 1, scratch=scratch), proc, tmp_path / "log").stop(grace=5)
    assert proc.poll() is not None and not scratch.exists()


def test_cache_off_is_the_same_configuration_on_both_targets():
    def flags(target: str, on: bool) -> list[str]:
        spec = conversation_reuse.cache_spec(target, on, model="m.gguf", threads=2, ctx=4096, cache_mb=512,
                                             bindir=Path("/opt/bin"))
        if spec.scratch:
            spec.scratch.rmdir()
        return spec.argv

    x_off, l_off = flags("xiaoq", False), flags("llama-server", False)
    assert x_off[x_off.index("--parallel") + 1] == "1" == l_off[l_off.index("-np") + 1]
    assert x_off[x_off.index("--kv-cache-mb") + 1] == "0" == l_off[l_off.index("--cache-ram") + 1]
    assert x_off[x_off.index("--kv-disk-mb") + 1] == "0"
    x_on, l_on = flags("xiaoq", True), flags("llama-server", True)
    assert x_on[x_on.index("--parallel") + 1] == "4" == l_on[l_on.index("-np") + 1]
    assert x_on[x_on.index("--kv-cache-mb") + 1] == "512" == l_on[l_on.index("--cache-ram") + 1]


async def test_a_side_limited_to_some_scenarios_runs_only_those_and_a_later_phase_fills_the_same_reps():
    from tests.bench.test_bench_smoke import FakeOpenAI

    fake = FakeOpenAI()
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return fake.handler(request)

    transport = httpx.MockTransport(handler)
    wl = S.Workload(decode_tokens=4, ttft_probes=1, stream_tokens=4, streams=(1,))
    sides = [S.Side("xiaoq", "http://x"), S.Side("llama-server-matched", "http://m", only=frozenset({"1"}))]
    sink: list = []
    await run.run_scenarios(sides, wl, ["1", "4"], 1, "t", "m", sink, transport=transport)
    assert set(sink[0]["xiaoq"]) == {"single", "concurrent"} and set(sink[0]["llama-server-matched"]) == {"single"}
    await run.run_scenarios([S.Side("xiaoq", "http://x")], wl, ["4"], 1, "u", "m", sink, transport=transport)
    assert len(sink) == 1  # filled in place, not a new repetition


def test_quoting_scenario_compares_lookup_with_xiaoq_without_and_with_llama_server():
    def q(quote: float, chat: float) -> dict:
        return {"quoting": {"quote_tps": quote, "chat_tps": chat, "errors": []}}
    r = _results([{"xiaoq": q(20.0, 20.0), "xiaoq-lookup": q(40.0, 19.8), "llama-server": q(21.0, 21.0),
                   "llama-server-b": q(21.5, 20.5), "llama-server-lookup": q(21.05, 20.0)}] * 3)
    r["config"]["scenarios"] = ["8"]
    t = {x["target"]: x for x in report.targets(r)}
    assert t["answers quoting their prompt, decode tokens/s"]["value"] == 2.0
    assert t["answers quoting their prompt, decode tokens/s"]["verdict"] == "✓ met"
    assert round(t["answers quoting their prompt, decode tokens/s (vs llama-server)"]["value"], 2) == 1.90
    chat = t["ordinary answer with lookup on, decode tokens/s"]
    assert chat["value"] == 0.99 and chat["goal"] == ">=0.98" and chat["verdict"] == "? inconclusive"
    md = report.render(r)
    assert "## 8. Answers that quote their prompt" in md
    assert "| answers that quote their prompt: decode tokens/s | 40.0 tok/s | 20.0 tok/s | 2.00 ✓ | >=1.30 |" in md


def test_the_lookup_side_runs_only_the_quoting_scenario():
    args = run.parse_args(["--scenarios", "1,8", "--no-noise"])
    specs = {name: (spec, only) for name, spec, only in run.head_to_head_specs(args, None, "m.gguf", 2)}
    spec, only = specs["xiaoq-lookup"]
    assert only == frozenset({"8"}) and spec.argv[spec.argv.index("--lookup-draft") + 1] == "48"
    for s, _ in specs.values():
        s.scratch.rmdir()


async def test_quoting_scenario_measures_both_kinds_of_answer():
    from tests.bench.test_bench_smoke import FakeOpenAI, _side

    fake = FakeOpenAI()
    side, client = _side(fake)
    async with client:
        res = await S.quoting(side, S.Workload(quote_tokens=6), "t")
    assert not res["errors"] and len(res["quote_tps_each"]) == 2 and res["chat_tps"] is not None
    prompts = [m["content"] for body in fake.requests for m in body["messages"] if m["role"] == "user"]
    assert "Fix the bug in this function" in prompts[0] and "word for word" in prompts[1]
