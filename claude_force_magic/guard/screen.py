"""Prompt-injection screening: find instruction overrides and chat-template tokens in a task.

The screen looks for text that tries to *issue* an override, not text that talks about one:
"Explain how prompt injection attacks work" or "Write a function that ignores blank lines" pass;
"Ignore all previous instructions and ..." does not. Each rule (:data:`RULES`) is a regular
expression over a normalised copy of the text, in which

* Unicode is NFKC-normalised (fullwidth ``ｉｇｎｏｒｅ`` becomes ``ignore``) and case-folded;
* invisible characters (zero-width space/joiners, BOM, soft hyphen, word joiner ...) are dropped;
* common Cyrillic and Greek look-alike letters are mapped to Latin ones;
* spaced-out or dotted letters (``i g n o r e``, ``i.g.n.o.r.e``) are joined;
* any run of spaces, newlines and Markdown emphasis markers (``**``, ``_``, ``~~``) between
  words counts as one separator (an underscore inside a snake_case name does not).

A match whose text is directly enclosed in quotes or backticks (``"ignore previous
instructions"``, ```<|im_start|>```) is a *mention* and is not reported: quoting is how people
ask about these strings. Positions in :class:`Finding` refer to the original text.

Policies: ``block`` raises :class:`PromptInjectionError`; ``warn`` logs the rule names (never
the text) and issues an :class:`InjectionWarning`, then returns the findings; ``off`` returns
``()`` without scanning.
"""

from __future__ import annotations

import enum
import re
import unicodedata
import warnings
from dataclasses import dataclass

from ..errors import ConfigurationError, PromptInjectionError
from .logs import get_logger, sanitize_for_log

__all__ = ["RULES", "Finding", "InjectionPolicy", "InjectionWarning", "Rule", "screen"]

_log = get_logger(__name__)


class InjectionPolicy(str, enum.Enum):
    """What :func:`screen` does when it finds an override: ``block``, ``warn`` or ``off``."""

    BLOCK = "block"
    WARN = "warn"
    OFF = "off"

    @classmethod
    def parse(cls, value: InjectionPolicy | str) -> InjectionPolicy:
        """Accept a policy or its name in any case; raise :class:`ConfigurationError` otherwise."""
        if isinstance(value, InjectionPolicy):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ConfigurationError(
            "injection_policy must be 'block', 'warn' or 'off', got "
            f"{sanitize_for_log(value, 40)!r}"
        )


class InjectionWarning(UserWarning):
    """Issued by :func:`screen` under the ``warn`` policy when a task looks like an override."""


@dataclass(frozen=True)
class Finding:
    """One match of a screening rule.

    ``rule`` is the rule's name (see :data:`RULES`), ``excerpt`` the matched text from the
    original task (sanitized, at most 60 characters) and ``position`` its offset in the task.
    """

    rule: str
    excerpt: str
    position: int


@dataclass(frozen=True)
class Rule:
    """A named screening rule: ``pattern`` runs on the normalised text (see module docstring)."""

    name: str
    description: str
    pattern: re.Pattern[str]


