"""args-local generate "question" — stream one reply to stdout (`-`, or no prompt: read it from stdin)."""

from __future__ import annotations

import json
import os
import sys

from ..engine import Finished, Notice, Step, as_messages
from ..errors import UserError
from ..user_text import checked_text
from .options import add_decoding_options, add_model_options, load_engine, settings_from, text


def register(sub) -> None:
    p = sub.add_parser("generate", help="answer one prompt, streaming the reply",
                       description="Answer one prompt with the chosen decoding mode, streaming the text.")
    p.add_argument("prompt", type=text, nargs="?", default="-",
                   help="the user's message; - or none: read it from standard input (cat q.txt | args-local generate)")
    p.add_argument("--system", type=text, help="system prompt (default: the model template's own)")
    add_decoding_options(p)
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    p.add_argument("--trace", metavar="FILE", help="ARGS modes: write one JSON line per step the reward model scored (candidates, logits, "
                        "rewards, by objective too, chosen, w); other modes and unscored steps write none")
    p.set_defaults(run=run)


def prompt_from(argument: str) -> str:
    """The prompt argument, or for "-" the text piped in (a terminal is not waited on)."""
    if argument != "-":
        return argument
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError('give the prompt: args-local generate "question", or pipe it in: '
                        'cat question.txt | args-local generate')
    piped = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    return checked_text(piped, "the prompt on standard input").rstrip("\r\n")


def run(args) -> int:
    settings = settings_from(args)
    messages = as_messages(prompt_from(args.prompt), args.system)  # a bad prompt fails before the models load
    trace = None
    if args.trace is not None:
        if not args.trace.strip():  # '' opened nothing and wrote no trace, without a word
            raise UserError("--trace needs a file name, e.g. --trace steps.jsonl")
        try:
            trace = open(args.trace, "a")  # emptied once the models load: a typo in --reward keeps the last trace
        except OSError as e:
            raise UserError(f"cannot write trace file {args.trace}: {e.strerror}") from None
    try:
        engine = load_engine(args, need_reward=settings.uses_reward)
        if trace and os.path.isfile(args.trace):  # a pipe or a device (/dev/stderr) has nothing to empty
            trace.truncate(0)
        for event in engine.stream(messages, settings):
            if isinstance(event, Step):
                if trace and event.candidates is not None:
                    trace.write(json.dumps({"step": event.step, "candidates": event.candidates,
                                            "logits": event.logits, "rewards": event.rewards,
                                            "objective_rewards": event.candidate_objective_rewards,
                                            "chosen": event.token, "w": settings.w}) + "\n")
                if not args.json and event.text:
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
            elif isinstance(event, Notice):
                print(f"[{event.message}]", file=sys.stderr)
            elif isinstance(event, Finished):
                if args.json:
                    print(json.dumps(event.to_dict()))
                else:
                    sys.stdout.write("\n")
                    reward = "" if event.reward is None else f", reward {event.reward:+.3f}"
                    if event.objective_rewards and len(event.objective_rewards) > 1:
                        reward += " (" + ", ".join(f"{n} {r:+.3f}" for n, r in event.objective_rewards.items()) + ")"
                    print(f"[{len(event.tokens)} tokens, {event.tokens_per_s:.1f} tok/s, "
                          f"{event.stop_reason}{reward}]", file=sys.stderr)
    finally:
        if trace:
            trace.close()
    return 0
