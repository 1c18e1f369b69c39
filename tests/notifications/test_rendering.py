"""The template sandbox: no way into Python, and a bounded cost for whatever a tenant writes."""

import time

import pytest

from notifications.rendering import RenderError, render

DATA = {"name": "Ana", "items": [str(i) for i in range(2000)]}

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__ }}",
    "{{ name.__class__.__init__ }}",
    "{{ self._TemplateReference__context }}",
    "{% set x = name.upper.__self__ %}{{ x.__class__ }}",
]

COST_BOMBS = [
    "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in items %}{% for j in items %}{% for k in items %}.{% endfor %}{% endfor %}{% endfor %}",
    "{{ ([('x'*1000)]*100000)|join }}",
    "{% set a = 'x' * 9000 %}" + "{% set a = a ~ a %}" * 14 + "{{ a|length }}",
    "{{ 'x'|center(200000000) }}",
    "{{ 'x'|indent(200000000) }}",
    "{{ '%200000000d' % 1 }}",
    "{{ '{:>200000000}'.format(1) }}",
    "{{ '{0:>200000000}'.format_map({}) }}",
    "{{ (((9**64)**64)**64)**64 }}",
    "{{ 9**9999999 }}",
    "{{ 'x' * 10**9 }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "{% macro f(n) %}{% if n < 25 %}{{ f(n+1) }}{{ f(n+1) }}{% endif %}{% endmacro %}{{ f(0) }}",
    "{% for x in range(100) recursive %}{{ loop(range(100)) }}{% endfor %}",
    "{{ 'ab'|replace('a', 'x' * 99999)|replace('x', 'yy') }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_it_refuses_a_way_into_python(template: str) -> None:
    with pytest.raises(RenderError, match=r"not allowed|unsafe|undefined"):
        render(template, DATA)


@pytest.mark.parametrize("template", COST_BOMBS)
def test_a_costly_template_stops_quickly_with_a_clear_error(template: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(template, DATA)
    # Generous for a noisy machine: unbounded, each of these runs for minutes or exhausts memory.
    assert time.monotonic() - started < 3.0
    assert "not allowed" in str(caught.value) or "too much work" in str(caught.value)


def test_ordinary_templates_still_work() -> None:
    template = (
        "Hello {{ name }}, {{ items|length }} items: {% for i in items[:3] %}{{ i }} {% endfor %}"
        "{{ 3 * 4 }} {{ name ~ '!' }} {{ name|upper }} {{ 'a,b'|replace(',', ';') }} "
        "{{ items[:2]|join('+') }}"
        "{% if name %} yes{% endif %} {{ '%.2f'|length }}"
    )
    assert render(template, DATA) == "Hello Ana, 2000 items: 0 1 2 12 Ana! ANA a;b 0+1 yes 4"


def test_a_loop_over_data_of_moderate_size_is_fine() -> None:
    assert render("{% for i in items %}{{ i }},{% endfor %}", DATA).count(",") == 2000


def test_a_missing_variable_names_itself() -> None:
    with pytest.raises(RenderError, match="'nickname' is undefined"):
        render("Hi {{ nickname }}", DATA)


PLAIN_TEMPLATES = [
    "",
    "Your weekly digest",
    "Ends with a newline\n",
    "Two newlines\n\n",
    "Hello {{ name }}, here is your code: {{ code }}.",
    "{{ name }}",
    "{{name}}{{ name }} twice, {{ count }} times",
    "  {{- name -}}  , trimmed",
    "{# a comment #}Hi {{ name }}{# another #}",
    "{% raw %}{{ not a print }}{% endraw %} then {{ name }}",
    "Unicode: {{ greeting }} ✓",
    "{{ flag }} {{ nothing }} {{ price }} {{ tags }} {{ nested }}",
    "Shadows a global: {{ range }}",
]
PLAIN_DATA = {
    "name": "Ana",
    "code": 4821,
    "count": 2,
    "greeting": "Olá",
    "flag": True,
    "nothing": None,
    "price": 9.5,
    "tags": ["a", "b"],
    "nested": {"k": [1, {"x": None}]},
    "range": "given",
}


@pytest.mark.parametrize("template", PLAIN_TEMPLATES)
def test_plain_prints_render_as_jinja_renders_them(template: str) -> None:
    from notifications.rendering import _printed_names, _render

    assert _printed_names(template) is not None  # each takes the quick path
    assert render(template, PLAIN_DATA) == _render(template, PLAIN_DATA)


@pytest.mark.parametrize(
    "template",
    [
        "{{ name|upper }}",
        "{{ name ~ '!' }}",
        "{% if name %}{{ name }}{% endif %}",
        "{{ tags[0] }}",
        "{{ n.k }}",
    ],
)
def test_anything_but_a_plain_print_is_left_to_jinja(template: str) -> None:
    from notifications.rendering import _printed_names

    assert _printed_names(template) is None


def test_a_missing_variable_is_reported_by_jinja_as_before() -> None:
    with pytest.raises(RenderError, match="'missing' is undefined"):
        render("Hello {{ missing }}", {"name": "Ana"})


def test_a_plain_print_past_the_output_limit_stops_before_the_output_is_built() -> None:
    import tracemalloc

    from notifications.rendering import MAX_OUTPUT

    template = "{{ a }}" * 2000
    value = "x" * 100_000  # 2,000 prints of it: 200 MB if the output were built first
    tracemalloc.start()
    try:
        with pytest.raises(RenderError, match=f"output is longer than {MAX_OUTPUT} characters"):
            render(template, {"a": value})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_names_jinja_gives_a_meaning_are_left_to_it() -> None:
    from notifications.rendering import _printed_names, _render

    assert _printed_names("Hi {{ self }}") is None
    assert render("Hi {{ self }}", {"self": "Ann"}) == _render("Hi {{ self }}", {"self": "Ann"})
