"""The ``c2m`` command line.

Expected failures end with one line on stderr, ``c2m: error: <what is wrong>: <what to
do>``, and an exit code from :mod:`streams.errors` (documented in the README): 2 usage,
3 configuration, 4 Kafka or ClickHouse unreachable, 5 ClickHouse refused, 1 otherwise.
The traceback is printed only with ``c2m --debug ...`` or ``C2M_LOG_LEVEL=debug``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError

from streams.core.config import MAX_OFFSET, MAX_PARTITION
from streams.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_USAGE,
    C2MError,
    ConfigError,
)
from streams.query import QueryInterrupted
from streams.settings import Settings

#: set by ``c2m --debug``
_DEBUG = {"on": False}

#: client libraries whose connection errors would flood the terminal of a short command
_CLIENT_LOGGERS = ("kafka", "aiokafka", "clickhouse_connect")


def _debug() -> bool:
    return _DEBUG["on"] or os.environ.get("C2M_LOG_LEVEL", "").strip().lower() == "debug"


def _settings(options: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """The settings, or ConfigError naming each bad variable, its value and the expected
    format. ``options``: setting -> the command-line option it came from."""
    from streams.problems import settings_problem

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, SettingsError) as exc:
        raise ConfigError(settings_problem(exc, options)) from exc


def _quiet_clients() -> None:
    """For one-shot commands: the Kafka clients' own connection logs stay silent (the
    command says in one line what failed); ``--debug`` shows them."""
    if _debug():
        logging.basicConfig(level=logging.DEBUG)
        return
    for name in _CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _problem(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception that ended a command."""
    if isinstance(exc, click.UsageError):
        ctx = exc.ctx
        where = ctx.command_path if ctx is not None else "c2m"
        if isinstance(exc, click.exceptions.NoArgsIsHelpError) and ctx is not None:
            # a group without its subcommand (its help is the exception's message)
            names = list(getattr(ctx.command, "list_commands", lambda c: [])(ctx))
            which = ("one of " if len(names) > 1 else "") + ", ".join(names)
            return EXIT_USAGE, f"{where}: missing its command: {which} (see: {where} --help)"
        message = _one_line(exc.format_message())
        # "c2m: error: c2m: ..." said c2m twice; a subcommand's path stays ("c2m demo: ")
        said = f"{message}" if where == "c2m" else f"{where}: {message}"
        return EXIT_USAGE, f"{said} (see: {where} --help)"
    if isinstance(exc, click.Abort):
        return EXIT_FAILED, "aborted"
    if isinstance(exc, click.ClickException):
        return exc.exit_code, exc.format_message()
    if isinstance(exc, (ValidationError, SettingsError)):
        from streams.problems import settings_problem

        return EXIT_CONFIG, settings_problem(exc)
    if isinstance(exc, C2MError):
        return exc.exit_code, str(exc)
    if isinstance(exc, (KeyboardInterrupt, _Interrupted)):
        return 130, "interrupted"
    text = " ".join(str(exc).split())[:300]
    return EXIT_FAILED, (f"unexpected {type(exc).__name__}: {text or '(no message)'} (a bug? "
                         "run again with c2m --debug for the traceback and report it)")


def _one_line(text: str) -> str:
    """Click's message on one line: it lists choices on lines ("Choose from:\n\ta,\n\tb"),
    and puts a sentence on a line of its own without a full stop before it ("No such
    option: --durration\nDid you mean --duration?")."""
    out = ""
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line:
            continue
        if out and out[-1].isalnum() and line[0].isupper():
            out += "."
        out = f"{out} {line}" if out else line
    # click writes the suggestion after a space: "No such option: --durration Did you ..."
    return re.sub(r"(?<=[\w-]) (?=Did you mean )", ". ", out)


class _Interrupted(Exception):
    """Ctrl-C inside a command (click would print a blank line and call it "Aborted")."""


