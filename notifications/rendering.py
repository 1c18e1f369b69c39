"""Rendering tenant-written text in a Jinja2 sandbox.

Tenants write `Hello {{ name }}`; the sandbox keeps templates away from Python internals
(`__class__`, `__mro__`, ...), and StrictUndefined turns a variable missing from `data` into an
error the API reports instead of a silent blank.
"""

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, auto_reload=False)


class RenderError(ValueError):
    """The template cannot be rendered with this data; the message says why."""


def render(source: str, data: dict[str, Any]) -> str:
    try:
        return _env.from_string(source).render(data)
    except SecurityError as exc:
        raise RenderError(f"template uses something not allowed: {exc}") from None
    except TemplateError as exc:
        raise RenderError(str(exc)) from None
