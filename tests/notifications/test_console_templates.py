"""The console's templates: list, create and edit variants per channel, preview with sample data."""

import json
import uuid
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from notifications.models import Template, TemplateVariant
from tests.conftest import Personas
from tests.notifications.console_support import signed_in, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha(personas: Personas) -> Client:
    return signed_in(personas.alpha.domain, "owner@alpha.test")


def key() -> str:
    return f"tpl-{uuid.uuid4().hex[:8]}"


def stored(k: str, variants: list[dict[str, str]]) -> Template:
    with schema_context("alpha"):
        template = Template.objects.create(key=k, name="Order shipped", category="orders")
        for v in variants:
            TemplateVariant.objects.create(template=template, **v)
        return template


def form(k: str, *variants: dict[str, str], **extra: str) -> dict[str, Any]:
    data: dict[str, Any] = {"key": k, "name": "Order shipped", "category": "orders", **extra}
    for i, v in enumerate(variants):
        for name, value in v.items():
            data[f"variant-{i}-{name}"] = value
    return data


EMAIL = {"channel": "email", "locale": "", "subject": "Order {{ order }} shipped", "text": "Hi {{ name }}"}
SMS = {"channel": "sms", "locale": "", "text": "Order {{ order }} is on its way"}


def test_an_admin_creates_a_template_with_a_variant_per_channel(alpha: Client) -> None:
    k = key()
    response = alpha.post("/console/templates/new/", form(k, EMAIL, SMS, action="save"))
    assert response.status_code == 302
    assert response["Location"] == f"/console/templates/{k}/"
    with schema_context("alpha"):
        template = Template.objects.get(key=k)
        assert sorted(template.variants.values_list("channel", flat=True)) == ["email", "sms"]
    listed = alpha.get("/console/templates/").content.decode()
    assert f'data-template-key="{k}"' in listed


def test_saving_a_template_with_a_syntax_error_names_the_field(alpha: Client) -> None:
    k = key()
    broken = {**EMAIL, "subject": "Order {{ order shipped"}
    response = alpha.post("/console/templates/new/", form(k, broken, action="save"))
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-error-for="variant-0-subject"' in page
    assert "subject: template syntax error on line 1" in page
    with schema_context("alpha"):
        assert not Template.objects.filter(key=k).exists()


def test_a_taken_key_is_refused_by_the_apis_rules(alpha: Client) -> None:
    k = key()
    stored(k, [EMAIL])
    response = alpha.post("/console/templates/new/", form(k, EMAIL, action="save"))
    assert response.status_code == 400
    assert f"a template with key &#x27;{k}&#x27; exists" in response.content.decode()


def test_editing_replaces_the_variants_and_an_emptied_one_is_removed(alpha: Client) -> None:
    k = key()
    stored(k, [EMAIL, SMS])
    page = alpha.get(f"/console/templates/{k}/edit/").content.decode()
    assert "Order {{ order }} is on its way" in page
    emptied_sms = {"channel": "sms", "locale": "", "text": ""}
    new_email = {**EMAIL, "text": "Hello {{ name }}, it is on its way"}
    response = alpha.post(f"/console/templates/{k}/edit/", form(k, new_email, emptied_sms, action="save"))
    assert response.status_code == 302
    with schema_context("alpha"):
        variants = list(Template.objects.get(key=k).variants.values_list("channel", "text"))
    assert variants == [("email", "Hello {{ name }}, it is on its way")]


def test_preview_renders_the_unsaved_form_with_sample_data(alpha: Client) -> None:
    k = key()
    sample = json.dumps({"order": "A-1001", "name": "Ana"})
    response = alpha.post("/console/templates/new/", form(k, EMAIL, SMS, action="preview", sample=sample))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Order A-1001 shipped" in page
    assert "Hi Ana" in page
    assert "Order A-1001 is on its way" in page
    with schema_context("alpha"):
        assert not Template.objects.filter(key=k).exists()  # a preview saves nothing


def test_a_preview_render_error_names_the_channel_and_field(alpha: Client) -> None:
    k = key()
    sample = json.dumps({"order": "A-1001"})  # no name
    response = alpha.post("/console/templates/new/", form(k, EMAIL, SMS, action="preview", sample=sample))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-error-for="variant-0-text"' in page
    assert "email text: &#x27;name&#x27; is undefined" in page
    assert "cannot render the text of template" in page
    assert "Order A-1001 is on its way" in page  # the SMS still renders


def test_bad_sample_data_is_named(alpha: Client) -> None:
    k = key()
    stored(k, [EMAIL])
    response = alpha.post(f"/console/templates/{k}/preview/", {"sample": '{"order": '})
    assert response.status_code == 200
    assert "sample data: not valid JSON" in response.content.decode()
    listed = alpha.post(f"/console/templates/{k}/preview/", {"sample": "[1, 2]"})
    assert "sample data: expected a JSON object" in listed.content.decode()


def test_a_viewer_previews_a_stored_template_but_cannot_change_it(personas: Personas) -> None:
    k = key()
    stored(k, [EMAIL, {"channel": "email", "locale": "pt", "subject": "Pedido {{ order }}", "text": "Oi"}])
    viewer = user_with_role("alpha", personas.alpha.domain, "viewer")
    page = viewer.get(f"/console/templates/{k}/").content.decode()
    assert 'id="edit-template"' not in page
    assert "&quot;order&quot;: &quot;Order&quot;" in page  # sample data names the variables the template uses
    preview = viewer.post(
        f"/console/templates/{k}/preview/", {"sample": '{"order": "B-2", "name": "Bo"}', "locale": "pt-BR"}
    )
    assert "Pedido B-2" in preview.content.decode()  # pt-BR falls back to pt
    assert viewer.get("/console/templates/new/").status_code == 403
    assert viewer.post(f"/console/templates/{k}/edit/", form(k, EMAIL, action="save")).status_code == 403
    assert viewer.post(f"/console/templates/{k}/delete/").status_code == 403
    with schema_context("alpha"):
        assert Template.objects.filter(key=k).exists()


def test_an_admin_deletes_a_template(alpha: Client) -> None:
    k = key()
    stored(k, [EMAIL])
    assert alpha.post(f"/console/templates/{k}/delete/").status_code == 302
    with schema_context("alpha"):
        assert not Template.objects.filter(key=k).exists()


def test_another_tenants_template_is_not_found(personas: Personas) -> None:
    k = key()
    stored(k, [EMAIL])
    beta = signed_in(personas.beta.domain, "owner@beta.test")
    assert beta.get(f"/console/templates/{k}/").status_code == 404
    assert beta.post(f"/console/templates/{k}/preview/", {"sample": "{}"}).status_code == 404
    assert beta.get(f"/console/templates/{k}/edit/").status_code == 404


def test_no_templates_yet_says_what_one_is(personas: Personas) -> None:
    with schema_context("beta"):
        Template.objects.all().delete()  # rolled back after the test
    page = signed_in(personas.beta.domain, "owner@beta.test").get("/console/templates/").content.decode()
    assert "No templates yet" in page
    assert "Create your first template" in page