class C2MGroup(click.Group):
    """The ``c2m`` group: every command's expected failures as one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name or "c2m", complete_var, standalone_mode=False,
                              **extra)
        except SystemExit:
            raise
        except BaseException as exc:
            if isinstance(exc, click.exceptions.NoArgsIsHelpError) and (
                    exc.ctx is None or exc.ctx.parent is None):
                exc.show()  # `c2m` alone: its help (a group's missing subcommand: one line)
                sys.exit(EXIT_USAGE)
            if isinstance(exc, (KeyboardInterrupt, _Interrupted)):
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # one Ctrl-C is enough
            code, line = _problem(exc)
            if _debug():
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"c2m: error: {line}", err=True)
            if isinstance(exc.__cause__, QueryInterrupted):
                # the embedded ClickHouse was cut short in a query: the interpreter's
                # finalisation would tear chDB down under it (a segfault)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=C2MGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True,
              help="Print the full traceback of an error (also: C2M_LOG_LEVEL=debug)")
def main(debug: bool) -> None:
    """c2m-pulse: shop events on Kafka -> demand signals for factories in ClickHouse.

    Errors end with one line on stderr and an exit code: 2 usage, 3 configuration,
    4 Kafka or ClickHouse unreachable, 5 ClickHouse refused (query, schema), 130
    interrupted (Ctrl-C), 1 otherwise (e.g. a brief with no demand).
    """
    _DEBUG["on"] = debug


@main.command()
def config() -> None:
    """Print the effective settings (secrets masked)."""
    click.echo(json.dumps(_settings().masked(), indent=2, ensure_ascii=False, default=str))


@main.group()
def db() -> None:
    """ClickHouse schema."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations from deploy/clickhouse and the retention TTLs (idempotent)."""
    from streams.clickhouse.client import connect
    from streams.clickhouse.migrations import migrate
    from streams.clickhouse.retention import apply_retention, settings_ttls

    s = _settings()
    _quiet_clients()
    client = connect(s)
    applied = migrate(client, s.clickhouse_database, timezone=s.timezone)
    click.echo(f"applied migrations: {applied or 'none (up to date)'}")
    altered = apply_retention(client, s.clickhouse_database, settings_ttls(s))
    click.echo(f"retention changed on: {', '.join(altered) or 'none (up to date)'}")


@db.command("grant")
@click.option("--factory", "-f", required=True, help="The factory, e.g. F001")
@click.option("--password-env", metavar="VAR",
              help="Take the user's password from this environment variable (default: a new "
                   "random one, printed once)")
@click.option("--print-sql", is_flag=True, help="Print the statements instead of running them")
@click.option("--users-xml", is_flag=True,
              help="Print the user as a users.xml entry instead of running anything")
def db_grant(factory: str, password_env: str | None, print_sql: bool, users_xml: bool) -> None:
    """Create (or replace) a factory's read-only ClickHouse user and row policies.

    The user reads the market views, its own alerts, catalog, SKU hours, lost sales and
    production brief, and nothing else (docs/SECURITY.md). Runs against a ClickHouse
    server (C2M_CLICKHOUSE_URL=http://...): the embedded engine has no user storage.
    """
    import os
    import secrets

    from streams.clickhouse.access import USERS_XML_PROFILE, FactoryAccess
    from streams.core.tenancy import BadFactoryId

    if print_sql and users_xml:
        raise click.UsageError("--print-sql and --users-xml print two different things: "
                               "choose one")
    if password_env is not None and not password_env.strip():
        raise click.BadParameter("must name an environment variable, or leave --password-env "
                                 "out for a new random password", param_hint="'--password-env'")
    s = _settings()
    try:
        access = FactoryAccess(s.clickhouse_database, factory)
    except BadFactoryId as exc:
        raise click.BadParameter(str(exc), param_hint="--factory") from None
    if password_env:
        password = os.environ.get(password_env, "")
        if not password:
            raise ConfigError(f"{password_env} is not set (or empty): put the user's password "
                              "in it, or leave --password-env out for a new one")
    else:
        password = secrets.token_urlsafe(24)
    if users_xml:
        click.echo(f"<!-- profiles: {USERS_XML_PROFILE} -->")
        click.echo(access.users_xml(password))
    elif print_sql:
        for stmt in access.statements(password):
            click.echo(stmt + ";")
    else:
        from streams.clickhouse.client import connect
        from streams.clickhouse.errors import sink_error

        if s.effective_clickhouse_url.startswith("chdb:"):
            raise ConfigError(
                "the embedded ClickHouse (chDB) has no user storage: run c2m db grant against "
                "a server (C2M_CLICKHOUSE_URL=http://...), or use --print-sql or --users-xml")
        client = connect(s)
        try:
            for stmt in access.statements(password):
                client.command(stmt)
        except Exception as exc:
            raise sink_error(exc, "grant", access.user) from None
        click.echo(f"user {access.user}: read-only, row policies for factory {factory}")
    if not password_env:
        click.echo(f"password for {access.user} (shown only now): {password}", err=True)


