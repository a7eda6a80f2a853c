"""A tiny Prometheus text-format registry (no prometheus_client dependency).

Two sources end up in ``GET /metrics``: the engine's own counters and gauges (``engine.stats()``,
rendered generically so the engine can add keys without touching the API), and per-request figures
measured here at the HTTP edge (time to first token, decode tokens/s) as histograms.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from typing import Any, Iterable, Mapping, Optional

PREFIX = "xiaoq_"

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
TPS_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0)

#: HELP texts of the stats keys the engines report; unknown keys get a generic one.
STAT_HELP = {
    "ready": "1 when the model is loaded and requests are accepted",
    "slots_total": "Sequence slots decoded together",
    "slots_active": "Slots generating right now",
    "queue_depth": "Requests waiting for a slot",
    "queue_capacity": "Requests that may wait before 503",
    "requests_total": "Requests admitted by the engine",
    "requests_rejected_total": "Requests refused because the queue was full",
    "requests_finished_total": "Generations finished, by finish reason",
    "tokens_generated_total": "Tokens generated",
    "prompt_tokens_evaluated_total": "Prompt tokens evaluated (not served from cache)",
    "prompt_tokens_cached_total": "Prompt tokens served from the KV cache",
    "decode_steps_total": "llama_decode steps",
    "batch_tokens_total": "Tokens sent to llama_decode",
    "batch_tokens_last": "Tokens in the last llama_decode batch",
    "batch_tokens_max": "Most tokens in one llama_decode batch",
    "batch_tokens_mean": "Mean tokens per llama_decode batch",
    "prefill_chunk_tokens": "Prompt tokens a step carries while other streams decode (sized from the step-time fit unless --prefill-chunk pins it)",
    "step_fit_base_ms": "Fitted fixed cost of a llama_decode step (ms; 0 until fitted)",
    "step_fit_token_ms": "Fitted cost of each token in a llama_decode step (ms; 0 until fitted)",
    "kv_slot_reuse_total": "Requests that reused the KV state left in their slot",
    "kv_seq_copy_total": "KV sequence copies between slots",
    "kv_idle_parked_total": "Idle slots moved to the KV state cache while others decoded (--park-idle-after)",
    "prefill_steps_aborted_total": "Prompt steps stopped midway because their one request was cancelled (Stop, disconnect)",
    "draft_tokens_total": "Tokens drafted by prompt lookup (--lookup-draft)",
    "draft_accepted_total": "Drafted tokens the model agreed with (each saved a decode step)",
    "kv_cache_hits_total": "KV state cache hits",
    "kv_cache_misses_total": "KV state cache misses",
    "kv_cache_saves_total": "KV states saved to the cache",
    "kv_cache_bytes": "Bytes held by the KV state cache",
    "kv_cache_entries": "Entries in the KV state cache",
    "kv_cache_capacity_bytes": "Byte cap of the KV state cache",
    "decode_threads": "Threads llama.cpp decodes with now (one fewer while speech work holds a core)",
    "cores_lent_total": "Speech jobs that made decoding give up a core while they ran",
    "voice_asr_requests_total": "Audio uploads transcribed",
    "voice_asr_audio_seconds_total": "Seconds of audio transcribed",
    "voice_asr_busy_seconds_total": "Seconds the ASR thread spent decoding and transcribing",
    "voice_asr_queue_depth": "Transcriptions waiting or running",
    "voice_tts_requests_total": "Speech requests answered",
    "voice_tts_characters_total": "Characters synthesized to speech",
    "voice_tts_busy_seconds_total": "Seconds the TTS thread spent synthesizing",
    "voice_tts_queue_depth": "Sentences waiting for or in synthesis",
    "upstream_up": "1 when the upstream answers its health probe and its circuit breaker is closed",
    "upstream_in_flight": "Requests streaming from the upstream now",
    "upstream_requests_total": "Requests sent to the upstream (retries included)",
    "upstream_failures_total": "Requests or probes of the upstream that failed",
    "upstream_retries_from_total": "Requests moved from the upstream to the next one before their first token",
    "upstream_tokens_total": "Text pieces streamed from the upstream",
    "upstream_cached_tokens_total": "Prompt tokens the upstream served from its KV cache",
    "upstream_prompt_tokens_total": "Prompt tokens sent to the upstream",
    "upstream_retries_total": "Requests retried on another upstream before their first token",
}

#: Keys that end in ``_total`` but are gauges (a size, not a running count).
GAUGES_NAMED_TOTAL = frozenset({"slots_total"})
#: Label name for the sub-keys of a nested stats dict (``upstream_*``: the upstream's URL).
NESTED_LABEL = {"requests_finished_total": "finish_reason"}

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(key: str) -> str:
    return PREFIX + _NAME_OK.sub("_", key)


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class Histogram:
    """Cumulative-bucket histogram, thread-safe (observations come from request handlers)."""

    def __init__(self, name: str, help_: str, buckets: Iterable[float]):
        self.name, self.help = name, help_
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sum += value
            self.count += 1

    def render(self) -> list[str]:
        with self._lock:
            lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
            acc = 0
            for bound, n in zip(self.buckets, self.counts):
                acc += n
                lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {acc}')
            lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
            lines.append(f"{self.name}_sum {_num(self.sum)}")
            lines.append(f"{self.name}_count {self.count}")
        return lines


class Metrics:
    """HTTP-level metrics of one app."""

    def __init__(self) -> None:
        self.ttft = Histogram(PREFIX + "http_time_to_first_token_seconds", "Time from request to first streamed token", TTFT_BUCKETS)
        self.tps = Histogram(PREFIX + "http_decode_tokens_per_second", "Decode speed of each finished request", TPS_BUCKETS)
        self.finished: dict[tuple[str, str], int] = {}
        self.language_retries = 0
        self._lock = threading.Lock()

    def observe_generation(self, route: str, finish_reason: str, ttft_s: Optional[float], tokens_per_s: Optional[float], language_retry: bool = False) -> None:
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        if tokens_per_s:
            self.tps.observe(tokens_per_s)
        with self._lock:
            key = (route, finish_reason)
            self.finished[key] = self.finished.get(key, 0) + 1
            self.language_retries += int(language_retry)

    def render(self, stats: Mapping[str, Any]) -> str:
        lines = render_stats(stats)
        name = PREFIX + "http_generations_total"
        lines += [f"# HELP {name} Generations finished, by route and finish reason", f"# TYPE {name} counter"]
        with self._lock:
            for (route, reason), n in sorted(self.finished.items()):
                lines.append(f'{name}{{route="{route}",finish_reason="{reason}"}} {n}')
        name = PREFIX + "http_language_retries_total"
        lines += [f"# HELP {name} Replies that started in the wrong language and were generated again", f"# TYPE {name} counter"]
        with self._lock:
            lines.append(f"{name} {self.language_retries}")
        lines += self.ttft.render() + self.tps.render()
        return "\n".join(lines) + "\n"


def render_stats(stats: Mapping[str, Any]) -> list[str]:
    """Engine stats as metrics: ``*_total`` keys are counters, other numbers gauges; a nested dict
    ``{"k": {"a": 1}}`` becomes ``xiaoq_k{key="a"} 1``; non-numeric values are skipped."""
    lines: list[str] = []
    for key in sorted(stats):
        value = stats[key]
        name = metric_name(key)
        kind = "counter" if key.endswith("_total") and key not in GAUGES_NAMED_TOTAL else "gauge"
        help_ = STAT_HELP.get(key, f"Engine statistic {key}")
        if isinstance(value, Mapping):
            label = NESTED_LABEL.get(key, "upstream" if key.startswith("upstream_") else "key")
            samples = [(f'{name}{{{label}="{k}"}}', v) for k, v in sorted(value.items()) if isinstance(v, (int, float))]
        elif isinstance(value, (int, float)):
            samples = [(name, value)]
        else:
            continue
        if samples:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            lines += [f"{n} {_num(v)}" for n, v in samples]
    return lines
