"""``usage-agent``: the agent's command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click
import structlog
from pydantic import ValidationError

from agent.adapters.metrics_server import MetricsServer
from agent.cli.wiring import build_runtime
from agent.errors import ConfigurationError
from agent.loop import AgentLoop
from agent.settings import AgentSettings, load_settings, setting_errors
from common.clock import SystemClock
from common.logs import configure_logging

log = structlog.get_logger("agent.cli")

EXIT_NOT_ACCEPTED = 1
EXIT_CONFIGURATION = 2


def _install_stop_handlers(stop: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Not every platform or thread can take signal handlers; the loop still stops on cancel.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop)


async def _idle() -> None:
    stopped = asyncio.Event()
    _install_stop_handlers(stopped.set)
    log.info("reporting_disabled", setting="AGENT_ENABLED / ENABLE_USAGE_REPORTING", idle=True)
    await stopped.wait()


async def _run(settings: AgentSettings, once: bool) -> int:
    runtime = await build_runtime(settings, SystemClock())
    try:
        if once:
            outcome = await runtime.loop.run_once(attempts=settings.send_attempts)
            if not outcome.accepted:
                click.echo(f"usage-agent: nothing accepted: {outcome.reason}", err=True)
                return EXIT_NOT_ACCEPTED
            return 0
        server = MetricsServer(
            runtime.metrics.registry,
            runtime.health.check,
            host=settings.metrics_host,
            port=settings.metrics_port,
        ).start()
        try:
            await _run_until_stopped(runtime.loop, settings.shutdown_grace.total_seconds())
        finally:
            server.stop()
        return 0
    finally:
        await runtime.aclose()


async def _run_until_stopped(loop: AgentLoop, grace: float) -> None:
    """Run the loop; on SIGTERM let the step in progress finish for ``grace`` seconds at most.

    Every collected report is in the spool before it is sent, so cutting a step short loses
    nothing: an unsent report is sent after the restart, an unfinished window collected again.
    """
    task = asyncio.ensure_future(loop.run())
    stopped = asyncio.Event()

    def stop() -> None:
        log.info("agent_stopping", grace_seconds=grace)
        loop.stop()
        stopped.set()

    _install_stop_handlers(stop)
    log.info("agent_started", leader_election=loop.elector is not None)
    stopper = asyncio.ensure_future(stopped.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            log.warning("agent_stop_forced", reason="step still running after the grace period")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.done() and not task.cancelled():
        task.result()  # a crash of the loop itself is not a clean stop
    log.info("agent_stopped")


_SECRETS_DIR = click.option(
    "--secrets-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Directory of secret files named like the settings (e.g. agent_collector_token).",
)


@click.group()
@_SECRETS_DIR
@click.pass_context
def main(ctx: click.Context, secrets_dir: Path | None) -> None:
    """Collects usage per window in a customer namespace and sends it to the collector."""
    ctx.obj = {"secrets_dir": secrets_dir}


@main.command()
@click.option("--once", is_flag=True, help="Collect and send the last complete window, then exit.")
@_SECRETS_DIR
@click.pass_context
def run(ctx: click.Context, once: bool, secrets_dir: Path | None) -> None:
    """Report usage every interval, or once with --once.

    With --once the exit code is 0 when every due window was collected and accepted, 1 when not
    (the reason on one line: a source failed, the collector refused or could not be reached),
    and 2 for a configuration error.
    """
    try:
        settings = load_settings(secrets_dir or (ctx.obj or {}).get("secrets_dir"))
    except ValidationError as exc:
        configure_logging("info")
        errors = setting_errors(exc)
        log.error("invalid_settings", errors=errors)
        for line in errors:
            click.echo(f"usage-agent: invalid setting {line}", err=True)
        sys.exit(EXIT_CONFIGURATION)
    configure_logging(settings.log_level)
    if not settings.enabled:
        if once:
            log.info("reporting_disabled", setting="AGENT_ENABLED / ENABLE_USAGE_REPORTING")
        else:
            asyncio.run(_idle())
        sys.exit(0)
    try:
        code = asyncio.run(_run(settings, once))
    except ConfigurationError as exc:
        log.error("configuration_error", error=str(exc))
        click.echo(f"usage-agent: {exc}", err=True)
        sys.exit(EXIT_CONFIGURATION)
    sys.exit(code)
