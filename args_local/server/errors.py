"""Errors as the OpenAI API shapes them: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from starlette.responses import JSONResponse

from ..errors import PromptTooLong, RewardError, UserError

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         500: "server_error", 503: "server_error"}


class APIError(Exception):
    """A request the server answers with an error status; the message says what to change."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def unknown_model(asked, served: str) -> APIError:
    return APIError(404, f"model {asked!r} is not served here; use {served!r} (GET /v1/models lists it)",
                    code="model_not_found", param="model")


def as_api_error(e: Exception) -> APIError:
    """Any exception a request ended on, as the error its client is sent."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, PromptTooLong):  # OpenAI's code for it: clients look for it to shorten the conversation
        return APIError(400, str(e), code="context_length_exceeded", param="messages")
    if isinstance(e, RewardError):  # the reward model failed (a damaged file): not the request's fault
        return APIError(500, f"the reward model failed: {e}", code="reward_model_error")
    if isinstance(e, UserError):
        return APIError(400, str(e))
    return APIError(500, f"internal error: {type(e).__name__}: {e}")  # a bug; the log has its traceback
