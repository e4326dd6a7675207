"""Progress of a verification across rounds, shared by the sensor's pokes and the trigger's loop.

:mod:`airflow_capillary._verify` decides what one answer means; :class:`VerificationState` keeps
which files are verified, counts consecutive failures per file, and turns failures into one
:class:`Failure` that becomes an exception (sensor) or an ``error`` event (trigger).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_capillary._verify import ERROR_KINDS, ExpectedFile, Verdict
from airflow_capillary.exceptions import CapillaryError


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


class VerificationState:
    """Progress of one sensor or trigger: which files are verified, and consecutive failures.

    :param files: the files to verify.
    :param max_consecutive_failures: fail a file after this many transient failures in a row
        (connection errors, timeouts, 408/425/429, 5xx); ``None`` for no bound. A 404 is a plain
        wait: it does not count, and resets the count (the storage did answer).
    :param verified: indices already verified (e.g. by the sensor's first poke, before deferring).
    """

    def __init__(
        self,
        files: Sequence[ExpectedFile],
        max_consecutive_failures: int | None,
        verified: Iterable[int] = (),
    ) -> None:
        self.files = list(files)
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

    def apply(self, results: Sequence[tuple[ExpectedFile, Verdict]]) -> list[str]:
        """Record the verdicts of one round (one poke).

        Sets :attr:`failure` when a file failed or ran out of consecutive failures (every failing
        file of the round is named; the error type is the first one's), and :attr:`retry_after`
        to the longest ``Retry-After`` of the round.

        :param results: each pending file with its final verdict (never ``read_body``).
        :return: the messages of the files still waiting, for one log line.
        """
        self.retry_after = None
        failed: list[tuple[ExpectedFile, Verdict]] = []
        waiting: list[str] = []
        for expected, verdict in sorted(results, key=lambda item: item[0].index):
            if verdict.outcome == "done":
                self.verified.add(expected.index)
                self.failures.pop(expected.index, None)
            elif verdict.outcome == "fail":
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

    def records(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The verified records, in input order (what the sensor returns to XCom).

        :param records: the flattened input records.
        :return: copies of the records whose file is verified.
        """
        return [dict(records[f.index]) for f in self.files if f.index in self.verified]


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
