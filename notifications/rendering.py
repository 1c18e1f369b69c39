"""Rendering tenant-written text in a Jinja2 sandbox.

Tenants write `Hello {{ name }}`; the sandbox keeps templates away from Python internals
(`__class__`, `__mro__`, ...), and StrictUndefined turns a variable missing from `data` into an
error the API reports instead of a silent blank. On top of Jinja's sandbox we bound what a
template can make us compute: `**` and `*` are checked, `range` is capped, and output longer
than MAX_OUTPUT stops the render.
"""

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT = 1_000_000  # characters
MAX_RANGE = 10_000
MAX_EXPONENT = 64


class RenderError(ValueError):
    """The template cannot be rendered with this data; the message says why."""


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            return left**right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                repeats = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if repeats and len(seq) * times > MAX_OUTPUT:
                    raise SecurityError("repetition would produce too much output")
            return left * right
        return super().call_binop(context, operator, left, right)


def _bounded_range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise SecurityError(f"range of {len(values)} items is larger than {MAX_RANGE}")
    return values


_env = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, auto_reload=False)
_env.globals["range"] = _bounded_range


def render(source: str, data: dict[str, Any]) -> str:
    try:
        chunks: list[str] = []
        size = 0
        for chunk in _env.from_string(source).generate(data):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise RenderError(f"output is longer than {MAX_OUTPUT} characters")
            chunks.append(chunk)
        return "".join(chunks)
    except RenderError:
        raise
    except SecurityError as exc:
        raise RenderError(f"template uses something not allowed: {exc}") from None
    except TemplateError as exc:
        raise RenderError(str(exc)) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
        raise RenderError(f"{exc.__class__.__name__}: {exc}") from None
