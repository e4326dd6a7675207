"""The progress of a verification, and one round of requests to the storage.

A verification runs in rounds: each round fetches every file not verified yet, at most
``max_workers`` at once, judges each answer with :class:`~airflow_capillary.verification.rules.AnswerJudge`
and records the verdicts in a :class:`VerificationState` (verified files, consecutive failures per
file, the longest ``Retry-After``, the first failure). The sensor runs one round per poke
(:meth:`VerificationState.run_round_sync`); the trigger runs rounds until every file is verified,
one fails, or its deadline passes. Both use the same asynchronous client
(:class:`~airflow_capillary.verification.storage.ClientSettings`), so the request, its redirects
(each checked against the origin policy) and the bounded read of the body are written once, and
a deadline bounds a round in progress, not only the waits between rounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from airflow_capillary._redact import redact_text
from airflow_capillary.exceptions import (
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
    CapillarySecureUrlExpiredError,
    CapillaryServiceUnavailableError,
    CapillaryVerificationError,
)
from airflow_capillary.verification.rules import AnswerJudge, ExpectedFile, Verdict, url_secrets
from airflow_capillary.verification.storage import ClientSettings

__all__ = [
    "CHUNK_SIZE",
    "ERROR_KINDS",
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "Failure",
    "VerificationState",
    "judge_transport_error",
    "kind_of",
    "probe",
    "redirect_refused",
    "request_headers",
]

#: Size of the chunks in which a body is hashed.
CHUNK_SIZE = 256 * 1024
#: Redirects followed at most for one file (each to an allowed origin).
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Error kinds carried by trigger events and the exception each one raises. :func:`kind_of` walks
#: it in order and takes the first class the exception is an instance of, so a subclass comes
#: before its base and ``internal`` (the base of them all) comes last.
ERROR_KINDS: dict[str, type[CapillaryError]] = {
    "expired": CapillarySecureUrlExpiredError,
    "verification": CapillaryVerificationError,
    "unavailable": CapillaryServiceUnavailableError,
    "rejected": CapillaryRequestRejectedError,
    "invalid": CapillaryInvalidInputError,
    "config": CapillaryConfigError,
    "internal": CapillaryError,
}


def kind_of(exc: CapillaryError) -> str:
    """The error kind of an exception, by ``isinstance`` through :data:`ERROR_KINDS`.

    :param exc: a provider error.
    :return: the first kind whose class ``exc`` is an instance of (``internal`` at worst).
    """
    return next(kind for kind, cls in ERROR_KINDS.items() if isinstance(exc, cls))


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why verification failed, in a form that survives a trigger event (JSON-safe).

    :param kind: a key of :data:`ERROR_KINDS`.
    :param message: what failed and what to do (no URL).
    :param file_name: the first failing file.
    :param namespace: its namespace.
    :param status_code: the HTTP status, if any.
    """

    kind: str
    message: str
    file_name: str | None = None
    namespace: str | None = None
    status_code: int | None = None

    @classmethod
    def from_exception(cls, exc: CapillaryError) -> Failure:
        """The failure an exception stands for.

        :param exc: a provider error.
        :return: the failure, its kind by :func:`kind_of`.
        """
        return cls(kind_of(exc), exc.message, exc.file_name, exc.namespace, exc.status_code)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Failure | None:
        """Read an ``error`` event back.

        :param event: the event payload.
        :return: the failure, or ``None`` when the payload is not one :meth:`to_event` writes.
        """
        kind, message = event.get("kind"), event.get("message")
        if kind not in ERROR_KINDS or not isinstance(message, str):
            return None
        return cls(kind, message, event.get("file_name"), event.get("namespace"), event.get("status_code"))

    def to_exception(self, conn_id: str | None = None) -> CapillaryError:
        """Build the matching exception.

        :param conn_id: the connection in use, for the exception's attributes.
        :return: an instance of ``ERROR_KINDS[kind]`` (:class:`CapillaryError` for an unknown kind).
        """
        cls = ERROR_KINDS.get(self.kind, CapillaryError)
        return cls(
            self.message,
            status_code=self.status_code,
            conn_id=conn_id,
            file_name=self.file_name,
            namespace=self.namespace,
        )

    def to_event(self) -> dict[str, Any]:
        """The payload of an ``error`` trigger event.

        :return: ``{"status": "error", "kind", "message", "file_name", "namespace", "status_code"}``.
        """
        return {"status": "error", **dataclasses.asdict(self)}


