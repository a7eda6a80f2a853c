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
        t0 = time.perf_counter()  # the user lets go of the button: end of speech
        heard = transcribe(client, url, wav)
        t_asr = time.perf_counter() - t0
        clause, ttft, t_clause = first_clause(client, url, heard["text"])
        t_tts = first_audio(client, url, clause)
        total = time.perf_counter() - t0
        rows.append({"asr_s": t_asr, "ttft_s": ttft, "first_clause_s": t_clause, "tts_first_byte_s": t_tts, "total_s": total})
        print(f"  {heard['text']!r}: first clause {clause!r} -> first audio after {total:.2f} s", file=sys.stderr)
    return rows


def wer(client: httpx.Client, url: str) -> tuple[float, list[tuple[str, str]]]:
    pairs = [(s, transcribe(client, url, espeak(s))["text"]) for s in WER_SENTENCES]
    return word_error_rate(pairs), pairs


def _stream_tokens(url: str, stop: threading.Event, stamps: list[float]) -> None:
    body = {"model": "x", "stream": True, "max_tokens": 2000, "temperature": 0.7, "messages": [{"role": "user", "content": "Write a long essay about the history of tea."}]}
    with httpx.Client(timeout=300) as c, c.stream("POST", url + "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                stamps.append(time.perf_counter())
            if stop.is_set():
                return


def contention(url: str, seconds: float) -> dict[str, float]:
    """Decode tokens/s of one chat stream alone, then while ASR and TTS run back to back."""
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
    wav = espeak(WER_SENTENCES[0])
    jobs = 0
    with httpx.Client(timeout=120) as c:
        while time.perf_counter() - a1 < seconds:
            transcribe(c, url, wav)
            c.post(url + "/v1/audio/speech", json={"input": "A short sentence to speak. And another one.", "voice": "en"}).raise_for_status()
            jobs += 1
    b1 = time.perf_counter()
    stop.set()
    t.join(30)
    alone = sum(a0 <= s < a1 for s in stamps) / (a1 - a0)
    during = [s for s in stamps if a1 <= s < b1]
    gaps = [y - x for x, y in zip(during, during[1:])]
    return {"tokens_per_s_alone": alone, "tokens_per_s_during_speech": len(during) / (b1 - a1), "speech_jobs": jobs,
            "largest_gap_s": max(gaps) if gaps else float("nan")}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contention-seconds", type=float, default=8.0)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--server-nice", type=int, default=0, help="run the server at this nice value (root may go below 0: on a shared machine, -10 keeps other work from blurring the figures)")
    args = ap.parse_args()
    model = args.model or default_model()
    port = free_port()
    nice = ["nice", "-n", str(args.server_nice)] if args.server_nice else []
    spec = ServerSpec("xiaoq", [*nice, sys.executable, "-m", "xiaoq", "serve", "--model", model, "--port", str(port), "--threads", str(args.threads)], port,
                      env={"PYTHONPATH": str(ROOT / "src")})
    with ServerPool(ROOT / "bench" / "results" / "logs") as pool, httpx.Client(timeout=300) as client:
        server = pool.start(spec)
        url = server.base_url
        transcribe(client, url, espeak("warm up"))  # the ASR model is loaded (serve starts it in the background)
        print(f"model {Path(model).name}, {args.threads} threads, {os.cpu_count()} CPUs, server nice {args.server_nice}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
        rows = latency(client, url, args.reps)
        wer_value, pairs = wer(client, url)
        cont = contention(url, args.contention_seconds)
        idle = idle_listening_cpu(url, args.idle_seconds)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print("\n## End of speech → first audio of the answer (push-to-talk, median of %d)\n" % len(rows))
    print("| transcription | first token | first clause | first audio byte | **total** |\n| --- | --- | --- | --- | --- |")
    print(f"| {med['asr_s']:.2f} s | {med['ttft_s']:.2f} s after ASR | {med['first_clause_s']:.2f} s after ASR | {med['tts_first_byte_s']:.2f} s after the clause | **{med['total_s']:.2f} s** |")
    print(f"\n## English WER (espeak-ng speech, Whisper tiny.en): **{wer_value:.3f}** over {len(pairs)} sentences\n")
    print("## A chat stream while ASR and TTS run back to back\n")
    print("| tokens/s alone | tokens/s during speech work | speech jobs | largest gap |\n| --- | --- | --- | --- |")
    print(f"| {cont['tokens_per_s_alone']:.1f} | {cont['tokens_per_s_during_speech']:.1f} | {cont['speech_jobs']} | {cont['largest_gap_s']:.2f} s |")
    print(f"\n## Idle listening (`xiaoq listen --wake`, silence): **{idle:.1f} % of one core**")
    out = ROOT / "bench" / "results" / f"voice-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"server_nice": args.server_nice, "latency": rows, "wer": wer_value, "pairs": pairs, "contention": cont, "idle_cpu_percent": idle, "model": model,
                               "load_average": os.getloadavg()}, indent=2))
    print(f"\n(raw figures: {out.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
