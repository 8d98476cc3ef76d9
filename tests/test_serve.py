"""`args-local serve` as clients use it: a real server process on 127.0.0.1 with the built-in models,
driven by the official `openai` package and by httpx for what that package hides (raw bodies,
headers, dropped connections)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from args_local.server.app import MAX_BODY_BYTES

from .conftest import ROOT, THREADS, assert_user_error, guide_copy, run_cli

KEY = "test-key"
PAGE = "http://localhost:3000"  # the one web page the module's server lets call it (--allow-origin)
Q = "How do I make a good cup of coffee?"
LONG_Q = "Write a very long story about a dragon who learns to bake bread, with many chapters."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(stderr_path, *flags, host: str | None = None, env_extra: dict | None = None):
    """A real `args-local serve [--host HOST]` process; yields it and a loopback base URL for it once
    it announces http://HOST:PORT (127.0.0.1, the default, when no host is given)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ARGS_LOCAL_API_KEY"}  # a user's own key must not leak in
    env.update(PYTHONPATH=str(ROOT), **(env_extra or {}))
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "args_local.cli", "serve", "--port", str(port), "--threads", str(THREADS),
             *(["--host", host] if host else []), *flags],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        deadline, announced = time.monotonic() + 300, ""
        while f"http://{host or '127.0.0.1'}:{port}" not in announced:
            assert proc.poll() is None, stderr_path.read_text()
            assert time.monotonic() < deadline, "the server did not announce its address in 300 s"
            try:
                announced = lines.get(timeout=1)
            except queue.Empty:
                pass
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextlib.contextmanager
def running_server(stderr_path, *flags, host: str | None = None, env_extra: dict | None = None):
    """server_process's URL, and a server still alive afterwards that logged no traceback."""
    with server_process(stderr_path, *flags, host=host, env_extra=env_extra) as (proc, url):
        yield url
        assert proc.poll() is None, "the server died: " + stderr_path.read_text()
        assert "Traceback" not in stderr_path.read_text(), stderr_path.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory, policy_path, guide_dir):
    """One server for the module: an API key, at most one request waiting, short replies by default,
    one web page allowed to call it from a browser."""
    stderr_path = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with running_server(stderr_path, "--api-key", KEY, "--max-waiting", "1", "--max-new-tokens", "16",
                        "--allow-origin", PAGE) as url:
        yield url


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


def chat(client, content=Q, **kw):
    return client.chat.completions.create(model="args-local", messages=[{"role": "user", "content": content}],
                                          max_tokens=kw.pop("max_tokens", 16), seed=kw.pop("seed", 0), **kw)