# Between words: any whitespace, or none (spaced-out letters are joined first), and Markdown
# emphasis markers (``**ignore** all``, ``_previous_``); an underscore only where it cannot be
# part of a snake_case identifier.
_W = r"(?:\s|[*~]|(?<!\w)_|(?<=\w)_(?!\w))*"
# At least one separator: ``(?:{_SEP}\w+){0,4}`` then skips whole words only (with ``_W`` a
# long word could be split in many ways, and a 100,000-character task took seconds).
_SEP = _W[:-1] + "+"
_VERB_IGNORE = r"(?:ignore|disregard|forget|override|bypass|discard|abandon|neglect|skip)"
_QUALIFIER = (
    r"(?:previous|prior|above|preceding|earlier|former|original|initial|system|developer|"
    r"safety|hidden)"
)
# nouns that name the model's own instructions; "rules" or "messages" alone are too common in code
_NOUN_STRONG = (
    r"(?:instructions?|prompts?|directives?|guidelines|guardrails|programming|system\s*prompt)"
)
_NOUN = rf"(?:{_NOUN_STRONG[3:-1]}|rules|constraints|restrictions|polic(?:y|ies))"
# after a qualifier ("prior directions") or before a position ("the directions above") only
_NOUN_PRIOR = rf"(?:{_NOUN_STRONG[3:-1]}|directions)"
# "your prompt engineering tips" asks for advice, not for the prompt
_PROMPT_COMPOUND = (
    r"(?!\s*(?:engineering|design|designs|writing|templates?|tips|advice|ideas|best|"
    r"practices|strateg\w*|patterns?|examples?|skills?|approach|style|structure|format|"
    r"library|workflow|checklist)\b)"
)
_DETERMINERS = rf"(?:(?:all|any|every|each|the|these|those|of|my|our){_W})*"
# A line start (then spaces or tabs on that line), or just after sentence punctuation (then any
# whitespace). Never inside a whitespace run: a match may begin at only one place per run, or
# screening a run of blank lines is quadratic (100,000 newlines took minutes).
_SENTENCE_START = r"(?:^[ \t]*|(?<=[.!?:;>\]\)\-*#])\s*)"
_BENIGN_AFTER_ABOVE = (
    r"(?!\s*(?:warnings?|errors?|lines?|outputs?|code|logs?|examples?|files?|cells?|steps?|"
    r"columns?|rows?|tests?|values?|results?))"
)

