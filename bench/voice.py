"""Voice benchmark: end-of-speech to first answer audio, English WER, and what speech work costs
a concurrent chat stream, against a real ``xiaoq serve`` on the real model. Prints Markdown tables
and saves the raw figures to ``bench/results/voice-<time>.json``.

    .venv/bin/python bench/voice.py                       # the model get-qwen-gguf.sh gives
    .venv/bin/python bench/voice.py --model M.gguf --reps 5

The latency path is the web UI's with push-to-talk (the user lets go of the button at the end of
speech): upload the recording to /v1/audio/transcriptions, stream the answer from
/v1/chat/completions, cut it at the first clause, send that clause to /v1/audio/speech; the clock
stops at the first byte of audio. Hands-free adds its silence wait (900 ms in the web UI) on top.
Questions are spoken by espeak-ng, so the WER is that of synthetic speech.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.servers import ServerPool, ServerSpec, free_port  # noqa: E402
from xiaoq.voice.audio import pcm_of_wav, wav_bytes  # noqa: E402
from xiaoq.voice.text import ClauseSplitter  # noqa: E402
from xiaoq.voice.wer import word_error_rate  # noqa: E402

QUESTIONS = (
    "What is a bubble sort?",
    "How do I boil an egg?",
    "Why is the sky blue?",
    "What is the capital of Japan?",
    "Give me a tip for sleeping well.",
)
WER_SENTENCES = (
    "Please close the window in the bedroom.",
    "What is the weather going to be tomorrow?",
    "Add milk and bread to my shopping list.",
    "How long does it take to walk to the station?",
    "Turn the heating down a little.",
    "Who wrote the story about the old man and the sea?",
    "Can you tell me a joke about computers?",
    "What day of the week is it today?",
    "Read me the first line of the news.",
    "Where did I leave my keys yesterday?",
)


def espeak(text: str, voice: str = "en-us") -> bytes:
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdin", "--stdout"], input=text.encode(), capture_output=True, check=True)
    pcm, rate = pcm_of_wav(out.stdout)
    return wav_bytes(pcm, rate)


def load_note() -> str:
    """``uptime``'s load averages, labelled "loaded machine" above 3 (two cores shared: figures blur)."""
    one, five, fifteen = os.getloadavg()
    label = " — **loaded machine**" if one > 3 else ""
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}{label}"


def metric(client: httpx.Client, url: str, name: str) -> float:
    """One unlabelled value of ``GET /metrics`` (``xiaoq_<name>``), NaN when absent."""
    for line in client.get(url + "/metrics").text.splitlines():
        if line.startswith(f"xiaoq_{name} "):
            return float(line.split()[1])
    return float("nan")


def default_model() -> str:
    getter = ROOT.parent / "shared" / "models" / "get-qwen-gguf.sh"
    for candidate in (ROOT.parent / "shared", Path("/work/shared")):
        if (candidate / "models" / "get-qwen-gguf.sh").exists():
            getter = candidate / "models" / "get-qwen-gguf.sh"
    return os.environ.get("XIAOQ_BENCH_MODEL") or subprocess.run(["bash", str(getter)], capture_output=True, text=True, check=True).stdout.strip()


def transcribe(client: httpx.Client, url: str, wav: bytes) -> dict[str, Any]:
    r = client.post(url + "/v1/audio/transcriptions", files={"file": ("q.wav", wav, "audio/wav")}, data={"language": "en"})
    r.raise_for_status()
    return r.json()


def first_clause(client: httpx.Client, url: str, question: str, max_tokens: int = 120) -> tuple[str, float, float]:
    """(first clause, seconds to the first token, seconds to the clause) of a streamed answer."""
    body = {"model": "x", "stream": True, "max_tokens": max_tokens, "temperature": 0, "messages": [{"role": "user", "content": question}]}
    t0 = time.perf_counter()
    ttft: Optional[float] = None
    splitter = ClauseSplitter()
    text = ""
    with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if delta and ttft is None:
                ttft = time.perf_counter() - t0
            text += delta
            pieces = splitter.feed(delta)
            if pieces:
                return pieces[0], ttft or 0.0, time.perf_counter() - t0
    rest = splitter.flush()
    return (rest[0] if rest else text), ttft or 0.0, time.perf_counter() - t0


