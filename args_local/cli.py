"""`args-local` — one subcommand per module in args_local/commands/, each with register(subparsers).

User errors (UserError) print one line and exit 2; Ctrl+C prints one line and exits 130;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import _signal  # built in: no import time before the handler is set
import sys


def _interrupted_while_starting(signum, frame):
    print("\nargs-local: interrupted", file=sys.stderr)
    raise SystemExit(130)  # no traceback: nothing has started yet


_signal.signal(_signal.SIGINT, _interrupted_while_starting)  # first of all; main() takes over

import argparse  # noqa: E402
import errno  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402

from . import interrupts
from .errors import UserError

COMMANDS = ("generate", "chat", "serve", "score", "export", "eval", "bench", "models")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: same exit code as ours, with usage
        self.print_usage(sys.stderr)
        print(f"args-local: error: {message}", file=sys.stderr)
        sys.exit(2)


def version_line() -> str:
    """args-local's version and the two runtimes it drives, read from the installed packages' metadata
    (importing llama.cpp or onnxruntime here would cost a second)."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"
    gpu = of("onnxruntime-gpu")  # the same module as onnxruntime, under another distribution name
    runtime = f"onnxruntime-gpu {gpu}" if gpu != "not installed" else f"onnxruntime {of('onnxruntime')}"
    return f"args-local {of('args-local')} (llama-cpp-python {of('llama-cpp-python')}, {runtime})"


class _VersionAction(argparse.Action):
    """--version, its line built only when asked: reading package metadata costs every command ~20 ms."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the versions of args-local, llama-cpp-python and onnxruntime, and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="args-local", description="Reward-guided decoding (ARGS) for local GGUF models.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"args_local.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"args_local.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        interrupts.install()
        args = build_parser().parse_args(argv)  # inside the try: building it imports every command
        code = args.run(args) or 0
        sys.stdout.flush()  # here, where a closed pipe or a full disk is caught, not in Python's flush at exit
        return code
    except UserError as e:
        from .commands.options import as_options

        print(f"args-local: error: {as_options(str(e))}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Exception) as e:
        if interrupts.interrupted(e):
            interrupts.handled()
            print("\nargs-local: interrupted", file=sys.stderr)
            return 130
        if isinstance(e, BrokenPipeError):  # the reader left (`| head`): stop as quietly as a program SIGPIPE ends
            _drop_unwritable_stdout()
            return 141
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):  # a fault, not a bug
            _drop_unwritable_stdout()
            where = f" writing {e.filename}" if e.filename else ""
            print(f"args-local: error: no space left on the disk{where}; free some space and run it again",
                  file=sys.stderr)
            return 2
        raise  # a bug: it keeps its traceback


def _drop_unwritable_stdout() -> None:
    """Point stdout at /dev/null if it cannot take what is still buffered, so that Python's own flush at
    exit does not print a second error (or a traceback) about it."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
