"""A scripted fake of the storage behind secure URLs, plugged into the verification rounds' httpx client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from airflow_capillary.verification import storage


class Storage:
    """Scripted answers per URL path, through httpx.MockTransport; records every request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scripts: dict[str, Iterator[httpx.Response | Exception]] = {}
        self.requests: list[httpx.Request] = []
        transport = httpx.MockTransport(self.handle)
        client_kwargs = storage.client_kwargs
        monkeypatch.setattr(
            storage, "client_kwargs", lambda settings: {**client_kwargs(settings), "transport": transport}
        )

    def script(self, name: str, *answers: httpx.Response | Exception, repeat_last: bool = False) -> None:
        items = list(answers)

        def gen() -> Iterator[httpx.Response | Exception]:
            yield from items
            while repeat_last:
                yield items[-1]

        self.scripts[f"/rewards/100606/{name}"] = gen()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self.scripts[request.url.path])
        if isinstance(answer, Exception):
            raise answer
        # A stream, as the network gives (a Response built with content= counts as already read).
        headers = {"Content-Length": str(len(answer.content)), **answer.headers}
        return httpx.Response(answer.status_code, headers=headers, stream=httpx.ByteStream(answer.content))
