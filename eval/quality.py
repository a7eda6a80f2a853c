"""Quality eval: what a 0.5B model's answers look like with XiaoQ's defaults.

Runs every prompt of ``quality_prompts.jsonl`` (Chinese and English: explanations, code, lists,
emails, translations, word problems, poems, multi-turn follow-ups) against a real XiaoQ server's
``POST /chat``, two samples each, and reports runaway loops (an offline judge, see ``judges.py``),
loop-guard stops, length-cap hits, language match, Python blocks that parse, prose wrapped in code
fences, and mean reply length and time.

Results are written line by line (JSONL) as replies arrive, so an interrupted or time-boxed run
(``--time-budget``) keeps what it has and the same command resumes it. The report is recomputed
from the stored texts, so several runs compare in one table::

    # a server of its own (the model from --model, or the pulled default), 4 slots, 4 clients
    python eval/quality.py run --serve --model M.gguf --out eval/results/after.jsonl
    # or an already running server
    python eval/quality.py run --url http://127.0.0.1:8000 --out eval/results/x.jsonl
    # one table, the first file is "before"
    python eval/quality.py report eval/results/before.jsonl eval/results/after.jsonl

Extra request fields go with ``--param name=value`` (JSON values), e.g. ``--param repeat_penalty=1.1``;
``--subset N`` takes N prompts spread over all categories (for sweeps).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judges  # noqa: E402

HERE = Path(__file__).resolve().parent
PROMPTS = HERE / "quality_prompts.jsonl"
NON_CODE = {"email", "poem", "translate", "list"}


def load_prompts(path: Path = PROMPTS, subset: Optional[int] = None) -> list[dict[str, Any]]:
    prompts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if subset and subset < len(prompts):
        step = len(prompts) / subset
        prompts = [prompts[int(i * step)] for i in range(subset)]
    return prompts


def spread(prompts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prompts with the kinds interleaved (one of each kind in turn), so a run cut short by its
    time budget still covers every kind, and two runs cut at the same point cover the same prompts."""
    seen: dict[str, int] = {}
    ranked = []
    for i, p in enumerate(prompts):
        kind = f"{p['cat']}/{p['q_lang']}"
        seen[kind] = seen.get(kind, 0) + 1
        ranked.append((seen[kind], i, p))
    return [p for _, _, p in sorted(ranked, key=lambda t: (t[0], t[1]))]


# --- talking to the server ------------------------------------------------------------------------


def sse_events(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    buf = b""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1024)
        if not chunk:
            return
        buf += chunk
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    yield json.loads(line[5:].strip())


