"""The retry backoff of the consumer's flush and the writer's ClickHouse write."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.backoff import Backoff, poll_until


def test_doubles_up_to_the_cap_and_resets() -> None:
    async def run() -> list[float]:
        b = Backoff(first_s=0.01, cap_s=0.04)
        stopping = asyncio.Event()
        seen = []
        for _ in range(4):
            seen.append(b.delay_s)
            assert await b.wait(stopping) is False
        b.reset()
        seen.append(b.delay_s)
        return seen

    assert asyncio.run(run()) == [0.01, 0.02, 0.04, 0.04, 0.01]


def test_a_stop_request_ends_the_wait_at_once() -> None:
    async def run() -> tuple[bool, float]:
        b = Backoff(first_s=30.0)
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stopping.set)
        t0 = time.monotonic()
        stopped = await b.wait(stopping)
        return stopped, time.monotonic() - t0

    stopped, waited = asyncio.run(run())
    assert stopped is True and waited < 5


def test_retry_retries_only_what_it_is_told_and_counts_each_failure_and_retry() -> None:
    from streams.backoff import retry

    async def run() -> tuple[str, list[tuple[str, float]], int]:
        outcomes: list[BaseException | str] = [KeyError("a"), KeyError("b"), "done"]
        failures: list[tuple[str, float]] = []
        retries = 0

        async def attempt() -> str:
            out = outcomes.pop(0)
            if isinstance(out, BaseException):
                raise out
            return out

        def on_retry() -> None:
            nonlocal retries
            retries += 1

        got = await retry(attempt, KeyError, backoff=Backoff(0.001, 0.002),
                          on_failure=lambda exc, d: failures.append((str(exc), d)),
                          on_retry=on_retry)
        return got, failures, retries

    got, failures, retries = asyncio.run(run())
    assert got == "done"
    assert failures == [("'a'", 0.001), ("'b'", 0.002)]  # the delay about to be waited
    assert retries == 2

    async def other() -> None:
        async def attempt() -> None:
            raise ValueError("not retried")

        await retry(attempt, KeyError, backoff=Backoff(0.001))

    try:
        asyncio.run(other())
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a ValueError is not a KeyError: raised at once")


def test_retry_with_attempts_raises_the_last_failure() -> None:
    from streams.backoff import retry

    async def run() -> tuple[list[int], list[str]]:
        calls: list[int] = []
        failures: list[str] = []

        async def attempt() -> None:
            calls.append(len(calls))
            raise KeyError(len(calls))

        try:
            await retry(attempt, KeyError, backoff=Backoff(0.001), attempts=3,
                        on_failure=lambda exc, d: failures.append(str(exc)))
        except KeyError as exc:
            failures.append(f"raised {exc}")
        return calls, failures

    calls, failures = asyncio.run(run())
    assert calls == [0, 1, 2]
    assert failures == ["1", "2", "raised 3"]  # no wait after the last attempt


def test_poll_until_returns_the_first_answer_or_none_at_the_deadline() -> None:
    calls: list[float] = []

    def third_time(remaining_s: float) -> str | None:
        calls.append(remaining_s)
        return "up" if len(calls) == 3 else None

    assert poll_until(third_time, 5.0, 0.01) == "up"
    assert len(calls) == 3 and all(0 < r <= 5.0 for r in calls)
    assert calls == sorted(calls, reverse=True)  # the time left only shrinks
    calls.clear()
    t0 = time.monotonic()
    assert poll_until(lambda r: calls.append(r), 0.1, 0.02) is None  # type: ignore[func-returns-value]
    assert 0.1 <= time.monotonic() - t0 < 1.0
    assert calls[-1] == 0.0  # a last attempt at the deadline


def test_poll_until_lets_an_attempt_give_up_early() -> None:
    def gone(_remaining_s: float) -> None:
        raise RuntimeError("the process exited")

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="exited"):
        poll_until(gone, 30.0, 0.01)
    assert time.monotonic() - t0 < 1.0
