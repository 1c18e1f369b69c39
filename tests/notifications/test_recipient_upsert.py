"""Recipients are upserted by external_id: written when new or changed, left alone when not, and
returned as they are now every time, also when another transaction writes them at that moment."""

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from notifications.models import Category, Recipient
from notifications.pipeline import RecipientSpec, upsert_and_read, upsert_recipients
from tests.conftest import Personas


def stored(external_id: str) -> tuple[str, str, Any]:
    """(xmin, xmax, updated_at) of the stored row: what wrote its version (a new xmin is a new
    version), what last locked it, and when Herald last changed it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xmin::text, xmax::text, updated_at FROM notifications_recipient WHERE external_id = %s",
            [external_id],
        )
        row = cursor.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_an_unchanged_recipient_gets_no_new_row_version(personas: Personas, live_db: None) -> None:
    ext = f"u-{uuid.uuid4()}"
    with schema_context("alpha"):
        first = upsert_recipients([RecipientSpec(external_id=ext, email="ana@example.com", locale="pt")])[ext]
        written = stored(ext)

        # The same fields, or none (a topic's chunk gives the external id only): left as it is.
        for spec in (
            RecipientSpec(external_id=ext, email="ana@example.com"),
            RecipientSpec(external_id=ext),
            RecipientSpec(external_id=ext, locale="pt"),
        ):
            again = upsert_recipients([spec])[ext]
            assert (again.id, again.email, again.locale) == (first.id, "ana@example.com", "pt")
            assert (stored(ext)[0], stored(ext)[2]) == (written[0], written[2])  # no new version

        # A changed field is written; the fields not given keep their stored values.
        changed = upsert_recipients([RecipientSpec(external_id=ext, phone="+14155550100")])[ext]
        assert (changed.id, changed.email, changed.phone, changed.locale) == (
            first.id,
            "ana@example.com",
            "+14155550100",
            "pt",
        )
        assert stored(ext)[0] != written[0]
        assert stored(ext)[2] > written[2]


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
        for_all = [
            RecipientSpec(external_id=new, email="new@example.com"),
            RecipientSpec(external_id=same, email="same@example.com"),
            RecipientSpec(external_id=moved, email="moved@example.com"),
        ]
        known = upsert_and_read(for_all, [category.key])
        unchanged_only = upsert_and_read(for_all[1:2], [category.key])
    assert set(known.recipients) == {new, same, moved}
    assert known.recipients[same].id == str(before[same].id)
    assert known.recipients[same].email == "same@example.com"
    assert known.recipients[moved].id == str(before[moved].id)
    assert known.recipients[moved].email == "moved@example.com"
    assert known.recipients[new].email == "new@example.com"
    # The statement's other reads come along, also when nothing was written.
    assert known.categories["upsert-test"].pk == category.pk
    assert unchanged_only.recipients[same].id == str(before[same].id)
    assert unchanged_only.categories["upsert-test"].pk == category.pk


# --- against another transaction ------------------------------------------------------------------


def _connect() -> Any:
    settings = connection.settings_dict
    return psycopg2.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        password=settings["PASSWORD"] or None,
    )


class OtherTransaction:
    """Another connection's transaction, left open until `commit()`."""

    def __init__(self) -> None:
        self.connection = _connect()
        self.cursor = self.connection.cursor()
        self.cursor.execute("SET search_path TO alpha")

    def run(self, sql: str, params: list[Any]) -> None:
        self.cursor.execute(sql, params)

    def commit(self) -> None:
        self.connection.commit()


@pytest.fixture
def other_transaction() -> Iterator[OtherTransaction]:
    other = OtherTransaction()
    yield other
    other.connection.close()


