"""Rendering tenant-written text in a Jinja2 sandbox with a bounded cost.

Tenants write `Hello {{ name }}`; Jinja's sandbox keeps templates away from Python internals
(`__class__`, `__mro__`, ...), and StrictUndefined turns a variable missing from `data` into an
error the API reports instead of a silent blank.

The sandbox alone bounds access, not cost: nested loops, `~` doubling, `|center(10**9)` or a big
`**` could hold a web thread or a worker for minutes. Templates are rendered inside the API
request, so we bound the cost ourselves:
- every loop iteration, every call (functions, macros) and every arithmetic operation spends
  one unit of a per-render budget (MAX_OPERATIONS); loops get the budget through an AST rewrite
  that wraps each loop's iterable, and recursive loops are refused;
- no value (string or list) may grow past MAX_VALUE, whether by `*`, `+`, `~` or a filter;
- `%` on strings, `str.format` and the width-taking filters are refused or capped;
- output past MAX_OUTPUT stops the render.
"""

import contextvars
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, filters, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_OUTPUT = 1_000_000  # characters per render
MAX_VALUE = 100_000  # characters (or items) per value
MAX_OPERATIONS = 20_000  # loop iterations + calls + arithmetic per render
MAX_RANGE = 10_000
MAX_WIDTH = 1_000  # for center, indent, wordwrap
MAX_INT_BITS = 4_096

# String methods that can build huge strings from small inputs.
_UNSAFE_STR_METHODS = frozenset(
    {"format", "format_map", "center", "ljust", "rjust", "zfill", "expandtabs", "join", "replace"}
)

_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("herald_render_budget")


class RenderError(ValueError):
    """The template cannot be rendered with this data; the message says why."""


