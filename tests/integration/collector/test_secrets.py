"""No secret in any log line, error body or /metrics, even when Stripe or the database fails.

Every log line of a failing run is captured and searched for each secret: the Stripe key, the
webhook secret, ingest tokens, API keys and the database password.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from agent.settings import load_settings as load_agent_settings
from collector.settings import load_settings
from common.logs import configure_logging
from common.redaction import forget_secrets
from tests.integration.collector.test_ingest import make_report
from tests.support.binaries import free_port
from tests.support.collector import run_collector
from tests.support.webhooks import signed, subscription_event

BIN = Path(sys.executable).parent


def fresh(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


@contextmanager
def hostile_stripe(status: int) -> Iterator[tuple[str, list[str]]]:
    """Answers every call with ``status`` and an error message quoting the caller's key."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            auth = self.headers.get("authorization", "")
            seen.append(auth)
            body = json.dumps(
                {"error": {"message": f"Invalid API Key provided: {auth}", "type": "api_error"}}
            ).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    yield stream
    configure_logging("info")
    forget_secrets()


def wait_for_a_failed_call(url: str, headers: dict[str, str]) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batches = httpx.get(f"{url}/api/forwarding/batches", headers=headers).json()
        if any(b["attempts"] and b["last_error"] for b in batches):
            return list(batches)
        time.sleep(0.05)
    raise AssertionError("the forwarder never called Stripe")


@pytest.mark.parametrize("stripe_answer", [401, 400, 500, "closed port"])
def test_failing_stripe_leaks_no_secret(
    database_url: str, captured_logs: io.StringIO, stripe_answer: int | str
) -> None:
    stripe_key = fresh("sk_test_")
    webhook_secret = fresh("whsec_")
    status = stripe_answer if isinstance(stripe_answer, int) else 500
    with hostile_stripe(status) as (base, seen):
        if stripe_answer == "closed port":
            base = f"http://127.0.0.1:{free_port()}"
        with run_collector(
            database_url,
            stripe_mode="meter_events",
            stripe_api_key=stripe_key,
            stripe_api_base=base,
            stripe_webhook_secret=webhook_secret,
            stripe_backoff_cap=1.0,
            stripe_timeout=5.0,
            forwarder_idle_sleep=0.05,
        ) as collector:
            editor = collector.operator_headers("editor")
            token = collector.ingest_headers("cust_1")
            # Linking asks Stripe whether the customer exists: refused (502), nothing linked;
            # the subscription webhook below links it.
            link = httpx.post(
                f"{collector.url}/api/forwarding/customers/cust_1/link",
                json={"stripe_customer_id": "cus_abc123"},
                headers=editor,
            )
            assert link.status_code == 502
            body, signature = signed(
                subscription_event("evt_sub", "cust_1", "cus_abc123"), webhook_secret
            )
            subscribed = httpx.post(
                f"{collector.url}/api/stripe/webhook",
                content=body,
                headers={"stripe-signature": signature, "content-type": "application/json"},
            )
            assert subscribed.status_code == 200, subscribed.text
            sent = httpx.post(
                f"{collector.url}/api/usage/report",
                content=make_report().to_json(),
                headers={"content-type": "application/json", **token},
            )
            assert sent.status_code == 201
            batches = wait_for_a_failed_call(collector.url, editor)
            bodies = [
                link.text,
                json.dumps(batches),
                httpx.get(f"{collector.url}/metrics").text,
                httpx.post(
                    f"{collector.url}/api/stripe/webhook",
                    content=b"{}",
                    headers={"stripe-signature": "t=1,v1=00"},
                ).text,
                httpx.get(
                    f"{collector.url}/api/usage/cust_1",
                    headers={"authorization": token["authorization"] + "x"},
                ).text,
                httpx.get(f"{collector.url}/health/ready").text,
            ]
            credentials = [h["authorization"].split()[1] for h in (editor, token)]
            password = make_url(collector.settings.async_database_url()).password
    if stripe_answer != "closed port":
        assert any(stripe_key in auth for auth in seen), "Stripe was never really called"
    everything = captured_logs.getvalue() + "\n".join(bodies)
    assert "stripe" in captured_logs.getvalue().lower() or batches
    for secret in [stripe_key, webhook_secret, *credentials, password]:
        if secret:
            assert secret not in everything


