"""CPU seconds of each stage between the end of speech and the first audio, each measured alone in
a fresh process with ``getrusage``: the figure a busy shared machine cannot blur. On an idle machine
a stage's wall time is about its CPU seconds divided by the threads it uses (1 for Whisper and
espeak-ng; ``--threads`` for llama.cpp, which scales a little below linearly).

    .venv/bin/python bench/voice_cpu.py [--model M.gguf] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

QUESTION = "What is a bubble sort?"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def asr_stage(reps: int) -> dict[str, float]:
    from bench.voice import espeak
    from xiaoq.config import Settings
    from xiaoq.voice.audio import decode_audio
    from xiaoq.voice.service import build_asr

    engine = build_asr(Settings(_env_file=None))
    engine.load()
    samples = decode_audio(espeak(QUESTION))
    engine.transcribe(samples, "en")  # warm
    c0, w0 = _cpu(), time.perf_counter()
    for _ in range(reps):
        text = engine.transcribe(samples, "en").text
    return {"cpu_s": (_cpu() - c0) / reps, "wall_s": (time.perf_counter() - w0) / reps, "audio_s": len(samples) / 16000, "text": text}  # type: ignore[dict-item]


def llm_stage(model: str, threads: int, reps: int) -> dict[str, float]:
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams
    from xiaoq.voice.text import ClauseSplitter

    settings = Settings(_env_file=None, threads=threads, parallel=1, kv_cache_mb=0, kv_disk_mb=0)

    async def run() -> dict[str, float]:
        engine = LlamaEngine(Path(model), settings)
        await engine.start()
        rows = []
        for i in range(reps + 1):
            messages = [{"role": "system", "content": settings.system_prompt}, {"role": "user", "content": f"{QUESTION} ({i})"}]
            c0, w0 = _cpu(), time.perf_counter()
            gen = await engine.submit(GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=80)))
            splitter, n, first = ClauseSplitter(), 0, 0.0
            async for piece in gen:
                n += 1
                if n == 1:
                    first = _cpu() - c0
                if splitter.feed(piece):
                    break
            gen.cancel()
            rows.append((_cpu() - c0, time.perf_counter() - w0, n, first))
        await engine.close()
        rows = rows[1:]  # the first pays for warming up
        return {"cpu_s": sum(r[0] for r in rows) / reps, "wall_s": sum(r[1] for r in rows) / reps, "tokens_to_first_clause": sum(r[2] for r in rows) / reps,
                "first_token_cpu_s": sum(r[3] for r in rows) / reps}

    return asyncio.run(run())


def tts_stage(reps: int) -> dict[str, float]:
    from xiaoq.voice.espeak import EspeakTTS

    engine = EspeakTTS()
    voice = next(v for v in engine.voices() if v.name == "en-us")
    c0, w0 = _cpu(), time.perf_counter()
    for _ in range(reps):
        b"".join(engine.synthesize("A bubble sort is a simple sorting algorithm.", voice))
    return {"cpu_s": (_cpu() - c0) / reps, "wall_s": (time.perf_counter() - w0) / reps}


def contention_stage(model: str, threads: int, seconds: float) -> dict[str, dict[str, float]]:
    """A/B in one process, phase after phase, so both sides see the same machine: a chat stream's
    tokens/s alone, while transcriptions and syntheses run back to back with the core lent
    (the server's wiring) and without (speech niced only), then alone again."""
    from bench.voice import espeak
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine
    from xiaoq.engine.types import GenerationRequest, SamplingParams
    from xiaoq.voice.service import VoiceService

    settings = Settings(_env_file=None, threads=threads, parallel=1, kv_cache_mb=0, kv_disk_mb=0)
    wav = espeak(QUESTION)

    async def speech(service: VoiceService, until: float) -> tuple[int, float]:
        jobs, asr_wall = 0, 0.0
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            await service.transcribe(wav, "en")
            asr_wall += time.perf_counter() - t0
            voice, pieces = service.prepare_speech("A short sentence to speak. And another one.", "en")
            async for _ in service.speak(pieces, voice):
                pass
            jobs += 1
        return jobs, asr_wall / max(jobs, 1)

    async def run() -> dict[str, dict[str, float]]:
        engine = LlamaEngine(Path(model), settings)
        await engine.start()
        services = {"lent": VoiceService(settings, lend_core=engine.lend_core), "niced only": VoiceService(settings)}
        for service in services.values():
            await service.transcribe(wav, "en")  # load Whisper before the clock runs
        request = GenerationRequest(messages=[{"role": "user", "content": "Write a long essay about the history of tea."}],
                                    sampling=SamplingParams(temperature=0.7, max_tokens=3000))
        gen = await engine.submit(request)
        stamps: list[float] = []

        async def consume() -> None:
            async for _ in gen:
                stamps.append(time.perf_counter())

        reader = asyncio.create_task(consume())
        while len(stamps) < 5:
            await asyncio.sleep(0.05)
        out: dict[str, dict[str, float]] = {}
        for phase in ("alone", "niced only", "lent", "alone again"):
            c0, t0 = _cpu(), time.perf_counter()
            n0 = len(stamps)
            jobs, asr_wall = (await speech(services[phase], t0 + seconds)) if phase in services else (await asyncio.sleep(seconds) or (0, 0.0))
            wall = time.perf_counter() - t0
            out[phase] = {"tokens_per_s": (len(stamps) - n0) / wall, "cpu_s_per_s": (_cpu() - c0) / wall, "speech_jobs": jobs, "asr_wall_s": asr_wall}
        gen.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        for service in services.values():
            service.close()
        await engine.close()
        return out

    return asyncio.run(run())


def print_contention(out: dict[str, dict[str, float]]) -> None:
    alone = (out["alone"]["tokens_per_s"] + out["alone again"]["tokens_per_s"]) / 2
    print("\n| chat stream while speech work runs | tokens/s | × alone | ASR wall per job | speech jobs | process CPU s per s |\n| --- | --- | --- | --- | --- | --- |")
    for phase, row in out.items():
        asr = f"{row['asr_wall_s']:.2f} s" if row["speech_jobs"] else "-"
        print(f"| {phase} | {row['tokens_per_s']:.1f} | {row['tokens_per_s'] / alone:.2f} | {asr} | {row['speech_jobs']} | {row['cpu_s_per_s']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--contention-seconds", type=float, default=6.0, help="length of each phase of the contention A/B (0: skip it)")
    ap.add_argument("--stage", choices=["asr", "llm", "tts", "contention"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:  # one stage in this fresh process
        result = {"asr": lambda: asr_stage(args.reps), "llm": lambda: llm_stage(args.model, args.threads, args.reps), "tts": lambda: tts_stage(args.reps),
                  "contention": lambda: contention_stage(args.model, args.threads, args.contention_seconds)}[args.stage]()
        print(json.dumps(result))
        return
    from bench.voice import default_model

    model = args.model or default_model()
    from bench.voice import load_note

    print(f"model {Path(model).name}, {args.threads} threads; {load_note()}\n")
    out = {}
    stages = ("asr", "llm", "tts", "contention") if args.contention_seconds > 0 else ("asr", "llm", "tts")
    for stage in stages:
        cmd = [sys.executable, __file__, "--stage", stage, "--model", model, "--threads", str(args.threads), "--reps", str(args.reps),
               "--contention-seconds", str(args.contention_seconds)]
        out[stage] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    a, l, t = out["asr"], out["llm"], out["tts"]
    idle = a["cpu_s"] + l["cpu_s"] / args.threads + t["cpu_s"]
    print(f"| stage | CPU s | wall s here | threads |\n| --- | --- | --- | --- |")
    print(f"| Whisper tiny.en, {a['audio_s']:.1f} s question | {a['cpu_s']:.2f} | {a['wall_s']:.2f} | 1 |")
    print(f"| llama.cpp to the first clause ({l['tokens_to_first_clause']:.0f} tokens; the first token after {l['first_token_cpu_s']:.2f} CPU s) | {l['cpu_s']:.2f} | {l['wall_s']:.2f} | {args.threads} |")
    print(f"| espeak-ng, one clause | {t['cpu_s']:.2f} | {t['wall_s']:.2f} | 1 |")
    print(f"\nEnd of speech → first audio on an idle machine ≈ **{idle:.2f} s** (CPU s / threads, summed; {load_note()})")
    if "contention" in out:
        print_contention(out["contention"])
        print(f"\n({load_note()})")


if __name__ == "__main__":
    main()
