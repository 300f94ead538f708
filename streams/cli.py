"""The ``c2m`` command line."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click
from pydantic import ValidationError

from streams.settings import Settings


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings:\n{exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """c2m-pulse: shop events on Kafka -> demand signals for factories in ClickHouse."""


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
    from streams.clickhouse.retention import apply_retention

    s = _settings()
    client = connect(s)
    applied = migrate(client, s.clickhouse_database, timezone=s.timezone)
    click.echo(f"applied migrations: {applied or 'none (up to date)'}")
    altered = apply_retention(client, s.clickhouse_database, s.retention_ttls())
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

    s = _settings()
    try:
        access = FactoryAccess(s.clickhouse_database, factory)
    except BadFactoryId as exc:
        raise click.ClickException(str(exc)) from None
    if password_env:
        password = os.environ.get(password_env, "")
        if not password:
            raise click.ClickException(f"{password_env} is not set (or empty)")
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
        from streams.errors import C2MError

        if s.effective_clickhouse_url.startswith("chdb:"):
            raise click.ClickException(
                "the embedded ClickHouse (chDB) has no user storage: run c2m db grant against "
                "a server (C2M_CLICKHOUSE_URL=http://...), or use --print-sql or --users-xml")
        try:
            client = connect(s)
            for stmt in access.statements(password):
                client.command(stmt)
        except Exception as exc:
            err = exc if isinstance(exc, C2MError) else sink_error(exc, "grant", access.user)
            raise click.ClickException(str(err)) from None
        click.echo(f"user {access.user}: read-only, row policies for factory {factory}")
    if not password_env:
        click.echo(f"password for {access.user} (shown only now): {password}", err=True)


@main.command()
@click.option("--topic", required=True,
              type=click.Choice(["shop.orders", "shop.pageviews", "shop.logistics"]))
@click.option("--partition", "partitions", type=int, multiple=True,
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
@click.option("--partition", required=True, type=click.IntRange(min=0))
@click.option("--to", "to_offset", required=True, type=click.IntRange(min=1),
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
    store = DemandStore(connect(s), s.clickhouse_database, s.calendar())
    if not yes:
        click.confirm(f"skip {topic}[{partition}] up to offset {to_offset}?", abort=True)
    start = store.skip_to(topic, partition, to_offset)
    bootstrap = s.kafka_bootstrap
    if bootstrap:
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
    """Run a read query against the configured ClickHouse and print the rows (TSV)."""
    from streams.clickhouse.client import connect

    result = connect(_settings()).query(sql, settings={"readonly": 1})
    click.echo("\t".join(result.column_names))
    for row in result.result_rows:
        click.echo("\t".join(str(v) for v in row))


@main.command()
@click.option("--web-port", type=int, help="Faust web port (C2M_WEB_PORT)")
@click.option("--duration", type=float, help="Stop after N seconds")
def worker(web_port: int | None, duration: float | None) -> None:
    """Run the Faust worker (starts an embedded broker if C2M_KAFKA_BOOTSTRAP is unset)."""
    from streams.runner import configure_logging, kafka_bootstrap, run_worker

    s = _settings(web_port=web_port)
    configure_logging(s.log_level)
    with kafka_bootstrap(s) as bootstrap:
        run_worker(s, bootstrap, duration_s=duration)


@main.command()
@click.option("--port", type=int, help="Web port for restores (C2M_WRITER_PORT)")
@click.option("--duration", type=float, help="Stop after N seconds")
def writer(port: int | None, duration: float | None) -> None:
    """Run the single ClickHouse writer for workers with C2M_SINK=kafka (needs a broker)."""
    from streams.runner import configure_logging
    from streams.writer import run_writer

    s = _settings(writer_port=port)
    if not s.kafka_bootstrap:
        raise click.ClickException("set C2M_KAFKA_BOOTSTRAP: workers and writer share a broker")
    configure_logging(s.log_level)
    run_writer(s, s.kafka_bootstrap, duration_s=duration)


@main.command()
def broker() -> None:
    """Run the embedded Kafka broker in the foreground and create the topics."""
    import time

    from streams.kafka.embedded import EmbeddedBroker
    from streams.kafka.topics import ensure_topics

    s = _settings()
    with EmbeddedBroker() as b:
        ensure_topics(b.bootstrap, s.topic_partitions)
        click.echo(f"embedded broker on {b.bootstrap}; export C2M_KAFKA_BOOTSTRAP={b.bootstrap}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@main.command()
@click.option("--rate", type=float, default=1000.0, show_default=True, help="Events per second")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Wall seconds")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--speed", type=float, default=60.0, show_default=True,
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
        raise click.ClickException("set C2M_KAFKA_BOOTSTRAP (or run `c2m demo`)")
    ensure_topics(s.kafka_bootstrap, s.topic_partitions, s.kafka_client_config())
    n = asyncio.run(
        run_simulation(
            s.kafka_bootstrap, seed=seed, rate=rate, duration_s=None if forever else duration,
            speed=speed,
            producer_config=s.kafka_producer_config(),
            sim_options={"orders_per_hour": orders_per_hour_for(rate, speed)},
        )
    )
    click.echo(f"produced {n} events")


@main.group()
def alerts() -> None:
    """Factory alerts."""


@alerts.command("tail")
@click.option("--factory", "-f", help="Only this factory's alerts (e.g. F001)")
@click.option("--lang", type=click.Choice(["both", "zh", "en"]), default="both", show_default=True)
@click.option("--idle-exit", type=float, default=None,
              help="Exit after N seconds without a new message (default: follow forever)")
@click.option("--market", is_flag=True,
              help="With --factory: also the market signals (factory.demand-signals)")
def alerts_tail(factory: str | None, lang: str, idle_exit: float | None, market: bool) -> None:
    """Follow new and updated alerts.

    With --factory F only F's topic factory.<F>.restock-alerts (with C2M_KAFKA_SASL_* set
    to F's credentials where the broker has ACLs); without, every factory's topic and the
    market signals.
    """
    from streams.alerts_tail import run_tail
    from streams.runner import running_bootstrap

    s = _settings()
    bootstrap = running_bootstrap(s)
    if bootstrap is None:
        raise click.ClickException(
            "no broker: set C2M_KAFKA_BOOTSTRAP, or start `c2m demo` (same C2M_DATA_DIR)"
        )
    from streams.errors import C2MError

    try:
        run_tail(bootstrap, factory, lang, idle_exit, s.kafka_client_config(), s.calendar(),
                 market=market)
    except C2MError as exc:
        raise click.ClickException(str(exc)) from None


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
        raise click.ClickException(str(exc)) from None
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
    from streams.errors import ConfigError

    s = _settings()
    try:
        secret, entry = _token_store(s).create(factory)
    except (BadFactoryId, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)
    click.echo(f"token {entry.id} for factory {factory} saved (hashed) in "
               f"{s.effective_web_tokens_file}; it is shown only now. Send it as "
               "'Authorization: Bearer <token>', or open /view#token=<token>", err=True)


@token.command("list")
def token_list() -> None:
    """List the tokens: factory, id and creation time (never a token or a hash)."""
    from streams.core.tokens import describe
    from streams.errors import ConfigError

    try:
        entries = _token_store(_settings()).entries()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for row in describe(entries):
        click.echo(f"{row['id']}\t{row['factory']}\t{row['created']}")


@token.command("revoke")
@click.option("--id", "token_id", required=True, help="The token id from `c2m token list`")
def token_revoke(token_id: str) -> None:
    """Revoke a token (running workers stop accepting it at their next request)."""
    from streams.errors import ConfigError

    try:
        gone = _token_store(_settings()).revoke(token_id)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not gone:
        raise click.ClickException(f"no token with id {token_id} in the token file")
    click.echo(f"revoked {token_id} ({gone[0].factory})")


@main.command()
@click.option("--category", "-c", required=True, help="Product category, e.g. 袜子")
@click.option("--factory", "-f", default="", help="Only SKUs this factory makes")
@click.option("--days", type=click.IntRange(1, 365), default=14, show_default=True,
              help="Demand over the last N days (event time)")
@click.option("--run-days", type=click.IntRange(1, 365), default=30, show_default=True,
              help="Days of demand the production run should cover")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON")
def brief(category: str, factory: str, days: int, run_days: int, as_json: bool) -> None:
    """Production brief for the next run: colour mix, size curve, price band, quantity.

    Asks the running worker (C2M_WEB_HOST:C2M_WEB_PORT, which owns the embedded
    ClickHouse); without one, reads ClickHouse directly.
    """
    from streams.brief import fetch_brief, render_brief

    s = _settings()
    rows = fetch_brief(s, category, factory, days, run_days)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    click.echo(render_brief(rows, category, factory, days, run_days, s.calendar()))


@main.command()
@click.option("--duration", type=float, default=None, help="Stop after N seconds")
@click.option("--rate", type=float, default=1000.0, show_default=True, help="Events per second")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--speed", type=float, default=60.0, show_default=True,
              help="Simulated seconds per wall second")
@click.option("--history-days", type=float, default=0.0, show_default=True,
              help="Start with N days of history (the alert scenario), then run live")
def demo(
    duration: float | None, rate: float, seed: int, speed: float, history_days: float
) -> None:
    """Everything on this machine: embedded broker, worker, simulator, live view."""
    from streams.demo import run_demo

    sys.exit(run_demo(
        _settings(), duration_s=duration, rate=rate, seed=seed, speed=speed,
        history_days=history_days,
    ))


if __name__ == "__main__":
    main()
