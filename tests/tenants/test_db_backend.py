"""The database backend skips a SET search_path the session already has, and only then."""

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from notifications.models import Recipient
from tenants.schemas import use_public, use_tenant
from tests.conftest import Personas

pytestmark = pytest.mark.django_db


def statements(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries]


def test_switching_back_to_the_same_tenant_sends_no_second_set(personas: Personas) -> None:
    use_tenant(personas.alpha.tenant)
    Recipient.objects.count()  # the session's path is now alpha's
    use_public()  # as after every task: nothing is sent by this
    use_tenant(personas.alpha.tenant)
    with CaptureQueriesContext(connection) as queries:
        Recipient.objects.count()
    assert not any("search_path" in sql for sql in statements(queries))


def test_another_tenant_still_gets_its_own_path_and_sees_only_its_rows(personas: Personas) -> None:
    marker = f"only-alpha-{uuid.uuid4()}"
    use_tenant(personas.alpha.tenant)
    Recipient.objects.create(external_id=marker)
    use_tenant(personas.beta.tenant)
    with CaptureQueriesContext(connection) as queries:
        assert not Recipient.objects.filter(external_id=marker).exists()
    assert any('SET search_path = "beta"' in sql for sql in statements(queries))
    use_tenant(personas.alpha.tenant)
    assert Recipient.objects.filter(external_id=marker).exists()


def test_a_rolled_back_set_is_not_trusted_afterwards(personas: Personas) -> None:
    marker = f"rb-{uuid.uuid4()}"
    use_tenant(personas.alpha.tenant)
    Recipient.objects.create(external_id=marker)

    def visit_beta_then_fail() -> None:
        with transaction.atomic():
            use_tenant(personas.beta.tenant)
            Recipient.objects.count()  # SET search_path to beta inside the savepoint
            raise RuntimeError("roll back, and the SET with it")

    with pytest.raises(RuntimeError):
        visit_beta_then_fail()
    # The session is back on alpha's path; asking for beta must set it again.
    use_tenant(personas.beta.tenant)
    assert not Recipient.objects.filter(external_id=marker).exists()
    use_tenant(personas.alpha.tenant)
    assert Recipient.objects.filter(external_id=marker).exists()
