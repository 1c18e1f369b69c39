"""Console: templates (list, create and edit their variants per channel, preview with sample data).

Saving goes through the API's TemplateSerializer, so the console and `/api/v1/templates` keep one
set of rules. Preview renders with compose.render_content, as a send does, and reports an error
per channel and field instead of failing the page.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from jinja2 import Environment, TemplateSyntaxError, meta

from tenant_platform.api_errors import flatten_errors

from ..api.templates_api import TemplateSerializer, VariantSerializer
from ..compose import (
    LINK_VARIABLES,
    ComposeError,
    Source,
    locale_chain,
    placeholder_links,
    render_content,
)
from ..models import Channel, Template
from ..rendering import RenderError
from ..rendering import render as render_text
from .roles import ADMIN, can, console_view

VARIANT_FIELDS = ("channel", "locale", "subject", "text", "html", "url")
TEXT_FIELDS = ("subject", "text", "html", "url")
FIELD_LABELS: dict[str, dict[str, str]] = {
    Channel.EMAIL: {"subject": "subject", "text": "text", "html": "html"},
    Channel.SMS: {"text": "text"},
    Channel.PUSH: {"subject": "title", "text": "body", "url": "url"},
    Channel.IN_APP: {"subject": "title", "text": "body", "url": "url"},
}
MAX_SAMPLE = 100_000  # characters of sample data


@dataclass
class Preview:
    """What a preview shows: per channel either the rendered content or the errors by field."""

    channels: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # form field -> message


def read_sample(raw: str, errors: dict[str, str]) -> dict[str, Any] | None:
    if len(raw) > MAX_SAMPLE:
        errors["sample"] = f"sample data: at most {MAX_SAMPLE} characters"
        return None
    try:
        data = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        errors["sample"] = f"sample data: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        return None
    if not isinstance(data, dict):
        errors["sample"] = 'sample data: expected a JSON object, like {"name": "Ana"}'
        return None
    return data


def render_preview(
    key: str, variants: list[tuple[str, dict[str, str]]], data: dict[str, Any], locale: str
) -> Preview:
    """Render the variant each channel would use for `locale`, with `data` and placeholder links.

    `variants` are (form prefix, variant fields). Each channel renders on its own, so an error
    in one does not hide the others; an error names the channel, the field and the cause.
    """
    result = Preview()
    by_channel: dict[str, dict[str, tuple[str, dict[str, str]]]] = {}
    for prefix, v in variants:
        by_channel.setdefault(v["channel"], {})[v.get("locale", "").lower().replace("_", "-")] = (prefix, v)
    links = placeholder_links()
    context = {**data, **links}
    for channel in [c for c in Channel.values if c in by_channel]:
        chosen = next(
            (by_channel[channel][c] for c in locale_chain(locale) if c in by_channel[channel]), None
        )
        if chosen is None:
            result.channels.append(
                {"channel": channel, "error": f"no variant for locale {locale!r} or a default one"}
            )
            continue
        prefix, v = chosen
        origin = f"template {key!r} ({channel}, {v.get('locale') or 'default locale'})"
        source = Source(**{f: v.get(f, "") for f in TEXT_FIELDS}, origin=origin)
        entry: dict[str, Any] = {"channel": channel, "locale": v.get("locale") or "default", "prefix": prefix}
        try:
            content = render_content(channel, source, data, links)
            content.pop("list_unsubscribe", None)
            entry["content"] = content
        except ComposeError as exc:
            entry["error"] = exc.message
            # Point at the form field(s) to blame: each one that does not render on its own.
            for source_field, label in FIELD_LABELS[channel].items():
                text = v.get(source_field, "")
                if not text:
                    continue
                try:
                    render_text(text, context)
                except RenderError as field_exc:
                    result.errors[f"{prefix}-{source_field}"] = f"{channel} {label}: {field_exc}"
        result.channels.append(entry)
    return result


def sample_for(variants: list[dict[str, str]]) -> str:
    """Sample data naming every variable the variants use (what a newcomer would have to pass)."""
    names: set[str] = set()
    parser = Environment(autoescape=False)  # noqa: S701 (parsed for variable names only, never rendered)
    for v in variants:
        for f in TEXT_FIELDS:
            try:
                names |= meta.find_undeclared_variables(parser.parse(v.get(f, "") or ""))
            except TemplateSyntaxError:
                continue
    names -= set(LINK_VARIABLES)
    return json.dumps({name: name.replace("_", " ").title() for name in sorted(names)}, indent=2)


def variants_of(template: Template) -> list[dict[str, str]]:
    return [
        {f: getattr(v, f) for f in VARIANT_FIELDS}
        for v in template.variants.all().order_by("channel", "locale")
    ]


@console_view()
def template_list(request: HttpRequest) -> HttpResponse:
    templates = Template.objects.prefetch_related("variants").order_by("key")
    return render(
        request, "console/template_list.html", {"templates": templates, "may_edit": can(request, ADMIN)}
    )


@console_view()
def template_detail(request: HttpRequest, key: str) -> HttpResponse:
    template = get_object_or_404(Template.objects.prefetch_related("variants"), key=key)
    variants = variants_of(template)
    return render(
        request,
        "console/template_detail.html",
        {
            "template": template,
            "variants": variants,
            "sample": sample_for(variants),
            "locale": "",
            "preview": None,
            "errors": {},
            "may_edit": can(request, ADMIN),
        },
    )


@require_POST
@console_view()
def template_preview(request: HttpRequest, key: str) -> HttpResponse:
    """Preview the stored template with sample data (reading, so a viewer may too)."""
    template = get_object_or_404(Template.objects.prefetch_related("variants"), key=key)
    variants = variants_of(template)
    errors: dict[str, str] = {}
    sample = request.POST.get("sample", "")
    locale = request.POST.get("locale", "").strip()[:16]
    data = read_sample(sample, errors)
    preview = None
    if data is not None:
        preview = render_preview(key, [(f"variant-{i}", v) for i, v in enumerate(variants)], data, locale)
        errors.update(preview.errors)
    return render(
        request,
        "console/template_detail.html",
        {
            "template": template,
            "variants": variants,
            "sample": sample,
            "locale": locale,
            "preview": preview,
            "errors": errors,
            "may_edit": can(request, ADMIN),
        },
        status=200,
    )


def _form_variants(post: Any) -> list[tuple[str, dict[str, str]]]:
    """(prefix, fields) of each variant block with any text in it, in the form's order."""
    indexes = sorted(
        {int(k.split("-")[1]) for k in post if k.startswith("variant-") and k.split("-")[1].isdigit()}
    )
    found = []
    for i in indexes[:50]:
        prefix = f"variant-{i}"
        v = {f: post.get(f"{prefix}-{f}", "").replace("\r\n", "\n") for f in VARIANT_FIELDS}
        v["locale"] = v["locale"].strip()
        if not v["locale"]:
            del v["locale"]  # the default locale, as the API takes it: no locale at all
        if any(v[f].strip() for f in TEXT_FIELDS):
            found.append((prefix, v))
    return found


