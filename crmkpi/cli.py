"""The `crm-kpi` command line (docs/interfaces.md)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

import orjson
from rich.console import Console
from rich.table import Table

from crmkpi.discovery import ServicesNotFound, find_services
from crmkpi.settings import Settings, publisher_for
from kpis.timebase import WINDOWS
from streams.exports import FORMATS

console = Console(stderr=True, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `crm-kpi`."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except ServicesNotFound as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-kpi", description="Streaming CRM KPI engine.")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="the whole engine on this machine (embedded Kafka and Redis)")
    up.add_argument("--demo", action="store_true", help="also feed simulated CRM traffic")
    up.add_argument("--workers", type=int, default=1, help="worker processes to start")
    up.set_defaults(run=run_up)

    commands.add_parser("worker", help="one stream-processing worker").set_defaults(run=run_worker)
    commands.add_parser("gateway", help="the webhook gateway").set_defaults(run=run_gateway)

    replay = commands.add_parser("replay", help="publish canonical events from JSON Lines files")
    replay.add_argument("files", nargs="+", help="JSON Lines files, or - for stdin")
    replay.set_defaults(run=run_replay)

    imports = commands.add_parser("import", help="backfill history from a CRM's CSV export")
    imports.add_argument("--format", required=True, choices=sorted(FORMATS), help="the export's kind")
    imports.add_argument("file", help="the exported CSV file")
    imports.add_argument("--resume", action="store_true", help="continue after the last checkpoint")
    imports.add_argument("--dry-run", action="store_true", help="map and report, publish nothing")
    imports.add_argument("--timezone", default=None, help="zone of naive dates (default CRMKPI_TIMEZONE)")
    imports.set_defaults(run=run_import)

    simulate = commands.add_parser("simulate", help="a synthetic CRM company emitting events")
    simulate.add_argument("--rate", type=float, default=20.0, help="live events per second")
    simulate.add_argument("--duration", type=float, default=None, help="seconds of live traffic")
    simulate.add_argument("--history-days", type=float, default=0.0,
                          help="days of history to backfill first")
    simulate.add_argument("--output", default=None, help="write JSON Lines here instead of Kafka")
    simulate.add_argument("--webhooks", action="store_true",
                          help="send signed webhooks to the gateway instead of writing to Kafka")
    simulate.add_argument("--seed", type=int, default=None)
    simulate.set_defaults(run=run_simulate)

    kpis = commands.add_parser("kpis", help="print current KPIs")
    kpis.add_argument("--window", default="30d", choices=WINDOWS)
    kpis.add_argument("--by", default=None, choices=("channel", "region", "priority"))
    kpis.add_argument("--tenant", default="default")
    kpis.add_argument("--json", action="store_true", help="print the API's JSON")
    kpis.add_argument("--url", default=None, help="a worker's base URL (default: this machine)")
    kpis.set_defaults(run=run_kpis)
    return parser


def run_worker(args: argparse.Namespace) -> int:
    """Run one Faust worker until interrupted."""
    from faust.worker import Worker as FaustWorker

    from agents.app import Worker

    settings = Settings()
    if not settings.loopback_only and settings.api_token is None:
        console.print("[red]error:[/red] CRMKPI_API_TOKEN is required when CRMKPI_BIND is not loopback")
        return 2
    if settings.metrics_token_required and settings.api_token is None:
        console.print("[red]error:[/red] CRMKPI_METRICS_TOKEN_REQUIRED needs CRMKPI_API_TOKEN")
        return 2
    worker = Worker(settings, find_services(settings))
    # A worker holds many long-lived objects (entities) and allocates many short-lived ones
    # per event: the default first-generation threshold (700) spent ~10% of it in the GC.
    gc.set_threshold(10_000, 20, 20)
    console.print(f"worker {worker.worker_id}: API on http://{settings.bind}:{worker.port}/api/kpis")
    FaustWorker(worker.app, loglevel="warning").execute_from_commandline()
    return 0


def run_gateway(args: argparse.Namespace) -> int:
    """Run the webhook gateway until interrupted."""
    from streams.gateway.app import GatewayConfigError
    from streams.gateway.app import run_gateway as serve

    try:
        asyncio.run(serve(Settings()))
    except GatewayConfigError as exc:
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        return 2
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """Validate files, publish the valid events, report bad lines by number."""
    from crmkpi.replay import publish_with_progress, report_bad_lines, validate_files
    from streams.events import EPOCH

    settings = Settings()
    services = find_services(settings)
    now_ms = int((time.time() - EPOCH.timestamp()) * 1000)
    events, bad = validate_files(args.files, settings.kpi_config.known_currencies, now_ms)

    async def publish() -> None:
        publisher = await publisher_for(settings, services.kafka_bootstrap)
        try:
            await publish_with_progress(publisher, events, console)
        finally:
            await publisher.stop()

    if events:
        asyncio.run(publish())
    console.print(f"published {len(events)} event(s)")
    if bad:
        report_bad_lines(bad, console)
        return 1
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Map a CRM export to canonical events and publish them, resumably (docs/import.md)."""
    from crmkpi.importer import run

    return run(args, console)


def run_simulate(args: argparse.Namespace) -> int:
    """Run the synthetic CRM company."""
    from pathlib import Path

    from crmkpi.simulate import run_simulation

    sent = asyncio.run(run_simulation(
        Settings(), rate=args.rate, duration=args.duration, history_days=args.history_days,
        output=Path(args.output) if args.output else None, webhooks=args.webhooks, seed=args.seed,
    ))
    console.print(f"simulated {sent} event(s)")
    return 0


def run_kpis(args: argparse.Namespace) -> int:
    """Print KPIs from a worker's API as a table (or JSON)."""
    settings = Settings()
    base = args.url or f"http://127.0.0.1:{settings.worker_port}"
    query = f"window={args.window}&tenant={args.tenant}" + (f"&by={args.by}" if args.by else "")
    request = urllib.request.Request(f"{base}/api/kpis?{query}")  # noqa: S310 (http URL we build)
    if settings.api_token is not None:
        request.add_header("Authorization", f"Bearer {settings.api_token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (URL is ours)
            payload = orjson.loads(response.read())
    except (urllib.error.URLError, OSError) as exc:
        console.print(f"[red]error:[/red] no worker answers at {base} ({exc}); start `crm-kpi up`")
        return 2
    if args.json:
        print(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())  # noqa: T201
        return 0
    table = Table(title=f"KPIs {payload['tenant']} {payload['window']} as of {payload['as_of']}")
    table.add_column("kpi")
    table.add_column("value", justify="right")
    for kpi, value in payload["kpis"].items():
        table.add_row(kpi, _show(value))
    Console().print(table)
    return 0


def _show(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def run_up(args: argparse.Namespace) -> int:
    """Start embedded services (unless configured), workers and the gateway; stop on Ctrl-C."""
    from crmkpi.up import Stack

    stack = Stack(Settings(), workers=args.workers, demo=args.demo, console=console)
    try:
        stop = stack.start()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stack.watch(stop)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


