"""Run the emulator's CLI with ``TCP_NODELAY`` on its listening socket (accepted connections inherit it).

The emulator binds its own listening socket as ``socket.socket(AF_INET, SOCK_STREAM)`` (protocol 0),
so asyncio does not recognise its connections as TCP and leaves Nagle's algorithm on: on a
keep-alive connection every request after the first then waits for the client's delayed ACK,
about 40 ms on Linux (measured here: a second ``GET /_emulator/health`` on one connection takes
43 ms against 0.6 ms with the option set). A real file service sets ``TCP_NODELAY``, and the stall
would penalise exactly the clients that reuse connections (the hook), so the benchmarks start the
emulator through this module until the emulator sets the option itself; then this is a no-op.

``python -m benchmarks.emulator_tcp [the emulator's CLI options]``.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from capillary_emulator import server


def _build_server_with_nodelay(*args: Any, **kwargs: Any) -> Any:
    built = _build_server(*args, **kwargs)
    listening: socket.socket = built[1]
    listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return built


_build_server = server.build_server

if __name__ == "__main__":
    from capillary_emulator.__main__ import main

    server.build_server = _build_server_with_nodelay
    sys.exit(main())
