"""The sandbox answers only the key it was started with, and refuses others as Stripe does."""

from __future__ import annotations

import base64

import httpx
import pytest
import stripe

from collector.stripe_sandbox import DEFAULT_API_KEY
from tests.support.stripe_sandbox import Sandbox, running_sandbox

OTHER_KEY = "sk_test_51Other0000000000000000wxyz"


def test_sandbox_accepting_any_key_refuses_another_key_with_stripes_401(
    stripe_sandbox: Sandbox,
) -> None:
    client = stripe_sandbox.new_client(api_key=OTHER_KEY)

    with pytest.raises(stripe.AuthenticationError) as refused:
        client.v1.customers.list()

    assert refused.value.http_status == 401
    error = refused.value.json_body["error"]
    assert error["type"] == "invalid_request_error"
    masked = "sk_test_" + "*" * (len(OTHER_KEY) - len("sk_test_") - 4) + "wxyz"
    assert error["message"] == f"Invalid API Key provided: {masked}"
    assert OTHER_KEY not in str(refused.value)


def test_the_key_the_sandbox_was_started_with_is_the_only_one_answered() -> None:
    with running_sandbox(api_key=OTHER_KEY) as sandbox:
        assert sandbox.new_client(api_key=OTHER_KEY).v1.customers.list().data == []
        with pytest.raises(stripe.AuthenticationError):
            sandbox.new_client(api_key=DEFAULT_API_KEY).v1.customers.list()
        with pytest.raises(stripe.AuthenticationError):
            sandbox.new_client(api_key=OTHER_KEY + "x").v1.billing.meters.list()


def test_a_call_without_a_key_is_refused_before_its_body_is_read(
    stripe_sandbox: Sandbox,
) -> None:
    answer = httpx.post(
        f"{stripe_sandbox.url}/v1/customers",
        content=b"not[a form",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("You did not provide an API key.")


def test_basic_auth_with_the_key_as_user_works_like_curl_u(stripe_sandbox: Sandbox) -> None:
    user = base64.b64encode(f"{DEFAULT_API_KEY}:".encode()).decode()

    answer = httpx.get(
        f"{stripe_sandbox.url}/v1/customers", headers={"authorization": f"Basic {user}"}
    )

    assert answer.status_code == 200


def test_the_control_api_needs_no_key(stripe_sandbox: Sandbox) -> None:
    assert httpx.get(f"{stripe_sandbox.url}/_sandbox/health").status_code == 200
