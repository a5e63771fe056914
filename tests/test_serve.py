"""`ftkit serve`: served answers equal `ftkit predict`, batched under concurrency; every limit and malformed
request is a JSON 4xx and the server stays healthy; API key; SIGTERM finishes the request in flight; the
try-it page in headless Chromium."""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES
from typer.testing import CliRunner

from ftkit.cli import app as cli_app

httpx = pytest.importorskip("httpx")

SENTENCE = "EU rejects German call to boycott British lamb . Peter Blackburn reported from Brussels ."
LIMITS = ["--max-body-bytes", "20000", "--max-inputs", "8", "--max-input-chars", "2000"]


# ---------------------------------------------------------------------------
# fixtures: tiny trained models, servers


def conll_sentences(path: Path, n: int) -> list[str]:
    from ftkit.data.conll import read_conll

    return [" ".join(s.tokens) for s in read_conll(str(path))][:n]


@pytest.fixture(scope="module")
def ner_run(tiny_models, tmp_path_factory):
    import ftkit

    root = tmp_path_factory.mktemp("serve-ner")
    ftkit.finetune("ner", model=str(tiny_models("bert")), train=str(SAMPLES / "train.txt"), output=root / "run",
                   max_steps=3, batch_size=8,
                   overrides={"data.validation": None, "data.test": None})
    return root / "run"


@pytest.fixture(scope="module")
def qa_run(tiny_models, tmp_path_factory):
    import ftkit

    root = tmp_path_factory.mktemp("serve-qa")
    squad = SAMPLES.parent / "squad" / "validation.json"
    ftkit.finetune("qa", model=str(tiny_models("bert")), train=str(squad), output=root / "run", max_steps=2,
                   batch_size=8, overrides={"data.validation": None, "data.test": None, "training.max_length": 96,
                                            "task_options.doc_stride": 32})
    return root / "run", squad


class Server:
    """`python -m ftkit serve ...` in a subprocess, as a user starts it."""

    def __init__(self, args: list[str], env: dict | None = None):
        self.log: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "ftkit", "serve", *args, "--port", "0"],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, HF_HUB_OFFLINE="1", **(env or {})))
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = None
        deadline = time.time() + 120
        while self.url is None and time.time() < deadline and self.proc.poll() is None:
            found = [re.search(r"listening on (http://\S+)", line) for line in self.log]
            self.url = next((m.group(1) for m in found if m), None)
            time.sleep(0.05)
        assert self.url, "".join(self.log)

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_ready(self, headers=None, timeout=120):
        wait_healthy(self.url, headers, timeout, self.proc)
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_healthy(url, headers=None, timeout=120, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc is None or proc.poll() is None, "the server died"
        try:
            if httpx.get(url + "/health", headers=headers, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not get ready")


@pytest.fixture(scope="module")
def ner_server(ner_run):
    server = Server([str(ner_run), *LIMITS, "--max-batch-size", "16", "--max-wait-ms", "10"]).wait_ready()
    yield server
    server.stop()


@contextlib.contextmanager
def serve_in_thread(model, **options):
    """The same app and socket ftkit serve uses, on a uvicorn server in a thread of this process."""
    import uvicorn

    from ftkit.serving.app import ServeOptions, create_app
    from ftkit.serving.server import bind, url_of

    app = create_app(model, ServeOptions(port=0, access_log=False, **options))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_healthy(url_of(sock))
        yield url_of(sock), app
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def post_concurrently(url: str, bodies: list, clients: int = 32, headers=None) -> list:
    """POST every body to /predict from ``clients`` concurrent connections; the responses, in body order."""

    async def main():
        out = [None] * len(bodies)
        queue = list(enumerate(bodies))
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers,
                                     limits=httpx.Limits(max_connections=clients)) as client:
            async def worker():
                while queue:
                    i, body = queue.pop(0)
                    out[i] = await client.post("/predict", json=body)

            await asyncio.gather(*(worker() for _ in range(clients)))
        return out

    return asyncio.run(main())


def ftkit_predict(model, records: list, tmp_path: Path) -> list[dict]:
    """What `ftkit predict MODEL --input FILE` prints, one object per line."""
    path = tmp_path / "inputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    r = CliRunner().invoke(cli_app, ["predict", str(model), "--input", str(path)])
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines()]


