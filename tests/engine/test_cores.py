"""Decode threads make room for speech work: one thread fewer while a core is lent, only when the
decode threads would otherwise fill every CPU (llama.cpp's barriers stall on a preempted thread)."""

from __future__ import annotations

import os
from pathlib import Path

from xiaoq.config import Settings
from xiaoq.engine.cores import CoreShare
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams


def test_lending_a_core_drops_one_decode_thread_while_it_is_lent() -> None:
    share = CoreShare(threads=2, cpus=2)
    assert share.threads == 2
    with share.lend():
        assert share.threads == 1
        with share.lend():  # two speech jobs at once still leave decoding one thread
            assert share.threads == 1
        assert share.threads == 1
    assert share.threads == 2
    assert share.lent_total == 2


def test_spare_cpus_mean_nothing_to_give_up() -> None:
    share = CoreShare(threads=2, cpus=4)
    with share.lend():
        assert share.threads == 2
    on_one = CoreShare(threads=1, cpus=1)
    with on_one.lend():
        assert on_one.threads == 1
    three = CoreShare(threads=4, cpus=4)
    with three.lend(), three.lend():
        assert three.threads == 2


def test_a_job_that_fails_still_returns_its_core() -> None:
    share = CoreShare(threads=2, cpus=2)
    try:
        with share.lend():
            raise RuntimeError("speech failed")
    except RuntimeError:
        pass
    assert share.threads == 2


async def test_real_engine_decodes_on_fewer_threads_while_a_core_is_lent(tiny_gguf: Path) -> None:
    engine = LlamaEngine(tiny_gguf, Settings(_env_file=None, threads=2, cpus="0,1", parallel=1, ctx=256))
    await engine.start()
    try:
        request = GenerationRequest(messages=[{"role": "user", "content": "hi"}], sampling=SamplingParams(temperature=0, max_tokens=4))
        assert engine.stats()["decode_threads"] == 2
        with engine.lend_core():
            await (await engine.submit(request)).text()
            during = engine.stats()["decode_threads"]  # what llama.cpp's context holds after those steps
            cpus_during = engine.call_on_scheduler(lambda: os.sched_getaffinity(0))
        await (await engine.submit(request)).text()
        after = engine.stats()
        cpus_after = engine.call_on_scheduler(lambda: os.sched_getaffinity(0))
        print(f"decode threads: {during} while lent, {after['decode_threads']} after; CPUs {cpus_during} while lent, {cpus_after} after")
        assert during == 1 and after["decode_threads"] == 2
        assert after["cores_lent_total"] == 1
        everything = os.sched_getaffinity(0)
        if len(everything) > 1:  # decoding leaves the speech thread's CPU to it
            assert cpus_during == everything - {max(everything)} and cpus_after == everything
    finally:
        await engine.close()