def request_headers(check: str) -> dict[str, str]:
    """Headers of the verification ``GET``: the stored bytes as they are (no content coding), and
    a one-byte range in size mode. ``GET`` with a range rather than ``HEAD``: an S3 pre-signed URL is
    signed for one method, and Capillary's ``secureFilePath`` is signed for ``GET`` (real S3 refuses
    ``HEAD`` on it with 403).

    :param check: ``"size"`` or ``"sha256"``.
    :return: the headers (never any Capillary credential: the URL carries its own signature).
    """
    identity = {"Accept-Encoding": "identity"}
    return {**identity, "Range": "bytes=0-0"} if check == "size" else identity


def judge_transport_error(expected: ExpectedFile, exc: BaseException, urls: Sequence[str] = ()) -> Verdict:
    """Decide after a request raised instead of answering.

    :param expected: the file.
    :param exc: the exception (an ``httpx`` error, usually).
    :param urls: the URLs requested (the secure URL and the redirects followed): masked.
    :return: wait (transient) for timeouts, network and protocol errors; fail for anything else
        (an unsupported scheme, an invalid URL).
    """
    text = redact_text(f"{type(exc).__name__}: {exc}", url_secrets([expected.url, *urls]))
    transient = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
    if isinstance(exc, transient):
        return Verdict("wait", f"{expected.label}: {text}; waiting", transient=True)
    return Verdict("fail", f"{expected.label}: the request failed: {text}", kind="rejected")


def redirect_refused(expected: ExpectedFile, status: int | None, reason: str) -> Verdict:
    """Decide after a redirect that is not followed.

    :param expected: the file.
    :param status: the redirect's HTTP status (``None`` when there were too many).
    :param reason: why (names the target's origin, never its path or query).
    :return: fail (``rejected``).
    """
    if status is None:
        return Verdict("fail", f"{expected.label}: {reason}", "rejected")
    answered = f"the storage answered HTTP {status} with a redirect that is not followed"
    return Verdict("fail", f"{expected.label}: {answered}: {reason}", "rejected", status)


async def probe(
    client: httpx.AsyncClient, expected: ExpectedFile, check: str, settings: ClientSettings
) -> Verdict:
    """Fetch one secure URL and judge the answer.

    Redirects are followed here, hop by hop (at most :data:`MAX_REDIRECTS`), each ``Location``
    checked against the origin policy first. The body is read raw (``Accept-Encoding: identity``:
    the bytes the storage holds, never a decompressed stream of unknown size) and only as far as
    the judge wants: the expected size plus one byte.

    :param client: the round's client (it follows no redirect itself).
    :param expected: the file.
    :param check: ``"size"`` or ``"sha256"``.
    :param settings: the client's settings (origin policy, ``Retry-After`` cap).
    :return: the final verdict.
    """
    judge = AnswerJudge(expected, check, settings.retry_after_max)
    url = expected.url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with client.stream("GET", url, headers=request_headers(check)) as response:
                location = response.headers.get("Location")
                if response.status_code in REDIRECT_STATUSES and location:
                    target = str(response.url.join(location))
                    refusal = settings.policy.redirect_refusal(url, target)
                    if refusal is not None:
                        return redirect_refused(expected, response.status_code, refusal)
                    url = target
                    judge.urls.append(url)
                    continue
                verdict = judge.on_headers(response.status_code, response.headers)
                if verdict is not None:
                    return verdict
                async for chunk in response.aiter_raw(CHUNK_SIZE):
                    if not judge.feed(chunk):
                        break
                return judge.finish()
        return redirect_refused(expected, None, f"the storage redirected more than {MAX_REDIRECTS} times")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return judge_transport_error(expected, exc, judge.urls)