def same_prediction(served, offline):
    """Equal, scores to the 4th decimal they are printed with (batches pad differently: float noise only)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("score", "probabilities")}
        return [strip(v) for v in x] if isinstance(x, list) else x

    def scores(x):
        if isinstance(x, dict):
            return [s for k, v in sorted(x.items()) for s in (scores(v) if k not in ("score",) else [v])]
        if isinstance(x, list):
            return [s for v in x for s in scores(v)]
        return [x] if isinstance(x, float) else []

    assert strip(served) == strip(offline)
    assert scores(served) == pytest.approx(scores(offline), abs=2e-4)


def requests_of(records: list, sizes=(1, 2, 3, 4)) -> list[dict]:
    bodies, i, k = [], 0, 0
    while i < len(records):
        n = sizes[k % len(sizes)]
        bodies.append({"inputs": records[i:i + n]})
        i, k = i + n, k + 1
    return bodies


# ---------------------------------------------------------------------------
# answers


def test_served_ner_equals_ftkit_predict_under_32_concurrent_clients(ner_server, ner_run, tmp_path):
    sentences = conll_sentences(SAMPLES / "test.txt", 120)
    # every shape ftkit predict reads for NER: text lines, {"text"}, {"tokens"}
    records = [s if i % 3 == 0 else {"text": s} if i % 3 == 1 else {"tokens": s.split()}
               for i, s in enumerate(sentences)]
    expected = ftkit_predict(ner_run, [{"text": r} if isinstance(r, str) else r for r in records], tmp_path)
    bodies = requests_of(records)
    responses = post_concurrently(ner_server.url, bodies, clients=32)
    served = []
    for body, r in zip(bodies, responses):
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert len(preds) == len(body["inputs"])
        served += preds
    assert len(served) == len(expected)
    for s, e in zip(served, expected):
        same_prediction(s, e)
    assert sum(len(p["entities"]) for p in served) > 0  # the comparison is about something
    # one by one through the Python API gives the same answers as well
    from ftkit.engine.inference import Predictor

    predictor = Predictor.load(ner_run)
    for rec, s in list(zip(records, served))[:6]:
        same_prediction(s, predictor.predict([{"text": rec} if isinstance(rec, str) else rec], batch_size=1)[0])
    # and the requests were batched together
    batching = httpx.get(ner_server.url + "/info").json()["batching"]
    assert batching["requests"] >= len(bodies) and batching["batches"] < batching["requests"]
    assert 4 < batching["largest_batch"] <= 16


def test_served_task_options_equal_ftkit_predict_with_the_same_set(ner_run, tmp_path):
    # `ftkit serve --set task_options.aggregation=simple` answers as `ftkit predict --set ...` does
    records = [{"text": s} for s in conll_sentences(SAMPLES / "test.txt", 40)]
    path = tmp_path / "inputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    r = CliRunner().invoke(cli_app, ["predict", str(ner_run), "--input", str(path), "--set",
                                     "task_options.aggregation=simple"])
    assert r.exit_code == 0, r.output
    expected = [json.loads(line) for line in r.stdout.splitlines()]
    assert expected != ftkit_predict(ner_run, records, tmp_path)  # the option changes the answers
    with serve_in_thread(ner_run, task_options={"aggregation": "simple"}) as (url, _):
        bodies = requests_of(records)
        served = [p for resp in post_concurrently(url, bodies, clients=8) for p in resp.json()["predictions"]]
    assert len(served) == len(expected)
    for s, e in zip(served, expected):
        same_prediction(s, e)


def test_served_qa_equals_ftkit_predict_and_a_rejected_record_is_a_422(qa_run, tmp_path):
    run, squad = qa_run
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    records = [{"id": q["id"], "question": q["question"], "context": p["context"]}
               for a in data for p in a["paragraphs"] for q in p["qas"]][:48]
    expected = ftkit_predict(run, records, tmp_path)
    with serve_in_thread(run, max_batch_size=8, max_wait_ms=20) as (url, app):
        bodies = requests_of(records)
        responses = post_concurrently(url, bodies, clients=32)
        served = [p for r in responses for p in r.json()["predictions"]]
        for s, e in zip(served, expected, strict=True):
            same_prediction(s, e)

        # a record the task itself rejects: 422 naming it, never a 500
        bad = {"inputs": [records[0], {"question": "  ", "context": "Some context."}]}
        r = httpx.post(url + "/predict", json=bad)
        assert r.status_code == 422 and r.json()["field"] == "inputs[1]" and "question" in r.json()["error"]
        r = httpx.post(url + "/predict", json={"inputs": ["a question without a context"]})
        assert r.status_code == 422 and r.json()["field"] == "inputs[0]" and "question, context" in r.json()["error"]

        # an unexpected failure inside the model call: a JSON 500 without a traceback, for that request only
        predictor = app.state.serve.predictor
        real = predictor.predict

        def failing(recs, batch_size=32):
            if any(r["question"] == "explode" for r in recs):
                raise RuntimeError("boom")
            return real(recs, batch_size)

        predictor.predict = failing
        try:
            bodies = [{"inputs": [{"question": "explode", "context": "x y z"}]}] + requests_of(records[:12])
            responses = post_concurrently(url, bodies, clients=8)
        finally:
            predictor.predict = real
        assert responses[0].status_code == 500 and responses[0].json()["type"] == "internal_error"
        assert "Traceback" not in responses[0].text and "boom" not in responses[0].text
        assert [p for r in responses[1:] for p in r.json()["predictions"]] == served[:12]
        assert httpx.get(url + "/health").json() == {"status": "ok"}


# ---------------------------------------------------------------------------
# limits, malformed requests, health


def test_every_limit_and_malformed_request_is_a_json_4xx_and_the_server_stays_healthy(ner_server):
    url = ner_server.url + "/predict"
    big = "word " * 450  # 2,250 characters
    cases = [
        # (how, expected status, key: expected value in the JSON error)
        (dict(json={"inputs": ["x" * 30000]}), 413, {"limit": "max_body_bytes"}),
        (dict(content=iter([b'{"inputs": ["' + b"y" * 25000 + b'"]}'])), 413, {"limit": "max_body_bytes"}),
        (dict(json={"inputs": ["a"] * 9}), 413, {"limit": "max_inputs"}),
        (dict(json={"inputs": ["ok", big]}), 413, {"limit": "max_input_chars", "field": "inputs[1]"}),
        (dict(json={"inputs": [{"tokens": ["ab"] * 1001}]}), 413, {"limit": "max_input_chars"}),
        (dict(content=b'{"inputs": ["unclosed', headers={"content-type": "application/json"}), 422,
         {"type": "validation_error", "field": "body"}),
        (dict(content=b"", headers={"content-type": "application/json"}), 422, {"field": "body"}),
        (dict(json={"input": ["a"]}), 422, {"field": "inputs"}),
        (dict(json={"inputs": []}), 422, {"field": "inputs"}),
        (dict(json={"inputs": "one string"}), 422, {"field": "inputs"}),
        (dict(json={"inputs": [{"txt": "a"}]}), 422, {"field": "inputs[0].txt"}),
        (dict(json={"inputs": ["a", {"text": 5}]}), 422, {"field": "inputs[1].text"}),
        (dict(json={"inputs": [{"tokens": ["a", None]}]}), 422, {"field": "inputs[0].tokens[1]"}),
        (dict(json={"inputs": [{"text": "a", "tokens": ["a"]}]}), 422, {"field": "inputs[0]"}),
        (dict(json={"inputs": [7]}), 422, {"field": "inputs[0]"}),
        (dict(json=["a"]), 422, {"field": "body"}),
        (dict(content=b'{"inputs": ["a"]}', headers={"content-type": "text/plain"}), 415,
         {"type": "unsupported_media_type"}),
    ]
    for how, status, expect in cases:
        r = httpx.post(url, timeout=30, **how)
        assert r.status_code == status, (how, r.text)
        body = r.json()
        assert isinstance(body["error"], str) and body["error"], body
        assert "Traceback" not in r.text
        for k, v in expect.items():
            assert body[k] == v, (how, body)
        if status == 413:
            assert body["limit"].replace("_", "-") in body["error"]  # says which limit, as its flag
    for method, path, status in [("GET", "/predict", 405), ("GET", "/nowhere", 404), ("DELETE", "/info", 405)]:
        r = httpx.request(method, ner_server.url + path)
        assert r.status_code == status and r.json()["type"] in ("method_not_allowed", "not_found")
    # still healthy, still right
    assert httpx.get(ner_server.url + "/health").json() == {"status": "ok"}
    r = httpx.post(url, json={"inputs": [SENTENCE]})
    assert r.status_code == 200 and r.json()["predictions"][0]["text"] == SENTENCE
    assert ner_server.proc.poll() is None


def test_info_and_docs(ner_server, ner_run):
    info = httpx.get(ner_server.url + "/info").json()
    meta = json.loads((ner_run / "model" / "ftkit.json").read_text())
    assert info["task"] == "ner" and info["labels"] == meta["labels"] and info["base_model"] == meta["base_model"]
    assert info["max_input_length"] == meta["max_length"] and info["status"] == "ok"
    from ftkit import __version__

    assert info["ftkit_version"] == __version__
    assert info["limits"] == {"max_body_bytes": 20000, "max_inputs": 8, "max_input_chars": 2000, "max_queue": 4096}
    schema = httpx.get(ner_server.url + "/openapi.json").json()
    assert "/predict" in schema["paths"] and "/health" in schema["paths"]
    assert httpx.get(ner_server.url + "/docs").status_code == 200


def test_predictor_calls_do_not_hash_the_tokenizer(ner_run, monkeypatch):
    """Each served batch is one Predictor.predict call: datasets' map must not pickle the tokenizer for it."""
    import datasets.arrow_dataset

    from ftkit.engine.inference import Predictor, predict_split

    predictor = Predictor.load(ner_run)
    records = [{"text": SENTENCE}, {"tokens": ["Peter", "Blackburn"]}]
    examples = predictor.task.predict_examples(records)
    plain = predict_split(predictor.task, predictor.facts, predictor.model, predictor.tokenizer, examples)

    def no_hashing(*args, **kwargs):
        raise AssertionError("Dataset.map hashed its function")

    monkeypatch.setattr(datasets.arrow_dataset, "update_fingerprint", no_hashing)
    served = predictor.predict(records)
    assert served == [predictor.task.format_prediction(e, p) for e, p in zip(examples, plain)]