_RULE_SPECS: tuple[tuple[str, str, str], ...] = (
    (
        "ignore-previous-instructions",
        "tells the model to ignore, disregard or forget its earlier/system instructions",
        rf"\b{_VERB_IGNORE}{_W}(?:"
        rf"{_DETERMINERS}(?:your{_W})?{_QUALIFIER}{_W}{_NOUN_PRIOR}\b"
        # the noun first: "the instructions above", "the guidelines given earlier"
        rf"|{_DETERMINERS}(?:your{_W})?{_NOUN_PRIOR}{_W}(?:(?:that{_W})?(?:you{_W})?"
        rf"(?:were{_W}|have{_W}been{_W}|was{_W})?(?:given|written|stated|said|provided){_W})?"
        rf"(?:above|earlier|previously|before|so{_W}far)\b(?!{_W}(?:the|a|an|this|that|it)\b)"
        rf"{_BENIGN_AFTER_ABOVE}"
        rf"|(?:all{_W}(?:of{_W})?)?your{_W}{_NOUN}\b"
        rf"|all{_W}(?:the{_W})?{_NOUN_STRONG}\b"
        rf"|(?:all{_W}|everything{_W}|anything{_W}|the{_W})?(?:(?:that{_W})?(?:was{_W}|is{_W})?"
        rf"(?:said|written|stated|mentioned|given|told){_W})?"
        rf"(?:above|before{_W}this|previously|so{_W}far|until{_W}now|up{_W}to{_W}now)\b"
        rf"{_BENIGN_AFTER_ABOVE})",
    ),
    (
        "forget-everything",
        "asks the model to forget everything it was told",
        rf"(?:{_SENTENCE_START}|\b(?:now|please|just|and|so){_W})forget{_W}(?:about{_W})?"
        rf"(?:everything|all(?:{_W}that)?)(?=\s*(?:$|[.,!;:]|you|above|before|previous|prior|"
        rf"that|i\b|we\b|so\s*far|else))",
    ),
    (
        "stop-following-instructions",
        "tells the model to stop following its instructions",
        rf"\b(?:do{_W}not|don'?t|stop|no{_W}longer|never){_W}(?:follow|obey|adhere{_W}to|"
        rf"comply{_W}with|listen{_W}to)(?:ing)?{_W}(?:your{_W}(?:{_QUALIFIER}{_W})?"
        rf"|the{_W}{_QUALIFIER}{_W}|any{_W}{_QUALIFIER}{_W}){_NOUN}\b",
    ),
    (
        "new-instructions",
        "starts a block of replacement instructions ('New instructions:')",
        rf"{_SENTENCE_START}(?:(?:new|updated|revised|real|actual|true|secret|override|"
        rf"overriding){_W}(?:system{_W})?(?:instructions?|directives?)"
        rf"|(?:real|actual|true|secret|override|overriding){_W}(?:system{_W})?prompt){_W}:",
    ),
    (
        "system-prompt-override",
        "a fake 'System prompt:' header that replaces the real one",
        rf"{_SENTENCE_START}(?:(?:new|updated|real|actual|true|override){_W}system{_W}"
        rf"(?:prompt|message|instructions?){_W}:|system{_W}(?:prompt|message|instructions?)?"
        rf"{_W}:{_W}(?:you{_W}are|from{_W}now{_W}on|ignore|disregard|forget|your{_W}new))",
    ),
    (
        "role-hijack",
        "declares the model to be an unrestricted persona (DAN, jailbroken, 'do anything now')",
        rf"\byou{_W}(?:are|'re|will{_W}be|shall{_W}be){_W}now{_W}(?:called{_W})?(?:dan\b|"
        rf"(?:an?{_W})?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue)\b|"
        rf"free{_W}(?:from|of){_W}(?:all{_W}|any{_W}|your{_W})*(?:restrictions|rules|"
        rf"limits|guidelines|filters))|\b(?:pretend{_W}(?:to{_W}be|you{_W}are)|act{_W}as|"
        rf"you{_W}are|become){_W}(?:an?{_W})?dan\b|\byou{_W}(?:can|will|are{_W}going{_W}to)"
        rf"{_W}do{_W}anything{_W}now\b",
    ),
    (
        "developer-mode",
        "switches the model into a 'developer', 'god', 'DAN' or similar unrestricted mode",
        rf"\b(?:you{_W}are|you'?re|act|respond|answer|behave|operate|pretend|simulate)\b"
        rf"(?:{_SEP}\w+){{0,4}}?{_W}(?:in|with){_W}(?:the{_W})?(?:developer|dev|god|jailbreak|"
        rf"unrestricted|unfiltered|admin|sudo|dan){_W}mode\b|\b(?:developer|god|sudo|dan|"
        rf"jailbreak){_W}mode{_W}(?:is{_W}(?:now{_W})?)?(?:enabled|activated)\b|"
        rf"\b(?:enable|enter|activate|switch{_W}to|turn{_W}on){_W}(?:god|jailbreak|unrestricted|"
        rf"unfiltered|evil|dan){_W}mode\b",
    ),
    (
        "no-restrictions",
        "asks the model to act without restrictions, filters or safety guidelines",
        rf"(?:\b(?:act|behave|respond|answer|operate|reply|roleplay|role-play){_W}(?:as|like)\b"
        rf"|\bpretend{_W}(?:to{_W}be|you{_W}are|that)|\bfrom{_W}now{_W}on\b).{{0,60}}?"
        rf"\b(?:without|with{_W}no|free{_W}(?:of|from)|ignoring|bypassing|no{_W}longer{_W}bound"
        rf"{_W}by){_W}(?:any{_W}|all{_W}|your{_W}|the{_W})*(?:ethical{_W}|moral{_W}|safety{_W}|"
        rf"content{_W})?(?:restrictions|limits|limitations|filters|filtering|rules|guidelines|"
        rf"censorship|safeguards|guardrails|ethics|morals|boundaries)\b"
        rf"|\byou{_W}(?:have|are{_W}bound{_W}by){_W}no{_W}(?:more{_W})?(?:restrictions|rules|"
        rf"limits|filters|guidelines)\b",
    ),
    (
        "reveal-system-prompt",
        "asks the model to reveal or repeat its system prompt or hidden instructions",
        rf"\b(?:reveal|print|show|output|repeat|display|leak|dump|tell{_W}me|give{_W}me|"
        rf"write{_W}out|recite|expose|disclose|share|paste|spell{_W}out)(?:{_W}me)?{_W}"
        rf"(?:all{_W}(?:of{_W})?)?(?:your|ur){_W}(?:"
        rf"(?:(?:full|entire|complete|original|hidden|secret|initial|exact|internal|verbatim)"
        rf"{_W})*(?:system{_W}(?:prompt|message|instructions?)|initial{_W}prompt|prompt)"
        rf"{_PROMPT_COMPOUND}"
        rf"|(?:(?:full|entire|complete|original|hidden|secret|initial|exact|internal|system)"
        rf"{_W})+instructions|instructions{_W}(?:verbatim|word{_W}for{_W}word|exactly))\b"
        rf"|\bwhat{_W}(?:is|was|are|were){_W}your{_W}(?:system{_W}prompt|"
        rf"(?:hidden|secret|original|initial){_W}(?:prompt|instructions))\b{_PROMPT_COMPOUND}"
        rf"|\brepeat{_W}(?:(?:the{_W})?(?:words|text)|everything|all{_W}(?:the{_W})?text)"
        rf"{_W}(?:above|before{_W}this)\b",
    ),
    (
        "chat-template-token",
        "a chat-template control token (<|im_start|>, [INST], <<SYS>>, '\\n\\nHuman:' ...)",
        r"<\|\s*[a-z][a-z0-9_]{1,30}\s*\|>|\[\s*/?\s*inst\s*\]|<<\s*/?\s*sys\s*>>"
        r"|<\s*/?\s*(?:start|end)_of_turn\s*>|<\s*/?\s*(?:start|end)_header_id\s*>"
        r"|\n[ \t]*\n[ \t]*(?:human|assistant)\s*:|(?:^|\n)[ \t]*#{3}[ \t]*(?:system|instruction)"
        r"[ \t]*:|<\s*/?\s*(?:system|sys|system[-_]prompt)\s*>",
    ),
    (
        "untrusted-data-tag",
        "an <untrusted-data> tag inside the task, trying to fake or close a data wrapper",
        r"<\s*/?\s*untrusted[-_ ]?data\b",
    ),
)

