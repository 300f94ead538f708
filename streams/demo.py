"""``c2m demo``: embedded broker + worker + simulator + a live terminal view, one process."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer

from schemas.contract import TOPIC_ORDERS
from streams.app import PulseApp, ledger_totals
from streams.runner import configure_logging, kafka_bootstrap, run_worker
from streams.settings import Settings, mask_url
from streams.sim.model import HOUR_MS, seasonality
from streams.sim.producer import run_simulation
from streams.sim.scenario import Scenario
from streams.termtext import pad

#: Printed at the end of the demo for the user to try: the top cells by units of the last
#: day of event time, hours in the market's zone. {db} is the database identifier, {tz}
#: the market's time zone (an IANA name: letters, digits, "/", "_", "+", "-").
EXAMPLE_QUERY = (
    "SELECT toTimeZone(window_start, '{tz}') AS hour_start, category, color, size, "
    "price_band, sum(units) AS units FROM {db}.demand_by_attribute "
    "WHERE window_seconds = 3600 AND window_start >= now() - INTERVAL 1 DAY "
    "GROUP BY ALL ORDER BY units DESC LIMIT 10"
)
#: the window size whose units the closing summary counts: every unit is in exactly one
#: window of each size, so summing over all sizes would count it three times
SUMMARY_WINDOW_S = 300

#: A few broken messages so the dead-letter path is visible in the demo.
_POISON = (
    b"this is not json",
    b'["an", "array"]',
    b'{"event_id":"demo-bad-1","event_type":"order_placed","ts":"yesterday","shop_id":"s",'
    b'"order_id":"o","region":"r","buyer_id":"b","lines":[{"sku":"x","qty":1,"unit_price":1}]}',
)


def _fmt_row(cols: list[str], widths: list[int]) -> str:
    return "  ".join(pad(c, w) for c, w in zip(cols, widths, strict=False))


def web_view_url(settings: Settings) -> str:
    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached on loopback
        host = "127.0.0.1"
    return f"http://{host}:{settings.web_port}/view"


def c2m_command() -> str:
    """How this user runs ``c2m``: plain ``c2m`` when it is on the PATH, else the path of
    the venv's script (relative to the current directory when below it)."""
    script = Path(sys.executable).parent / "c2m"
    found = shutil.which("c2m")
    if found and Path(found).resolve() == script.resolve():
        return "c2m"
    if not script.exists():
        return "python -m streams.cli"
    return _near(script)


