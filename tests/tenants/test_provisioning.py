"""`manage.py provision_tenant`: all or nothing, clear one-line errors, the key printed last."""

import subprocess
import sys

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from tenants.models import ApiKey, Domain, Tenant
from tests.conftest import REPO, Personas, service_env

pytestmark = pytest.mark.usefixtures("live_db")


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=service_env("smtp://127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def schema_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [name])
        return cursor.fetchone() is not None


def test_it_creates_schema_domain_admin_and_prints_the_key_last(personas: Personas) -> None:
    result = manage(
        "provision_tenant",
        "delta-co",
        "--domain",
        "delta.localhost",
        "--admin-email",
        "Owner@Delta.test",
        "--name",
        "Delta Co",
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("hk_")
    assert "Admin password (generated, shown once)" in result.stdout

    tenant = Tenant.objects.get(slug="delta-co")
    assert (tenant.schema_name, tenant.name, tenant.is_active) == ("delta_co", "Delta Co", True)
    assert schema_exists("delta_co")
    assert Domain.objects.get(tenant=tenant).domain == "delta.localhost"
    assert ApiKey.objects.get(tenant=tenant).key_hash == ApiKey.hash_key(key)
    with schema_context("delta_co"):
        from django.contrib.auth import get_user_model

        admin = get_user_model().objects.get()
        assert admin.email == "owner@delta.test"
        assert admin.is_superuser
    # The admin user lives in the tenant's schema, not in public.
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(email="owner@delta.test").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad_Slug", "--domain", "x1.localhost", "--admin-email", "a@b.test"], "slug 'Bad_Slug' must start"),
        (['ev"il', "--domain", "x2.localhost", "--admin-email", "a@b.test"], "must start with a letter"),
        (["public", "--domain", "x3.localhost", "--admin-email", "a@b.test"], "reserved"),
        (["pg-catalog", "--domain", "x3.localhost", "--admin-email", "a@b.test"], "reserved"),
        (["alpha", "--domain", "x4.localhost", "--admin-email", "a@b.test"], "slug 'alpha' is already taken"),
        (
            ["epsilon", "--domain", "alpha.localhost", "--admin-email", "a@b.test"],
            "domain 'alpha.localhost' is already taken",
        ),
        (["epsilon", "--domain", "bad host!", "--admin-email", "a@b.test"], "not a valid host name"),
        (["epsilon", "--domain", "x5.localhost", "--admin-email", "not-an-email"], "not a valid email"),
        (["epsilon", "--domain", "localhost", "--admin-email", "a@b.test"], "is the API host"),
        (["epsilon", "--domain", "127.0.0.1", "--admin-email", "a@b.test"], "not a valid host name"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_nothing_created(
    personas: Personas, args: list[str], message: str
) -> None:
    tenants_before = Tenant.objects.count()
    domains_before = Domain.objects.count()
    result = manage("provision_tenant", *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert (Tenant.objects.count(), Domain.objects.count()) == (tenants_before, domains_before)
    assert not schema_exists("epsilon")


def test_a_failure_after_the_schema_exists_rolls_everything_back(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenants import provisioning

    def explode(tenant: Tenant, name: str) -> None:
        raise RuntimeError("key store down")

    monkeypatch.setattr(ApiKey, "issue", explode)
    with pytest.raises(RuntimeError):
        provisioning.provision_tenant("zeta", domain="zeta.localhost", admin_email="a@zeta.test")
    assert not Tenant.objects.filter(slug="zeta").exists()
    assert not Domain.objects.filter(domain="zeta.localhost").exists()
    assert not schema_exists("zeta")


def test_create_api_key_prints_a_working_key_last(personas: Personas) -> None:
    result = manage("create_api_key", "beta", "--name", "ci")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert ApiKey.objects.get(prefix=key.split("_")[1]).tenant_id == personas.beta.tenant.pk
    assert manage("create_api_key", "nobody").returncode == 1


def test_tenant_exists_answers_by_exit_status(personas: Personas) -> None:
    assert manage("tenant_exists", "alpha").returncode == 0
    assert manage("tenant_exists", "nobody").returncode == 1
