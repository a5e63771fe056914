"""Load test of `ftkit serve` (loopback only, bounded in count and time).

2,000 requests of 1-4 CoNLL-2003 test sentences each, sent by 1, 8 and 32 concurrent clients (plain asyncio
streams, keep-alive HTTP/1.1: `raw_load`; `--client httpx` for httpx, which costs the shared 2 cores ~25x more
CPU per request) to `ftkit serve EXPORT`; per level: requests/s, sentences/s, p50/p95/p99 latency, errors, and the server's
peak RSS. Beside it, the same sentences through `ftkit predict` (batch 32; the command's wall time, and the
prediction alone through the Predictor it uses) and through a naive FastAPI app written here (one request,
one forward pass, plain transformers: what a user writes by hand). Then 1,000 malformed requests mixed into
2,000 good ones at 32 clients: every malformed one must get a 4xx, every good one its right answer, and the
server must be healthy after. Every served answer is checked against `ftkit predict` on the same sentence.
`--rounds N` (6) then times the prediction loop, the top level and the naive app's top level in turns, N times:
this machine's speed drifts between minutes, and the ratios are read round by round (medians).

    flock /tmp/ftkit-cpu.lock bench/serve_load.sh      # trains + exports the MiniLM NER model if missing
    .venv/bin/python bench/serve_load.py --model runs/serve-bench-ner-export   # the measurement alone

`--naive-server MODEL --port P` runs the naive baseline app (used by the benchmark itself).
"""


import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
#: the load generator of the measured levels (--client)
CLIENT = "raw"


# ---------------------------------------------------------------------------
# the naive baseline: a FastAPI app as written by hand, one forward pass per request


