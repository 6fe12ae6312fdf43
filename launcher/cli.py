"""`yibao`: the operator's command line (the contract in API.md, "Operating the local federation").

up / down / status drive launcher.supervisor. demo, bench and pos live in their own modules, imported only
when their command runs, so the core commands work whatever state those modules are in."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from launcher import kafka, supervisor
from launcher.state import (
    LaunchError,
    StatePaths,
    UsageError,
    home_dir,
    is_broker_name,
    policy_env_summary,
)
from launcher.topology import DEFAULT_PROVINCES, MAX_REPLICAS, validate_province_code

app = typer.Typer(
    name="yibao",
    help="Run the local Yibao Wallet federation (Kafka, hub, province nodes, pharmacy gateway).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Load generators against a running federation.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

_out = Console()
_err = Console(stderr=True)


def parse_provinces(text: str) -> list[str]:
    """"640000,620000" (spaces allowed) -> validated codes in the given order, duplicates dropped."""
    codes = [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]
    if not codes:
        raise ValueError("no province codes given")
    return list(dict.fromkeys(validate_province_code(code) for code in codes))


def _setup_logging(verbose: bool) -> None:
    handler = RichHandler(console=_err, show_path=False, show_time=False, markup=False)
    logger = logging.getLogger("yibao.launcher")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _fail(message: str, code: int = 1) -> typer.Exit:
    # Escaped: messages carry log tails and paths, whose brackets are not markup.
    _err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _status_table(statuses: list[supervisor.ServiceStatus], title: str) -> Table:
    table = Table(title=title)
    for column in ("service", "pid", "url", "alive", "health"):
        table.add_column(column)
    for status in statuses:
        table.add_row(
            status.name,
            str(status.pid) if status.pid is not None else "-",
            status.url,
            "yes" if status.alive else "no",
            "[green]ok[/]" if status.healthy else "[red]down[/]",
        )
    return table


@app.command()
def up(
    provinces: Annotated[
        str | None,
        typer.Option(help="Comma-separated province codes. Default: those already running, else "
                     + ",".join(DEFAULT_PROVINCES) + "."),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Stop everything and wipe the state first.")] = False,
    replicas: Annotated[
        int | None,
        typer.Option(help=f"Processes per service (1..{MAX_REPLICAS}); above 1 they run behind HAProxy on the "
                     "public ports and need PostgreSQL (YIBAO_DATABASE_URL). Default: the home's remembered "
                     "shape, else 1."),
    ] = None,
    kafka_brokers: Annotated[
        int | None,
        typer.Option("--kafka-brokers", help="Kafka brokers: 1, or 3 (a KRaft cluster on 127.0.0.1:9092-9094, "
                     "topics replicated 3 times, min.insync.replicas 2). Default: the home's remembered shape, "
                     "else 1."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start Kafka and every service; return when all answer /readyz."""
    _setup_logging(verbose)
    home = home_dir()
    try:
        if provinces is not None:
            chosen = parse_provinces(provinces)
        else:
            # Without --provinces, a second `up` adopts what runs instead of clashing with it.
            running = None if fresh else supervisor.running_provinces(home)
            chosen = running or list(DEFAULT_PROVINCES)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    try:
        shape = supervisor.start_federation(home, chosen, fresh, replicas=replicas, kafka_brokers=kafka_brokers)
    except UsageError as exc:
        raise _fail(str(exc), 2) from None
    except LaunchError as exc:
        raise _fail(str(exc)) from None
    statuses = [s for s in supervisor.federation_status(home) if not is_broker_name(s.name) or s.alive]
    _out.print(_status_table(statuses, f"Yibao federation ({home})"))
    paths = StatePaths(home)
    _out.print(f"shape: --replicas {shape.replicas} --kafka-brokers {shape.kafka_brokers} "
               f"(remembered in {paths.shape_file})", highlight=False)
    _out.print(f"logs: {paths.logs}", highlight=False)
    _out.print(f"operator token: {paths.operator_token_file}", highlight=False)
    policy = policy_env_summary()
    if policy:
        _out.print("policy: " + ", ".join(f"{k}={v}" for k, v in policy.items()), highlight=False)


