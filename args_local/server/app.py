"""The Starlette app: /v1/chat/completions (JSON or SSE), /v1/models, /health.

No route decodes on the event loop: generations run on Generations' thread, and the handler
only relays events, so a client that disconnects (seen as http.disconnect) cancels its job.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..engine import Engine, Finished, Step
from ..errors import UserError
from ..settings import DecodingSettings
from .chat_request import parse_chat_request
from .errors import APIError, as_api_error, unknown_model
from .generations import Generations, Job, stopping_error
from .responses import Reply, model_object

MODEL_ID = "args-local"
MAX_BODY_BYTES = 4 * 2**20  # far above any prompt a context holds; stops a client from filling memory
# when the server stops, a stream has this long to tell its client so and end (the engine stops at
# its next step); the runner's graceful shutdown waits longer before it cuts connections
SHUTDOWN_GRACE_S = 2
SERVED = "POST /v1/chat/completions, GET /v1/models and GET /health"  # named where a client asks for another route


class ClientGone(Exception):
    pass


def create_app(engine: Engine, defaults: DecodingSettings, *, random_seed: bool = False, api_key: str | None = None,
               max_waiting: int = 8, allow_origins: tuple[str, ...] = ()) -> Starlette:
    """random_seed: a request without a seed gets a random one (else defaults.seed); allow_origins: the
    web pages (origins, or "*") whose scripts a browser lets call this server."""
    generations = Generations(engine, max_waiting)
    started = int(time.time())
    shown = defaults.to_dict() | ({"seed": -1} if random_seed else {})  # -1: random, as a request may ask
    details = {"policy": Path(engine.policy.info.path).name, "n_ctx": engine.policy.n_ctx,
               "reward": None if engine.reward is None else engine.reward.name, "defaults": shown}

    def check_key(request: Request) -> None:
        expected = f"Bearer {api_key}".encode()
        if api_key is not None and not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            raise APIError(401, "missing or wrong API key: send the header Authorization: Bearer KEY",
                           code="invalid_api_key")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": MODEL_ID, **generations.status()})

    async def models(request: Request) -> Response:
        check_key(request)
        return JSONResponse({"object": "list", "data": [model_object(MODEL_ID, started, details)]})

    async def model(request: Request) -> Response:
        """GET /v1/models/{id}, the openai package's models.retrieve: clients check a model this way."""
        check_key(request)
        if request.path_params["model"] != MODEL_ID:
            raise unknown_model(request.path_params["model"], MODEL_ID)
        return JSONResponse(model_object(MODEL_ID, started, details))

    async def chat_completions(request: Request) -> Response:
        check_key(request)
        req = parse_chat_request(await read_json(request), defaults, MODEL_ID, engine.policy.n_vocab, random_seed)
        try:  # an objective the reward model lacks: refused now, not once the request's turn comes
            engine.objective_weights(req.settings)
        except UserError as e:
            raise APIError(400, str(e), param="args.objectives") from None
        job = generations.submit(req.messages, req.settings)
        try:
            first = await until_disconnect(request, job.next())  # waits its turn; a 400 comes here
            if first is None:  # skipped while it waited: the server is stopping
                raise stopping_error()
            if req.stream:
                events = sse_events(first, job, Reply(MODEL_ID), req.include_usage)
                return CancelWhenDone(EventSourceResponse(events, sep="\n", ping=15,
                                                          shutdown_grace_period=SHUTDOWN_GRACE_S), job)
            done = await until_disconnect(request, job.finished(first))
            if done.stop_reason == "cancelled":  # the client is still here, so the server is stopping
                raise stopping_error()
            return JSONResponse(Reply(MODEL_ID).completion(done))
        except ClientGone:
            generations.leave(job)
            return Response(status_code=204)  # nobody reads it
        except BaseException:
            job.cancel.set()
            raise

    async def completions(request: Request) -> Response:
        raise APIError(404, "POST /v1/completions is not served: the engine always applies the model's chat "
                            "template. Use POST /v1/chat/completions", code="not_found")

    app = Starlette(
        routes=[Route("/health", health), Route("/v1/models", models), Route("/v1/models/{model:path}", model),
                Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                Route("/v1/completions", completions, methods=["POST"])],
        exception_handlers={kind: error_response for kind in (APIError, UserError, HTTPException, Exception)},
        middleware=[cors(allow_origins)] if allow_origins else [])
    app.state.stop_generations = generations.stop  # for the runner, as soon as the server is told to stop
    return app


def cors(allow_origins: tuple[str, ...]) -> Middleware:
    """Browsers' cross-origin rules, opened to the given origins only. Any header may be sent (the
    openai package for JavaScript adds its own); private network access too, since this server is one."""
    return Middleware(CORSMiddleware, allow_origins=list(allow_origins), allow_methods=["GET", "POST"],
                      allow_headers=["*"], expose_headers=["Retry-After"], allow_private_network=True)


async def error_response(request: Request, e: Exception) -> Response:
    if isinstance(e, HTTPException) and e.status_code in (404, 405):  # often a base URL without /v1
        return APIError(e.status_code, f"{request.method} {request.url.path} is not served: this server answers "
                                       f"{SERVED}; an OpenAI client's base URL is http://HOST:PORT/v1",
                        headers=e.headers).response()  # 405's Allow
    if isinstance(e, HTTPException):
        return APIError(e.status_code, str(e.detail), headers=e.headers).response()
    return as_api_error(e).response()


async def read_json(request: Request):
    """The body parsed as JSON, refused (413) as soon as it passes MAX_BODY_BYTES."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise APIError(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MiB",
                               code="request_too_large")
    except ClientDisconnect:  # not a bug: the answer goes nowhere, and the log stays quiet
        raise APIError(400, "the client left before sending the whole body") from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise APIError(400, "the request body is not valid JSON") from None


async def until_disconnect(request: Request, awaitable):
    """The awaitable's result, or ClientGone if the client disconnects first."""
    task = asyncio.ensure_future(awaitable)
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientGone
    finally:
        task.cancel()
        gone.cancel()


async def wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def sse_events(event, job: Job, reply: Reply, include_usage: bool):
    """OpenAI's stream: a role chunk, content chunks, a finish chunk (with the rewards), [DONE]."""
    try:
        yield json.dumps(reply.chunk({"role": "assistant", "content": ""}))
        while event is not None:
            if isinstance(event, Step) and event.text:
                yield json.dumps(reply.chunk({"content": event.text}))
            elif isinstance(event, Finished):
                if event.stop_reason == "cancelled":  # the client still reads, so the server is stopping
                    raise stopping_error()
                yield json.dumps(reply.last_chunk(event))
                if include_usage:
                    yield json.dumps(reply.usage_chunk(event))
            event = await job.next()
        yield "[DONE]"
    except Exception as e:  # the headers are sent: the error travels in the stream, as OpenAI's do
        yield json.dumps(as_api_error(e).body())


class CancelWhenDone:
    """The response, then the job's cancel flag set however the response ended (finished,
    client gone, server stopping): nothing decodes for nobody."""

    def __init__(self, response: Response, job: Job):
        self.response, self.job = response, job

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.job.cancel.set()
