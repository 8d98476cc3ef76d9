"""args-local chat — a terminal chat app with live ARGS knobs, rewards, compare mode and history."""

from __future__ import annotations

import os
import sys

from ..errors import UserError
from ..settings import DecodingSettings
from .options import (CONVERSATION_MAX_NEW_TOKENS, add_model_options, add_objective_option, check_model_options,
                      check_reward_files, load_engine, objectives_from, text)


def register(sub) -> None:
    p = sub.add_parser("chat", help="chat in the terminal (Textual app)",
                       description="Multi-turn chat with reward-guided decoding; knobs, rewards, "
                                   "greedy-vs-ARGS compare and saved history. F1 in the app lists the keys.")
    add_model_options(p)
    p.add_argument("--db", metavar="PATH", help="history database (default: $ARGS_LOCAL_HOME/history.sqlite)")
    p.add_argument("--system", type=text, help="system prompt for new conversations (default: the template's own)")
    add_objective_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    check_model_options(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):  # Textual would wait forever on a pipe
        raise UserError("chat needs a terminal (stdin or stdout is redirected); "
                        "for scripts use `args-local generate PROMPT`")
    settings = chat_settings(args)  # bad weights: before the app starts
    if settings.objectives:  # and one the reward model lacks (without them, a missing model is told in the app)
        check_reward_files(args.reward, settings.objectives, guiding=True)
    give_textual_its_own_terminal()
    app = chat_app(args, settings)
    app.run()
    if app.crash_log is not None:
        print(f"args-local: the chat stopped on an unexpected error (a bug); the details are in {app.crash_log}. "
              "Your history is saved.", file=sys.stderr)
    return app.return_code or 0


def chat_settings(args):
    """The knobs the chat starts with. A reply may take up to half a smaller context: the chat drops old turns
    to leave it that room."""
    max_new_tokens = min(CONVERSATION_MAX_NEW_TOKENS, args.n_ctx // 2)
    return DecodingSettings(objectives=objectives_from(args), max_new_tokens=max_new_tokens).validated()


def chat_app(args, settings):
    """The app the command line asks for. The judge is a reward model: it runs on --rm-threads, as the guide does
    (it had --threads, llama.cpp's for the policy)."""
    from ..chat import ChatApp  # Textual only loads for this command

    return ChatApp(load_engine=lambda: load_engine(args), db_path=args.db, rm_threads=args.rm_threads,
                   settings=settings, system=args.system or None)


def give_textual_its_own_terminal() -> None:
    """Textual draws on sys.__stderr__; loading llama.cpp / onnxruntime models points fd 2 at
    /dev/null for a moment (args_local.quiet), and models load while the app runs (in a worker,
    and the judge on first use). Frames drawn then would be lost, so Textual gets its own
    descriptor of the terminal, which that redirection does not touch."""
    if sys.__stderr__ is not None and sys.__stderr__.isatty():
        sys.__stderr__ = os.fdopen(os.dup(sys.__stderr__.fileno()), "w", encoding="utf-8", errors="replace")
