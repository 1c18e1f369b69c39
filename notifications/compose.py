"""What each channel's message says: from the request's own text or from a stored template.

A notification gives either inline text (`subject`, `body`, `html`, `url`) or a `template` key.
A template has one variant per channel and locale; the recipient's (or the request's) locale
falls back from `pt-BR` to `pt` to the variant without a locale. Everything is rendered in the
sandbox of notifications.rendering with the request's `data`, plus the links Herald provides
(`unsubscribe_url`, `preferences_url`), once, when the notification is accepted: every retry
then sends the same content, and what was sent can be shown.
"""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .models import Channel, Template, TemplateVariant
from .rendering import MAX_OUTPUT, RenderError, prints_only, render

if TYPE_CHECKING:
    from .links import RecipientLinks

# The fields of Delivery.content per channel, and which source field each is rendered from.
CONTENT_FIELDS: dict[str, dict[str, str]] = {
    Channel.EMAIL: {"subject": "subject", "text": "text", "html": "html"},
    Channel.SMS: {"text": "text"},
    Channel.PUSH: {"title": "subject", "body": "text", "url": "url"},
    Channel.IN_APP: {"title": "subject", "body": "text", "url": "url"},
}
# What each channel cannot do without.
REQUIRED_CONTENT: dict[str, tuple[str, ...]] = {
    Channel.EMAIL: ("subject", "text"),
    Channel.SMS: ("text",),
    Channel.PUSH: ("title",),
    Channel.IN_APP: ("body",),
}
# Link variables available to every template; placeholders while validating a request.
LINK_VARIABLES = ("unsubscribe_url", "preferences_url")


class ComposeError(ValueError):
    """The message can't be composed; `field` names the request field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Source:
    """The unrendered text for one channel, and where it came from (for error messages)."""

    subject: str = ""
    text: str = ""
    html: str = ""
    url: str = ""
    origin: str = ""  # "" for the request's own fields, else "template '<key>' (sms, pt)"


def inline_source(subject: str, body: str, html: str = "", url: str = "") -> Source:
    return Source(subject=subject, text=body, html=html, url=url)


def locale_chain(locale: str) -> list[str]:
    """`pt-BR` -> ["pt-br", "pt", ""]."""
    chain: list[str] = []
    code = locale.strip().lower().replace("_", "-")
    while code:
        chain.append(code)
        code = code.rpartition("-")[0]
    chain.append("")
    return chain


def template_sources(template: Template, channels: list[str], locale: str) -> dict[str, Source]:
    """The best variant of `template` for each channel, or ComposeError naming what's missing."""
    variants: dict[tuple[str, str], TemplateVariant] = {
        (v.channel, v.locale.lower()): v for v in template.variants.all()
    }
    sources = {}
    for channel in channels:
        for code in locale_chain(locale):
            variant = variants.get((channel, code))
            if variant is not None:
                sources[channel] = Source(
                    subject=variant.subject,
                    text=variant.text,
                    html=variant.html,
                    url=variant.url,
                    origin=f"template {template.key!r} ({channel}, {code or 'default locale'})",
                )
                break
        else:
            raise ComposeError("template", f"template {template.key!r} has no {channel} variant")
    return sources


def render_content(
    channel: str, source: Source, data: Mapping[str, Any], links: Mapping[str, str]
) -> dict[str, str]:
    """Delivery.content for `channel`: each field rendered with data and links."""
    context = {**data, **links}
    content: dict[str, str] = {}
    for field, source_field in CONTENT_FIELDS[channel].items():
        text = getattr(source, source_field)
        if not text:
            continue
        try:
            content[field] = render(text, context)
        except RenderError as exc:
            if source.origin:
                message = f"cannot render the {field} of {source.origin} with the given data: {exc}"
                raise ComposeError("template", message) from None
            raise ComposeError(
                _request_field(source_field), f"cannot render with the given data: {exc}"
            ) from None
    for field in REQUIRED_CONTENT[channel]:
        if not content.get(field):
            blame = "template" if source.origin else _request_field(CONTENT_FIELDS[channel][field])
            raise ComposeError(blame, f"required for the {channel} channel")
    return content


def placeholder_links() -> dict[str, str]:
    return {name: f"https://example.invalid/{name}" for name in LINK_VARIABLES}


def _request_field(source_field: str) -> str:
    return {"subject": "subject", "text": "body", "html": "html", "url": "url"}[source_field]


# Stand-ins for the links while rendering once for many recipients: unguessable, so a template
# can't produce one by other means, and made of characters no link contains.
_SENTINELS = {name: f"\x00herald-{name}-{secrets.token_hex(8)}\x00" for name in LINK_VARIABLES}


