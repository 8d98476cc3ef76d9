"""args-local serve — the OpenAI chat-completions API on this machine, answers decoded with ARGS."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from pathlib import Path

from ..errors import UserError
from ..settings import DecodingSettings
from .options import (CONVERSATION_MAX_NEW_TOKENS, add_decoding_options, add_model_options, check_model_options,
                      load_engine, settings_from)

API_KEY_ENV = "ARGS_LOCAL_API_KEY"


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible API (for Open WebUI, llm, the openai package…)",
                       description="Serve POST /v1/chat/completions (streaming or not), GET /v1/models and "
                                   "GET /health. The decoding options below are the defaults; a request "
                                   'overrides them with OpenAI fields and an extra "args" object.')
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--api-key", metavar="KEY",
                   help=f"require the header 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, else no key)")
    p.add_argument("--max-waiting", type=int, default=8, metavar="N",
                   help="requests that may wait while one is decoded; more get 429 (default 8)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. http://localhost:3000; '*' for any) call the API from a "
                        "browser; repeat for several (default: none)")
    add_decoding_options(p, random_seed=True)
    add_model_options(p)
    p.set_defaults(run=run, max_new_tokens=CONVERSATION_MAX_NEW_TOKENS)  # a client rarely sends max_tokens


def run(args) -> int:
    try:
        from ..server.app import create_app
        from ..server.runner import run as run_server
    except ModuleNotFoundError as e:
        raise UserError(f"serve needs the serve extra ({e.name} is missing): pip install -e '.[serve]'") from None
    check_model_options(args)
    if args.max_new_tokens == CONVERSATION_MAX_NEW_TOKENS:  # the default fits a smaller context: --n-ctx 512 was refused
        args.max_new_tokens = min(args.max_new_tokens, args.n_ctx - 1)  # (each reply is capped by the room left anyway)
    random_seed = args.seed in (None, -1)  # as from OpenAI (and llama.cpp's server, whose --seed -1 it is)
    if random_seed:
        args.seed = DecodingSettings().seed  # never used: each request without a seed draws its own
    settings = settings_from(args)
    if args.max_waiting < 0:
        raise UserError(f"--max-waiting must be 0 or more (got {args.max_waiting})")
    allow_origins = tuple(checked_origin(o) for o in args.allow_origin)
    api_key = (checked_key(args.api_key, "--api-key") if args.api_key is not None
               else checked_key(os.environ.get(API_KEY_ENV) or None, f"${API_KEY_ENV}"))
    sock = listen(args.host, args.port)  # before loading models: a busy port fails at once
    if api_key is None and not is_loopback(args.host):
        print(f"args-local: warning: listening on {args.host} without an API key: anyone who can reach this "
              f"machine can use it. Set --api-key or ${API_KEY_ENV}.", file=sys.stderr)
    engine = load_engine(args)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    reward = "no reward model" if engine.reward is None else engine.reward.name
    announce = (f"args-local: serving {Path(engine.policy.info.path).name} guided by {reward} at "
                f"http://{host}:{port}/v1 (OpenAI API, model 'args-local'); Ctrl+C stops")
    app = create_app(engine, settings, random_seed=random_seed, api_key=api_key, max_waiting=args.max_waiting,
                     allow_origins=allow_origins)
    run_server(app, sock, announce)
    return 0


def checked_key(key: str | None, source: str) -> str | None:
    """A key clients can send: an empty --api-key ("$KEY" with KEY unset) served with no key at all, and
    other than printable ASCII one no client's header matched (the openai package cannot even send it)."""
    if key is not None and not (key and key.isascii() and key.isprintable() and key == key.strip()):
        raise UserError(f"{source} must be printable ASCII with no leading or trailing spaces, and not empty "
                        f"(got {key!r})")
    return key


def checked_origin(origin: str) -> str:
    """An origin as browsers send it: scheme://host[:port], no path, no trailing slash (or "*")."""
    if origin != "*" and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+", origin):
        raise UserError(f"--allow-origin {origin!r} is not an origin: give scheme://host[:port] with no path "
                        "or trailing slash, as in http://localhost:3000, or '*' for any")
    return origin


def listen(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0-65535 (got {port})")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}. Pick another --port "
                        "or stop the program using it.") from None


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