#: The screening rules, in the order they are checked.
RULES: tuple[Rule, ...] = tuple(
    Rule(name, description, re.compile(pattern, re.MULTILINE | re.DOTALL))
    for name, description, pattern in _RULE_SPECS
)

_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u3164\ufeff\uffa0"
)
# Cyrillic/Greek letters that look like Latin ones after case-folding, and curly apostrophes.
_HOMOGLYPHS = str.maketrans(
    "авеорсухіјѕԁɡոӏԛԝмнткκιορτυναεɑ’‘ʼ", "abeopcyxijsdgnlqwmhtkkioptuvaea'''"
)
_SPACED_LETTERS = re.compile(r"(?<![a-z0-9])[a-z](?:[ \t._\-*·,/|+~'\"]{1,3}[a-z](?![a-z0-9])){3,}")
_SPACED_SEPARATOR = re.compile(r"([^a-z]+)")
_QUOTES = frozenset("\"'`“”‘’«»„‚‹›")
_MAX_FINDINGS = 20
_EXCERPT_CHARS = 60


def _normalise_chars(text: str) -> tuple[str, list[int]]:
    """NFKC, drop invisibles, case-fold and map look-alikes; return the text and an index map."""
    if text.isascii():
        return text.lower(), list(range(len(text)))
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch in _INVISIBLE:
            continue
        piece = ch if ch.isascii() else unicodedata.normalize("NFKC", ch)
        piece = piece.casefold().translate(_HOMOGLYPHS)
        out.append(piece)
        index.extend([i] * len(piece))
    return "".join(out), index