@dataclass(frozen=True)
class SharedContent:
    """A channel's content rendered once for every recipient whose context differs only by links.

    A broadcast renders the same source with the same data for each recipient; only the signed
    links differ. When the source prints the links as they are and does nothing else with them
    (rendering.prints_only), one render with stand-ins and a substitution per recipient gives
    exactly what a render per recipient would.
    """

    content: dict[str, str]

    @classmethod
    def prepare(cls, channel: str, source: Source, data: Mapping[str, Any]) -> "SharedContent | None":
        """None when the source must be rendered per recipient (or fails to render: then each
        recipient's own render reports the error as before)."""
        names = frozenset(LINK_VARIABLES)
        texts = [getattr(source, f) for f in CONTENT_FIELDS[channel].values()]
        if not all(prints_only(text, names) for text in texts if text):
            return None
        try:
            return cls(render_content(channel, source, data, _SENTINELS))
        except ComposeError:
            return None

    def fits(self, link_length: int) -> bool:
        """Whether the content stays within MAX_OUTPUT with links of up to `link_length` characters."""
        for text in self.content.values():
            grows = sum(text.count(s) * (link_length - len(s)) for s in _SENTINELS.values())
            if grows and len(text) + grows > MAX_OUTPUT:
                return False
        return True

    def for_links(self, links: Mapping[str, str]) -> dict[str, str] | None:
        """The content with these links; None if it would outgrow MAX_OUTPUT (render it then)."""
        content = {}
        for field, text in self.content.items():
            if "\x00" in text:
                for name, sentinel in _SENTINELS.items():
                    text = text.replace(sentinel, links[name])
                if len(text) > MAX_OUTPUT:
                    return None
            content[field] = text
        return content


# --- Content shared by a broadcast's deliveries ---------------------------------------------------

# Delivery.content of a broadcast delivery whose content is the broadcast's own, rendered once,
# with its recipient's links: the row holds only this mark (`required`: the category's, which
# decides the links and List-Unsubscribe), and `expand` rebuilds the content when it is sent or
# shown. The content is ~1 KB that every claim and every status update would copy again, and that
# a chunk would encode, and PostgreSQL parse, once per recipient.
SHARED_KEY = "shared_from_broadcast"


def shared_mark(required: bool) -> dict[str, Any]:
    return {SHARED_KEY: {"required": required}}


class SharedContentGone(LookupError):
    """The broadcast that a shared delivery's content comes from no longer exists."""


_shared_cache: dict[tuple[str, str, str], tuple[dict[str, Any], "SharedContent | None"]] = {}
_SHARED_CACHE_SIZE = 64


def expand(
    content: dict[str, Any],
    *,
    channel: str,
    broadcast_id: str | None,
    recipient_id: str,
    category: str,
    signer: "RecipientLinks | None" = None,
) -> dict[str, Any]:
    """A delivery's content as sent: `content` itself, or for a shared mark the broadcast's
    content with this recipient's links, as the chunk would have rendered it.

    A broadcast's message never changes, so its shared render is kept per process and reused for
    all its deliveries (a few per process at a time: the cache is small and simply emptied when full).
    """
    mark = content.get(SHARED_KEY)
    if mark is None:
        return content
    from .links import RecipientLinks
    from .models import Broadcast

    if broadcast_id is None:
        raise SharedContentGone("its broadcast was deleted before it was sent")
    signer = signer or RecipientLinks()  # it knows the schema (current_schema() is not free)
    key = (signer.schema, broadcast_id, channel)
    cached = _shared_cache.get(key)
    if cached is None:
        message = Broadcast.objects.filter(pk=broadcast_id).values_list("message", flat=True).first()
        if message is None:
            raise SharedContentGone("its broadcast was deleted before it was sent")
        source = Source(**message["sources"][channel])
        if len(_shared_cache) >= _SHARED_CACHE_SIZE:
            _shared_cache.clear()
        cached = _shared_cache[key] = (message, SharedContent.prepare(channel, source, message["data"]))
    message, once = cached
    required = bool(mark.get("required"))
    links = signer.message_links(recipient_id, category, required)
    expanded: dict[str, Any] | None = once.for_links(links) if once is not None else None
    if expanded is None:  # as the chunk did when the shared render could not serve
        expanded = render_content(channel, Source(**message["sources"][channel]), message["data"], links)
    if channel == Channel.EMAIL and not required:
        expanded["list_unsubscribe"] = links["unsubscribe_url"]
    return expanded
