"""Running the app with uvicorn on a socket bound beforehand; one line once it accepts requests."""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette

from .app import SHUTDOWN_GRACE_S


class AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, announce: str):
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.should_exit:  # listening: the line tools wait for
            print(self.announce, flush=True)

    async def shutdown(self, sockets=None) -> None:
        # uvicorn waits for open requests before it stops the app: end the replies now, or a
        # long one runs until the wait times out and uvicorn cancels it (a traceback, a bare 500)
        self.config.app.state.stop_generations()
        await super().shutdown(sockets)


def run(app: Starlette, sock: socket.socket, announce: str) -> None:
    # uvicorn's own info lines and access log are off: the announce line says what matters. No
    # lifespan: the app has nothing to start, shutdown stops the generations, and a second Ctrl+C
    # (which skips the lifespan's end) left it to be cancelled as the loop closed: a logged traceback
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S + 1)
    AnnouncingServer(config, announce).run(sockets=[sock])
