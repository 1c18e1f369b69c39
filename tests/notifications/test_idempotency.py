"""Idempotency-Key on the API's POSTs: a retry gets the first answer, and the work is done once."""

import json
import time
import uuid
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from redis.exceptions import ConnectionError as RedisConnectionError

from notifications import pipeline
from notifications.api import idempotency
from notifications.api.idempotency import MAX_KEY_LENGTH
from notifications.models import Notification, Template
from tenants.models import ApiKey
from tests.conftest import Persona, Personas

pytestmark = pytest.mark.django_db


def new_key() -> str:
    return str(uuid.uuid4())


def message(external_id: str, subject: str = "Welcome") -> dict[str, Any]:
    return {
        "recipient": {"external_id": external_id, "email": "ana@example.com"},
        "channels": ["email"],
        "subject": subject,
        "body": "Hello",
    }


def post(client: Client, body: Any, key: str | None, path: str = "/api/v1/notifications") -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(path, data=data, content_type="application/json", headers=headers)


def notifications_for(schema: str, external_id: str) -> int:
    with schema_context(schema):
        return Notification.objects.filter(recipient__external_id=external_id).count()


def fresh_external_id() -> str:
    return f"u-{uuid.uuid4()}"


def test_a_retry_with_the_same_key_gets_the_first_answer_and_does_nothing(personas: Personas) -> None:
    client, key, external_id = personas.alpha.client(), new_key(), fresh_external_id()
    first = post(client, message(external_id), key)
    assert first.status_code == 202, first.content
    assert "Idempotent-Replayed" not in first

    again = post(client, message(external_id), key)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert notifications_for("alpha", external_id) == 1


def test_the_same_body_in_another_key_order_is_the_same_request(personas: Personas) -> None:
    client, key, external_id = personas.alpha.client(), new_key(), fresh_external_id()
    body = message(external_id)
    first = post(client, json.dumps(body), key)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    assert reordered != json.dumps(body)
    again = post(client, reordered, key)
    assert again.json()["id"] == first.json()["id"]
    assert notifications_for("alpha", external_id) == 1


def test_the_same_key_with_another_body_is_422(personas: Personas) -> None:
    client, key, external_id = personas.alpha.client(), new_key(), fresh_external_id()
    assert post(client, message(external_id), key).status_code == 202
    response = post(client, message(external_id, subject="Something else"), key)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in error["message"]
    assert notifications_for("alpha", external_id) == 1