@main.command()
@click.option("--topic", required=True,
              type=click.Choice(["shop.orders", "shop.pageviews", "shop.logistics"]))
@click.option("--partition", "partitions", type=click.IntRange(0, MAX_PARTITION), multiple=True,
              help="A partition to reset (repeat for several; default: every partition of "
                   "the topic that has a checkpoint)")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
def reset(topic: str, partitions: tuple[int, ...], yes: bool) -> None:
    """Forget what c2m-pulse holds from a partition's log, so it is read anew.

    For a partition stopped with reason log_mismatch (its topic was deleted and created
    again, the broker was reset, or the workers now read another cluster): deletes its
    state rows, event ids, late events and checkpoints and recomputes the serving rows
    of the months it touched. Stop the workers first: a partition without a checkpoint is
    read from the start of its log when they come back.
    """
    from streams.clickhouse.client import connect
    from streams.clickhouse.store import DemandStore

    s = _settings()
    _quiet_clients()
    store = DemandStore(connect(s), s.clickhouse_database, s.calendar())
    known = [p for t, p, _ in store.partitions() if t == topic]
    chosen = sorted(set(partitions or known))
    if not chosen:
        click.echo(f"nothing to reset: no checkpoint of {topic} in {s.clickhouse_database}")
        return
    if not yes:
        click.confirm(f"forget everything of {topic} partitions {chosen} in "
                      f"{s.clickhouse_database}?", abort=True)
    for p in chosen:
        deleted = store.reset_partition(topic, p)
        click.echo(f"{topic}[{p}]: deleted " + ", ".join(
            f"{n} {table}" for table, n in deleted.items() if n) + "; serving rows recomputed")


@main.command()
@click.option("--topic", required=True,
              type=click.Choice(["shop.orders", "shop.pageviews", "shop.logistics"]))
@click.option("--partition", required=True, type=click.IntRange(0, MAX_PARTITION))
@click.option("--to", "to_offset", required=True, type=click.IntRange(1, MAX_OFFSET),
              help="The first offset to read again")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
def skip(topic: str, partition: int, to_offset: int, yes: bool) -> None:
    """Skip records that cannot be read, for a partition stopped as unreadable.

    Moves the partition's checkpoint to --to (the offsets before it are counted as
    consumed and dead-lettered, and one dead letter per offset names it, reason
    unreadable_skipped). Stop the workers first. Prefer fixing the cause when there is
    one (a missing codec library, a fetch size): then a restart reads the batch.
    """
    from streams.clickhouse.client import connect
    from streams.clickhouse.store import DemandStore

    s = _settings()
    _quiet_clients()
    store = DemandStore(connect(s), s.clickhouse_database, s.calendar())
    if not yes:
        click.confirm(f"skip {topic}[{partition}] up to offset {to_offset}?", abort=True)
    start = store.skip_to(topic, partition, to_offset)
    bootstrap = s.kafka_bootstrap
    if bootstrap:
        from streams.kafka.topics import probe_kafka

        probe_kafka(bootstrap)
        asyncio.run(_skipped_dead_letters(s, bootstrap, topic, partition, start, to_offset))
    click.echo(f"skipped {topic}[{partition}] offsets {start}..{to_offset - 1}"
               + ("" if bootstrap else " (no C2M_KAFKA_BOOTSTRAP: no dead letters sent)"))