@app.command()
def down(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Stop every service and Kafka started from this home."""
    _setup_logging(verbose)
    home = home_dir()
    try:
        supervisor.stop_federation(home)
    except LaunchError as exc:
        raise _fail(str(exc)) from None
    _out.print(f"stopped ({home})", highlight=False)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="A JSON list of objects.")] = False) -> None:
    """Each service: pid, URL, whether its process is alive and /healthz answers."""
    statuses = supervisor.federation_status(home_dir())
    if as_json:
        sys.stdout.write(json.dumps([s.as_json() for s in statuses], indent=2) + "\n")
        return
    _out.print(_status_table(statuses, f"Yibao federation ({home_dir()})"))


def _load(module: str, attr: str) -> Callable[..., Any]:
    """The command's implementation, imported now. Only the absence of that module itself is reported as
    'not available'; an import error inside it is a real bug and propagates with its traceback."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise _fail(f"{module} is not available in this checkout") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise _fail(f"{module}.{attr} is missing")
    return fn  # type: ignore[no-any-return]


@app.command("fetch-kafka")
def fetch_kafka() -> None:
    """Fetch the pinned Kafka jars (infra/kafka/pom.xml) into the state directory; `make install` runs it."""
    _setup_logging(False)
    try:
        libs = kafka.ensure_jars(home_dir())
    except LaunchError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Kafka jars in {libs}")


@app.command()
def demo() -> None:
    """Load demo people and run the seed stories through the POS simulator, narrating."""
    _setup_logging(False)
    raise typer.Exit(int(_load("launcher.demo", "run_demo")()))


@bench_app.command("transfers")
def bench_transfers(
    rate: Annotated[float, typer.Option(help="Transfers per second.")] = 10.0,
    duration: Annotated[float, typer.Option(help="Seconds to run.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Drive cross-province transfers at a steady rate and report latency and throughput."""
    _setup_logging(False)
    run = _load("launcher.bench", "bench_transfers")
    raise typer.Exit(int(run(rate=rate, duration_s=duration, json_out=as_json)))


@bench_app.command("pos")
def bench_pos(
    rate: Annotated[float, typer.Option(help="Settles (2102) per second.")] = 500.0,
    duration: Annotated[float, typer.Option(help="Seconds to run.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Settle (2102) through the gateway at a steady rate; report latency percentiles and the rate reached."""
    _setup_logging(False)
    run = _load("launcher.bench_pos", "bench_pos")
    raise typer.Exit(int(run(rate=rate, duration_s=duration, json_out=as_json)))


@bench_app.command("hospital")
def bench_hospital(
    visits_rate: Annotated[float, typer.Option("--visits-rate", help="Outpatient visits per second.")] = 100.0,
    stays_rate: Annotated[float, typer.Option("--stays-rate", help="Inpatient stays per second.")] = 10.0,
    duration: Annotated[float, typer.Option(help="Seconds to run.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Outpatient visits (2201 → 2204 → 2207) and inpatient stays (2401 → 2301 → 2402 → 2304) through the
    gateway at a steady rate; report 2207 and 2304 latency percentiles and check balances and accumulators."""
    _setup_logging(False)
    run = _load("launcher.bench_hospital", "bench_hospital")
    raise typer.Exit(int(run(visits_rate=visits_rate, stays_rate=stays_rate, duration_s=duration,
                             json_out=as_json)))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def pos(ctx: typer.Context) -> None:
    """The POS simulator (pharmacy and hospital mode: `yibao pos visit`, `yibao pos admit`); arguments go to
    launcher.pos.main unchanged."""
    _setup_logging(False)
    raise typer.Exit(int(_load("launcher.pos", "main")(list(ctx.args))))


app.command("screenshots")(importlib.import_module("launcher.screenshots").command)  # issue 14


def main() -> None:
    app()
