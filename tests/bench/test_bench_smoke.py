"""Smoke tests of the benchmark suite: the pure helpers on synthetic numbers, the HTTP client and
scenarios against an in-process fake OpenAI stream (httpx.MockTransport, no sockets), and, marked
``slow`` + ``real_model``, one tiny real measurement through llama-server when it is already built.

No timing assertions: these check that the harness computes what it claims, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from bench import membw, model_file, report, stats
from bench import scenarios as S
from bench.client import StreamResult, chat_body, stream_chat
from bench.servers import ROOT, ServerPool, free_port, llama_server_spec

# ---------------------------------------------------------------- statistics and tables


def test_median_and_percentile_match_numpy_definitions():
    np = pytest.importorskip("numpy")
    xs = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    assert stats.median(xs) == 3.5
    assert stats.median([2.0, None, float("nan"), 1.0, 3.0]) == 2.0
    for p in (0, 50, 90, 95, 100):
        assert stats.percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)))
    assert stats.median([]) is None and stats.percentile([None], 95) is None
    with pytest.raises(ValueError):
        stats.percentile(xs, 101)


def test_ratio_targets_and_gaps():
    assert stats.ratio(3.0, 4.0) == 0.75
    assert stats.ratio(None, 4.0) is None and stats.ratio(1.0, 0.0) is None
    assert stats.meets(0.97, ">=0.97") and not stats.meets(0.96, ">=0.97")
    assert stats.meets(0.5, "<=0.50") and not stats.meets(0.51, "<=0.50")
    with pytest.raises(ValueError):
        stats.meets(1.0, "0.9")
    assert stats.gaps([1.0, 1.5, 3.0]) == [0.5, 1.5]
    assert stats.fmt_ratio(0.5, "<=0.50") == "0.50 ✓"
    assert stats.fmt_ratio(1.2, "<=1.10") == "1.20 ✗"
    assert stats.fmt(None) == "—" and stats.fmt(1234.5, "ms", 0) == "1,234 ms"


def test_side_by_side_table_has_ratios_and_marks():
    rows = [stats.Row("decode tokens/s", 49.0, 50.0, "tok/s", 1, ">=0.97"),
            stats.Row("TTFT", 120.0, 100.0, "ms", 0, "<=1.10"),
            stats.Row("missing", None, 10.0)]
    table = stats.side_by_side(rows).splitlines()
    assert table[0].startswith("| figure | XiaoQ | llama-server | XiaoQ / llama-server |")
    assert len(table) == 2 + len(rows)
    assert "| 0.98 ✓ |" in table[2]
    assert "| 1.20 ✗ |" in table[3]
    assert "| — |" in table[4]
    assert rows[0].as_dict()["met"] is True and rows[1].as_dict()["met"] is False


def _synthetic_results() -> dict:
    def side(scale: float) -> dict:
        return {
            "single": {"ttft": 0.1 * scale, "decode_tps": 50 / scale, "decode_tokens": 256, "prompt_tokens": 30,
                       "errors": []},
            "conversation": {"ttft": [0.1 * scale] * 3, "prompt_tokens": [30, 90, 150],
                             "cached_tokens": [0, 80, 140], "evaluated": [30, 10, 10], "mean_ttft": 0.1 * scale,
                             "errors": []},
            "alternating": {"mean_ttft": 0.4 * scale, "p95_ttft": 0.8 * scale, "mean_ttft_later": 0.3 * scale,
                            "p95_ttft_later": 0.5 * scale, "errors": []},
            "concurrent": {"errors": [], "1": {"aggregate_tps": 50 / scale, "ttft": [0.1], "gaps": [0.02, 0.03]},
                           "4": {"aggregate_tps": 100 / scale, "ttft": [0.1, 0.2, 0.3, 0.4], "gaps": [0.04] * 9}},
            "interference": {"max_pause": 2.0 * scale, "baseline_max_gap": 0.05, "median_gap": 0.02,
                             "long_ttft": 3.0, "long_prompt_tokens": 1500, "errors": []},
        }
    return {"started": "now", "config": {"model": "m.gguf", "threads": 2, "ctx": 4096, "parallel": 4, "reps": 2},
            "sides": {"xiaoq": {"available": True, "length_control": "logit_bias", "peak_rss_mb": 700.0, "argv": ["xiaoq"]},
                      "llama-server": {"available": True, "length_control": "ignore_eos", "peak_rss_mb": 600.0, "argv": ["ls"]}},
            "machine": {"cpu": "test", "read_gbs": 10.0, "weight_bytes": 400e6, "decode_ceiling_tps": 25.0},
            "llama_bench": {"tg_tps": 60.0},
            "reps": [{"xiaoq": side(0.5), "llama-server": side(1.0)}, {"xiaoq": side(0.5), "llama-server": side(1.0)}]}


def test_report_renders_every_scenario_with_ratios():
    md = report.render(_synthetic_results())
    for title in ("1. Single stream", "2. A 12-turn", "3. Users alternating", "4. Concurrent", "5. A long prompt", "6. Memory"):
        assert f"## {title}" in md
    # XiaoQ is twice as fast in the synthetic data: TTFT ratio 0.5, decode ratio 2.0, aggregate 2.0.
    assert "| TTFT, short prompt | 50 ms | 100 ms | 0.50 ✓ |" in md
    assert "| decode tokens/s | 100.0 tok/s | 50.0 tok/s | 2.00 ✓ |" in md
    assert "| 4 streams: aggregate tokens/s | 200.0 tok/s | 100.0 tok/s | 2.00 ✓ |" in md
    assert "| longest pause of the running stream | 1,000 ms | 2,000 ms | 0.50 ✓ |" in md
    assert "XiaoQ − llama-server = +100 MB (target ≤ +150 MB) ✓" in md
    assert "| peak memory | XiaoQ − llama-server (MB) | +100 | <=150 | — | ✓ met |" in md
    met = {t["target"]: t["met"] for t in report.targets(_synthetic_results())}
    assert met == {"single-stream decode tokens/s": True, "single-stream decode vs llama-bench tg": True,
                   "TTFT, single short prompt": True, "1 stream, aggregate tokens/s": True,
                   "4 streams, aggregate tokens/s": True, "three alternating users, mean TTFT": True,
                   "peak memory": True, "prefill tokens/s, a long prompt alone": None,
                   "prefill tokens/s, a long prompt alone (matched batch)": None,
                   "longest pause during a long prefill (matched batch)": None,
                   "disk tier: 12 users over a 64 MB RAM cache, mean TTFT turns 2+": None,
                   "answers quoting their prompt, decode tokens/s": None,
                   "answers quoting their prompt, decode tokens/s (vs llama-server)": None,
                   "ordinary answer with lookup on, decode tokens/s": None,
                   "cold start: process start to first token": None,
                   "a conversation resumed after a restart, TTFT": None,
                   "peak memory, 8 slots x 4096 all filled": None}
    heavy = _synthetic_results()
    heavy["sides"]["xiaoq"]["peak_rss_mb"] = 800.0
    assert "| peak memory | XiaoQ − llama-server (MB) | +200 | <=150 | — | ✗ missed |" in report.render(heavy)
    # decode vs llama-bench tg: 100 / 60
    assert "| llama-bench tg (engine ceiling) | 60.0 tok/s | 1.67 ✓ | 0.83 |" in md


def test_server_counters_come_from_both_metrics_texts():
    r = _synthetic_results()
    r["sides"]["xiaoq"]["metrics"] = ("# HELP x\nxiaoq_prompt_tokens_evaluated_total 4074\nxiaoq_kv_cache_hits_total 3\n"
                                      "xiaoq_kv_cache_misses_total 43\nxiaoq_batch_tokens_buckets{key=\"1\"} 9\n")
    r["sides"]["llama-server"]["metrics"] = "llamacpp:prompt_tokens_total 4128\n"
    md = report.render(r)
    assert "| requests' prompt tokens evaluated | 4,074 | 4,128 |" in md
    assert "| RAM state cache hits / misses | 3 / 43 | — |" in md
    assert report.prom_value("a_total 5\na 7", "a") == 7.0 and report.prom_value(None, "a") is None


def test_report_survives_a_missing_side():
    r = _synthetic_results()
    for rep in r["reps"]:
        rep["llama-server"] = {}
    r["sides"]["llama-server"] = {"available": False, "error": "build failed"}
    md = report.render(r)
    assert "UNAVAILABLE: build failed" in md
    assert "| decode tokens/s | 100.0 tok/s | — | — |" in md


# ---------------------------------------------------------------- client and scenarios over a fake server


class FakeOpenAI:
    """Streams ``n = max_tokens`` one-word chunks (or fewer without ignore_eos) and records requests."""

    def __init__(self, natural_len: int = 3, status: int = 200):
        self.requests: list[dict] = []
        self.natural_len = natural_len
        self.status = status

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "busy"}})
        n = body["max_tokens"] if body.get("ignore_eos") else min(self.natural_len, body["max_tokens"])
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        events = [{"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}]
        events += [{"choices": [{"delta": {"content": f"w{i} "}, "finish_reason": None}]} for i in range(n)]
        events.append({"choices": [{"delta": {}, "finish_reason": "length" if n == body["max_tokens"] else "stop"}]})
        events.append({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": n,
                                                "prompt_tokens_details": {"cached_tokens": prompt // 2}}})
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


def _side(fake: FakeOpenAI, control: dict | None = None) -> tuple[S.Side, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    side = S.Side("fake", "http://fake", client=client)
    side.length_control = {"ignore_eos": True} if control is None else control
    return side, client


async def test_stream_chat_parses_chunks_usage_and_cached_tokens():
    fake = FakeOpenAI()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        seen = []
        res = await stream_chat(client, "http://fake", chat_body([{"role": "user", "content": "a b c"}], 5,
                                                                  extra={"ignore_eos": True}), on_chunk=lambda r: seen.append(len(r.chunk_times)))
    assert res.ok and res.error is None
    assert res.text == "w0 w1 w2 w3 w4 "
    assert len(res.chunk_times) == 5 and seen == [1, 2, 3, 4, 5]
    assert res.n_tokens == 5 and res.finish_reason == "length"
    assert res.prompt_tokens == 3 and res.cached_tokens == 1 and res.prompt_evaluated == 2
    assert res.ttft is not None and res.ttft >= 0 and res.t_first == res.chunk_times[0]
    body = fake.requests[0]
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.0 and body["ignore_eos"] is True


async def test_stream_chat_records_http_errors_instead_of_raising():
    fake = FakeOpenAI(status=503)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        res = await stream_chat(client, "http://fake", chat_body([], 4))
    assert not res.ok and res.error.startswith("HTTP 503") and res.decode_tps is None


async def test_length_control_prefers_ignore_eos_then_logit_bias_then_none():
    side, client = _side(FakeOpenAI(), control={})
    async with client:
        assert await S.find_length_control(side, lambda: [7]) == {"ignore_eos": True}

    class BiasOnly(FakeOpenAI):
        """A server that ignores ``ignore_eos`` but honours a logit_bias against token 7."""

        def handler(self, request):
            body = json.loads(request.content)
            body.pop("ignore_eos", None)
            if body.pop("logit_bias", None) == {"7": -100}:
                body["ignore_eos"] = True
            return super().handler(httpx.Request("POST", request.url, json=body))

    side, client = _side(BiasOnly(), control={})
    async with client:
        assert await S.find_length_control(side, lambda: [7]) == {"logit_bias": {"7": -100}}
        assert await S.find_length_control(side, lambda: [8]) == {}
        assert await S.find_length_control(side) == {}
    assert S.length_control_name({}) == "none" and S.length_control_name({"ignore_eos": True}) == "ignore_eos"


async def test_conversation_resends_growing_history_and_reuse_off_changes_the_prefix():
    wl = S.Workload.quick()
    for reuse in (True, False):
        fake = FakeOpenAI()
        side, client = _side(fake)
        async with client:
            out = await S.conversation(side, wl, "tag", reuse=reuse)
        assert not out["errors"] and len(out["ttft"]) == wl.turns
        lengths = [len(r["messages"]) for r in fake.requests]
        assert lengths == [1 + 2 * t + 1 for t in range(wl.turns)]  # system + history + new question
        # Each request's history is the previous request's plus the reply the server streamed.
        second = fake.requests[1]["messages"]
        assert second[2] == {"role": "assistant", "content": " ".join(f"w{i}" for i in range(wl.turn_tokens)) + " "}
        systems = {r["messages"][0]["content"] for r in fake.requests}
        assert len(systems) == (1 if reuse else wl.turns)
        assert out["evaluated"] == [p - p // 2 for p in out["prompt_tokens"]]


async def test_alternating_users_take_turns_in_separate_conversations():
    wl = S.Workload.quick()
    fake = FakeOpenAI()
    side, client = _side(fake)
    async with client:
        out = await S.alternating_users(side, wl, "tag")
    assert len(fake.requests) == wl.users * wl.user_turns
    order = [r["messages"][0]["content"] for r in fake.requests]
    assert order[: wl.users] == order[wl.users: 2 * wl.users]  # u1, u2, u3, u1, u2, u3
    assert len(set(order)) == wl.users
    assert len(out["ttft_first"]) == wl.users and out["mean_ttft"] is not None and not out["errors"]


async def test_concurrent_and_interference_scenarios_produce_their_figures():
    wl = S.Workload.quick()
    fake = FakeOpenAI()
    side, client = _side(fake)
    async with client:
        conc = await S.concurrent_streams(side, wl, "tag")
        inter = await S.prefill_interference(side, wl, "tag")
    assert [conc[str(n)]["tokens"] for n in wl.streams] == [n * wl.stream_tokens for n in wl.streams]
    assert all(conc[str(n)]["aggregate_tps"] > 0 for n in wl.streams)
    assert inter["long_prompt_tokens"] > wl.long_prompt_words  # document words plus the framing
    assert not inter["errors"]


def test_pause_figures_take_the_gap_spanning_the_long_prompt():
    bg = StreamResult(t_send=0.0, t_first=1.0, chunk_times=[1.0, 1.1, 1.2, 3.2, 3.3], completion_tokens=5)
    long_res = StreamResult(t_send=1.25, t_first=3.1, chunk_times=[3.1], prompt_tokens=1500)
    fig = S._pause_figures(bg, long_res, [])
    assert fig["max_pause"] == pytest.approx(2.0)
    assert fig["baseline_max_gap"] == pytest.approx(0.1)
    assert fig["tokens_before"] == 3 and fig["tokens_after"] == 2 and fig["overlapped"]
    assert fig["long_ttft"] == pytest.approx(1.85)


# ---------------------------------------------------------------- machine figures and build script


def test_bandwidth_helpers(tmp_path: Path):
    assert membw.decode_ceiling_tps(10.0, 500_000_000) == pytest.approx(20.0)
    assert membw.decode_ceiling_tps(10.0, 0) is None
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"\0" * 4096)
    assert model_file.bytes_per_token(not_gguf) == 4096  # falls back to the file size
    assert model_file.eog_token_ids(not_gguf) == []
    assert membw.read_bandwidth_gbs(threads=2, size_mb=8, trials=1) > 0


def test_build_script_uses_setup_sh_cpu_flags():
    """build_llama.sh must compile llama-server with exactly the flags setup.sh gives llama-cpp-python."""
    script = ROOT / "bench" / "build_llama.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    cmd = f'eval "$(sed -n \'/^cmake_args_for_this_cpu() {{/,/^}}/p\' {ROOT / "setup.sh"})"; cmake_args_for_this_cpu'
    flags = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout
    assert "GGML_NATIVE" in flags
    import platform
    if platform.machine() == "x86_64":
        assert "-DGGML_NATIVE=OFF" in flags


def test_run_py_arguments():
    from bench import run
    args = run.parse_args(["--quick", "--scenarios", "1,4", "--reps", "5"])
    assert args.reps == 1 and args.scenario_keys == ["1", "4"] and args.noise is False
    full = run.parse_args([])
    assert full.noise is True and full.scenario_keys == ["1", "2", "3", "4", "5", "7", "8", "9", "10", "11"]
    assert full.matched_keys == ["1", "5"] and full.batch == 128
    with pytest.raises(SystemExit):
        run.parse_args(["--scenarios", "6"])


# ---------------------------------------------------------------- one real measurement (cheap)


def _cached_llama_server() -> Path | None:
    out = subprocess.run(["bash", str(ROOT / "bench" / "build_llama.sh")], capture_output=True, text=True,
                         env={**__import__("os").environ, "BENCH_NO_BUILD": "1"})
    return Path(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else None


@pytest.mark.slow
@pytest.mark.real_model
async def test_harness_measures_real_llama_server_and_stops_it(real_model_path: Path, tmp_path: Path):
    bindir = _cached_llama_server()
    if bindir is None:
        pytest.skip("llama-server not built yet: run bench/build_llama.sh")
    assert free_port() > 0
    # One thread: on a shared, busy machine two spinning llama.cpp threads can slow to ~1 tok/s.
    spec = llama_server_spec(bindir / "llama-server", str(real_model_path), threads=1, ctx=1024, parallel=2)
    with ServerPool(tmp_path) as pool:
        srv = pool.start(spec, health_timeout=120)
        async with httpx.AsyncClient() as client:
            side = S.Side("llama-server", srv.base_url, client=client)
            assert await S.find_length_control(side) == {"ignore_eos": True}  # llama-server honours it
            side.length_control = {"ignore_eos": True}
            wl = S.Workload(decode_tokens=12, ttft_probes=1)
            out = await S.single_stream(side, wl, "smoke")
        assert not out["errors"]
        assert out["decode_tokens"] == 12 and out["decode_tps"] > 0 and out["ttft"] > 0
        assert 15 <= out["prompt_tokens"] <= 60  # the "short prompt" is about 30 tokens
        assert srv.peak_rss_mb() > 100  # the model's weights are resident
        pid = srv.proc.pid
    assert srv.proc.poll() is not None, f"llama-server {pid} still running after the pool closed"


@pytest.mark.slow
@pytest.mark.real_model
def test_model_file_facts_of_the_real_qwen(real_model_path: Path):
    eog = model_file.eog_token_ids(real_model_path)
    assert {151643, 151645} <= set(eog)  # <|endoftext|>, <|im_end|>
    weights = model_file.bytes_per_token(real_model_path)
    assert 0.9 * real_model_path.stat().st_size < weights < real_model_path.stat().st_size


def test_gguf_header_reader_on_a_hand_built_file(tmp_path: Path):
    """The minimal GGUF reader finds eos and ChatML stop tokens and the tensor data offset."""
    import struct

    def s(b: bytes) -> bytes:
        return struct.pack("<Q", len(b)) + b

    tokens = [b"a", b"<|im_end|>", b"b", b"<|endoftext|>"]
    kv = [s(b"general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 64),
          s(b"tokenizer.ggml.eos_token_id") + struct.pack("<I", 4) + struct.pack("<I", 3),
          s(b"tokenizer.ggml.scores") + struct.pack("<I", 9) + struct.pack("<IQ", 6, 2) + struct.pack("<2f", 0, 1),
          s(b"tokenizer.ggml.tokens") + struct.pack("<I", 9) + struct.pack("<IQ", 8, len(tokens))
          + b"".join(s(t) for t in tokens)]
    tensor = s(b"w") + struct.pack("<I", 1) + struct.pack("<Q", 16) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv)) + b"".join(kv) + tensor
    offset = (len(header) + 63) // 64 * 64
    path = tmp_path / "m.gguf"
    path.write_bytes(header + b"\0" * (offset - len(header)) + b"\1" * 64)
    meta, data_offset = model_file.read_header(path, keep_arrays=("tokenizer.ggml.tokens",))
    assert meta["tokenizer.ggml.tokens"] == tokens and meta["tokenizer.ggml.scores"] is None
    assert data_offset == offset
    assert model_file.bytes_per_token(path) == 64
    assert model_file.eog_token_ids(path) == [1, 3]
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(header[:40])
    with pytest.raises(model_file.GGUFError):
        model_file.read_header(truncated)
    assert model_file.eog_token_ids(truncated) == []


async def test_run_scenarios_alternates_sides_and_respects_the_deadline(tmp_path: Path):
    import time

    from bench import run

    fake = FakeOpenAI()
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return fake.handler(request)

    transport = httpx.MockTransport(handler)
    wl = S.Workload(decode_tokens=4, ttft_probes=1)
    sides = [S.Side("xiaoq", "http://x"), S.Side("llama-server", "http://l")]
    sink: list = []
    await run.run_scenarios(sides, wl, ["1"], 2, "t", str(tmp_path / "none.gguf"), sink, transport=transport,
                            per_rep=lambda: {"tg_tps": 1.0})
    assert len(sink) == 2 and all(set(r) == {"xiaoq", "llama-server", "llama_bench"} for r in sink)
    assert all(not r[s]["single"]["errors"] and r[s]["single"]["decode_tokens"] == 4 for r in sink for s in ("xiaoq", "llama-server"))
    import itertools

    measured = hosts[4:]  # after each side's length probe and warm-up
    runs = [(host, len(list(group))) for host, group in itertools.groupby(measured)]
    per_side = len(measured) // 4
    assert runs == [("x", per_side), ("l", 2 * per_side), ("x", per_side)]  # x, l | l, x: alternation
    sink2: list = []
    await run.run_scenarios(sides, wl, ["1"], 2, "t", "m", sink2, transport=transport, deadline=time.monotonic() - 1)
    assert sink2 == []


def test_folded_stacks_give_self_and_total_shares(tmp_path: Path):
    from bench import profile

    folded = tmp_path / "p.txt"
    folded.write_text("main (a.py:1);step (e.py:10);decode (c.py:5) 60\n"
                      "main (a.py:1);step (e.py:12);sample (s.py:3) 30\n"
                      "main (a.py:2) 10\n")
    top = profile.top_frames(profile.read_folded([folded]))
    assert top[0] == ("decode (c.py)", 60.0, 60.0)
    assert top[1] == ("sample (s.py)", 30.0, 30.0)
    assert top[2] == ("main (a.py)", 10.0, 100.0)  # line numbers merged: one function
    assert profile.top_frames(profile.read_folded([])) == []


def test_py_spy_recorder_samples_a_busy_python_process(tmp_path: Path):
    import sys

    from bench import profile

    exe = profile.find_py_spy()
    if exe is None:
        pytest.skip("py-spy not installed (optional tool, see bench/profile.py)")
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\ndef spin():\n    t = time.time()\n    while time.time() - t < 20: pass\nspin()"])
    try:
        plan = profile.ProfilePlan(exe, {"xiaoq": busy.pid}, tmp_path)
        assert plan.recorder("llama-server", "single", 0) is None  # only the planned sides are sampled
        rec = plan.recorder("xiaoq", "single", 0)
        import time
        time.sleep(0.5)  # let the interpreter start before py-spy attaches
        rec.start()
        time.sleep(1.5)
        plan.keep("single", rec.stop())
    finally:
        busy.kill()
        busy.wait()
    summary = plan.summary()
    assert summary["single"] and summary["single"][0][0].startswith("spin ")


def test_foreign_load_counts_other_processes_not_ours():
    import sys
    import time

    from bench.contention import ForeignLoad

    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 4: pass"])
    try:
        time.sleep(0.3)
        foreign = ForeignLoad([]).start()
        ours = ForeignLoad([busy.pid]).start()
        time.sleep(1.5)
        f, o = foreign.stop(), ours.stop()
    finally:
        busy.kill()
        busy.wait()
    assert f is not None and o is not None
    assert f - o > 0.5  # the spinning process is about one core, foreign unless it is one of ours


def test_report_prints_the_noise_per_scenario():
    r = _synthetic_results()
    for rep in r["reps"]:
        rep["xiaoq"]["single"]["foreign_cores"] = 0.05
    md = report.render(r)
    assert "_Other work on the machine meanwhile (cores, per repetition): XiaoQ runs 0.05, 0.05; llama-server runs ?, ?._" in md