def _serializer_errors(errors: Any, prefixes: list[str]) -> dict[str, str]:
    """The serializer's errors keyed by form field (`variants[1].subject` -> `variant-3-subject`)."""
    out: dict[str, str] = {}
    for path, msgs in flatten_errors(errors).items():
        text = " ".join(msgs)
        if path.startswith("variants[") and "]." in path:
            index, name = path[len("variants[") :].split("].", 1)
            if index.isdigit() and int(index) < len(prefixes):
                out[f"{prefixes[int(index)]}-{name}"] = f"{name}: {text}"
                continue
        out[path.replace(".", "-")] = f"{path}: {text}"
    return out


@console_view(ADMIN)
def template_edit(request: HttpRequest, key: str | None = None) -> HttpResponse:
    template = get_object_or_404(Template.objects.prefetch_related("variants"), key=key) if key else None
    errors: dict[str, str] = {}
    preview = None
    if request.method == "POST":
        values = {
            "key": key or request.POST.get("key", "").strip(),
            "name": request.POST.get("name", "").strip(),
            "category": request.POST.get("category", "").strip(),
        }
        form_variants = _form_variants(request.POST)
        variants = [v for _, v in form_variants]
        blocks = list(form_variants)
        sample = request.POST.get("sample", "")
        locale = request.POST.get("preview_locale", "").strip()[:16]
        if request.POST.get("action") == "preview":
            for prefix, v in form_variants:  # syntax first, with the API's own check
                checked = VariantSerializer(data=v)
                if not checked.is_valid():
                    errors.update(_serializer_errors({"variants": {0: checked.errors}}, [prefix]))
            data = read_sample(sample, errors)
            if not form_variants:
                errors["variants"] = "variants: give at least one variant with some text"
            if data is not None and not errors:
                preview = render_preview(values["key"] or "new", form_variants, data, locale)
                errors.update(preview.errors)
        else:
            serializer = TemplateSerializer(
                instance=template, data={**values, "variants": variants}, partial=False
            )
            if serializer.is_valid():
                saved = serializer.save()
                messages.success(request, f"Template {saved.key!r} saved.")
                return HttpResponseRedirect(reverse("console:template", args=[saved.key]))
            errors = _serializer_errors(serializer.errors, [p for p, _ in form_variants])
    else:
        values = {
            "key": template.key if template else "",
            "name": template.name if template else "",
            "category": template.category if template else "",
        }
        variants = variants_of(template) if template else []
        blocks = [(f"variant-{i}", v) for i, v in enumerate(variants)]
        sample = sample_for(variants) if template else "{}"
        locale = ""
    # One empty block to add a variant with (the first channel without one).
    blank_channel = next((c for c in Channel.values if c not in {v["channel"] for v in variants}), "email")
    after = max((int(prefix.split("-")[1]) for prefix, _ in blocks), default=-1) + 1
    blank = dict.fromkeys(VARIANT_FIELDS, "") | {"channel": blank_channel}
    blocks.append((f"variant-{after}", blank))
    return render(
        request,
        "console/template_edit.html",
        {
            "template": template,
            "values": values,
            "blocks": blocks,
            "channels": Channel.values,
            "sample": sample,
            "preview_locale": locale,
            "preview": preview,
            "errors": errors,
        },
        status=400 if errors and request.POST.get("action") != "preview" else 200,
    )


@require_POST
@console_view(ADMIN)
def template_delete(request: HttpRequest, key: str) -> HttpResponse:
    template = get_object_or_404(Template, key=key)
    template.delete()
    messages.success(request, f"Template {key!r} deleted.")
    return HttpResponseRedirect(reverse("console:templates"))
