"""Tenant slugs and the schema names derived from them.

We validate schema names ourselves rather than trusting django-tenants' check, which let quotes
through in some versions: a schema name reaches `SET search_path` and DDL.
"""

import re

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SLUG_MAX_LENGTH = 40
# Slugs that would collide with PostgreSQL's own schemas, with hosts Herald serves itself, or with
# the fair dispatcher's own Redis keys beside each tenant's held list (`herald:fair:<priority>:
# <schema>` beside `...:tenants` and `...:contended`; notifications.dispatch).
RESERVED_SLUGS = frozenset(
    {"public", "information-schema", "www", "api", "admin", "static", "console", "tenants", "contended"}
)


class InvalidSlug(ValueError):
    """The slug cannot name a tenant; the message says why."""


def validate_slug(slug: str) -> str:
    if not slug:
        raise InvalidSlug("slug is empty")
    if len(slug) > SLUG_MAX_LENGTH:
        raise InvalidSlug(f"slug {slug!r} is longer than {SLUG_MAX_LENGTH} characters")
    if not SLUG_RE.fullmatch(slug):
        raise InvalidSlug(
            f"slug {slug!r} must start with a letter and use only lowercase letters, digits "
            "and single hyphens between them"
        )
    if slug in RESERVED_SLUGS or slug.startswith("pg-"):
        raise InvalidSlug(f"slug {slug!r} is reserved")
    return slug


def schema_for_slug(slug: str) -> str:
    """The schema name of a tenant: its slug with hyphens as underscores (one-to-one)."""
    schema = validate_slug(slug).replace("-", "_")
    if not is_valid_schema_name(schema):  # cannot happen for a valid slug; checked all the same
        raise InvalidSlug(f"slug {slug!r} gives an invalid schema name")
    return schema


def is_valid_schema_name(name: str) -> bool:
    return bool(SCHEMA_RE.fullmatch(name)) and not name.startswith("pg_")
