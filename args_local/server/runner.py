"""Running the app with uvicorn on a socket bound beforehand; one line once it accepts requests."""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette


class AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, announce: str):
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.should_exit:  # listening: the line tools wait for
            print(self.announce, flush=True)


def run(app: Starlette, sock: socket.socket, announce: str) -> None:
    # uvicorn's own info lines and access log are off: the announce line says what matters
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3)
    AnnouncingServer(config, announce).run(sockets=[sock])