def first_audio(client: httpx.Client, url: str, text: str) -> float:
    """Seconds to the first byte of spoken audio."""
    t0 = time.perf_counter()
    with client.stream("POST", url + "/v1/audio/speech", json={"input": text, "voice": "en"}) as r:
        r.raise_for_status()
        for _ in r.iter_raw():
            return time.perf_counter() - t0
    return time.perf_counter() - t0


def latency(client: httpx.Client, url: str, reps: int) -> list[dict[str, float]]:
    rows = []
    recordings = [espeak(q) for q in QUESTIONS]
    for i in range(reps):
        wav = recordings[i % len(recordings)]
        evaluated = metric(client, url, "prompt_tokens_evaluated_total")
        t0 = time.perf_counter()  # the user lets go of the button: end of speech
        heard = transcribe(client, url, wav)
        t_asr = time.perf_counter() - t0
        clause, ttft, t_clause = first_clause(client, url, heard["text"])
        t_tts = first_audio(client, url, clause)
        total = time.perf_counter() - t0
        prefilled = metric(client, url, "prompt_tokens_evaluated_total") - evaluated
        rows.append({"asr_s": t_asr, "asr_server_s": heard["timings"]["asr_ms"] / 1000, "ttft_s": ttft, "first_clause_s": t_clause,
                     "tts_first_byte_s": t_tts, "total_s": total, "prompt_tokens_prefilled": prefilled})
        print(f"  {heard['text']!r}: first clause {clause!r} -> first audio after {total:.2f} s", file=sys.stderr)
    return rows


def wer(client: httpx.Client, url: str) -> tuple[float, list[tuple[str, str]]]:
    pairs = [(s, transcribe(client, url, espeak(s))["text"]) for s in WER_SENTENCES]
    return word_error_rate(pairs), pairs


def _stream_tokens(url: str, stop: threading.Event, stamps: list[float]) -> None:
    """One chat stream after another until ``stop``: an answer that ends early (EOS) must not
    leave the measured phases with no stream at all."""
    body = {"model": "x", "stream": True, "max_tokens": 2000, "temperature": 0.7, "messages": [{"role": "user", "content": "Write a long essay about the history of tea."}]}
    with httpx.Client(timeout=300) as c:
        for _ in range(100):  # bounded: each answer lasts seconds
            with c.stream("POST", url + "/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {") and '"content"' in line:
                        stamps.append(time.perf_counter())
                    if stop.is_set():
                        return


def _speech_jobs(url: str, seconds: float, threads_seen: list[float]) -> int:
    """Transcriptions and syntheses back to back for ``seconds``; the engine's decode threads
    are sampled between jobs and while one runs."""
    wav = espeak(WER_SENTENCES[0])
    jobs = 0
    start = time.perf_counter()
    with httpx.Client(timeout=120) as c:
        while time.perf_counter() - start < seconds:
            job = threading.Thread(target=transcribe, args=(c, url, wav))
            job.start()
            while job.is_alive():  # the engine applies a new thread count at its next step
                time.sleep(0.1)
                threads_seen.append(metric(c, url, "decode_threads"))
            job.join()
            c.post(url + "/v1/audio/speech", json={"input": "A short sentence to speak. And another one.", "voice": "en"}).raise_for_status()
            jobs += 1
    return jobs