def naive_app(model_dir: str):
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    id2label = model.config.id2label
    app = FastAPI()

    class Body(BaseModel):
        inputs: list[str]

    @app.post("/predict")
    def predict(body: Body):  # a plain `def`: FastAPI runs it in its thread pool, as the tutorials do
        words = [re.findall(r"\S+", text) for text in body.inputs]
        enc = tokenizer(words, is_split_into_words=True, truncation=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits
        probs = logits.softmax(-1)
        out = []
        for i, ws in enumerate(words):
            tags, scores, seen = [], [], set()
            for pos, w in enumerate(enc.word_ids(i)):
                if w is None or w in seen:
                    continue
                seen.add(w)
                k = int(probs[i, pos].argmax())
                tags.append(id2label[k])
                scores.append(float(probs[i, pos, k]))
            ents, cur = [], None
            for j, tag in enumerate(tags + ["O"]):
                if cur and (tag == "O" or tag.startswith("B-") or tag[2:] != cur[0]):
                    ents.append({"text": " ".join(ws[cur[1]:j]), "label": cur[0],
                                 "score": round(float(np.mean(scores[cur[1]:j])), 4)})
                    cur = None
                if tag != "O" and cur is None:
                    cur = (tag[2:], j)
            out.append({"text": body.inputs[i], "entities": ents})
        return {"predictions": out}

    return app


def run_naive_server(model_dir: str, port: int) -> None:
    import uvicorn

    uvicorn.run(naive_app(model_dir), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------------------
# data, servers, load


def conll_sentences(path: Path) -> list[str]:
    from ftkit.data.conll import read_conll

    return [" ".join(s.tokens) for s in read_conll(str(path))]


def make_requests(sentences: list[str], n: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    out, i = [], 0
    for _ in range(n):
        k = rng.randint(1, 4)
        out.append([sentences[(i + j) % len(sentences)] for j in range(k)])
        i += k
    return out


MALFORMED = [
    ("broken JSON", lambda s: dict(content=b'{"inputs": ["' + s.encode(), headers={"content-type": "application/json"})),
    ("wrong field", lambda s: dict(json={"input": [s]})),
    ("wrong type", lambda s: dict(json={"inputs": [{"text": 42}]})),
    ("unknown record key", lambda s: dict(json={"inputs": [{"txt": s}]})),
    ("empty inputs", lambda s: dict(json={"inputs": []})),
    ("not an object", lambda s: dict(json=[s])),
    ("too many inputs", lambda s: dict(json={"inputs": [s] * 257})),
    ("input too long", lambda s: dict(json={"inputs": ["x" * 20001]})),
    ("text/plain body", lambda s: dict(content=json.dumps({"inputs": [s]}).encode(),
                                       headers={"content-type": "text/plain"})),
    ("wrong method", None),
]
TOO_BIG = ("body over --max-body-bytes", lambda s: dict(content=b'{"inputs": ["' + b"y" * 1_100_000 + b'"]}',
                                                       headers={"content-type": "application/json"}))


class Proc:
    def __init__(self, cmd: list[str], log: Path):
        self.log_path = log
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))

    def url_from_log(self, timeout: float = 300) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"listening on (http://\S+)", self.log_path.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise SystemExit(f"server died:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise SystemExit("server did not start")

    def rss_mb(self) -> dict[str, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        get = lambda key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) / 1024  # noqa: E731
        return {"peak_rss_mb": round(get("VmHWM"), 1), "rss_mb": round(get("VmRSS"), 1)}

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        return self.proc.returncode


def wait_healthy(url: str, timeout: float = 300) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return time.time() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not healthy after {timeout}s")


async def load(url: str, jobs: list[tuple[str, object]], clients: int, time_limit: float) -> list[dict]:
    """Send ``jobs`` (``("good", sentences)`` or ``("bad", (name, kwargs))``) from ``clients`` workers."""
    results: list[dict | None] = [None] * len(jobs)
    nxt = 0
    deadline = time.perf_counter() + time_limit
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        async def worker():
            nonlocal nxt
            while nxt < len(jobs) and time.perf_counter() < deadline:
                i = nxt
                nxt += 1
                kind, payload = jobs[i]
                t0 = time.perf_counter()
                try:
                    if kind == "good":
                        r = await client.post("/predict", json={"inputs": payload})
                    elif payload[1] is None:
                        r = await client.get("/predict")
                    else:
                        r = await client.post("/predict", **payload[1](f"sentence {i}"))
                    status, body = r.status_code, r.content
                except httpx.HTTPError as e:
                    status, body = None, repr(e).encode()
                results[i] = {"kind": kind, "status": status, "latency": time.perf_counter() - t0, "body": body,
                              "payload": payload}

        await asyncio.gather(*(worker() for _ in range(clients)))
    return [r for r in results if r is not None]


async def raw_load(url: str, jobs: list[tuple[str, object]], clients: int, time_limit: float) -> list[dict]:
    """``load`` for good requests only, over plain asyncio streams: one keep-alive HTTP/1.1 connection per
    client, the request written by hand and the response read by its Content-Length. httpx spends about 2.5 ms
    of CPU per request (measured: 2.6 s for 1,000 requests at 32 clients), a tenth of what the server spends on
    the 2 cores both share; this client spends about 0.1 ms, so the server is what is measured."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    results: list[dict | None] = [None] * len(jobs)
    nxt = 0
    deadline = time.perf_counter() + time_limit

    async def worker():
        nonlocal nxt
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while nxt < len(jobs) and time.perf_counter() < deadline:
                i = nxt
                nxt += 1
                kind, payload = jobs[i]
                body = json.dumps({"inputs": payload}).encode()
                t0 = time.perf_counter()
                try:
                    writer.write(b"POST /predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
                    head = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                    length = next(int(h.split(b":", 1)[1]) for h in head if h.lower().startswith(b"content-length:"))
                    status, data = int(head[0].split()[1]), await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError) as e:
                    status, data = None, repr(e).encode()
                results[i] = {"kind": kind, "status": status, "latency": time.perf_counter() - t0, "body": data,
                              "payload": payload}
                if status is None:
                    return
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return [r for r in results if r is not None]


def summarize(results: list[dict], wall: float) -> dict:
    good = [r for r in results if r["kind"] == "good"]
    lat = np.array([r["latency"] for r in good]) * 1000
    errors = sum(1 for r in good if r["status"] != 200)
    sentences = sum(len(r["payload"]) for r in good)
    return {"requests": len(good), "sentences": sentences, "wall_s": round(wall, 2),
            "requests_per_s": round(len(good) / wall, 1), "sentences_per_s": round(sentences / wall, 1),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                           "p99": round(float(np.percentile(lat, 99)), 1), "max": round(float(lat.max()), 1)},
            "errors": errors}


def check_answers(results: list[dict], expected: dict[str, dict], naive: bool = False) -> int:
    """Served answers that differ from `ftkit predict` on the same sentence (entity text/label/offsets; scores
    to 1e-3). The naive app has no character offsets: its text and label sequence is compared."""
    bad = 0
    for r in results:
        if r["kind"] != "good" or r["status"] != 200:
            continue
        for sent, pred in zip(r["payload"], json.loads(r["body"])["predictions"]):
            exp = expected[sent]["entities"]
            got = pred["entities"]
            key = (lambda e: (e["text"], e["label"])) if naive else (lambda e: (e["text"], e["label"], e["start"], e["end"]))
            if [key(e) for e in got] != [key(e) for e in exp] or not all(
                    abs(a["score"] - b["score"]) <= 1e-3 for a, b in zip(got, exp)):
                bad += 1
    return bad


def ftkit_predict(model: str, sentences: list[str], work: Path) -> tuple[dict, dict[str, dict]]:
    """`ftkit predict --batch-size 32` on the sentences (command wall time), and the prediction step alone."""
    path = work / "sentences.txt"
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = work / "predicted.jsonl"
    t0 = time.perf_counter()
    subprocess.run([str(ROOT / ".venv/bin/ftkit"), "predict", model, "--input", str(path), "--output", str(out),
                    "--batch-size", "32"], check=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    wall = time.perf_counter() - t0
    preds = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # the prediction alone (model loaded, one warm-up call), and what one Predictor.predict call costs whatever
    # its size: the median of 1-sentence calls, and of hashing the tokenizer (datasets' map fingerprint)
    code = ("import json, sys, time, statistics as st; from ftkit.engine.inference import Predictor; "
            "from datasets.fingerprint import Hasher; "
            "p = Predictor.load(sys.argv[1]); recs = [{'text': l} for l in open(sys.argv[2]).read().splitlines() if l.strip()]; "
            "p.predict(recs[:32], 32); t = time.perf_counter(); p.predict(recs, 32); s = time.perf_counter() - t; "
            "one = []; h = []\n"
            "for r in recs[:10]:\n t = time.perf_counter(); p.predict([r], 32); one.append(time.perf_counter() - t)\n"
            "for _ in range(5):\n t = time.perf_counter(); Hasher.hash(p.tokenizer); h.append(time.perf_counter() - t)\n"
            "print(json.dumps({'s': s, 'n': len(recs), 'one': st.median(one), 'hash': st.median(h)}))")
    inner = _run_json(code, model, path)
    return ({"sentences": len(sentences), "command_wall_s": round(wall, 2),
             "command_sentences_per_s": round(len(sentences) / wall, 1),
             "predict_only_s": round(inner["s"], 2), "predict_only_sentences_per_s": round(inner["n"] / inner["s"], 1),
             "predictor_call_1_sentence_ms": round(inner["one"] * 1000, 1),
             "tokenizer_fingerprint_hash_ms": round(inner["hash"] * 1000, 1)},
            dict(zip(sentences, preds)))


def _run_json(code: str, *args) -> dict:
    r = subprocess.run([PY, "-c", code, *map(str, args)], check=True, capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return json.loads(r.stdout.strip().splitlines()[-1])


def predict_only(model: str, work: Path) -> float:
    """Sentences/s of the prediction alone (as in ``ftkit_predict``), on the sentences it wrote."""
    code = ("import json, sys, time; from ftkit.engine.inference import Predictor; p = Predictor.load(sys.argv[1]); "
            "recs = [{'text': l} for l in open(sys.argv[2]).read().splitlines() if l.strip()]; "
            "p.predict(recs[:32], 32); t = time.perf_counter(); p.predict(recs, 32); "
            "print(json.dumps({'rate': len(recs) / (time.perf_counter() - t)}))")
    return round(_run_json(code, model, work / "sentences.txt")["rate"], 1)


def rounds_in_turns(url: str, proc: Proc, model: str, work: Path, requests, clients: int, expected, rounds: int,
                    time_limit: float, naive: tuple[str, Proc] | None = None) -> dict:
    """The prediction loop, the served level and (with ``naive``: its url and process) the naive app's level, in
    turns, ``rounds`` times: this machine's speed drifts by up to 20% between minutes (neighbours), and a ratio
    of two rates measured minutes apart carries that drift."""
    out = []
    for i in range(rounds):
        fp = predict_only(model, work)
        sv = run_levels(f"r{i + 1}", url, proc, requests, [clients], expected, False, time_limit)[str(clients)]
        out.append({"predict_only_sentences_per_s": fp, "serve_sentences_per_s": sv["sentences_per_s"],
                    "serve_p99_ms": sv["latency_ms"]["p99"], "errors": sv["errors"],
                    "wrong_answers": sv["wrong_answers"], "ratio": round(sv["sentences_per_s"] / fp, 3)})
        line = f"  round {i + 1}: predict {fp}/s, serve {sv['sentences_per_s']}/s, ratio {out[-1]['ratio']}"
        if naive is not None:
            nv = run_levels(f"n{i + 1}", naive[0], naive[1], requests, [clients], expected, True,
                            time_limit)[str(clients)]
            out[-1].update(naive_sentences_per_s=nv["sentences_per_s"], naive_errors=nv["errors"],
                           serve_vs_naive=round(sv["sentences_per_s"] / nv["sentences_per_s"], 3))
            line += f"; naive {nv['sentences_per_s']}/s, serve/naive {out[-1]['serve_vs_naive']}"
        print(line, flush=True)
    median = lambda key: round(statistics.median(r[key] for r in out), 3)  # noqa: E731 (of an even count: the mean of the middle two)
    result = {"clients": clients, "rounds": out, "ratio_median": median("ratio"),
              "ratio_of_bests": round(max(r["serve_sentences_per_s"] for r in out)
                                      / max(r["predict_only_sentences_per_s"] for r in out), 3)}
    if naive is not None:
        result["serve_vs_naive_median"] = median("serve_vs_naive")
    return result


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_levels(name: str, url: str, proc: Proc, requests: list[list[str]], levels: list[int], expected, naive: bool,
               time_limit: float) -> dict:
    out = {}
    for clients in levels:
        jobs = [("good", r) for r in requests]
        send = raw_load if CLIENT == "raw" else load
        asyncio.run(send(url, jobs[:clients * 4], clients, 60))  # warm the connections and the model
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = asyncio.run(send(url, jobs, clients, time_limit))
        wall = time.perf_counter() - t0
        generator_cpu = time.process_time() - cpu0
        s = summarize(results, wall)
        s["unfinished"] = len(jobs) - len(results)
        s["wrong_answers"] = check_answers(results, expected, naive)
        s["load_generator"] = {"client": CLIENT, "cpu_s": round(generator_cpu, 2)}
        s.update(proc.rss_mb())
        out[str(clients)] = s
        print(f"{name:>6} {clients:>2} clients: {s['requests_per_s']:7.1f} req/s {s['sentences_per_s']:7.1f} sent/s "
              f"p50 {s['latency_ms']['p50']:.0f} p95 {s['latency_ms']['p95']:.0f} p99 {s['latency_ms']['p99']:.0f} ms, "
              f"errors {s['errors']}, wrong {s['wrong_answers']}, peak RSS {s['peak_rss_mb']} MB", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/serve-bench-ner-export")
    ap.add_argument("--data", default=os.path.join(os.environ.get("DATA", str(ROOT.parent / "shared/data")),
                                                   "conll2003/eng.testb"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--malformed", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=600, help="seconds per level at most")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--rounds", type=int, default=6,
                    help="then the prediction loop and the top level in turns, this many times (0: none)")
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw",
                    help="load generator of the levels: plain asyncio streams (default) or httpx")
    ap.add_argument("--out", default=str(ROOT / "bench/results/serve_load.json"))
    ap.add_argument("--naive-server")
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.naive_server:
        return run_naive_server(args.naive_server, args.port)

    global CLIENT
    CLIENT = args.client
    levels = [int(x) for x in args.clients.split(",")]
    sentences = conll_sentences(Path(args.data))
    requests = make_requests(sentences, args.requests)
    used = sorted({s for r in requests for s in r}, key=sentences.index)
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    meta = json.loads((Path(args.model) / "ftkit.json").read_text())
    report = {"name": "serve_load", "model": args.model, "base_model": meta.get("base_model"), "data": args.data,
              "requests_per_level": args.requests, "sentences_per_level": sum(len(r) for r in requests),
              "distinct_sentences": len(used), "load_generator": args.client, "cpus": os.cpu_count(), "machine": platform.machine(),
              "python": platform.python_version()}

    print(f"ftkit predict --batch-size 32 on {len(used)} sentences", flush=True)
    report["ftkit_predict"], expected = ftkit_predict(args.model, used, work)
    print(json.dumps(report["ftkit_predict"]), flush=True)

    # ftkit serve, default options
    server = Proc([str(ROOT / ".venv/bin/ftkit"), "serve", args.model, "--port", "0"], work / "serve.log")
    url = server.url_from_log()
    report["serve_startup_s"] = round(wait_healthy(url), 1)
    report["serve_options"] = httpx.get(url + "/info").json()["batching"] | {"limits": httpx.get(url + "/info").json()["limits"]}
    report["serve"] = run_levels("serve", url, server, requests, levels, expected, False, args.time_limit)
    naive = None
    if not args.skip_naive:  # the naive app, up beside the server (idle while the other is measured)
        port = free_port()
        naive = (f"http://127.0.0.1:{port}",
                 Proc([PY, __file__, "--naive-server", args.model, "--port", str(port)], work / "naive.log"))
        wait_healthy_naive(*naive)
    if args.rounds:
        report["in_turns"] = rounds_in_turns(url, server, args.model, work, requests, max(levels), expected,
                                             args.rounds, args.time_limit, naive)

    # malformed requests mixed into the load
    if args.malformed:
        rng = random.Random(1)
        bad = [("bad", MALFORMED[i % len(MALFORMED)]) for i in range(args.malformed - 10)] + [("bad", TOO_BIG)] * 10
        jobs = [("good", r) for r in requests] + bad
        rng.shuffle(jobs)
        t0 = time.perf_counter()
        results = asyncio.run(load(url, jobs, 32, args.time_limit))
        wall = time.perf_counter() - t0
        bad_res = [r for r in results if r["kind"] == "bad"]
        statuses: dict[str, dict[str, int]] = {}
        for r in bad_res:
            d = statuses.setdefault(r["payload"][0], {})
            d[str(r["status"])] = d.get(str(r["status"]), 0) + 1
        not_json = sum(1 for r in bad_res if r["status"] is not None and not _json_error(r["body"]))
        s = summarize(results, wall)
        report["serve_with_malformed"] = {
            "clients": 32, "good": s, "wrong_answers": check_answers(results, expected),
            "malformed": len(bad_res), "malformed_4xx": sum(1 for r in bad_res if r["status"] and 400 <= r["status"] < 500),
            "malformed_not_json_error": not_json, "statuses": statuses,
            "tracebacks_in_responses": sum(1 for r in results if b"Traceback" in (r["body"] or b"")),
            "healthy_after": httpx.get(url + "/health").json(), **server.rss_mb()}
        print(json.dumps(report["serve_with_malformed"]), flush=True)
    report["serve_batching_counters"] = httpx.get(url + "/info").json()["batching"]
    report["page_screenshot"] = screenshot(url, Path(args.out).parent / "serve_page_minilm.png")
    report["serve_exit_code_after_sigterm"] = server.stop()

    if naive is not None:
        report["naive"] = run_levels("naive", *naive, requests, levels, expected, True, args.time_limit)
        naive[1].stop()

    top = str(max(levels))
    sv, fp = report["serve"][top]["sentences_per_s"], report["ftkit_predict"]["predict_only_sentences_per_s"]
    report["targets"] = {
        "clients": int(top),
        "serve_vs_ftkit_predict": round(sv / fp, 2),
        "serve_vs_ftkit_predict_in_turns_median": report.get("in_turns", {}).get("ratio_median"),
        "serve_vs_ftkit_predict_command": round(sv / report["ftkit_predict"]["command_sentences_per_s"], 2),
        "serve_vs_naive": round(sv / report["naive"][top]["sentences_per_s"], 2) if "naive" in report else None,
        "serve_vs_naive_in_turns_median": report.get("in_turns", {}).get("serve_vs_naive_median"),
        "p99_ms": report["serve"][top]["latency_ms"]["p99"],
        "met": {"0.8x ftkit predict": sv >= 0.8 * fp,
                "0.8x ftkit predict (median of the rounds in turns)": (
                    report["in_turns"]["ratio_median"] >= 0.8 if "in_turns" in report else None),
                "3x naive": ("naive" in report and sv >= 3 * report["naive"][top]["sentences_per_s"]),
                "3x naive (median of the rounds in turns)": (
                    report["in_turns"]["serve_vs_naive_median"] >= 3
                    if "serve_vs_naive_median" in report.get("in_turns", {}) else None),
                "p99 < 1 s": report["serve"][top]["latency_ms"]["p99"] < 1000,
                "0 errors": all(v["errors"] == 0 for v in report["serve"].values())},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["targets"], indent=2))


def screenshot(url: str, path: Path) -> str | None:
    """The try-it page with an answer of the real model, in headless Chromium (skipped when it is missing)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not exe:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(url + "/")
        page.wait_for_selector("#submit:not([disabled])")
        page.fill("#input-text", "EU rejects German call to boycott British lamb . Peter Blackburn reported "
                                 "from Brussels for the European Commission .")
        page.click("#submit")
        page.wait_for_selector("#highlighted")
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _json_error(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body).get("error"), str)
    except (ValueError, AttributeError):
        return False


def wait_healthy_naive(url: str, proc: Proc, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.proc.poll() is not None:
            raise SystemExit(proc.log_path.read_text()[-3000:])
        try:
            httpx.post(url + "/predict", json={"inputs": ["warm up"]}, timeout=30)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("naive server did not start")


if __name__ == "__main__":
    main()
