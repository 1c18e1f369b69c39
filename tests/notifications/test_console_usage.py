"""The console's usage page: rate limits as enforced, deliveries today and this month."""

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from notifications.models import Delivery
from tests.conftest import Personas

from .console_helpers import member, owner, signed_in

pytestmark = pytest.mark.django_db

STATUSES = ["queued", "sending", "sent", "delivered", "failed", "bounced", "suppressed"]


def usage(page: str, table: int) -> dict[str, dict[str, int]]:
    """{channel: {status: n, "total": n}} from the page's table (1: today, 2: this month)."""
    if f'id="usage-{table}"' not in page:
        return {}
    body = page.split(f'id="usage-{table}"')[1].split("</table>")[0]
    out = {}
    for row in re.findall(r"<tr><td>(?:<strong>)?(\w+)(?:</strong>)?</td>(.*?)</tr>", body):
        numbers = [int(n) for n in re.findall(r'<td class="num">(?:<strong>)?(\d+)', row[1])]
        out[row[0]] = dict(zip([*STATUSES, "total"], numbers, strict=True))
    return out


def send(personas: Personas, channel: str, n: int) -> None:
    recipient = {"external_id": "usage-1", "email": "usage@example.com"}
    for _ in range(n):
        body = {"recipient": recipient, "channels": [channel], "subject": "Hi", "body": "Usage"}
        response = personas.beta.client().post(
            "/api/v1/notifications", json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 202, response.content


def test_usage_counts_what_was_sent_today_and_this_month(personas: Personas) -> None:
    client = owner(personas.beta.domain)
    before = client.get("/console/usage/").content.decode()
    send(personas, "email", 3)
    send(personas, "in_app", 2)
    with schema_context("beta"):  # one from last month counts in neither period
        old = Delivery.objects.filter(channel="email").order_by("-created_at").first()
        assert old is not None
        month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        Delivery.objects.filter(pk=old.pk).update(created_at=month_start - timedelta(seconds=1))
    after = client.get("/console/usage/").content.decode()
    for table in (1, 2):
        was, now = usage(before, table), usage(after, table)

        def count(shown: dict[str, dict[str, int]], channel: str, status: str) -> int:
            return shown.get(channel, {}).get(status, 0)

        # With no worker in this test, the deliveries wait in `queued`.
        assert count(now, "email", "queued") - count(was, "email", "queued") == 2
        assert count(now, "in_app", "queued") - count(was, "in_app", "queued") == 2
        assert count(now, "All", "total") - count(was, "All", "total") == 4
        assert count(now, "sms", "total") == count(was, "sms", "total")


def test_each_period_is_one_grouped_query(personas: Personas) -> None:
    client = owner(personas.beta.domain)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/console/usage/").status_code == 200
    on_deliveries = [q["sql"] for q in queries.captured_queries if '"notifications_delivery"' in q["sql"]]
    assert len(on_deliveries) == 2
    assert all("GROUP BY" in sql for sql in on_deliveries)


def test_a_viewer_sees_the_limits_and_that_no_plan_limits_are_set(personas: Personas) -> None:
    member("beta", "una@beta.test", "viewer")
    response = signed_in(personas.beta.domain, "una@beta.test").get("/console/usage/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "No plan limits set" in page
    limits = page.split('id="send-limits"')[1].split("</table>")[0]
    assert re.search(
        r"<td>email</td><td class=\"num\">500</td><td class=\"num\">500</td><td>platform default", limits
    )
    assert re.search(r"<td>sms</td><td class=\"num\">50</td>", limits)
    api = page.split('id="api-limits"')[1].split("</table>")[0]
    assert f"hk_{personas.beta.api_key.split('_')[1]}_" in api
    assert '<td class="num">100</td><td class="num">200</td>' in api


def test_a_tenants_own_send_limit_is_the_one_shown(personas: Personas) -> None:
    tenant = personas.beta.tenant
    tenant.rate_limits = {"email": {"rate": 5, "burst": 7}}
    tenant.save()
    page = owner(personas.beta.domain).get("/console/usage/").content.decode()
    limits = page.split('id="send-limits"')[1].split("</table>")[0]
    assert re.search(r"<td>email</td><td class=\"num\">5</td><td class=\"num\">7</td><td>set for", limits)


def test_a_tenant_with_nothing_sent_is_told_where_numbers_come_from(personas: Personas) -> None:
    member("alpha", "new@alpha.test", "viewer")
    with schema_context("alpha"):
        Delivery.objects.all().delete()
    page = signed_in(personas.alpha.domain, "new@alpha.test").get("/console/usage/").content.decode()
    assert "Nothing sent today yet" in page
    assert "Nothing sent this month yet" in page


def test_usage_is_for_signed_in_members_on_the_tenants_domain_only(personas: Personas) -> None:
    assert Client(HTTP_HOST=personas.beta.domain).get("/console/usage/").status_code == 302
    assert Client(HTTP_HOST="localhost").get("/console/usage/").status_code == 404
