"""The one place that turns answer text into what a front-end displays.

Everything that comes from the model, the cache or a notebook variable is *data*: it must never
run script, load a frame or a remote resource, or be typeset as math behind the user's back.

Why we render the Markdown ourselves instead of sending ``text/markdown``:

* JupyterLab and Notebook 7 render raw HTML inside Markdown outputs and run its event handlers
  (``<img src=x onerror=...>`` sets globals in the Jupyter origin, and script there can call the
  server API, which runs code). nbconvert's HTML export keeps such HTML live as well.
* So the answer is parsed with markdown-it-py with ``html`` **disabled** (raw HTML in an answer
  becomes visible text: an answer that discusses ``<script>`` shows the tag), tables and
  strikethrough on (bare URLs stay text: linkify needs linkify-it-py, which is not a
  dependency; ``<https://...>`` autolinks and ``[text](url)`` links work). Images are
  rendered as plain links (a Markdown image is a classic way to leak data to a remote server
  the moment it renders). markdown-it already refuses
  ``javascript:``/``vbscript:``/``data:`` links; the HTML is then sanitised a second time with
  ``nh3`` (ammonia) against an allow-list: structural tags only, no ``style``, no event
  handlers, URL schemes ``http``/``https``/``mailto`` only, every link gets
  ``rel="noopener noreferrer nofollow"`` and ``target="_blank"``, and the only class kept is
  the ``language-*`` class of a code block. Two independent layers: a parser bug alone does not
  make an answer executable.
* The result goes out as ``text/html`` with a ``text/plain`` fallback and never as
  ``text/markdown`` (front-ends prefer Markdown and would re-render it with raw HTML on).

Math: JupyterLab typesets attached HTML outputs with MathJax 3 (``latexTypesetter.typeset(host)``
in ``packages/rendermime/src/renderers.ts``) and does not override MathJax's document options,
so MathJax 3's ``ignoreHtmlClass`` default, ``mathjax_ignore``, applies; nbconvert's classic
MathJax 2 configuration uses ``tex2jax_ignore``. Our wrapper carries both (:data:`NO_MATH`), so
``$0 · cache hit (saved $0.0035)`` reads as prices. Labels, errors, placeholders and footers are
always inside it. The answer body is too, unless the user asks for math (``--math`` or
``%config AgentMagics.math = True``); then math spans are protected from the Markdown parser
(``$$…$$``, ``$…$``, ``\\(…\\)``, ``\\[…\\]`` keep their backslashes and underscores) and left
for MathJax to typeset.
"""

from __future__ import annotations

import html as _html
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

__all__ = ["NO_MATH", "chrome_html", "escape", "markdown_to_html", "output_html", "plain_html"]

#: Classes that make MathJax 3 (JupyterLab, Notebook 7) and MathJax 2 (nbconvert) skip an element.
NO_MATH = "tex2jax_ignore mathjax_ignore"

_TAGS = {
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
    "pre", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "code": {"class"}, "th": {"style"},
               "td": {"style"}}  # fmt: skip
_ALIGN = re.compile(r"text-align:(left|right|center)\Z")
_LANGUAGE_CLASS = re.compile(r"language-[\w+#.-]{1,40}\Z")
_MATH = re.compile(
    r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<![\\$\w])\$(?=\S)[^$\n]+?(?<=\S)\$(?![\w$])", re.S
)
_SLOT_OPEN, _SLOT_CLOSE = "\ue000", "\ue001"
_SLOT = re.compile(f"{_SLOT_OPEN}(\\d+){_SLOT_CLOSE}")


def escape(text: str) -> str:
    """``text`` as HTML text: ``& < > " '`` escaped."""
    return _html.escape(text, quote=True)


@lru_cache(maxsize=2)
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_link)
    return md


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    # Rendered as a link, never as <img>: an image loads its URL the moment the answer renders.
    token = tokens[idx]
    alt = escape(self.renderInlineAsText(token.children or [], options, env) or "image")
    src = escape(str(token.attrGet("src") or ""))
    return f'<a href="{src}">{alt}</a>'


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "class":
        return value if _LANGUAGE_CLASS.match(value) else None
    if attribute == "style":  # only markdown-it's own table alignment
        return value if _ALIGN.match(value.replace(" ", "")) else None
    if attribute == "start":
        return value if value.isdigit() and len(value) < 10 else None
    return value


