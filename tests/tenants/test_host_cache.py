"""Each process keeps which tenant a host name serves, and a change is seen on the next request.

A domain moved to another tenant or removed, or a tenant suspended, takes effect at once in the
process that made the change and, through the generation counter in Redis, on the next request
of every other (TENANT_CACHE_CHECK_INTERVAL is 0 in the tests). These tests commit (live_db):
inside a test's rolled-back transaction nothing is cached.
"""

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tenants.models import Domain, Tenant
from tenants.process_cache import ProcessCache
from tests.conftest import REPO, Personas, service_env

pytestmark = pytest.mark.usefixtures("live_db")

LIST = "/api/v1/notifications"


@pytest.fixture
def alpha_host(personas: Personas) -> Iterator[Domain]:
    """A second domain of alpha's, deleted after the test."""
    domain = Domain.objects.create(
        domain=f"moving-{uuid.uuid4().hex[:12]}.localhost", tenant=personas.alpha.tenant
    )
    yield domain
    Domain.objects.filter(pk=domain.pk).delete()


@pytest.fixture
def beta_restored(personas: Personas) -> Iterator[Tenant]:
    """beta, made active again after the test whatever it did."""
    yield personas.beta.tenant
    beta = Tenant.objects.get(pk=personas.beta.tenant.pk)
    if not beta.is_active:
        beta.is_active = True
        beta.save()


@pytest.fixture
def counter_unread(settings: Any) -> None:
    """This process reads the generation counter no more during the test: what it sees of a change
    it made itself, it owes to dropping its own cache at once."""
    settings.TENANT_CACHE_CHECK_INTERVAL = 3600.0


def run_in_another_process(code: str) -> None:
    env = service_env("smtp://127.0.0.1:1")
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True, timeout=120
    )


def domain_queries(client: Client, host: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        client.get(LIST, HTTP_HOST=host)
    return sum("tenants_domain" in q["sql"] for q in queries.captured_queries)


def test_a_host_is_read_once_then_served_from_the_process_cache(
    personas: Personas, alpha_host: Domain
) -> None:
    client = personas.alpha.client()
    for host in (alpha_host.domain, "api-host-of-no-tenant.localhost"):
        assert client.get(LIST, HTTP_HOST=host).status_code == 200
        assert domain_queries(client, host) == 0, host


def test_a_domain_moved_to_another_tenant_serves_it_on_the_next_request(
    personas: Personas, alpha_host: Domain, counter_unread: None
) -> None:
    alpha, beta = personas.alpha.client(), personas.beta.client()
    assert alpha.get(LIST, HTTP_HOST=alpha_host.domain).status_code == 200
    assert beta.get(LIST, HTTP_HOST=alpha_host.domain).status_code == 403  # beta's key on alpha's host

    alpha_host.tenant = personas.beta.tenant
    alpha_host.save()

    assert beta.get(LIST, HTTP_HOST=alpha_host.domain).status_code == 200
    refused = alpha.get(LIST, HTTP_HOST=alpha_host.domain)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "wrong_tenant"


def test_a_removed_domain_names_no_tenant_on_the_next_request(
    personas: Personas, alpha_host: Domain, counter_unread: None
) -> None:
    beta = personas.beta.client()
    assert beta.get(LIST, HTTP_HOST=alpha_host.domain).status_code == 403
    alpha_host.delete()
    # A host that names no tenant: the key alone decides.
    assert beta.get(LIST, HTTP_HOST=alpha_host.domain).status_code == 200


def test_a_domain_added_for_a_host_that_named_no_tenant_is_used_on_the_next_request(
    personas: Personas, counter_unread: None
) -> None:
    host = f"new-{uuid.uuid4().hex[:12]}.localhost"
    beta = personas.beta.client()
    assert beta.get(LIST, HTTP_HOST=host).status_code == 200  # cached: no tenant here
    domain = Domain.objects.create(domain=host, tenant=personas.alpha.tenant)
    try:
        assert beta.get(LIST, HTTP_HOST=host).status_code == 403
    finally:
        domain.delete()


def test_a_domain_moved_by_another_process_is_seen_on_the_next_request(
    personas: Personas, alpha_host: Domain
) -> None:
    alpha = personas.alpha.client()
    assert alpha.get(LIST, HTTP_HOST=alpha_host.domain).status_code == 200
    assert domain_queries(alpha, alpha_host.domain) == 0  # cached here
    run_in_another_process(
        "from tenants.models import Domain, Tenant\n"
        f"d = Domain.objects.get(pk={alpha_host.pk})\n"
        f"d.tenant = Tenant.objects.get(pk={personas.beta.tenant.pk})\n"
        "d.save()\n"
    )
    refused = alpha.get(LIST, HTTP_HOST=alpha_host.domain)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "wrong_tenant"


def test_a_tenant_suspended_here_is_refused_on_its_domain_at_once(
    personas: Personas, beta_restored: Tenant, counter_unread: None
) -> None:
    anonymous = Client(HTTP_HOST=personas.beta.domain)
    assert anonymous.get(LIST).status_code == 401  # served, and beta's host now cached
    beta = Tenant.objects.get(pk=beta_restored.pk)
    beta.is_active = False
    beta.save()
    refused = anonymous.get(LIST)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_suspended"


def test_a_tenant_suspended_by_another_process_is_refused_on_its_domain_on_the_next_request(
    personas: Personas, beta_restored: Tenant
) -> None:
    anonymous = Client(HTTP_HOST=personas.beta.domain)
    assert anonymous.get(LIST).status_code == 401
    run_in_another_process(
        "from tenants.models import Tenant\n"
        f"t = Tenant.objects.get(pk={beta_restored.pk})\n"
        "t.is_active = False\n"
        "t.save()\n"
    )
    refused = anonymous.get(LIST)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_suspended"


def test_host_names_from_outside_cannot_grow_the_cache_without_bound() -> None:
    cache: ProcessCache[str, str] = ProcessCache("herald:test:bounded", max_age=60.0, max_entries=3)
    for n in range(10):
        assert cache.get_or_load(f"host-{n}.localhost", lambda n=n: f"tenant-{n}") == f"tenant-{n}"  # type: ignore[misc]
        assert len(cache._entries) <= 3
    assert cache.get_or_load("host-9.localhost", lambda: "read again") == "tenant-9"  # the newest is kept