def generate(url: str, item: dict[str, Any], sample: int, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One reply from ``POST /chat``: its text, finish reason, usage and timings."""
    u = urlparse(url)
    body = {"prompt": item["prompt"], "history": item.get("history", []), "seed": 1000 * sample + 7, **params}
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    started = time.perf_counter()
    text, done, error = [], {}, None
    try:
        conn.request("POST", "/chat", json.dumps(body).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            error = f"HTTP {resp.status}: {resp.read()[:300].decode(errors='replace')}"
        else:
            for ev in sse_events(resp):
                if "token" in ev:
                    text.append(ev["token"])
                elif ev.get("done"):
                    done = ev
                elif "error" in ev:
                    error = json.dumps(ev["error"], ensure_ascii=False)
    except (OSError, http.client.HTTPException) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return {
        "key": f"{item['id']}#{sample}",
        "id": item["id"],
        "sample": sample,
        # the loop guard ended the reply: what it shows is this much of what was streamed
        "text": "".join(text)[: done["text_length"]] if "text_length" in done else "".join(text),
        "streamed": "".join(text) if "text_length" in done else None,  # what the guard cut, for a look
        "finish_reason": done.get("finish_reason"),
        "usage": done.get("usage"),
        "timings": done.get("timings"),
        "wall_s": round(time.perf_counter() - started, 3),
        "error": error,
    }


class Server:
    """``xiaoq serve`` on 127.0.0.1 with a throwaway database, for the length of a run."""

    def __init__(self, model: Optional[str], parallel: int, extra: list[str]):
        self.dir = tempfile.mkdtemp(prefix="xiaoq-eval-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "xiaoq", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--parallel", str(parallel), "--db", f"{self.dir}/eval.db"]
        cmd += (["--model", model] if model else []) + extra
        self.log = open(f"{self.dir}/server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited ({self.proc.returncode}); log: {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(1)
        raise SystemExit(f"server not ready after {timeout}s; log: {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    done = {k for k, r in rows_by_key(out).items() if not r["error"]} if out.exists() else set()
    prompts = load_prompts(Path(args.prompts), args.subset)
    if args.ids:
        wanted = set((Path(args.ids[1:]).read_text() if args.ids.startswith("@") else args.ids).replace(",", " ").split())
        prompts = [p for p in prompts if p["id"] in wanted]
    todo = [(p, s) for s in range(args.samples) for p in spread(prompts) if f"{p['id']}#{s}" not in done]
    meta = {"label": args.label or out.stem, "params": params, "samples": args.samples, "subset": args.subset, "ids": args.ids, "prompts": len(prompts), "server_args": args.server_arg}
    Path(str(out) + ".meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    print(f"{len(done)} done, {len(todo)} to go -> {out}", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `kill` stops our server too
    server = Server(args.model, args.parallel, args.server_arg) if args.serve else None
    url = server.url if server else args.url
    try:
        if server:
            server.wait_ready()
        _run_all(url, todo, params, args, out)
    finally:
        if server:
            server.stop()


def _run_all(url: str, todo: list, params: dict, args: argparse.Namespace, out: Path) -> None:
    deadline = time.time() + args.time_budget if args.time_budget else None
    lock = threading.Lock()
    n = 0

    def one(item: dict, sample: int) -> Optional[dict]:
        if deadline and time.time() > deadline:
            return None
        return generate(url, item, sample, params, args.timeout)

    pool = ThreadPoolExecutor(args.concurrency)
    try:
        with out.open("a", encoding="utf-8") as f:
            futures = [pool.submit(one, item, s) for item, s in todo]
            for fut in as_completed(futures):
                r = fut.result()
                if r is None:
                    continue
                with lock:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
                    f.flush()
                    n += 1
                if n % 10 == 0:
                    print(f"  {n}/{len(todo)}", file=sys.stderr, flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# --- the report ---------------------------------------------------------------------------------


def rows_by_key(path: Path) -> dict[str, dict[str, Any]]:
    """One row per prompt and sample: the first without an error (a failed reply is retried on
    resume), else the last error."""
    rows: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            if r["key"] not in rows or (rows[r["key"]]["error"] and not r["error"]):
                rows[r["key"]] = r
    return rows


def load_results(path: Path) -> tuple[str, list[dict[str, Any]]]:
    meta_path = Path(str(path) + ".meta.json")
    label = json.loads(meta_path.read_text())["label"] if meta_path.exists() else path.stem
    return label, list(rows_by_key(path).values())


def judge(rows: list[dict[str, Any]], prompts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if not r["error"]]
    n = len(ok) or 1
    loops = [r for r in ok if judges.is_loop(r["text"], r["finish_reason"] == "length")]
    py = [b for r in ok for b in judges.python_blocks(r["text"])]
    non_code = [r for r in ok if prompts[r["id"]]["cat"] in NON_CODE]
    langs = {r["key"]: judges.reply_language(r["text"], prompts[r["id"]]["cat"] in NON_CODE) for r in ok}
    with_prose = [r for r in ok if langs[r["key"]] != "none"]  # a reply that is only code has no language
    lang_ok = [r for r in with_prose if langs[r["key"]] == prompts[r["id"]]["lang"]]
    return {
        "replies": len(ok),
        "errors": len(rows) - len(ok),
        "loops": len(loops),
        "guard": sum(r["finish_reason"] == "repetition" or bool((r.get("usage") or {}).get("repetition")) for r in ok),
        "cap": sum(r["finish_reason"] == "length" for r in ok),
        "lang": len(lang_ok),
        "with_prose": len(with_prose),
        "py_blocks": len(py),
        "py_ok": sum(judges.parses(b.code) for b in py),
        "fenced_prose": sum(judges.fenced_prose(r["text"]) for r in non_code),
        "non_code": len(non_code),
        "chars": sum(len(r["text"]) for r in ok) / n,
        "tokens": sum((r.get("usage") or {}).get("completion_tokens", 0) for r in ok) / n,
        "wall": sum(r["wall_s"] for r in ok) / n,
        "loop_keys": [r["key"] for r in loops],
        "lang_miss": [r["key"] for r in with_prose if r not in lang_ok],
    }


def pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.1f} %)" if b else "–"


def length_rows(runs: list[tuple[str, list[dict]]], stats: list[dict[str, Any]], kinds: dict[str, str]) -> list[tuple[str, list[str]]]:
    """The length check: prompts more than 10 % shorter than in the first column (its looped and
    capped replies left out: cutting those is the point) and the total length ratio; beside it,
    the same between the first column's samples 0 and 1, which is what sampling alone does; then
    the total ratio per kind of prompt."""
    base = runs[0][1]
    fixed = {k.split("#")[0] for k in stats[0]["loop_keys"]} | {r["id"] for r in base if r["finish_reason"] == "length"}
    before = judges.mean_lengths(base)

    def cell(c: judges.LengthChange) -> str:
        return f"{c.shorter}/{c.compared} prompts; total {c.total_ratio:.2f}"

    out = [("prompts > 10 % shorter than the first column (its loops and cap runs left out); total length ratio",
            ["–"] + [cell(judges.length_change(before, judges.mean_lengths(rows), fixed)) for _, rows in runs[1:]])]
    noise = judges.length_change(judges.mean_lengths(base, 0), judges.mean_lengths(base, 1), fixed)
    if noise.compared:
        out.append(("the same between the first column's samples 0 and 1 (sampling noise)", [cell(noise)] + ["" for _ in runs[1:]]))
    per_kind = [judges.ratio_by_kind(before, judges.mean_lengths(rows), kinds, fixed) for _, rows in runs[1:]]
    out.append(("total length ratio per kind (the same prompts left out)", ["–"] + [", ".join(f"{k} {v:.2f}" for k, v in r.items()) for r in per_kind]))
    return out


def report(args: argparse.Namespace) -> None:
    prompts = {p["id"]: p for p in load_prompts(Path(args.prompts))}
    runs = [load_results(Path(p)) for p in args.files]
    if args.common:  # the same prompts and samples in every column
        keys = set.intersection(*({r["key"] for r in rows} for _, rows in runs))
        runs = [(label, [r for r in rows if r["key"] in keys]) for label, rows in runs]
    stats = [judge(rows, prompts) for _, rows in runs]
    lines = ["| | " + " | ".join(label for label, _ in runs) + " |", "|---|" + "---|" * len(runs)]

    def row(name: str, f: Any) -> None:
        lines.append(f"| {name} | " + " | ".join(f(s, i) for i, s in enumerate(stats)) + " |")

    row("replies (errors)", lambda s, i: f"{s['replies']} ({s['errors']})")
    row("runaway loops in the text (judge)", lambda s, i: pct(s["loops"], s["replies"]))
    row("stopped by the loop guard", lambda s, i: pct(s["guard"], s["replies"]))
    row("length-cap hits", lambda s, i: pct(s["cap"], s["replies"]))
    row("language match (replies with prose)", lambda s, i: pct(s["lang"], s["with_prose"]))
    row("Python blocks that parse", lambda s, i: pct(s["py_ok"], s["py_blocks"]))
    row("prose in a code fence (emails, poems, translations, lists)", lambda s, i: pct(s["fenced_prose"], s["non_code"]))
    row("mean reply: characters / tokens", lambda s, i: f"{s['chars']:.0f} / {s['tokens']:.0f}")
    row("mean time per reply (s; depends on the machine's load)", lambda s, i: f"{s['wall']:.1f}")
    if len(runs) > 1:
        for name, cells in length_rows(runs, stats, {i: p["cat"] for i, p in prompts.items()}):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.verbose:
        for (label, _), s in zip(runs, stats):
            print(f"\n{label}: loops {s['loop_keys']}\n  language misses {s['lang_miss']}")


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="generate replies (resumable)")
    r.add_argument("--out", required=True)
    r.add_argument("--url", default="http://127.0.0.1:8000")
    r.add_argument("--serve", action="store_true", help="start xiaoq serve on 127.0.0.1 for this run")
    r.add_argument("--model", default=os.environ.get("XIAOQ_MODEL"))
    r.add_argument("--parallel", type=int, default=4)
    r.add_argument("--server-arg", action="append", default=[], help="extra xiaoq serve argument (repeatable)")
    r.add_argument("--concurrency", type=int, default=4)
    r.add_argument("--samples", type=int, default=2)
    r.add_argument("--subset", type=int, default=None)
    r.add_argument("--ids", default=None, help="only these prompt ids (comma or space separated, or @FILE)")
    r.add_argument("--param", action="append", default=[], help="request field name=JSON value (repeatable)")
    r.add_argument("--label", default=None)
    r.add_argument("--time-budget", type=float, default=None, help="stop starting new replies after this many seconds")
    r.add_argument("--timeout", type=float, default=600)
    r.add_argument("--prompts", default=str(PROMPTS))
    p = sub.add_parser("report", help="one table over result files (the first is the baseline)")
    p.add_argument("files", nargs="+")
    p.add_argument("--prompts", default=str(PROMPTS))
    p.add_argument("--common", action="store_true", help="only the prompts and samples every file has")
    p.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