class VerificationState:
    """Progress of one sensor or trigger: which files are verified, and consecutive failures.

    :param files: the files to verify.
    :param check: ``"size"`` or ``"sha256"``.
    :param max_consecutive_failures: fail a file after this many transient failures in a row
        (connection errors, timeouts, 408/425/429, 5xx); ``None`` for no bound. A 404 is a plain
        wait: it does not count, and resets the count (the storage did answer).
    :param verified: indices already verified (e.g. by the sensor's first poke, before deferring).
    """

    def __init__(
        self,
        files: Sequence[ExpectedFile],
        check: str,
        max_consecutive_failures: int | None,
        verified: Iterable[int] = (),
    ) -> None:
        self.files = list(files)
        self.check = check
        self.max_consecutive_failures = max_consecutive_failures
        self.verified: set[int] = set(verified)
        self.failures: dict[int, int] = {}
        self.retry_after: float | None = None
        self.failure: Failure | None = None

    @property
    def pending(self) -> list[ExpectedFile]:
        """Files not verified yet, in input order."""
        return [f for f in self.files if f.index not in self.verified]

    @property
    def done(self) -> bool:
        """Whether every file is verified."""
        return not self.pending

    async def run_round(
        self,
        client: httpx.AsyncClient,
        settings: ClientSettings,
        max_workers: int,
        deadline: float | None = None,
    ) -> list[str]:
        """Fetch every pending file (at most ``max_workers`` at once) and record the verdicts.

        :param client: the client (from :meth:`ClientSettings.client`).
        :param settings: its settings (origin policy, ``Retry-After`` cap).
        :param max_workers: files fetched at once.
        :param deadline: wall-clock time (epoch seconds) that ends the round: a request still in
            flight then (a slow or endless answer) is cancelled and its file keeps waiting.
        :return: the messages of the files still waiting (see :meth:`apply`).
        """
        semaphore = asyncio.Semaphore(max_workers)

        async def one(expected: ExpectedFile) -> Verdict:
            async with semaphore:
                return await probe(client, expected, self.check, settings)

        pending = self.pending
        timeout = None if deadline is None else deadline - time.time()
        if not pending or (timeout is not None and timeout <= 0):
            return self.apply([(f, _too_late(f)) for f in pending])
        tasks = [asyncio.ensure_future(one(f)) for f in pending]
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)  # let each close its response
        return self.apply(
            [(f, _too_late(f) if t in late else t.result()) for f, t in zip(pending, tasks, strict=True)]
        )

    def run_round_sync(
        self, settings: ClientSettings, max_workers: int, deadline: float | None = None
    ) -> list[str]:
        """:meth:`run_round` with a client of its own, from synchronous code (the sensor's poke).

        :param settings: the client settings.
        :param max_workers: files fetched at once.
        :param deadline: wall-clock time (epoch seconds) that ends the round.
        :return: the messages of the files still waiting.
        """

        async def round_() -> list[str]:
            async with settings.client() as client:
                return await self.run_round(client, settings, max_workers, deadline)

        return asyncio.run(round_())

    def apply(self, results: Sequence[tuple[ExpectedFile, Verdict]]) -> list[str]:
        """Record the verdicts of one round.

        Sets :attr:`failure` when a file failed or ran out of consecutive failures (every failing
        file of the round is named; the error type is the first one's), and :attr:`retry_after`
        to the longest ``Retry-After`` of the round.

        :param results: each pending file with its verdict.
        :return: the messages of the files still waiting, for one log line.
        """
        self.retry_after = None
        failed: list[tuple[ExpectedFile, Verdict]] = []
        waiting: list[str] = []
        for expected, verdict in sorted(results, key=lambda item: item[0].index):
            if verdict.decision == "done":
                self.verified.add(expected.index)
                self.failures.pop(expected.index, None)
            elif verdict.decision == "fail":
                failed.append((expected, verdict))
            else:
                count = self.failures.get(expected.index, 0) + 1 if verdict.transient else 0
                self.failures[expected.index] = count
                limit = self.max_consecutive_failures
                if limit is not None and count >= limit:
                    failed.append((expected, _exhausted(verdict, count)))
                    continue
                waiting.append(verdict.message)
                if verdict.retry_after is not None:
                    self.retry_after = max(self.retry_after or 0.0, verdict.retry_after)
        if failed:
            self.failure = _combine(failed)
        return waiting

    def next_wait(self, poll_interval: float, remaining: float | None = None) -> float:
        """Seconds before the next round: the poll interval, longer if the storage asked.

        :param poll_interval: the sensor's poke interval.
        :param remaining: seconds left before the deadline, if any (the wait never passes it).
        :return: a non-negative number of seconds.
        """
        wait = max(poll_interval, self.retry_after or 0.0)
        if remaining is not None:
            wait = min(wait, remaining)
        return max(0.0, wait)


def _too_late(expected: ExpectedFile) -> Verdict:
    return Verdict("wait", f"{expected.label}: no whole answer before the deadline; waiting")


def _exhausted(verdict: Verdict, count: int) -> Verdict:
    return Verdict(
        "fail",
        f"{verdict.message.removesuffix('; waiting')}; giving up after {count} consecutive failures: "
        "check that the storage is reachable from Airflow (proxy, TLS settings of the connection)",
        kind="unavailable",
        status_code=verdict.status_code,
    )


def _combine(failed: Sequence[tuple[ExpectedFile, Verdict]]) -> Failure:
    first_file, first = failed[0]
    message = first.message
    if len(failed) > 1:
        others = "; ".join(v.message for _, v in failed[1:6])
        more = f" (and {len(failed) - 6} more)" if len(failed) > 6 else ""
        message = f"{message}. {len(failed) - 1} other file(s) failed too: {others}{more}"
    return Failure(
        kind=first.kind or "verification",
        message=message,
        file_name=first_file.name,
        namespace=first_file.namespace,
        status_code=first.status_code,
    )
