"""One exception type for everything a user can fix.

The CLI and the TUI print its message and nothing else (exit code 2); any other exception
is a bug and keeps its traceback. A message names a setting as Python writes it (max_new_tokens,
n_ctx); the CLI prints it as its option (commands/options.py, as_options).
"""


class UserError(Exception):
    """Bad input, missing models, invalid settings: the message says what to do."""


class PromptTooLong(UserError):
    """The prompt leaves no room for a reply in the policy's context (the server answers OpenAI's
    context_length_exceeded, which clients look for to shorten a conversation)."""


class RewardError(UserError):
    """The reward model returned something unusable (NaN, inf) at a given step."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message if step is None else f"step {step}: {message}")
        self.step = step