def _near(path: Path) -> str:
    """``path`` relative to the current directory when it is below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def closing_lines(settings: Settings, command: str | None = None) -> str:
    """What to do next, printed when the demo stops: commands that work as printed."""
    cmd = command or c2m_command()
    example = EXAMPLE_QUERY.replace("{db}", settings.clickhouse_database).replace(
        "{tz}", settings.timezone)
    activate = Path(sys.executable).parent / "activate"
    how = ""
    if cmd != "c2m":  # not on the PATH: the README's install does not activate the venv
        how = f"  (c2m is not on your PATH: run it as {cmd}" + (
            f", or first `source {_near(activate)}`, then just c2m)\n"
            if activate.exists() else ")\n")
    return (
        f"Web view (while a demo or worker runs): {web_view_url(settings)}\n"
        f"Try:\n"
        f"  {cmd} query \"{example}\"\n"
        f"  {cmd} demo --history-days 7     # a week of history: alerts and the brief\n"
        f"  {cmd} brief --category 袜子      # production brief (needs complete hours)\n"
        f"{how}"
        f"Start over: delete {settings.data_dir}/ (the embedded broker starts empty every "
        "run anyway; a second demo resets the database and says so)"
    )


def live_rows(rows: list[tuple[Any, ...]], n: int = 8) -> list[tuple[Any, ...]]:
    """The live table's rows (``top_cells``): cells that sold units. Cells with page views
    or cancellations only are not "top cells by units" (during catch-up they were most)."""
    return [r for r in rows if r[7]][:n]


class LiveView:
    def __init__(self, pulse: PulseApp, out: TextIO = sys.stdout) -> None:
        self.pulse = pulse
        self.out = out
        self.tty = out.isatty()
        self._last: tuple[float, int] = (time.monotonic(), 0)
        self._ticks = 0
        self.url = web_view_url(pulse.settings)

    async def run(self) -> None:
        if not self.tty:
            print(f"c2m-pulse demo: web view {self.url} (Ctrl-C to stop)", file=self.out,
                  flush=True)
        while True:
            await asyncio.sleep(1.0)
            await self.render()

    async def render(self) -> None:
        totals = ledger_totals(self.pulse.engine)
        now = time.monotonic()
        t0, c0 = self._last
        rate = (totals["consumed"] - c0) / max(now - t0, 1e-6)
        self._last = (now, totals["consumed"])
        self._ticks += 1
        head = (
            f"events/s {rate:8.0f} | consumed {totals['consumed']:>9} | "
            f"dead letters {totals['dead_lettered']:>4} | duplicates {totals['duplicates']:>4} | "
            f"late {totals['late']:>3} | catalog SKUs {len(self.pulse.engine.catalog)}"
        )
        if not self.tty:
            if self._ticks % 5 == 0:
                print(head, file=self.out, flush=True)
            return
        rows = live_rows(
            await self.pulse.pipeline.io(self.pulse.direct_store().top_cells, 300, 20))
        lines = [
            f"c2m-pulse demo   web view {self.url}   (Ctrl-C to stop)"
            + ("   [previous run's numbers reset: the embedded broker starts empty]"
               if self.pulse.database_reset else ""),
            f"broker {self.pulse.bootstrap}   "
            f"ClickHouse {mask_url(self.pulse.settings.effective_clickhouse_url)}",
            "",
            head,
            "",
        ]
        if rows:
            cal = self.pulse.engine.calendar
            t = int(rows[0][0].replace(tzinfo=UTC).timestamp())  # naive UTC from ClickHouse
            start = f"{cal.format(t)} {cal.abbreviation(t)}"
            lines.append(f"top cells by units, 5-minute window starting {start} "
                         f"({cal.timezone})")
            widths = [10, 8, 8, 8, 8, 6, 6, 10]
            lines.append(_fmt_row(
                ["category", "color", "size", "price", "region", "units", "orders", "gmv CNY"],
                widths,
            ))
            for r in rows:
                lines.append(_fmt_row(
                    [str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                     str(r[7]), str(r[6]), f"{r[8]:.2f}"],
                    widths,
                ))
        else:
            lines.append("waiting for the first units ...")
        cols = shutil.get_terminal_size((100, 30)).columns
        self.out.write("\x1b[H\x1b[2J" + "\n".join(ln[:cols] for ln in lines) + "\n")
        self.out.flush()


def history_options(start_ms: int, days: float) -> dict[str, Any]:
    """Simulator options for a demo with ``days`` of history: the alert scenario (SKUs
    heading for stockout, colours taking off on the last day)."""
    # the surges start at 10:00 China time (02:00 UTC) on the last day of the history
    last_day = (start_ms + int(max(days - 1, 0.5) * 86_400_000)) // 86_400_000 * 86_400_000
    surge = last_day + 2 * 3_600_000
    return {
        "n_skus": 60,
        "orders_per_hour": 200.0,
        "scenario": Scenario(surge_start_ms=surge),
    }


#: Wall seconds (at the demo's speed) after which the live demo's first hour of event time
#: ends, whatever the clock's minute: the brief counts hours that have ended, so a
#: one-minute demo shows one after this long. Half of the minute: a machine that sends
#: and counts only half as many events a second as asked (a busy laptop) still gets there.
FIRST_HOUR_WALL_S = 30

#: The live demo's market (``ShopSimulator`` options): 30 shops, each product listed by 10
#: of them (48 products), so that most cells (category, colour, size, price band) have
#: the k = 3 shops the market numbers need (``C2M_MIN_SHOPS_PER_SIGNAL``): with the
#: simulator's default 5 shops, each SKU its own product, nearly every cell had one shop,
#: and the web view's colours, sizes and price bands were all folded into "其他 other".
LIVE_MARKET: dict[str, Any] = {"n_shops": 30, "n_skus": 480, "shops_per_product": 10}

#: Events the simulator emits per order of its sessions (page views, the order, its
#: cancellation), and per order an hour of the daily mean for the shipments, deliveries
#: and returns of the orders placed before the run (the warm start: at the daily mean
#: rate, whatever the hour). Measured on the simulator (``tests/unit/test_demo_start.py``);
#: ``streams.sim.producer.EVENTS_PER_ORDER`` (20, for ``c2m simulate``) is about their sum.
SESSION_EVENTS_PER_ORDER = 19.0
WARM_EVENTS_PER_ORDER = 2.5


def live_start_ms(now_ms: int, span_s: float, speed: float) -> int:
    """Where a live demo's event time starts: ``span_s`` before now, moved back so that its
    first hour ends ``FIRST_HOUR_WALL_S`` wall seconds into the run (at most 59 event
    minutes), whatever the clock's minute. The brief counts hours that have ended: started
    at 13:01, the first hour would end only 59 wall seconds in at the default speed, and a
    one-minute demo would show no brief. Never later than ``now_ms - span_s``: no event
    from the future."""
    start = int(now_ms - span_s * 1000)
    lead = min(int(FIRST_HOUR_WALL_S * speed * 1000), 59 * 60_000)
    return start // 3_600_000 * 3_600_000 - lead


def first_hour_end_ms(start_ms: int) -> int:
    """The end of the first hour of event time of a run that starts at ``start_ms``."""
    return start_ms // HOUR_MS * HOUR_MS + HOUR_MS


def live_orders_per_hour(rate: float, speed: float, start_ms: int, span_s: float,
                         n_skus: int = LIVE_MARKET["n_skus"]) -> float:
    """The live demo's market: as many orders an hour as put the busiest moment of its
    event time at ``rate`` events a second at ``speed``. The events of an hour are the
    sessions' (orders an hour times the China-time traffic curve: the evening peak is
    2.15x the daily mean, the night trough 0.14x) plus the warm start's logistics (at
    the daily mean rate at any hour: at night most of the traffic) plus an hourly stock
    level per SKU. ``rate`` is a cap: a market sized for the daily mean would need twice
    the cap in the evening, one sized for the sessions alone 1.3x the cap at night; the
    event clock would fall behind the wall clock and the first hour would end too late
    for a one-minute demo to show a brief. (The promotion still goes over the cap: its
    spike slows the clock while it lasts, which is why it starts after the first hour:
    ``live_promotion``.)"""
    end_ms = start_ms + int(span_s * 1000)
    # the traffic curve is linear between hour boundaries: its peak is at one of them or
    # at an end of the span
    points = [start_ms, end_ms, *range(start_ms - start_ms % HOUR_MS + HOUR_MS, end_ms, HOUR_MS)]
    per_hour = rate * 3600.0 / speed  # events an hour of event time
    # the stock levels' share, but never more than half (a tiny --rate still has orders)
    per_hour = max(per_hour - n_skus, per_hour / 2)
    per_order = SESSION_EVENTS_PER_ORDER * max(seasonality(t) for t in points)
    return per_hour / (per_order + WARM_EVENTS_PER_ORDER)


def live_promotion(start_ms: int, span_s: float) -> tuple[int, float]:
    """(start, hours) of the live demo's promotion: in the middle of the run, so a spike
    shows up, but never before the first hour has ended plus a twelfth of the run. Its
    traffic (4x) goes over the rate, so event time slows while it lasts: before the end
    of the first hour it made a one-minute demo end without a complete hour (the first
    hour ended 70 s in instead of 40)."""
    promo_ms = max(start_ms + int(span_s * 500),
                   first_hour_end_ms(start_ms) + int(span_s * 1000 / 12))
    return promo_ms, max(span_s / 3600 / 12, 1 / 12)


def live_sim_options(rate: float, speed: float, start_ms: int, span_s: float) -> dict[str, Any]:
    """``ShopSimulator`` options of a live demo (no ``--history-days``) whose event time
    starts at ``start_ms`` and covers ``span_s``."""
    promo_ms, promo_hours = live_promotion(start_ms, span_s)
    return {
        **LIVE_MARKET,
        "orders_per_hour": live_orders_per_hour(rate, speed, start_ms, span_s),
        "promo_start_ms": promo_ms,
        "promo_hours": promo_hours,
    }


def run_demo(
    settings: Settings,
    *,
    duration_s: float | None,
    rate: float,
    seed: int,
    speed: float,
    history_days: float = 0.0,
) -> int:
    configure_logging(settings.log_level)
    # One process owns the embedded ClickHouse here: the demo always writes directly.
    settings = settings.model_copy(update={"sink": "clickhouse"})
    span_s = (duration_s if duration_s is not None else 6 * 3600 / speed) * speed
    start_ms = live_start_ms(int(time.time() * 1000), span_s, speed)
    result: dict[str, Any] = {}
    if history_days > 0:
        start_ms = int(time.time() * 1000 - history_days * 86_400_000)
        sim_options = history_options(start_ms, history_days)
        sim_rate: float | None = None  # history as fast as it goes, then real time
        sim_speed = 1e9
    else:
        sim_options = live_sim_options(rate, speed, start_ms, span_s)
        sim_rate, sim_speed = rate, speed

    async def simulator(pulse: PulseApp) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=pulse.bootstrap, **settings.kafka_producer_config()
        )
        await producer.start()
        try:
            for value in _POISON:
                await producer.send_and_wait(TOPIC_ORDERS, value, key=b"demo-poison")
        finally:
            await producer.stop()
        result["produced"] = await run_simulation(
            pulse.bootstrap, seed=seed, rate=sim_rate, duration_s=None, speed=sim_speed,
            start_ms=start_ms, producer_config=settings.kafka_producer_config(),
            sim_options=sim_options,
        )

    async def live(pulse: PulseApp) -> None:
        await LiveView(pulse).run()

    def summary(pulse: PulseApp) -> None:
        totals = ledger_totals(pulse.engine)
        db = settings.clickhouse_database
        rows = pulse.direct_store().totals(SUMMARY_WINDOW_S)
        cal = pulse.engine.calendar
        now = int(time.time())
        print(
            f"\nc2m-pulse demo stopped at {cal.format(now, '%H:%M:%S')} "
            f"{cal.abbreviation(now)} ({cal.timezone}).\n"
            f"  consumed {totals['consumed']} events: {totals['processed']} processed, "
            f"{totals['dead_lettered']} dead-lettered, {totals['duplicates']} duplicates, "
            f"{totals['late']} late\n"
            f"  {db}.demand_by_attribute: {rows[1]:,} units ordered, counted once in the "
            f"5-minute windows ({rows[0]:,} cells; the hourly and daily windows hold the "
            "same units)\n"
            f"  alerts: {pulse.alerts.hours_evaluated if pulse.alerts else 0} event-time hours "
            "evaluated\n"
            f"  data: ClickHouse (chDB) at {mask_url(settings.effective_clickhouse_url)}, "
            f"database {db}"
            + (" (reset at the start: the embedded broker keeps nothing between runs, so "
               "the previous run's numbers were dropped)" if pulse.database_reset else "")
            + "\n\n" + closing_lines(settings),
            flush=True,
        )

    with kafka_bootstrap(settings) as bootstrap:
        run_worker(
            settings, bootstrap, tasks=(simulator, live), duration_s=duration_s,
            on_stopped=summary,
        )
    return 0