SECRETS_ENV = {
    "COLLECTOR_STRIPE_API_KEY": "sk_test_" + "k" * 24,
    "COLLECTOR_STRIPE_WEBHOOK_SECRET": "whsec_" + "w" * 24,
}


@pytest.mark.parametrize(
    "argv", [["serve", "--port", "0"], ["db", "upgrade"], ["tokens", "list"], ["db", "current"]]
)
def test_database_down_leaks_no_password(argv: list[str], tmp_path: Path) -> None:
    """A traceback from the driver goes through the redacting log handler too."""
    password = fresh("pw-")
    url = f"postgresql://metering:{password}@127.0.0.1:{free_port()}/usage"
    if argv[0] == "serve":
        argv = ["serve", "--port", str(free_port())]
    env = {**os.environ, **SECRETS_ENV, "COLLECTOR_DATABASE_URL": url}
    completed = subprocess.run(
        [str(BIN / "usage-collector"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "cannot reach database postgresql+asyncpg://metering:" in output
    for secret in [password, *SECRETS_ENV.values()]:
        assert secret not in output


def test_a_wrong_database_password_is_not_echoed(postgres_url: str, tmp_path: Path) -> None:
    wrong = fresh("pw-")
    url = make_url(postgres_url).set(password=wrong).render_as_string(hide_password=False)
    completed = subprocess.run(
        [str(BIN / "usage-collector"), "db", "upgrade"],
        env={**os.environ, "COLLECTOR_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert completed.returncode != 0
    assert "password" in completed.stdout + completed.stderr
    assert wrong not in completed.stdout + completed.stderr


# --- where secrets come from ------------------------------------------------------------------


def test_collector_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_STRIPE_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("COLLECTOR_STRIPE_WEBHOOK_SECRET", "whsec_from_env")
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", "postgresql://u:env-pw@db/usage")
    settings = load_settings()
    assert settings.stripe_api_key is not None
    assert settings.stripe_api_key.get_secret_value() == "sk_test_from_env"
    assert settings.stripe_webhook_secret is not None
    assert settings.stripe_webhook_secret.get_secret_value() == "whsec_from_env"
    assert "env-pw" in settings.async_database_url()
    assert "env-pw" not in repr(settings)
    assert "sk_test_from_env" not in repr(settings)


def test_collector_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kubernetes Secret mounted as a volume: one file per setting."""
    for name in ("COLLECTOR_STRIPE_API_KEY", "COLLECTOR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "collector_stripe_api_key").write_text("sk_test_from_file\n")
    (tmp_path / "collector_stripe_webhook_secret").write_text("whsec_from_file")
    (tmp_path / "collector_database_url").write_text("postgresql://u:file-pw@db/usage")
    settings = load_settings(tmp_path)
    assert settings.stripe_api_key is not None
    assert settings.stripe_api_key.get_secret_value().strip() == "sk_test_from_file"
    assert settings.stripe_webhook_secret is not None
    assert settings.stripe_webhook_secret.get_secret_value() == "whsec_from_file"
    assert "file-pw" in settings.async_database_url()


def test_the_cli_reads_its_secrets_dir(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    database = tmp_path / "usage.db"
    (secrets_dir / "collector_database_url").write_text(f"sqlite+aiosqlite:///{database}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTOR_")}
    cli = [str(BIN / "usage-collector"), "--secrets-dir", str(secrets_dir)]
    upgraded = subprocess.run([*cli, "db", "upgrade"], env=env, capture_output=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    created = subprocess.run(
        [*cli, "tokens", "create", "--customer", "cust_1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("umt_")
    assert database.exists()


def test_agent_token_comes_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("AGENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AGENT_COLLECTOR_TOKEN", "umt_from_env_value")
    from_env = load_agent_settings()
    assert from_env.collector_token is not None
    assert from_env.collector_token.get_secret_value() == "umt_from_env_value"
    monkeypatch.delenv("AGENT_COLLECTOR_TOKEN")
    (tmp_path / "agent_collector_token").write_text("umt_from_file_value\n")
    from_file = load_agent_settings(secrets_dir=tmp_path)
    assert from_file.collector_token is not None
    assert from_file.collector_token.get_secret_value() == "umt_from_file_value"
    assert "umt_from_file_value" not in repr(from_file)