def test_health_is_503_until_the_model_is_loaded(ner_run):
    from fastapi.testclient import TestClient

    from ftkit.serving.app import create_app

    client = TestClient(create_app(ner_run))  # not entered: the lifespan (model loading) has not run
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "loading"
    r = client.post("/predict", json={"inputs": ["a"]})
    assert r.status_code == 503 and r.json()["type"] == "not_ready"


def test_serve_cli_errors_are_one_line(ner_run, tmp_path):
    r = CliRunner().invoke(cli_app, ["serve", str(tmp_path)])
    assert r.exit_code == 2 and r.output.startswith("error:") and "Traceback" not in r.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = CliRunner().invoke(cli_app, ["serve", str(ner_run), "--port", str(busy.getsockname()[1])])
    assert r.exit_code == 2 and "cannot listen on 127.0.0.1" in r.output
    r = CliRunner().invoke(cli_app, ["serve", str(ner_run), "--max-batch-size", "0"])
    assert r.exit_code == 2 and "--max-batch-size must be at least 1" in r.output
    # a bad task option: before the server binds, one line naming it
    r = CliRunner().invoke(cli_app, ["serve", str(ner_run), "--port", "0", "--set", "task_options.aggregation=x"])
    assert r.exit_code == 2 and r.output.startswith("error:") and "task_options.aggregation" in r.output
    assert len(r.output.strip().splitlines()) == 1
    # a model folder whose weights do not load: the server stops at once, one error line, exit 2
    broken = tmp_path / "broken"
    shutil.copytree(ner_run / "model", broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    r = CliRunner().invoke(cli_app, ["serve", str(broken), "--port", "0", "--no-access-log"])
    assert r.exit_code == 2 and f"error: could not load {broken}" in r.output and "Traceback" not in r.output
    r = subprocess.run([sys.executable, "-m", "ftkit", "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--max-wait-ms" in r.stdout and "--api-key" in r.stdout
    import ftkit
    import ftkit.serving  # noqa: F401 - a subpackage named like the API function would shadow it

    assert callable(ftkit.serve) and ftkit.serve.__module__ == "ftkit.api"


# ---------------------------------------------------------------------------
# request shapes, batching


def test_request_shapes_are_the_records_ftkit_predict_reads():
    from ftkit.cli import read_predict_inputs
    from ftkit.serving.schemas import request_model
    from ftkit.tasks import make_task

    lines = {
        "ner": ["EU rejects German call .", '{"text": "Peter Blackburn"}', '{"tokens": ["BRUSSELS", "1996-08-22"]}'],
        "classification": ["a fine film", '{"text": "A man plays.", "text_pair": "Someone plays."}'],
        "relation": ['The <e1>company</e1> makes <e2>chairs</e2>.',
                     '{"text": "Bill Gates founded Microsoft.", "head": {"start": 0, "end": 10, "type": "PER"}, '
                     '"tail": {"start": 19, "end": 28}, "id": "7"}'],
        "qa": ['{"question": "Who?", "context": "Peter did.", "id": 3}'],
        "translation": ["A man is playing.", '{"source": "Two dogs."}'],
    }
    for task_name, jsonl in lines.items():
        task = make_task(task_name, {})
        records = read_predict_inputs("\n".join(jsonl), "<test>")
        inputs = [line if not line.startswith("{") else json.loads(line) for line in jsonl]
        parsed = request_model(task_name).model_validate({"inputs": inputs})
        assert [x.to_record(task) for x in parsed.inputs] == records, task_name
        task.predict_examples(records)  # and the task reads them

    # relation with its own field names: the served body keeps text/head/tail, the record uses the model's names
    task = make_task("relation", {"text_field": "sentence", "head_field": "subj", "tail_field": "obj"})
    parsed = request_model("relation").model_validate(
        {"inputs": [{"text": "Bill met Ann.", "head": {"start": 0, "end": 4}, "tail": {"start": 9, "end": 12}}]})
    assert parsed.inputs[0].to_record(task) == {"sentence": "Bill met Ann.", "subj": {"start": 0, "end": 4},
                                                "obj": {"start": 9, "end": 12}}


def test_batcher_gathers_concurrent_requests_and_isolates_failures():
    from ftkit.serving.batcher import Batcher, Busy

    calls = []

    def predict(records):
        calls.append(list(records))
        if "bad" in records:
            raise ValueError("bad record")
        time.sleep(0.01)
        return [r.upper() for r in records]

    async def main():
        b = Batcher(predict, max_batch_size=8, max_wait_ms=50, max_queue=40)
        await b.start()
        requests = [[f"r{i}-{j}" for j in range(1 + i % 3)] for i in range(20)]
        answers = await asyncio.gather(*(b.submit(r) for r in requests))
        assert answers == [[x.upper() for x in r] for r in requests]
        assert max(len(c) for c in calls) <= 8 and len(calls) < len(requests)
        assert sorted(x for c in calls for x in c) == sorted(x for r in requests for x in r)

        calls.clear()
        mixed = [["a", "b"], ["bad"], ["c"]]
        results = await asyncio.gather(*(b.submit(r) for r in mixed), return_exceptions=True)
        assert results[0] == ["A", "B"] and isinstance(results[1], ValueError) and results[2] == ["C"]

        # past max_queue waiting inputs, new requests are refused instead of piling up
        flood = [b.submit([f"x{i}"] * 8) for i in range(8)]
        results = await asyncio.gather(*flood, return_exceptions=True)
        assert any(isinstance(r, Busy) for r in results) and any(isinstance(r, list) for r in results)
        await b.stop()

    asyncio.run(main())


def _echo():
    """A predict for a Batcher that answers each record with itself, and the list of its batch sizes."""
    calls: list[int] = []

    def predict(records):
        calls.append(len(records))
        return list(records)

    return calls, predict


def test_batcher_answers_a_lone_client_without_waiting_for_company():
    """One client sending request after request: after two lone batches nothing waits max_wait_ms any more;
    concurrent requests after that are gathered (and wait) again."""
    from ftkit.serving.batcher import Batcher

    calls, predict = _echo()

    async def main():
        b = Batcher(predict, max_batch_size=8, max_wait_ms=300)
        await b.start()
        took = []
        for i in range(6):
            t = time.perf_counter()
            assert await b.submit([i]) == [i]
            took.append(time.perf_counter() - t)
        assert min(took[:2]) >= 0.25  # the first two still waited for company
        assert max(took[2:]) < 0.15, took
        answers = await asyncio.gather(*(b.submit([f"c{i}"]) for i in range(5)))
        assert answers == [[f"c{i}"] for i in range(5)]
        assert calls[6:] and max(calls[6:]) > 1  # gathered again
        await b.stop()

    asyncio.run(main())


def test_batcher_stops_waiting_once_the_last_batchs_clients_are_back():
    """Clients that each wait for their answer before sending again (a load test, a pipeline): once a batch
    holds as many requests as the last one answered and nothing else is queued, it runs instead of waiting out
    max_wait_ms; it still takes every request queued by then, and the first batch still waits."""
    from ftkit.serving.batcher import Batcher

    calls, predict = _echo()

    async def main():
        b = Batcher(predict, max_batch_size=64, max_wait_ms=400)
        await b.start()

        async def client(c: int, rounds: list):
            for r in range(5):
                t = time.perf_counter()
                assert await b.submit([f"{c}-{r}"]) == [f"{c}-{r}"]
                rounds.append((r, time.perf_counter() - t))

        rounds: list = []
        await asyncio.gather(*(client(c, rounds) for c in range(4)))
        first = [t for r, t in rounds if r == 0]
        later = [t for r, t in rounds if r > 0]
        assert min(first) >= 0.35  # nothing to go by yet: the first batch waits for company
        assert max(later) < 0.2, later  # each later round runs once the four are back
        assert calls == [4] * 5  # and every batch held all four
        await b.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------------
# the page


def test_page_shows_the_entities_in_headless_chromium(browser, ner_server, ner_run, tmp_path):
    expected = ftkit_predict(ner_run, [{"text": SENTENCE}], tmp_path)[0]["entities"]
    assert expected, "the tiny model should find some entities in the sentence"
    page = browser.new_page(viewport={"width": 900, "height": 800})
    external = []
    page.on("request", lambda req: None if req.url.startswith(ner_server.url) else external.append(req.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(ner_server.url + "/")
    page.wait_for_selector("#submit:not([disabled])")
    assert "ner" in page.inner_text("#meta")
    page.fill("#input-text", SENTENCE)
    page.click("#submit")
    page.wait_for_selector("#highlighted")
    marks = page.eval_on_selector_all(
        "#highlighted mark.entity", "ms => ms.map(m => [m.firstChild.textContent, m.dataset.label])")
    assert marks == [[e["text"], e["label"]] for e in expected]
    assert page.inner_text("#highlighted").replace("\n", " ").count("Brussels") == 1
    rows = page.eval_on_selector_all("#result table tr", "rs => rs.slice(1).map(r => r.cells[0].textContent)")
    assert rows == [e["text"] for e in expected]
    shot = tmp_path / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5000
    results = REPO / "bench" / "results"
    if results.is_dir():
        shutil.copyfile(shot, results / "serve_page.png")
    assert not external and not errors, (external, errors)
    page.close()


# ---------------------------------------------------------------------------
# API key and graceful shutdown (a server of their own; the SIGTERM test ends it, so it comes last)


@pytest.fixture(scope="module")
def keyed_server(ner_run):
    key = "s3cret-key"
    server = Server([str(ner_run), "--max-wait-ms", "800"], env={"FTKIT_API_KEY": key})
    server.wait_ready(headers={"Authorization": f"Bearer {key}"})
    yield server, key
    server.stop()


def test_api_key_is_checked_on_every_request(keyed_server):
    server, key = keyed_server
    for method, path in [("GET", "/health"), ("GET", "/info"), ("POST", "/predict"), ("GET", "/openapi.json"),
                         ("GET", "/nowhere")]:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": key[:-1]}, {"Authorization": key}]:
            r = httpx.request(method, server.url + path, headers=headers, json={"inputs": ["a"]})
            assert r.status_code == 401 and r.json()["type"] == "unauthorized", (method, path, headers)
    assert httpx.get(server.url + "/").status_code == 200  # the static page, which asks for the key
    for headers in [{"Authorization": f"Bearer {key}"}, {"X-API-Key": key}]:
        r = httpx.post(server.url + "/predict", headers=headers, json={"inputs": [SENTENCE]})
        assert r.status_code == 200 and r.json()["predictions"][0]["text"] == SENTENCE


def test_sigterm_finishes_the_request_in_flight(keyed_server):
    server, key = keyed_server
    result = {}

    def call():
        result["r"] = httpx.post(server.url + "/predict", headers={"X-API-Key": key}, timeout=60,
                                 json={"inputs": [SENTENCE, "Peter Blackburn"]})

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.4)  # the request is in the server, waiting --max-wait-ms 800 for companions
    server.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    assert result["r"].status_code == 200, result["r"].text
    assert [p["text"] for p in result["r"].json()["predictions"]] == [SENTENCE, "Peter Blackburn"]
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    log = "".join(server.log)
    assert "Waiting for connections to close" in log or "Shutting down" in log
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=5)


def test_connections_of_the_bound_socket_send_without_nagle():
    """Each keep-alive answer went out only after the client's delayed ACK (~40 ms a request) while the
    listening socket did not say it was TCP: asyncio sets TCP_NODELAY only on such connections."""
    import asyncio
    import socket

    from ftkit.serving.server import bind

    async def main():
        sock = bind("127.0.0.1", 0)
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                s = transport.get_extra_info("socket")
                seen.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # a loop of its own (another test may leave this thread's loop running)
        assert pool.submit(lambda: asyncio.run(main())).result(timeout=30) != 0