def streamed(client, content=Q, **kw) -> tuple[str, list]:
    chunks = list(chat(client, content, stream=True, stream_options={"include_usage": True}, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def wait_for(http, condition, seconds=30.0) -> dict:
    """Poll /health until condition(health) holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        health = http.get("/health").json()
        if condition(health):
            return health
        assert time.monotonic() < deadline, f"/health never got there: {health}"
        time.sleep(0.1)


# -- replies --------------------------------------------------------------------------------
def test_non_streaming_reply_has_text_usage_and_rewards(client):
    r = chat(client)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.model == "args-local" and r.object == "chat.completion"
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    args = r.model_extra["args"]
    assert isinstance(args["reward"], float)
    assert len(args["rewards"]) >= r.usage.completion_tokens  # one per ARGS step
    assert args["settings"]["mode"] == "args-greedy" and args["settings"]["max_new_tokens"] == 16


def test_stream_joins_to_the_non_streaming_text(client):
    whole = chat(client, max_tokens=24)
    text, chunks = streamed(client, max_tokens=24)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert finish[0].model_extra["args"]["reward"] == pytest.approx(whole.model_extra["args"]["reward"])
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_extra_body_args_are_honoured(client):
    args_w0 = chat(client, extra_body={"args": {"mode": "args-greedy", "w": 0, "k": 5}})
    greedy = chat(client, extra_body={"args": {"mode": "greedy"}})
    assert args_w0.choices[0].message.content == greedy.choices[0].message.content  # w = 0: the logits alone
    settings = args_w0.model_extra["args"]["settings"]
    assert (settings["mode"], settings["w"], settings["k"]) == ("args-greedy", 0.0, 5)
    assert greedy.model_extra["args"]["rewards"] == []  # plain greedy consults no reward model per step


def test_openai_fields_map_onto_the_settings(client):
    r = chat(client, max_tokens=8, temperature=0.7, top_p=0.5, stop=["\n\n"],
             extra_body={"args": {"mode": "nucleus", "seed": 3}})
    settings = r.model_extra["args"]["settings"]
    assert (settings["temperature"], settings["top_p"], settings["stop"], settings["seed"]) == (0.7, 0.5, ["\n\n"], 3)
    assert r.usage.completion_tokens <= 8 and "\n\n" not in r.choices[0].message.content


def test_seed_minus_1_is_a_random_seed_reported_in_the_settings(client):
    """OpenAI takes seed -1, and llama.cpp's and vLLM's servers read it as "random"; some clients always send it.
    It was a 400 (seed must be non-negative)."""
    sampled = {"temperature": 1.5, "extra_body": {"args": {"mode": "nucleus"}}}
    first, second = (client.chat.completions.create(model="args-local", messages=[{"role": "user", "content": Q}],
                                                    max_tokens=8, seed=-1, **sampled) for _ in range(2))
    seeds = [r.model_extra["args"]["settings"]["seed"] for r in (first, second)]
    assert seeds[0] != seeds[1] and all(seed >= 0 for seed in seeds)
    again = chat(client, max_tokens=8, seed=seeds[0], **sampled)  # the reported seed gives the reply again
    assert again.choices[0].message.content == first.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="seed must be") as e:  # another negative one is not a convention
        chat(client, seed=-2)
    assert e.value.param == "seed"


def test_a_request_without_a_seed_gets_a_random_one_and_one_with_a_seed_repeats(client):
    """As from OpenAI: without a seed, every sampled request for a prompt got the server's seed 0, the same reply."""
    sampled = {"max_tokens": 8, "temperature": 1.5, "extra_body": {"args": {"mode": "nucleus"}}}
    first, second = (client.chat.completions.create(model="args-local", messages=[{"role": "user", "content": Q}],
                                                    **sampled) for _ in range(2))
    seeds = [r.model_extra["args"]["settings"]["seed"] for r in (first, second)]
    assert seeds[0] != seeds[1] and all(seed >= 0 for seed in seeds)
    for seed in seeds:  # the same seed, the same reply
        again = [chat(client, seed=seed, **sampled).choices[0].message.content for _ in range(2)]
        assert again[0] == again[1] == (first if seed == seeds[0] else second).choices[0].message.content
    greedy = {"extra_body": {"args": {"mode": "greedy"}}}  # a deterministic mode decodes as it did
    seedless = client.chat.completions.create(model="args-local", messages=[{"role": "user", "content": Q}],
                                              max_tokens=16, **greedy)
    assert seedless.choices[0].message.content == chat(client, **greedy).choices[0].message.content
    assert client.models.retrieve("args-local").model_extra["args"]["defaults"]["seed"] == -1  # random


def test_a_server_started_with_a_seed_uses_it_for_requests_without_one(tmp_path):
    with running_server(tmp_path / "stderr.txt", "--seed", "7", "--max-new-tokens", "8") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        sampled = {"temperature": 1.5, "extra_body": {"args": {"mode": "nucleus"}}}
        replies = [client.chat.completions.create(model="args-local", messages=[{"role": "user", "content": Q}],
                                                  **sampled) for _ in range(2)]
        assert [r.model_extra["args"]["settings"]["seed"] for r in replies] == [7, 7]
        assert replies[0].choices[0].message.content == replies[1].choices[0].message.content
        assert client.models.retrieve("args-local").model_extra["args"]["defaults"]["seed"] == 7


@pytest.fixture(scope="module")
def vocab(policy_path):
    """The policy's tokenizer alone, for token ids to bias."""
    import llama_cpp

    tokenizer = llama_cpp.Llama(model_path=str(policy_path), vocab_only=True, verbose=False)
    return lambda text: tokenizer.tokenize(text.encode(), add_bos=False, special=False)


def test_logit_bias_bans_or_forces_a_token(client, vocab):
    greedy = {"max_tokens": 8, "extra_body": {"args": {"mode": "greedy"}}}
    text = chat(client, **greedy).choices[0].message.content
    first = vocab(text)[0]
    banned = chat(client, logit_bias={str(first): -100}, **greedy)
    assert vocab(banned.choices[0].message.content)[0] != first
    assert banned.model_extra["args"]["settings"]["logit_bias"] == {str(first): -100.0}
    banana = vocab(" banana")[-1]
    forced = chat(client, logit_bias={str(banana): 100}, **greedy).choices[0].message.content
    assert vocab(forced)[0] == banana and forced.startswith(" banana")


def test_presence_and_frequency_penalties_change_the_reply(client):
    greedy = {"max_tokens": 32, "extra_body": {"args": {"mode": "greedy", "repeat_penalty": 1.0}}}
    plain = chat(client, **greedy).choices[0].message.content
    for field in ("presence_penalty", "frequency_penalty"):
        r = chat(client, **{field: 2.0}, **greedy)
        assert r.choices[0].message.content != plain
        assert r.model_extra["args"]["settings"][field] == 2.0


def test_llama_cpp_servers_top_k_min_p_and_repeat_penalty_map_onto_the_settings(client):
    r = chat(client, max_tokens=4, extra_body={"top_k": 5, "min_p": 0.1, "repeat_penalty": 1.1})
    settings = r.model_extra["args"]["settings"]
    assert (settings["k"], settings["min_p"], settings["repeat_penalty"]) == (5, 0.1, 1.1)
    r = chat(client, max_tokens=4, extra_body={"top_k": 5, "args": {"k": 3}})  # args, the later layer, wins
    assert r.model_extra["args"]["settings"]["k"] == 3


@pytest.mark.parametrize("fields, message, param", [
    ({"presence_penalty": 2.5}, r"presence_penalty must be a number from -2 to 2", "presence_penalty"),
    ({"frequency_penalty": -3}, r"frequency_penalty must be a number from -2 to 2", "frequency_penalty"),
    ({"frequency_penalty": "1"}, r"frequency_penalty must be a number \(got '1'\)", "frequency_penalty"),
    ({"logit_bias": {"99999999": 5}}, r"logit_bias names token id 99999999, which is not in the vocabulary "
                                      r"\(its ids are integers from 0 to \d+\)", "logit_bias"),
    ({"logit_bias": {"5": -101}}, "the logit_bias of token 5 must be a number from -100 to 100", "logit_bias"),
    ({"logit_bias": "5:1"}, r'logit_bias must be an object \{"token id": bias\}', "logit_bias"),
    ({"top_k": 0}, r"top_k must be at least 1 \(got 0\)", "top_k"),
    ({"top_k": 5000}, r"top_k must be at most 1024 \(got 5000\)", "top_k"),  # named as sent, not as k
    ({"min_p": 1.5}, r"min_p must be in \[0, 1\)", "min_p"),
    ({"repeat_penalty": 0}, "repeat_penalty must be a positive number", "repeat_penalty"),
    ({"args": {"logit_bias": {"-3": 1}}}, "logit_bias names token id '-3'", "args.logit_bias"),
])
def test_bad_penalties_biases_and_llama_cpp_fields_are_a_400_naming_the_field(client, fields, message, param):
    with pytest.raises(openai.BadRequestError, match=message) as e:
        chat(client, extra_body=fields)
    assert e.value.body["param"] == param


def test_top_p_0_keeps_the_most_likely_token_and_one_outside_0_to_1_is_a_400(client):
    greedy = chat(client, extra_body={"args": {"mode": "greedy"}})
    narrowest = chat(client, top_p=0, temperature=1.5, extra_body={"args": {"mode": "nucleus"}})
    assert narrowest.choices[0].message.content == greedy.choices[0].message.content
    assert narrowest.model_extra["args"]["settings"]["top_p"] == 0  # it showed 5e-324, the stand-in for 0
    for bad in (-0.1, 1.5):
        with pytest.raises(openai.BadRequestError, match=r"top_p must be in \[0, 1\] \(got") as e:
            chat(client, top_p=bad)
        assert e.value.body["param"] == "top_p"


def test_text_parts_are_joined_by_a_newline(client):
    """As other OpenAI-compatible servers join them: the words where two parts meet stay apart."""
    greedy = {"args": {"mode": "greedy"}}
    parts = [{"type": "text", "text": "Name a fruit."}, {"type": "text", "text": "Answer in one word."}]
    joined = client.chat.completions.create(model="args-local", messages=[{"role": "user", "content": parts}],
                                            max_tokens=8, extra_body=greedy)
    whole = chat(client, "Name a fruit.\nAnswer in one word.", max_tokens=8, extra_body=greedy)
    assert joined.usage.prompt_tokens == whole.usage.prompt_tokens
    assert joined.choices[0].message.content == whole.choices[0].message.content


def test_bad_args_value_is_a_400_with_the_reason(client):
    # param names the field as the client sent it (it was null for every value the settings refused)
    for kw, message, param in (({"extra_body": {"args": {"k": 0}}}, "k must be at least 1", "args.k"),
                               ({"temperature": -1}, "temperature must be a finite number >= 0", "temperature"),
                               ({"extra_body": {"args": {"mode": "nope"}}}, "unknown mode 'nope'", "args.mode"),
                               ({"extra_body": {"args": {"objectives": {"helpful": 0}}}}, "all objective weights are 0",
                                "args.objectives")):
        with pytest.raises(openai.BadRequestError, match=message) as e:
            chat(client, **kw)
        assert e.value.param == param
    with pytest.raises(openai.BadRequestError, match="unknown ARGS setting args.kk"):
        chat(client, extra_body={"args": {"kk": 3}})
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        chat(client, n=2)
    with pytest.raises(openai.BadRequestError, match=r"max_tokens must be at least 1 \(got 0\)") as e:
        chat(client, max_tokens=0)  # it said "max-new-tokens", the command line's name, with no param
    assert e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError, match=r"args.objectives must be an object \{name: weight\}"):
        chat(client, extra_body={"args": {"objectives": "helpful=1"}})
    with pytest.raises(openai.BadRequestError, match="objectives must be name-weight pairs"):
        chat(client, extra_body={"args": {"objectives": ["helpful", 1]}})


def test_models_lists_the_served_model_and_retrieves_it_by_name(client):
    """models.retrieve (GET /v1/models/{id}) was a bare 404 "Not Found", as if the model were not served."""
    assert [m.id for m in client.models.list()] == ["args-local"]
    assert client.models.retrieve("args-local").id == "args-local"
    with pytest.raises(openai.NotFoundError, match="not served here") as e:
        client.models.retrieve("gpt-4o")
    assert e.value.code == "model_not_found"


# -- many clients ---------------------------------------------------------------------------
def test_two_clients_at_once_both_get_their_own_complete_reply(client):
    prompts = ["What is the capital of France?", "Name three colours of the rainbow."]
    alone = [chat(client, p).choices[0].message.content for p in prompts]
    results: dict = {}

    def ask(i):
        results[i] = streamed(client, prompts[i])[0] if i else chat(client, prompts[i]).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert [results.get(0), results.get(1)] == alone


def test_a_dropped_stream_stops_its_generation(http):
    before = http.get("/health").json()["generations"].get("cancelled", 0)
    body = {"model": "args-local", "messages": [{"role": "user", "content": LONG_Q}], "stream": True,
            "max_tokens": 2000}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        contents = 0
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                contents += 1
                mid = http.get("/health", timeout=10).json()  # answers while a generation runs
                assert mid["running"] is True
                if contents == 2:
                    break
    health = wait_for(http, lambda h: not h["running"] and h["generations"].get("cancelled", 0) > before, 20)
    assert health["waiting"] == 0


def test_a_full_queue_gets_429_with_retry_after(http, server):
    body = {"model": "args-local", "messages": [{"role": "user", "content": LONG_Q}], "stream": True,
            "max_tokens": 2000}
    waiter_status: list = []

    def waiter():  # waits in line behind the running stream, then leaves after its first line
        with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                waiter_status.append(r.status_code)

    with http.stream("POST", "/v1/chat/completions", json=body) as running:
        lines = running.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)
        thread = threading.Thread(target=waiter)
        thread.start()
        wait_for(http, lambda h: h["waiting"] == 1)
        r = http.post("/v1/chat/completions", json={**body, "stream": False})
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "queue_full"
    thread.join(timeout=120)
    assert waiter_status == [200]
    wait_for(http, lambda h: not h["running"] and h["waiting"] == 0)