def contention(url: str, seconds: float) -> dict[str, Any]:
    """Decode tokens/s of one chat stream alone, while ASR and TTS run back to back, then alone
    again (the two alone phases averaged, so a drift in the machine's load shows as their spread)."""
    stamps: list[float] = []
    stop = threading.Event()
    t = threading.Thread(target=_stream_tokens, args=(url, stop, stamps), daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while len(stamps) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    a0 = time.perf_counter()
    time.sleep(seconds)
    a1 = time.perf_counter()
    threads_seen: list[float] = []
    jobs = _speech_jobs(url, seconds, threads_seen)
    b1 = time.perf_counter()
    time.sleep(seconds)
    c1 = time.perf_counter()
    stop.set()
    t.join(30)
    before = sum(a0 <= s < a1 for s in stamps) / (a1 - a0)
    after = sum(b1 <= s < c1 for s in stamps) / (c1 - b1)
    during = [s for s in stamps if a1 <= s < b1]
    gaps = [y - x for x, y in zip(during, during[1:])]
    rate = len(during) / (b1 - a1)
    alone = (before + after) / 2
    return {"tokens_per_s_alone": alone, "tokens_per_s_alone_before": before, "tokens_per_s_alone_after": after,
            "tokens_per_s_during_speech": rate, "ratio": rate / alone if alone else float("nan"), "speech_jobs": jobs,
            "largest_gap_s": max(gaps) if gaps else float("nan"), "decode_threads_during_asr": sorted({int(n) for n in threads_seen if n == n})}


def idle_listening_cpu(url: str, seconds: float) -> float:
    """CPU % of ``xiaoq listen --wake`` hearing only silence (after its start-up)."""
    silence = ROOT / "bench" / "results" / "silence.wav"
    silence.parent.mkdir(parents=True, exist_ok=True)
    silence.write_bytes(wav_bytes(b"\0\0" * int(16000 * (seconds + 10)), 16000))
    proc = subprocess.Popen([sys.executable, "-m", "xiaoq", "listen", "--wake", "--no-speak", "--url", url, "--input-file", str(silence)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "(say “Hey XiaoQ” ...)": listening from here on
        p = psutil.Process(proc.pid)
        c0, w0 = sum(p.cpu_times()[:2]), time.perf_counter()
        time.sleep(seconds)
        c1, w1 = sum(p.cpu_times()[:2]), time.perf_counter()
        return 100.0 * (c1 - c0) / (w1 - w0)
    finally:
        proc.terminate()
        proc.wait(10)


SECTIONS = ("latency", "wer", "contention", "idle")
#: The issue's aim: the answer starts speaking within this many seconds of the end of speech.
LATENCY_AIM_S = 1.5
#: The WER bound of the test suite's ten sentences.
WER_BOUND = 0.2


def measure(url: str, client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections; each result carries the load average it was measured at."""
    out: dict[str, Any] = {}
    if "latency" in args.sections:
        out["latency"] = {"rows": latency(client, url, args.reps), "load": load_note()}
    if "wer" in args.sections:
        value, pairs = wer(client, url)
        out["wer"] = {"value": value, "pairs": pairs, "load": load_note()}
    if "contention" in args.sections:
        out["contention"] = {**contention(url, args.contention_seconds), "load": load_note()}
    if "idle" in args.sections:
        out["idle"] = {"cpu_percent": idle_listening_cpu(url, args.idle_seconds), "load": load_note()}
    return out


def report(out: dict[str, Any]) -> None:
    """Markdown: one table per section, then the issue's targets in one table."""
    targets = []
    if "latency" in out:
        rows = out["latency"]["rows"]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"\n## End of speech → first audio of the answer (push-to-talk, median of {len(rows)}; {out['latency']['load']})\n")
        print("| transcription (server ASR) | first token | first clause | first audio byte | prompt tokens prefilled | **total** |\n| --- | --- | --- | --- | --- | --- |")
        print(f"| {med['asr_s']:.2f} s ({med['asr_server_s']:.2f} s) | {med['ttft_s']:.2f} s after ASR | {med['first_clause_s']:.2f} s after ASR "
              f"| {med['tts_first_byte_s']:.2f} s after the clause | {med['prompt_tokens_prefilled']:.0f} | **{med['total_s']:.2f} s** |")
        totals = ", ".join(f"{r['total_s']:.2f}" for r in rows)
        targets.append(("end of speech → first answer audio, median", f"{med['total_s']:.2f} s (each: {totals})", f"≤ {LATENCY_AIM_S} s (aim)",
                        "met" if med["total_s"] <= LATENCY_AIM_S else "missed", out["latency"]["load"]))
    if "wer" in out:
        w = out["wer"]
        print(f"\n## English WER (espeak-ng speech, Whisper tiny.en): **{w['value']:.3f}** over {len(w['pairs'])} sentences ({w['load']})")
        targets.append(("English WER, 10 espeak-ng sentences", f"{w['value']:.3f}", f"≤ {WER_BOUND}", "met" if w["value"] <= WER_BOUND else "missed", w["load"]))
    if "contention" in out:
        c = out["contention"]
        print(f"\n## A chat stream while ASR and TTS run back to back ({c['load']})\n")
        print("| tokens/s alone (before / after) | tokens/s during speech work | ratio | decode threads while ASR ran | speech jobs | largest gap |")
        print("| --- | --- | --- | --- | --- | --- |")
        print(f"| {c['tokens_per_s_alone']:.1f} ({c['tokens_per_s_alone_before']:.1f} / {c['tokens_per_s_alone_after']:.1f}) | {c['tokens_per_s_during_speech']:.1f} "
              f"| {c['ratio']:.2f} | {c['decode_threads_during_asr']} | {c['speech_jobs']} | {c['largest_gap_s']:.2f} s |")
        targets.append(("decode tokens/s of a chat stream: alone → while ASR and TTS run", f"{c['tokens_per_s_alone']:.1f} → {c['tokens_per_s_during_speech']:.1f} "
                        f"(×{c['ratio']:.2f}; largest gap {c['largest_gap_s']:.2f} s)", "bounded slowdown (report it)", "-", c["load"]))
    if "idle" in out:
        i = out["idle"]
        print(f"\n## Idle listening (`xiaoq listen --wake`, silence): **{i['cpu_percent']:.1f} % of one core** ({i['load']})")
        targets.append(("idle listening CPU (`listen --wake`, silence)", f"{i['cpu_percent']:.1f} % of one core", "Raspberry-Pi-class budget", "-", i["load"]))
    print("\n## Issue targets\n\n| what | measured | target | | load |\n| --- | --- | --- | --- | --- |")
    for row in targets:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contention-seconds", type=float, default=8.0)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--sections", type=lambda v: v.split(","), default=list(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--server-nice", type=int, default=0, help="run the server at this nice value (root may go below 0: on a shared machine, -10 keeps other work from blurring the figures)")
    args = ap.parse_args()
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    model = args.model or default_model()
    port = free_port()
    nice = ["nice", "-n", str(args.server_nice)] if args.server_nice else []
    spec = ServerSpec("xiaoq", [*nice, sys.executable, "-m", "xiaoq", "serve", "--model", model, "--port", str(port), "--threads", str(args.threads)], port,
                      env={"PYTHONPATH": str(ROOT / "src")})
    started = time.perf_counter()
    with ServerPool(ROOT / "bench" / "results" / "logs") as pool, httpx.Client(timeout=300) as client:
        server = pool.start(spec)
        url = server.base_url
        transcribe(client, url, espeak("warm up"))  # the ASR model is loaded (serve starts it in the background)
        print(f"model {Path(model).name}, {args.threads} threads, {os.cpu_count()} CPUs, server nice {args.server_nice}; {load_note()}")
        out = measure(url, client, args)
    report(out)
    print(f"\n(whole run {time.perf_counter() - started:.0f} s; {load_note()})")
    path = ROOT / "bench" / "results" / f"voice-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"server_nice": args.server_nice, "model": model, "threads": args.threads, **out}, indent=2))
    print(f"(raw figures: {path.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