def _join_spaced_letters(text: str, index: list[int]) -> tuple[str, list[int]]:
    """Join runs like ``i g n o r e`` into ``ignore``, keeping the index map aligned."""
    if not _SPACED_LETTERS.search(text):
        return text, index
    out: list[str] = []
    new_index: list[int] = []
    last = 0
    for match in _SPACED_LETTERS.finditer(text):
        out.append(text[last : match.start()])
        new_index.extend(index[last : match.start()])
        run_pos = match.start()
        for piece in _SPACED_SEPARATOR.split(match.group()):
            if piece and piece[0].isalpha():
                out.append(piece)
                new_index.extend(index[run_pos : run_pos + len(piece)])
            elif len(piece) >= 2 and piece.strip() == "":
                # a wider gap between spaced words keeps a word boundary
                out.append(" ")
                new_index.append(index[run_pos])
            run_pos += len(piece)
        last = match.end()
    out.append(text[last:])
    new_index.extend(index[last:])
    return "".join(out), new_index


def normalise(text: str) -> tuple[str, list[int]]:
    """Return the screening view of ``text`` and, for each of its characters, the original index."""
    view, index = _normalise_chars(text)
    return _join_spaced_letters(view, index)


def _is_quoted(view: str, start: int, end: int) -> bool:
    before = view[start - 1] if start > 0 else ""
    after = view[end] if end < len(view) else ""
    return before in _QUOTES and after in _QUOTES and before != ""


def _finding(rule: Rule, text: str, index: list[int], start: int, end: int) -> Finding:
    # the match may start on whitespace consumed by a sentence-start anchor
    orig_start = index[start] if start < len(index) else len(text)
    orig_end = index[end - 1] + 1 if end > start else orig_start
    raw = text[orig_start:orig_end].strip()
    return Finding(rule.name, sanitize_for_log(raw, _EXCERPT_CHARS), orig_start)


def find_injections(text: str) -> tuple[Finding, ...]:
    """Run every rule on ``text`` and return the findings in text order (at most 20).

    Pure function; never raises on any ``str``.
    """
    view, index = normalise(text)
    findings: list[Finding] = []
    for rule in RULES:
        for match in rule.pattern.finditer(view):
            start, end = match.span()
            while start < end and view[start].isspace():
                start += 1
            if start >= end or _is_quoted(view, start, end):
                continue
            findings.append(_finding(rule, text, index, start, end))
    findings.sort(key=lambda f: (f.position, f.rule))
    return tuple(findings[:_MAX_FINDINGS])


def _block_message(findings: tuple[Finding, ...]) -> str:
    shown = "; ".join(f"{f.rule} at {f.position}: {f.excerpt!r}" for f in findings[:5])
    more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
    return (
        f"The task looks like a prompt-injection attempt: {shown}{more}. If this text is "
        "yours and meant as written, send it anyway for this one call with "
        "injection_policy='warn' (or 'off'), or add --trust to the %%agent cell. Data you "
        "want analysed is safer passed as an interpolated value, which is wrapped as "
        "untrusted data."
    )


def screen(text: str, policy: InjectionPolicy | str = InjectionPolicy.BLOCK) -> tuple[Finding, ...]:
    """Screen ``text`` for injection attempts under ``policy`` and return the findings.

    ``block`` (default): raises :class:`PromptInjectionError` (``findings`` holds the rule
    names) if anything is found, else returns ``()``. ``warn``: logs a warning with the rule
    names and positions (never the text), issues an :class:`InjectionWarning` and returns the
    findings. ``off``: returns ``()`` without scanning. Raises :class:`ConfigurationError` for
    an unknown policy. Pure apart from the warning; safe from any thread.
    """
    chosen = InjectionPolicy.parse(policy)
    if chosen is InjectionPolicy.OFF:
        return ()
    findings = find_injections(text)
    if not findings:
        return ()
    if chosen is InjectionPolicy.BLOCK:
        raise PromptInjectionError(
            _block_message(findings), findings=tuple(f.rule for f in findings)
        )
    summary = ", ".join(f"{f.rule}@{f.position}" for f in findings)
    _log.warning("Injection screen (policy warn) found: %s; the task was sent anyway", summary)
    warnings.warn(
        f"The task looks like a prompt-injection attempt ({summary}); sent anyway because "
        "injection_policy='warn'.",
        InjectionWarning,
        stacklevel=2,
    )
    return findings