def _spend(units: int = 1) -> None:
    budget = _budget.get(None)
    if budget is None:
        return
    budget[0] -= units
    if budget[0] < 0:
        raise SecurityError(f"template does too much work (more than {MAX_OPERATIONS} steps)")


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE:
        raise SecurityError(f"a value of {len(value)} items is longer than {MAX_VALUE}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError("a number is too large")
    return value


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend()
        yield item


def _concat(*parts: Any) -> str:
    total = sum(len(p) if isinstance(p, str) else 0 for p in parts)
    if total > MAX_VALUE:
        raise SecurityError(f"joining would make a value longer than {MAX_VALUE}")
    _spend()
    joined: str = _check_size("".join(map(str, parts)))
    return joined


class _Bounded(NodeTransformer):
    """Wrap every loop's iterable in `_counted`, every `~` in `_concat`; refuse recursive loops."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if node.recursive:
            raise SecurityError("recursive loops are not allowed in templates")
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name("__herald_counted", "load"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name("__herald_concat", "load"), list(node.nodes), [], None, None)


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"-", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(left.bit_length(), 1) * right > MAX_INT_BITS:
                    raise SecurityError("a power that large is not allowed")
            elif isinstance(right, int | float) and abs(right) > 1024:
                raise SecurityError("a power that large is not allowed")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_VALUE
                ):
                    raise SecurityError(f"repetition would make a value longer than {MAX_VALUE}")
        both_sequences = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        if operator == "+" and both_sequences and len(left) + len(right) > MAX_VALUE:
            raise SecurityError(f"joining would make a value longer than {MAX_VALUE}")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("string formatting with % is not allowed; use filters")
        return _check_size(super().call_binop(context, operator, left, right))

    def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
        _spend()
        return super().call_unop(context, operator, arg)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        # Jinja hands str.format / format_map to its own formatter before any attribute check;
        # widths and precisions can allocate without limit, so refuse them here.
        is_format = callable(value) and getattr(value, "__name__", "") in ("format", "format_map")
        if is_format and isinstance(getattr(value, "__self__", None), str):
            raise SecurityError("str.format is not allowed in templates; use filters")
        return super().wrap_str_format(value)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree: nodes.Template = _Bounded().visit(super()._parse(source, name, filename))
        return tree


def _bounded_range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise SecurityError(f"range of {len(values)} items is larger than {MAX_RANGE}")
    return values


def _width_limited(name: str) -> Any:
    original = filters.FILTERS[name]

    def limited(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > MAX_WIDTH:
            raise SecurityError(f"{name} width {width} is larger than {MAX_WIDTH}")
        _check_size(value)
        return _check_size(original(value, width, *args, **kwargs))

    return limited


def _bounded_join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if sum(len(str(i)) for i in items[: MAX_VALUE + 1]) + len(d) * max(len(items) - 1, 0) > MAX_VALUE:
        raise SecurityError(f"join would make a value longer than {MAX_VALUE}")
    return str(filters.do_join(eval_ctx, items, d, attribute))


def _bounded_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    occurrences = str(s).count(str(old)) if old else len(str(s)) + 1
    if len(str(s)) + occurrences * max(len(str(new)) - len(str(old)), 0) > MAX_VALUE:
        raise SecurityError(f"replace would make a value longer than {MAX_VALUE}")
    return str(filters.do_replace(eval_ctx, s, old, new, count))


_bounded_join.jinja_pass_arg = filters.do_join.jinja_pass_arg  # type: ignore[attr-defined]
_bounded_replace.jinja_pass_arg = filters.do_replace.jinja_pass_arg  # type: ignore[attr-defined]

_env = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, auto_reload=False)
_env.globals["range"] = _bounded_range
_env.globals["__herald_counted"] = _counted
_env.globals["__herald_concat"] = _concat
for _name in ("center", "indent", "wordwrap", "truncate"):
    _env.filters[_name] = _width_limited(_name)
_env.filters["join"] = _bounded_join
_env.filters["replace"] = _bounded_replace
del _env.filters["format"]  # printf-style widths can allocate without limit


@lru_cache(maxsize=2048)
def _compiled(source: str) -> Template:
    # Compiling is most of a render's cost, and the same texts come back (a broadcast, a template).
    return _env.from_string(source)


# Names Jinja itself gives a meaning inside a template (`{{ self }}` is the template): left to it.
_JINJA_NAMES = frozenset({"self", "loop", "caller", "varargs", "kwargs", "super"})


@lru_cache(maxsize=2048)
def _printed_names(source: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(texts, names) if `source` is only literal text and `{{ name }}` prints of plain names,
    as Jinja parsed it (so with its whitespace rules): its output is then texts[0], names[0]'s
    value, texts[1], ... Else None."""
    try:
        tree = _env.parse(source)
    except (TemplateError, SecurityError):
        return None
    texts, names = [""], []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                texts[-1] += child.data
            elif isinstance(child, nodes.Name) and child.ctx == "load" and child.name not in _JINJA_NAMES:
                names.append(child.name)
                texts.append("")
            else:
                return None
    return tuple(texts), tuple(names)


def render(source: str, data: dict[str, Any]) -> str:
    """`source` rendered with `data`, within the bounds above; RenderError says why not."""
    plain = _printed_names(source)
    if plain is None or not all(name in data for name in plain[1]):
        return _render(source, data)
    # What Jinja prints for `{{ name }}` is str(value): most texts are like this, and joining them
    # here costs a few microseconds against Jinja's ~40 (a batch renders thousands). The output is
    # bounded as it grows, as Jinja's is: a value printed many times must not build it first.
    texts, names = plain
    values: dict[str, str] = {}
    parts = [texts[0]]
    size = len(texts[0])
    for name, text in zip(names, texts[1:], strict=True):
        value = values.get(name)
        if value is None:
            try:
                value = values[name] = str(data[name])
            except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError, MemoryError) as exc:
                raise RenderError(f"{exc.__class__.__name__}: {exc}") from None
        size += len(value) + len(text)
        if size > MAX_OUTPUT:
            raise RenderError(f"output is longer than {MAX_OUTPUT} characters")
        parts.append(value)
        parts.append(text)
    return "".join(parts)


def _render(source: str, data: dict[str, Any]) -> str:
    token = _budget.set([MAX_OPERATIONS])
    try:
        chunks: list[str] = []
        size = 0
        for chunk in _compiled(source).generate(data):
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
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError, MemoryError) as exc:
        raise RenderError(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        _budget.reset(token)


def check_syntax(source: str) -> None:
    """Raise jinja2.TemplateSyntaxError if `source` doesn't parse (nothing is rendered)."""
    _env.parse(source)


@lru_cache(maxsize=256)
def prints_only(source: str, names: frozenset[str]) -> bool:
    """Whether `source` uses each of `names` only by printing it as it is (`{{ name }}`).

    Then its output differs between two contexts that differ only in those names by exactly
    those printed values, and one render can serve many contexts (see compose.SharedContent).
    Any other use (a filter, a test, a condition, an assignment, a macro argument) says no,
    and so does a template that does not parse or that draws random values (`random`,
    `lipsum`), which would then be drawn once for everyone instead of once per context.
    """
    try:
        tree = _env.parse(source)
    except TemplateError:
        return False
    if any(f.name == "random" for f in tree.find_all(nodes.Filter)):
        return False
    if any(n.name == "lipsum" for n in tree.find_all(nodes.Name)):
        return False
    printed: set[int] = set()
    for output in tree.find_all(nodes.Output):
        printed.update(id(n) for n in output.nodes if isinstance(n, nodes.Name) and n.ctx == "load")
    return all(id(n) in printed for n in tree.find_all(nodes.Name) if n.name in names)
