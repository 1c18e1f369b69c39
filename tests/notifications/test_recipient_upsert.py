"""Recipients are upserted by external_id: written when new or changed, read when not, and
returned every time, also when another transaction inserts them at the same moment."""

import threading
import time
import uuid
from typing import Any

import psycopg2
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from notifications.models import Category
from notifications.pipeline import RecipientSpec, upsert_and_read, upsert_recipients
from tests.conftest import Personas


def row_version(external_id: str) -> tuple[str, Any]:
    """(xmin, updated_at) of the stored row: a new xmin means a new row version was written."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xmin::text, updated_at FROM notifications_recipient WHERE external_id = %s", [external_id]
        )
        row = cursor.fetchone()
    assert row is not None
    return row[0], row[1]


def test_an_unchanged_recipient_is_read_not_rewritten(personas: Personas, live_db: None) -> None:
    ext = f"u-{uuid.uuid4()}"
    with schema_context("alpha"):
        first = upsert_recipients([RecipientSpec(external_id=ext, email="ana@example.com", locale="pt")])[ext]
        written = row_version(ext)

        # The same fields, or none (a topic's chunk gives the external id only): read, not written.
        for spec in (
            RecipientSpec(external_id=ext, email="ana@example.com"),
            RecipientSpec(external_id=ext),
            RecipientSpec(external_id=ext, locale="pt"),
        ):
            again = upsert_recipients([spec])[ext]
            assert (again.id, again.email, again.locale) == (first.id, "ana@example.com", "pt")
            assert row_version(ext) == written

        # A changed field is written; the fields not given keep their stored values.
        changed = upsert_recipients([RecipientSpec(external_id=ext, phone="+14155550100")])[ext]
        assert (changed.id, changed.email, changed.phone, changed.locale) == (
            first.id,
            "ana@example.com",
            "+14155550100",
            "pt",
        )
        assert row_version(ext)[0] != written[0]
        assert row_version(ext)[1] > written[1]


def test_accepting_reads_new_unchanged_and_changed_recipients_alike(
    personas: Personas, live_db: None
) -> None:
    new, same, moved = (f"u-{uuid.uuid4()}" for _ in range(3))
    with schema_context("alpha"):
        before = upsert_recipients(
            [
                RecipientSpec(external_id=same, email="same@example.com"),
                RecipientSpec(external_id=moved, email="old@example.com"),
            ]
        )
        category = Category.objects.get_or_create(key="upsert-test")[0]
        known = upsert_and_read(
            [
                RecipientSpec(external_id=new, email="new@example.com"),
                RecipientSpec(external_id=same, email="same@example.com"),
                RecipientSpec(external_id=moved, email="moved@example.com"),
            ],
            [category.key],
        )
    assert set(known.recipients) == {new, same, moved}
    assert known.recipients[same].id == str(before[same].id)
    assert known.recipients[same].email == "same@example.com"
    assert known.recipients[moved].id == str(before[moved].id)
    assert known.recipients[moved].email == "moved@example.com"
    assert known.recipients[new].email == "new@example.com"
    assert known.categories["upsert-test"].pk == category.pk  # the statement's other reads still come


def test_a_recipient_another_transaction_inserts_meanwhile_is_returned(
    personas: Personas, live_db: None
) -> None:
    """The other transaction's row is committed after this statement's snapshot was taken: the
    INSERT meets it and leaves it alone (same fields), the snapshot can't see it, and the upsert
    reads it again rather than leave it out."""
    ext = f"u-{uuid.uuid4()}"
    other_id = str(uuid.uuid4())
    settings = connection.settings_dict
    other = psycopg2.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        password=settings["PASSWORD"] or None,
    )
    result: dict[str, Any] = {}

    def upsert() -> None:
        try:
            with schema_context("alpha"):
                started = time.monotonic()
                result["recipients"] = upsert_recipients(
                    [RecipientSpec(external_id=ext, email="b@example.com")]
                )
                result["waited"] = time.monotonic() - started
        finally:
            connection.close()

    try:
        with other.cursor() as raw:  # a transaction, left open
            raw.execute("SET search_path TO alpha")
            raw.execute(
                "INSERT INTO notifications_recipient (id, external_id, email, phone, locale, created_at, "
                "updated_at) VALUES (%s, %s, 'b@example.com', '', '', now(), now())",
                [other_id, ext],
            )
        worker = threading.Thread(target=upsert)
        worker.start()
        time.sleep(0.5)  # the upsert has begun, and waits for this transaction
        assert worker.is_alive()
        other.commit()
        worker.join(timeout=10)
        assert not worker.is_alive()
    finally:
        other.close()
    assert result["waited"] >= 0.4
    assert str(result["recipients"][ext].id) == other_id
    assert result["recipients"][ext].email == "b@example.com"
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notifications_recipient WHERE external_id = %s", [ext])
        assert cursor.fetchone() == (1,)


@pytest.mark.parametrize("twice", [False, True])
def test_the_same_external_id_twice_in_one_call_is_one_recipient(
    personas: Personas, live_db: None, twice: bool
) -> None:
    ext = f"u-{uuid.uuid4()}"
    with schema_context("alpha"):
        if twice:  # it exists already
            upsert_recipients([RecipientSpec(external_id=ext, email="first@example.com")])
        got = upsert_recipients(
            [
                RecipientSpec(external_id=ext, email="a@example.com"),
                RecipientSpec(external_id=ext, email="b@example.com", locale="en"),
            ]
        )
    assert list(got) == [ext]
    assert (got[ext].email, got[ext].locale) == ("b@example.com", "en")