async def _skipped_dead_letters(
    s: Settings, bootstrap: str, topic: str, partition: int, start: int, end: int
) -> None:
    from aiokafka import AIOKafkaProducer

    from schemas.contract import TOPIC_DEAD_LETTER
    from schemas.deadletter import build_dead_letter

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                **s.kafka_producer_config())
    await producer.start()
    try:
        sent = [await producer.send(TOPIC_DEAD_LETTER, build_dead_letter(
            reason="unreadable_skipped", detail="skipped by an operator (c2m skip): the "
            "record batch could not be read", topic=topic, partition=partition,
            offset=offset, timestamp_ms=None, value=None)) for offset in range(start, end)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@main.command()
@click.argument("sql")
def query(sql: str) -> None:
    """Run one read-only SQL statement against the configured ClickHouse and print the
    rows (TSV, a header line first).

    One statement per call (a trailing ; is fine). While a `c2m demo` or `c2m worker`
    holds the embedded ClickHouse, the query runs in that process (its web server,
    read-only).
    """
    from streams.query import format_tsv, one_statement, run_query

    one_statement(sql)  # refuse several statements before connecting anywhere
    s = _settings()
    _quiet_clients()
    result = run_query(s, sql)
    for line in format_tsv(result):
        click.echo(line)
    if result.truncated:
        click.echo(f"c2m: warning: only the first {len(result.rows)} rows were sent by the "
                   "running worker; add a LIMIT or stop it to read all", err=True)


class _Finite(click.FloatRange):
    """A FloatRange that also refuses ``nan`` and ``inf`` (nan passes any comparison)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        out = super().convert(value, param, ctx)
        if not math.isfinite(out):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return out


#: wall seconds (a duration, an idle time): up to ten years
_SECONDS = _Finite(min=0, min_open=True, max=10 * 365 * 86_400)
#: events per second, simulated seconds per wall second
_RATE = _Finite(min=0, min_open=True, max=1_000_000)
_SPEED = _Finite(min=0, min_open=True, max=1_000_000)


@main.command()
@click.option("--web-port", type=click.IntRange(0, 65535), help="Faust web port (C2M_WEB_PORT)")
@click.option("--duration", type=_SECONDS, help="Stop after N seconds")
def worker(web_port: int | None, duration: float | None) -> None:
    """Run the Faust worker (starts an embedded broker if C2M_KAFKA_BOOTSTRAP is unset)."""
    from streams.runner import check_can_start, configure_logging, kafka_bootstrap, run_worker

    s = _settings({"web_port": "--web-port"}, web_port=web_port)
    check_can_start(s, _server_ports(s))
    configure_logging(s.log_level)
    with kafka_bootstrap(s) as bootstrap:
        run_worker(s, bootstrap, duration_s=duration)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535),
              help="Web port for restores (C2M_WRITER_PORT)")
@click.option("--duration", type=_SECONDS, help="Stop after N seconds")
def writer(port: int | None, duration: float | None) -> None:
    """Run the single ClickHouse writer for workers with C2M_SINK=kafka (needs a broker)."""
    from streams.kafka.topics import probe_kafka
    from streams.runner import configure_logging
    from streams.writer import run_writer

    s = _settings({"writer_port": "--port"}, writer_port=port)
    if not s.kafka_bootstrap:
        raise ConfigError("C2M_KAFKA_BOOTSTRAP is not set: the writer and its workers share "
                          "a broker (host:port[,host:port])")
    from streams.runner import check_can_start

    check_can_start(s, {"C2M_WRITER_PORT": (s.writer_host, s.writer_port),
                        "C2M_METRICS_PORT": (s.metrics_host, s.metrics_port)})
    probe_kafka(s.kafka_bootstrap)
    configure_logging(s.log_level)
    run_writer(s, s.kafka_bootstrap, duration_s=duration)


@main.command()
def broker() -> None:
    """Run the embedded Kafka broker in the foreground and create the topics."""
    import time

    from streams.kafka.embedded import EmbeddedBroker
    from streams.kafka.topics import ensure_topics

    s = _settings()
    _quiet_clients()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops it as Ctrl-C does: the broker with it

    signal.signal(signal.SIGTERM, stop)
    with EmbeddedBroker() as b:
        ensure_topics(b.bootstrap, s.topic_partitions)
        click.echo(f"embedded broker on {b.bootstrap}; export C2M_KAFKA_BOOTSTRAP={b.bootstrap}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@main.command()
@click.option("--rate", type=_RATE, default=1000.0, show_default=True,
              help="Events per second at the simulated day's mean traffic, and at most "
                   "(quiet hours send fewer)")
@click.option("--duration", type=_SECONDS, default=60.0, show_default=True,
              help="Wall seconds")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--speed", type=_SPEED, default=60.0, show_default=True,
              help="Simulated seconds per wall second")
@click.option("--forever", is_flag=True,
              help="Ignore --duration: backfill ten wall minutes at --speed, then run in "
                   "real time until stopped")
def simulate(rate: float, duration: float, seed: int, speed: float, forever: bool) -> None:
    """Produce realistic shop events to the input topics (needs C2M_KAFKA_BOOTSTRAP)."""
    from streams.kafka.topics import ensure_topics
    from streams.sim.producer import orders_per_hour_for, run_simulation

    s = _settings()
    if not s.kafka_bootstrap:
        raise ConfigError("C2M_KAFKA_BOOTSTRAP is not set: c2m simulate produces to a "
                          "broker (host:port); or run `c2m demo`, which brings its own")
    _quiet_clients()
    bootstrap = s.kafka_bootstrap
    ensure_topics(bootstrap, s.topic_partitions, s.kafka_client_config())

    async def produce() -> int:
        # SIGTERM and Ctrl-C end the run cleanly: what was sent is flushed and counted;
        # a second one does not wait for that (a broker gone away can hold it ~40 s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal() -> None:
            if stop.is_set() and task is not None:
                task.cancel()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            return await run_simulation(
                bootstrap, seed=seed, rate=rate, duration_s=None if forever else duration,
                speed=speed, stop=stop,
                producer_config=s.kafka_producer_config(),
                sim_options={"orders_per_hour": orders_per_hour_for(rate, speed)},
            )
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    n = asyncio.run(produce())
    click.echo(f"produced {n} events")


@main.group()
def alerts() -> None:
    """Factory alerts."""


def _factory_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty: give a factory id such as F001, or "
                                 "leave --factory out to follow every factory")
    return value.strip() if value is not None else None


@alerts.command("tail")
@click.option("--factory", "-f", callback=_factory_id,
              help="Only this factory's alerts (e.g. F001)")
@click.option("--lang", type=click.Choice(["both", "zh", "en"]), default="both", show_default=True)
@click.option("--idle-exit", type=_SECONDS, default=None,
              help="Exit after N seconds without a new message (default: follow forever)")
@click.option("--market", is_flag=True,
              help="With --factory: also the market signals (factory.demand-signals)")
def alerts_tail(factory: str | None, lang: str, idle_exit: float | None, market: bool) -> None:
    """Follow new and updated alerts.

    With --factory F only F's topic factory.<F>.restock-alerts (with C2M_KAFKA_SASL_* set
    to F's credentials where the broker has ACLs); without, every factory's topic and the
    market signals. Warns (on stderr) when the factory is not in the catalog; stops with
    one line when the broker goes away (e.g. the demo stopped).
    """
    from streams.alerts_tail import run_tail
    from streams.errors import BrokerError
    from streams.kafka.topics import probe_kafka
    from streams.runner import running_bootstrap

    s = _settings()
    _quiet_clients()
    bootstrap = running_bootstrap(s)
    if bootstrap is None:
        raise BrokerError(
            "no broker to read alerts from: start `c2m demo` in this folder (same "
            "C2M_DATA_DIR), or set C2M_KAFKA_BOOTSTRAP to your Kafka (host:port)"
        )
    probe_kafka(bootstrap)
    run_tail(bootstrap, factory, lang, idle_exit, s.kafka_client_config(), s.calendar(),
             market=market)


@main.group()
def kafka() -> None:
    """Kafka tenants (SASL users and ACLs)."""


@kafka.command("acls")
@click.option("--factory", "-f", required=True, help="The factory, e.g. F003")
def kafka_acls(factory: str) -> None:
    """Print the commands that give one factory its Kafka user and ACLs: read its own
    topics factory.<factory>.* and use its consumer groups factory.<factory>.*, nothing else
    (run them with Kafka's tools as the cluster admin; the password from $PASSWORD)."""
    from streams.core.tenancy import BadFactoryId, restock_topic
    from streams.kafka.acls import acl_command, factory_acls, factory_user, user_command

    try:
        user = factory_user(factory)
        acls = factory_acls(factory)
    except BadFactoryId as exc:
        raise click.BadParameter(str(exc), param_hint="--factory") from None
    click.echo(f"# factory {factory}: user {user}, topic {restock_topic(factory)}")
    click.echo(user_command(user, "PASSWORD"))
    for acl in acls:
        click.echo(acl_command(acl))


@main.group()
def token() -> None:
    """Per-factory web tokens (/api/alerts, /api/brief, /api/view/*, /view)."""


def _token_store(s: Settings) -> Any:
    from streams.tokenstore import TokenStore

    return TokenStore(s.effective_web_tokens_file, s.web_tokens)


@token.command("create")
@click.option("--factory", "-f", required=True, help="The factory the token is for, e.g. F001")
def token_create(factory: str) -> None:
    """Create a token for one factory and print it (once: only its hash is kept)."""
    from streams.core.tenancy import BadFactoryId

    s = _settings()
    try:
        secret, entry = _token_store(s).create(factory)
    except BadFactoryId as exc:
        raise click.BadParameter(str(exc), param_hint="--factory") from None
    click.echo(secret)
    click.echo(f"token {entry.id} for factory {factory} saved (hashed) in "
               f"{s.effective_web_tokens_file}; it is shown only now. Send it as "
               "'Authorization: Bearer <token>', or open /view#token=<token>", err=True)


@token.command("list")
def token_list() -> None:
    """List the tokens: factory, id and creation time (never a token or a hash)."""
    from streams.core.tokens import describe

    entries = _token_store(_settings()).entries()
    for row in describe(entries):
        click.echo(f"{row['id']}\t{row['factory']}\t{row['created']}")


@token.command("revoke")
@click.option("--id", "token_id", required=True, help="The token id from `c2m token list`")
def token_revoke(token_id: str) -> None:
    """Revoke a token (running workers stop accepting it at their next request)."""
    gone = _token_store(_settings()).revoke(token_id)
    if not gone:
        raise click.ClickException(f"no token with id {token_id} in the token file")
    click.echo(f"revoked {token_id} ({gone[0].factory})")


@main.command()
@click.option("--category", "-c", required=True, help="Product category, e.g. 袜子")
@click.option("--factory", "-f", callback=_factory_id, help="Only SKUs this factory makes")
@click.option("--days", type=click.IntRange(1, 365), default=14, show_default=True,
              help="Demand over the last N days (event time)")
@click.option("--run-days", type=click.IntRange(1, 365), default=30, show_default=True,
              help="Days of demand the production run should cover")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON")
def brief(category: str, factory: str | None, days: int, run_days: int, as_json: bool) -> None:
    """Production brief for the next run: colour mix, size curve, price band, quantity,
    and an order plan per colour x size rounded up to the SKUs' MOQ.

    Asks the running worker (C2M_WEB_HOST:C2M_WEB_PORT, which owns the embedded
    ClickHouse); without one, reads ClickHouse directly. Exit code 1 when the category
    has no demand in the period.
    """
    from streams.brief import fetch_brief, render_brief

    if not category.strip():
        raise click.BadParameter("must not be empty, e.g. --category 袜子",
                                 param_hint="'--category'")
    if len(category) > 128 or any(ord(c) < 32 for c in category):
        raise click.BadParameter("at most 128 printable characters, e.g. --category 袜子",
                                 param_hint="'--category'")
    factory = factory or ""
    s = _settings()
    _quiet_clients()
    answer = fetch_brief(s, category, factory, days, run_days)
    rows = answer.rows
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    elif rows:
        click.echo(render_brief(rows, category, factory, days, run_days, s.calendar()))
    if not rows:
        click.echo(f"c2m: {_no_brief(category, factory, days, answer.categories)}", err=True)
        sys.exit(EXIT_FAILED)


def _no_brief(category: str, factory: str, days: int, known: list[str] | None) -> str:
    """Why a brief has no rows: a category that never had demand (and a few that did),
    or none in the period."""
    if known and category not in known:
        shown = ", ".join(known[:5]) + (f" ... ({len(known)} in all)" if len(known) > 5 else "")
        return (f"no demand ever for category {category!r}: not a category of this market? "
                f"categories with demand: {shown}")
    who = f" from factory {factory}" if factory else ""
    return (f"no demand for category {category!r}{who} in the last {days} days of complete "
            "hours (c2m demo completes its first hour 30 s in: let it run longer, or "
            "c2m demo --history-days 7 for days of demand)")


@main.command()
@click.option("--duration", type=_SECONDS, default=None, help="Stop after N seconds")
@click.option("--rate", type=_RATE, default=1000.0, show_default=True,
              help="Events per second at the busiest moment of the run, and at most "
                   "(the market is sized so that event time keeps --speed)")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--speed", type=_SPEED, default=60.0, show_default=True,
              help="Simulated seconds per wall second")
@click.option("--history-days", type=_Finite(min=0, max=365), default=0.0, show_default=True,
              help="Start with N days of history (the alert scenario), then run live")
def demo(
    duration: float | None, rate: float, seed: int, speed: float, history_days: float
) -> None:
    """Everything on this machine: embedded broker, worker, simulator, live view."""
    from streams.demo import run_demo
    from streams.runner import check_can_start

    s = _settings()
    check_can_start(s, _server_ports(s))
    sys.exit(run_demo(
        s, duration_s=duration, rate=rate, seed=seed, speed=speed, history_days=history_days,
    ))


def _server_ports(s: Settings) -> dict[str, tuple[str, int]]:
    return {"C2M_WEB_PORT": (s.web_host, s.web_port),
            "C2M_METRICS_PORT": (s.metrics_host, s.metrics_port)}


if __name__ == "__main__":
    main()