def sanitize(fragment: str) -> str:
    """Reduce an HTML fragment to the allow-list this module renders answers with."""
    import nh3

    return nh3.clean(
        fragment,
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_ATTRIBUTES,
        attribute_filter=_keep_attribute,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def _protect_math(text: str) -> tuple[str, list[str]]:
    if _SLOT_OPEN in text or _SLOT_CLOSE in text:
        return text, []
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return f"{_SLOT_OPEN}{len(spans) - 1}{_SLOT_CLOSE}"

    return _MATH.sub(keep, text), spans


def markdown_to_html(text: str, *, math: bool = False) -> str:
    """Safe HTML for Markdown ``text`` from a model, the cache or a notebook variable.

    Raw HTML in ``text`` is shown as text; only allow-listed tags, attributes and URL schemes
    survive. With ``math=True`` math spans are passed through untouched (escaped) for MathJax;
    the caller decides whether the result is typeset (see :func:`output_html`).
    """
    spans: list[str] = []
    if math:
        text, spans = _protect_math(text)
    fragment = sanitize(_parser().render(text))
    if spans:
        fragment = _SLOT.sub(lambda m: escape(spans[int(m.group(1))]), fragment)
    return fragment


def plain_html(text: str) -> str:
    """Plain text as preformatted, escaped HTML (``--format text`` and the like)."""
    return f'<pre style="white-space:pre-wrap">{escape(text)}</pre>'


def chrome_html(text: str, *, kind: str) -> str:
    """One of our own lines (label, footer, error, placeholder), escaped and never math.

    ``kind`` is ``label``, ``footer``, ``error`` or ``placeholder``.
    """
    inner = escape(text)
    if kind == "label":
        inner = f"<strong>{inner}</strong>"
    elif kind == "footer":
        inner = f'<sub style="color:#777">{inner}</sub>'
    elif kind == "error":
        inner = f'<span style="color:#b00">{inner}</span>'
    elif kind == "placeholder":
        inner = f'<em style="color:#777">{inner}</em>'
    return f'<div class="cfm-{kind} {NO_MATH}">{inner}</div>'


def body_html(fragment: str, *, math: bool = False) -> str:
    """Wrap an answer fragment already made safe; outside math mode MathJax skips it."""
    classes = "cfm-body" if math else f"cfm-body {NO_MATH}"
    return f'<div class="{classes}">{fragment}</div>'


def output_html(
    text: str,
    *,
    label: str | None = None,
    footer: str = "",
    error: str = "",
    placeholder: str = "",
    math: bool = False,
    markdown: bool = True,
) -> str:
    """The full HTML of one agent's output: label, answer (or placeholder), error, footer."""
    parts = [chrome_html(label, kind="label")] if label else []
    if text:
        fragment = markdown_to_html(text, math=math) if markdown else plain_html(text)
        parts.append(body_html(fragment, math=math))
    elif placeholder:
        parts.append(chrome_html(placeholder, kind="placeholder"))
    if error:
        parts.append(chrome_html(error, kind="error"))
    if footer:
        parts.append(chrome_html(footer, kind="footer"))
    return f'<div class="cfm-output">{"".join(parts)}</div>'


_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})([^\n]*)")


def _closes(line: str, opener: str) -> bool:
    marker = _FENCE_LINE.match(opener)
    found = _FENCE_LINE.fullmatch(line)
    if marker is None or found is None or found.group(2).strip():
        return False
    fence, close = marker.group(1), found.group(1)
    return close[0] == fence[0] and len(close) >= len(fence)


def scan_blocks(text: str, fence: str = "") -> tuple[int, str]:
    """Where the last finished Markdown block of ``text`` ends, and the fence still open.

    Looks at complete lines only. A block is finished after a blank line outside a code fence
    or after a fence's closing line. ``fence`` is the opening line of a fence ``text`` starts
    inside of (``""`` for none). Returns ``(offset, fence)``: the offset just after the last
    finished block (0 if none) and the opening line of the fence open at the last complete
    line (``""`` if none). Used to cut a streaming answer into pieces that render alone.
    """
    boundary = start = 0
    while (end := text.find("\n", start)) != -1:
        line = text[start:end].rstrip("\r")
        start = end + 1
        if fence:
            if _closes(line, fence):
                fence, boundary = "", start
        elif not line.strip():
            boundary = start
        else:
            found = _FENCE_LINE.fullmatch(line)
            if found and not (found.group(1)[0] == "`" and "`" in found.group(2)):
                fence = line
    return boundary, fence