def test_an_objective_the_reward_model_lacks_is_refused_without_waiting_its_turn(http):
    """It was refused only when the request's turn came: after the reply being decoded had ended."""
    body = {"model": "args-local", "messages": [{"role": "user", "content": LONG_Q}], "max_tokens": 2000}
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as running:
        lines = running.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)
        r = http.post("/v1/chat/completions", json={**body, "args": {"objectives": {"nope": 1}}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "args.objectives", r.text
        assert "has no objective 'nope'" in r.json()["error"]["message"]
        assert http.get("/health").json()["running"] is True  # the reply in progress had not ended
    wait_for(http, lambda h: not h["running"] and h["waiting"] == 0)


def test_a_client_that_leaves_the_line_frees_its_place_at_once(http):
    """Until the running reply ended, one that gave up waiting still counted: /health said it waited
    and, the line being full (--max-waiting 1), the next client got 429."""
    body = {"model": "args-local", "messages": [{"role": "user", "content": LONG_Q}], "max_tokens": 2000}
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as running:
        lines = running.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)
        for _ in range(2):  # the second takes the place the first left
            with pytest.raises(httpx.ReadTimeout):  # waits its turn, then gives up
                http.post("/v1/chat/completions", json=body, timeout=2)
            health = wait_for(http, lambda h: h["waiting"] == 0, 10)
            assert health["running"] is True
    wait_for(http, lambda h: not h["running"] and h["waiting"] == 0)


def test_a_browser_page_may_call_the_api_only_from_an_allowed_origin(server):
    """As a browser asks: a preflight (OPTIONS) for the POST with its headers, then the request itself;
    the answer, even a 401, carries Access-Control-Allow-Origin for the allowed page only."""
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Private-Network": "true",
                 "Access-Control-Request-Headers": "authorization,content-type,x-stainless-lang"}
    ok = httpx.options(f"{server}/v1/chat/completions", headers={"Origin": PAGE, **preflight}, timeout=30)
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == PAGE
    assert "x-stainless-lang" in ok.headers["access-control-allow-headers"].lower()
    assert ok.headers["access-control-allow-private-network"] == "true"
    other = httpx.options(f"{server}/v1/chat/completions", headers={"Origin": "https://example.com", **preflight},
                          timeout=30)
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    for key, status in ((KEY, 200), ("wrong", 401)):
        r = httpx.get(f"{server}/v1/models", headers={"Origin": PAGE, "Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == status and r.headers["access-control-allow-origin"] == PAGE
    r = httpx.get(f"{server}/v1/models", headers={"Origin": "https://example.com", "Authorization": f"Bearer {KEY}"},
                  timeout=30)
    assert "access-control-allow-origin" not in r.headers


# -- bad requests ---------------------------------------------------------------------------
def test_no_key_or_a_wrong_key_is_401(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": Q}]},
                       headers=headers, timeout=30)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(f"{server}/health", timeout=30).status_code == 200  # health needs no key


def test_bad_json_is_400_and_unknown_fields_are_ignored(http):
    r = http.post("/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert "not valid JSON" in r.json()["error"]["message"]
    r = http.post("/v1/chat/completions", json={"model": "args-local", "messages": [{"role": "user", "content": Q}],
                                                "max_tokens": 8, "frobnicate": {"x": 1}, "user": "someone"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    for bad in ({"messages": []}, {"messages": [{"role": "tool", "content": "x"}]}, [1, 2]):
        r = http.post("/v1/chat/completions", json=bad)
        assert r.status_code == 400 and r.json()["error"]["message"]


def test_asking_for_what_the_server_never_produces_is_a_400(client):
    """A tool call, JSON mode, log probabilities: a plain-text reply without them would pass for
    the model's choice (no tool called, JSON that does not parse, logprobs None)."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    for field, value in (("tools", [tool]), ("response_format", {"type": "json_object"}), ("logprobs", True),
                         ("top_logprobs", 2)):
        with pytest.raises(openai.BadRequestError, match="not supported") as e:
            chat(client, **{field: value})
        assert e.value.body["param"] == field
    r = chat(client, tools=[], response_format={"type": "text"}, logprobs=False)  # these ask for none of it
    assert r.choices[0].message.content


def test_a_stream_field_that_is_not_a_boolean_is_a_400(http):
    """"stream": "true" answered as plain JSON would break a client that reads server-sent events."""
    r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q}], "stream": "true"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream", r.text


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": Q}], max_tokens=8)


@pytest.mark.parametrize("stream", [False, True])
def test_an_overlong_prompt_is_400_with_the_reason_and_openais_code(client, stream):
    """context_length_exceeded on messages, as OpenAI answers it: clients look for that code to drop old
    turns and retry. The code was null, so a client could only match the message's words."""
    with pytest.raises(openai.BadRequestError, match=r"the prompt is \d+ tokens: it does not fit the 4096") as e:
        chat(client, "coffee " * 5000, stream=stream)
    assert "max_new_tokens" not in str(e.value)  # the server chose none: it caps max_tokens to the room left
    assert (e.value.code, e.value.param) == ("context_length_exceeded", "messages")


def test_an_oversized_body_is_413(http):
    body = json.dumps({"messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]}).encode()
    r = http.post("/v1/chat/completions", content=body)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_max_tokens_is_capped_by_the_context(client):
    r = chat(client, max_tokens=1_000_000, stop=[".", ","], extra_body={"args": {"mode": "greedy"}})
    assert r.model_extra["args"]["settings"]["max_new_tokens"] == 4096 - r.usage.prompt_tokens


def test_a_context_no_longer_than_the_default_reply_is_served(tmp_path, policy_path):
    """README: --n-ctx 256 to 131072, and max_tokens defaults to --max-new-tokens (512 for serve), capped by
    the room the prompt leaves. `serve --n-ctx 512` alone was refused: that default 'left no room'."""
    with running_server(tmp_path / "stderr.txt", "--n-ctx", "512") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(model="args-local", messages=[{"role": "user", "content": Q}],
                                           stop=[".", ","], extra_body={"args": {"mode": "greedy"}})
    assert r.choices[0].message.content
    assert r.model_extra["args"]["settings"]["max_new_tokens"] == 512 - r.usage.prompt_tokens


def test_a_reward_model_that_fails_is_a_500_and_a_line_in_the_log(tmp_path, guide_dir):
    """Its non-finite rewards (a damaged file) were a 400, the request's fault by OpenAI's codes, and
    the log said nothing to whoever runs the server."""
    def nan_rewards(manifest):
        for head in manifest["heads"].values():
            head["normalization"] = {"mean": 0.0, "std": float("nan")}

    broken = guide_copy(guide_dir, tmp_path / "rm", nan_rewards)
    with running_server(tmp_path / "stderr.txt", "--reward", str(broken)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        for stream in (False, True):  # the second: the server is not wedged by the first
            with pytest.raises(openai.InternalServerError, match="the reward model failed: step 0: .*non-finite") as e:
                chat(client, stream=stream)
            assert e.value.code == "reward_model_error"
    assert "non-finite" in (tmp_path / "stderr.txt").read_text()


# -- the command ----------------------------------------------------------------------------
def test_a_port_in_use_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = run_cli("serve", "--port", str(s.getsockname()[1]), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot listen on 127.0.0.1" in proc.stderr


@pytest.mark.parametrize("key, env", [("", None), ("clé", None), (None, "key\n")])
def test_an_api_key_no_client_can_send_is_refused(key, env):
    """--api-key "" ("$KEY" with KEY unset) served with no key at all; a non-ASCII key was never matched."""
    proc = run_cli("serve", "--port", "0", *(["--api-key", key] if key is not None else []), timeout=120,
                   env_extra={"ARGS_LOCAL_API_KEY": env} if env else None)
    assert_user_error(proc, "must be printable ASCII")


def test_only_loopback_addresses_count_as_private():
    from args_local.commands.serve import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.20", "example.org"]))


def test_text_that_is_not_unicode_is_400(http):
    for body in ({"messages": [{"role": "user", "content": "caf\ud800"}]},
                 {"messages": [{"role": "user", "content": "hi"}], "stop": ["\udcff"]},
                 {"messages": [{"role": "user", "content": "   "}]}):
        r = http.post("/v1/chat/completions", content=json.dumps(body))  # json.dumps escapes the surrogates
        assert r.status_code == 400, r.text
        assert "UTF-8" in r.json()["error"]["message"] or "empty" in r.json()["error"]["message"]


def test_the_key_may_come_from_the_environment_and_all_addresses_need_no_warning_then(tmp_path, policy_path):
    with running_server(tmp_path / "stderr.txt", host="0.0.0.0",
                        env_extra={"ARGS_LOCAL_API_KEY": "from-env"}) as url:
        assert httpx.get(f"{url}/v1/models", timeout=60).status_code == 401
        ok = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer from-env"}, timeout=60)
        assert ok.status_code == 200, ok.text
    assert "warning" not in (tmp_path / "stderr.txt").read_text()


def test_listening_beyond_loopback_without_a_key_warns(tmp_path, policy_path):
    with running_server(tmp_path / "stderr.txt", host="0.0.0.0") as url:
        assert httpx.get(f"{url}/v1/models", timeout=60).status_code == 200
    assert "without an API key" in (tmp_path / "stderr.txt").read_text()


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)])
def test_stopping_the_server_mid_reply_tells_each_client_why(tmp_path, policy_path, sig, exit_code):
    """Ctrl+C or SIGTERM: the stream in progress ends with an error event, not a cut connection,
    a request waiting its turn gets 503 at once, and the log has no traceback or error."""
    body = {"model": "args-local", "messages": [{"role": "user", "content": LONG_Q}], "max_tokens": 2000}
    waiter: list = []
    with server_process(tmp_path / "stderr.txt") as (proc, url), httpx.Client(base_url=url, timeout=120) as http:
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            lines = r.iter_lines()
            for line in lines:  # until the reply has begun
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break
            thread = threading.Thread(target=lambda: waiter.append(http.post("/v1/chat/completions", json=body)))
            thread.start()
            wait_for(http, lambda h: h["waiting"] == 1)
            proc.send_signal(sig)
            rest = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]  # no RemoteProtocolError
        thread.join(timeout=60)
        assert proc.wait(timeout=60) == exit_code
    assert rest[-1]["error"]["code"] == "server_shutting_down", rest[-3:]
    assert waiter[0].status_code == 503 and waiter[0].json()["error"]["code"] == "server_shutting_down"
    log = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_a_second_ctrl_c_quits_at_once_without_a_traceback(tmp_path, policy_path):
    """Ctrl+C pressed twice while a reply streams: uvicorn skips the app's shutdown, and its
    lifespan, cancelled as the loop closed, logged an ERROR with a traceback."""
    body = {"model": "args-local", "messages": [{"role": "user", "content": LONG_Q}], "max_tokens": 2000,
            "stream": True}
    with server_process(tmp_path / "stderr.txt") as (proc, url), httpx.Client(base_url=url, timeout=120) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            next(line for line in r.iter_lines() if '"content": "' in line and '"content": ""' not in line)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 130
    log = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_a_route_not_served_says_what_is(server):
    """A client whose base URL lacks /v1 (or that GETs the chat route) was told only "Not Found" or
    "Method Not Allowed"."""
    no_v1 = openai.OpenAI(base_url=server, api_key=KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.NotFoundError, match=r"POST /chat/completions is not served: .* base URL is "
                                                   r"http://HOST:PORT/v1"):
        chat(no_v1)
    r = httpx.get(f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert "GET /v1/chat/completions is not served: this server answers POST /v1/chat/completions" in r.text


def test_the_legacy_completions_endpoint_is_an_openai_shaped_404(http):
    r = http.post("/v1/completions", json={"model": "args-local", "prompt": "Hello"})
    assert r.status_code == 404
    assert "/v1/chat/completions" in r.json()["error"]["message"]


def test_the_serving_benchmark_starts():  # a tool nobody runs in CI breaks silently otherwise
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_serve.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--reps" in proc.stdout, proc.stderr