def test_the_same_key_on_another_endpoint_is_422(personas: Personas) -> None:
    client, key = personas.alpha.client(), new_key()
    assert post(client, message(fresh_external_id()), key).status_code == 202
    response = post(client, {"template": "welcome"}, key, path="/api/v1/templates/welcome/preview")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_duplicate_while_the_first_is_still_running_is_409(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The duplicate arrives while the first request is inside its handler (sent from there)."""
    client, key, external_id = personas.alpha.client(), new_key(), fresh_external_id()
    accept = pipeline.accept
    during: list[Any] = []

    def accept_while_a_duplicate_arrives(spec: Any) -> Any:
        during.append(post(client, message(external_id), key))
        return accept(spec)

    monkeypatch.setattr(pipeline, "accept", accept_while_a_duplicate_arrives)
    first = post(client, message(external_id), key)
    monkeypatch.setattr(pipeline, "accept", accept)

    assert first.status_code == 202
    (duplicate,) = during
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "idempotency_key_in_progress"
    assert duplicate["Retry-After"] == "1"
    assert notifications_for("alpha", external_id) == 1
    # Once the first has finished, the retry gets its answer.
    assert post(client, message(external_id), key).json()["id"] == first.json()["id"]


def test_two_tenants_using_the_same_key_do_not_collide(personas: Personas) -> None:
    key, external_id = new_key(), fresh_external_id()
    at_alpha = post(personas.alpha.client(), message(external_id), key)
    at_beta = post(personas.beta.client(), message(external_id), key)
    assert at_alpha.status_code == at_beta.status_code == 202
    assert "Idempotent-Replayed" not in at_beta
    assert at_alpha.json()["id"] != at_beta.json()["id"]
    assert notifications_for("alpha", external_id) == 1
    assert notifications_for("beta", external_id) == 1


def other_key_client(persona: Persona) -> Client:
    _, raw = ApiKey.issue(persona.tenant, name="second key")
    return Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_keys_are_scoped_to_the_tenant_not_the_api_key(personas: Personas) -> None:
    key, external_id = new_key(), fresh_external_id()
    first = post(personas.alpha.client(), message(external_id), key)
    # The same tenant's other API key (after a rotation, say), on the API host: the same answer.
    again = post(other_key_client(personas.alpha), message(external_id), key)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert notifications_for("alpha", external_id) == 1


def test_after_the_ttl_the_key_can_be_used_again(personas: Personas, settings: Any) -> None:
    settings.IDEMPOTENCY_TTL = 1
    client, key, external_id = personas.alpha.client(), new_key(), fresh_external_id()
    first = post(client, message(external_id), key)
    assert post(client, message(external_id), key)["Idempotent-Replayed"] == "true"
    time.sleep(1.2)
    later = post(client, message(external_id, subject="A new message"), key)
    assert later.status_code == 202
    assert "Idempotent-Replayed" not in later
    assert later.json()["id"] != first.json()["id"]
    assert notifications_for("alpha", external_id) == 2


def test_a_400_is_kept_and_replayed_as_the_same_400(personas: Personas) -> None:
    client, key, external_id = personas.alpha.client(), new_key(), fresh_external_id()
    bad = {**message(external_id), "channels": ["pigeon"]}
    first = post(client, bad, key)
    assert first.status_code == 400
    again = post(client, bad, key)
    assert again.status_code == 400
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert notifications_for("alpha", external_id) == 0


def test_a_500_frees_the_key_for_a_retry(personas: Personas, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(
        HTTP_HOST=personas.alpha.domain,
        HTTP_AUTHORIZATION=f"Bearer {personas.alpha.api_key}",
        raise_request_exception=False,
    )
    key, external_id = new_key(), fresh_external_id()
    accept = pipeline.accept

    def broken(spec: Any) -> Any:
        raise RuntimeError("database fell over")

    monkeypatch.setattr(pipeline, "accept", broken)
    failed = post(client, message(external_id), key)
    assert failed.status_code == 500
    monkeypatch.setattr(pipeline, "accept", accept)

    retried = post(client, message(external_id), key)
    assert retried.status_code == 202
    assert "Idempotent-Replayed" not in retried
    assert notifications_for("alpha", external_id) == 1


def test_a_rate_limited_request_does_not_use_up_its_key(personas: Personas, settings: Any) -> None:
    settings.API_RATE_LIMIT = {"rate": 2, "burst": 1}
    _, raw = ApiKey.issue(personas.alpha.tenant, name="limited")
    client = Client(HTTP_HOST=personas.alpha.domain, HTTP_AUTHORIZATION=f"Bearer {raw}")
    key, external_id = new_key(), fresh_external_id()
    assert post(client, message(fresh_external_id()), None).status_code == 202  # uses the burst
    refused = post(client, message(external_id), key)
    assert refused.status_code == 429
    time.sleep(int(refused["Retry-After"]))
    accepted = post(client, message(external_id), key)
    assert accepted.status_code == 202
    assert "Idempotent-Replayed" not in accepted
    assert notifications_for("alpha", external_id) == 1


@pytest.mark.parametrize(
    ("value", "words"), [("", "empty"), ("k" * (MAX_KEY_LENGTH + 1), f"at most {MAX_KEY_LENGTH}")]
)
def test_an_empty_or_overlong_key_is_400_naming_the_header(
    personas: Personas, value: str, words: str
) -> None:
    external_id = fresh_external_id()
    response = post(personas.alpha.client(), message(external_id), value)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_idempotency_key"
    assert "Idempotency-Key" in error["message"]
    assert words in error["message"]
    assert notifications_for("alpha", external_id) == 0


def test_a_key_of_the_longest_length_is_accepted(personas: Personas) -> None:
    key = "k" * (MAX_KEY_LENGTH - 36) + new_key()
    assert post(personas.alpha.client(), message(fresh_external_id()), key).status_code == 202


def test_without_the_header_every_post_is_new(personas: Personas) -> None:
    client, external_id = personas.alpha.client(), fresh_external_id()
    assert post(client, message(external_id), None).status_code == 202
    assert post(client, message(external_id), None).status_code == 202
    assert notifications_for("alpha", external_id) == 2


def test_other_post_endpoints_are_covered_too(personas: Personas) -> None:
    client, key = personas.alpha.client(), new_key()
    template_key = f"t-{uuid.uuid4().hex[:12]}"
    body = {"key": template_key, "name": "T", "variants": [{"channel": "email", "subject": "S", "text": "x"}]}
    created = post(client, body, key, path="/api/v1/templates")
    assert created.status_code == 201, created.content
    again = post(client, body, key, path="/api/v1/templates")
    # Without the key this would be a 400 ("a template with key ... exists").
    assert again.status_code == 201
    assert again.json() == created.json()
    assert again["Idempotent-Replayed"] == "true"
    with schema_context("alpha"):
        assert Template.objects.filter(key=template_key).count() == 1


def test_without_redis_a_keyed_post_is_503_and_does_nothing(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(source: str) -> Any:
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(idempotency, "_script", unreachable)
    external_id = fresh_external_id()
    response = post(personas.alpha.client(), message(external_id), new_key())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "idempotency_unavailable"
    assert response["Retry-After"] == "5"
    assert notifications_for("alpha", external_id) == 0