def _upsert_meanwhile(spec: RecipientSpec, other_commit: Callable[[], None]) -> Recipient:
    """Upsert `spec` in a thread while another transaction holds its row; commit that one once the
    upsert is seen waiting for it (pg_stat_activity), and return what the upsert returned."""
    result: dict[str, Any] = {}

    def upsert() -> None:
        try:
            with schema_context("alpha"):
                result["recipients"] = upsert_recipients([spec])
        except Exception as exc:  # reported below, in the test's thread
            result["error"] = exc
        finally:
            connection.close()

    worker = threading.Thread(target=upsert)
    worker.start()
    watcher = _connect()
    watcher.autocommit = True
    try:
        deadline = time.monotonic() + 10
        waiting = 0
        while not waiting and time.monotonic() < deadline:
            with watcher.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE %s",
                    ["%INSERT INTO%notifications_recipient%ON CONFLICT%"],
                )
                waiting = cursor.fetchone()[0]
            time.sleep(0.02)
        assert waiting, "the upsert never waited for the other transaction"
    finally:
        watcher.close()
        other_commit()
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert "error" not in result, result.get("error")
    recipients: dict[str, Recipient] = result["recipients"]
    return recipients[spec.external_id]


def test_a_recipient_another_transaction_inserts_meanwhile_is_returned(
    personas: Personas, live_db: None, other_transaction: OtherTransaction
) -> None:
    """The other row is committed after the upsert's snapshot was taken: the INSERT meets it and
    leaves it alone (same fields), and the upsert reads it in a new statement."""
    ext, other_id = f"u-{uuid.uuid4()}", str(uuid.uuid4())
    other_transaction.run(
        "INSERT INTO notifications_recipient (id, external_id, email, phone, locale, created_at, "
        "updated_at) VALUES (%s, %s, 'b@example.com', '', '', now(), now())",
        [other_id, ext],
    )
    got = _upsert_meanwhile(RecipientSpec(external_id=ext, email="b@example.com"), other_transaction.commit)
    assert (str(got.id), got.email) == (other_id, "b@example.com")
    with schema_context("alpha"):
        assert Recipient.objects.filter(external_id=ext).count() == 1


@pytest.mark.parametrize("given", ["the changed field", "another field"])
def test_a_change_another_transaction_commits_meanwhile_is_what_is_returned(
    personas: Personas, live_db: None, other_transaction: OtherTransaction, given: str
) -> None:
    """Another request changed the recipient a moment before, and this one gives a field that
    matches what is now stored: the upsert waits for that request and returns the recipient as it
    made it, never as its own snapshot began (a mail to the address just replaced)."""
    ext = f"u-{uuid.uuid4()}"
    with schema_context("alpha"):
        upsert_recipients([RecipientSpec(external_id=ext, email="old@example.com", phone="+14155550100")])
    if given == "the changed field":  # the other changes the email; this one gives the new email
        change, spec = "email = 'new@example.com'", RecipientSpec(external_id=ext, email="new@example.com")
        expected = ("new@example.com", "+14155550100")
    else:  # the other changes the phone; this one gives the (unchanged) email
        change, spec = "phone = '+14155550199'", RecipientSpec(external_id=ext, email="old@example.com")
        expected = ("old@example.com", "+14155550199")
    other_transaction.run(f"UPDATE notifications_recipient SET {change} WHERE external_id = %s", [ext])
    got = _upsert_meanwhile(spec, other_transaction.commit)
    assert (got.email, got.phone) == expected


def test_a_recipient_named_by_external_id_alone_is_read_without_a_lock(
    personas: Personas, live_db: None
) -> None:
    """A topic's chunks name their recipients by external id only: such a recipient is read (not
    locked, no insert attempted); one that does not exist yet is created, as before."""
    known, new = f"u-{uuid.uuid4()}", f"u-{uuid.uuid4()}"
    with schema_context("alpha"):
        upsert_recipients([RecipientSpec(external_id=known, email="ana@example.com")])
        before = stored(known)
        got = upsert_recipients([RecipientSpec(external_id=known), RecipientSpec(external_id=new)])
        assert stored(known) == before  # no new version, and no lock left on it
    assert got[known].email == "ana@example.com"
    assert (got[new].external_id, got[new].email) == (new, "")


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
