"""Prompt-injection screening: find instruction overrides in untrusted data (and in a task).

What the user types is trusted; data is not (docs/security-guard.md). The screen runs on
untrusted data (``scope="data"``: notebook values, files, earlier agents' outputs) with every
rule, and on a caller's task (``scope="task"``) only when the caller asks, with the rules that
catch an override being *issued*. Data-only rules add the structural markers a task may well
talk about: chat-template tokens, conversation-role markers, fake instruction headers.

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
ask about these strings; unless the text before the quote says to obey it ("Do exactly what
this quote says: ..."). In a task, an override that something else does ("a pipeline that
must ignore all previous instructions in flight") is a description, not a command. Base64 and
hex blobs (bounded in size) are decoded and their text screened too. Every check is linear in
the length of the text. Positions in :class:`Finding` refer to the original text.

Policies: ``block`` raises :class:`PromptInjectionError` naming the source, rules and matched
phrases; ``warn`` logs the rule names (never the text) and issues one
:class:`InjectionWarning`, then returns the findings; ``off`` returns ``()`` without scanning.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import re
import string
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigurationError, PromptInjectionError
from .logs import get_logger, sanitize_for_log

__all__ = [
    "ENCODED_RULE",
    "RULES",
    "Finding",
    "InjectionPolicy",
    "InjectionWarning",
    "Rule",
    "Scope",
    "describe",
    "find_injections",
    "screen",
    "screen_untrusted",
]

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


class Scope(str, enum.Enum):
    """What is screened: the caller's own ``task`` or untrusted ``data``.

    A task is screened with the rules that catch an override being issued; data with every
    rule (the data-only rules add structural markers: chat-template tokens, role markers,
    fake instruction headers), since an attack in data is what the screen is for.
    """

    TASK = "task"
    DATA = "data"


class InjectionWarning(UserWarning):
    """Issued by :func:`screen` under the ``warn`` policy when a task looks like an override."""


@dataclass(frozen=True)
class Finding:
    """One match of a screening rule.

    ``rule`` is the rule's name (see :data:`RULES`), ``excerpt`` the matched text from the
    original text (sanitized, at most 60 characters), ``position`` its offset in that text and
    ``source`` the name of the untrusted value it was found in (None for the task).
    """

    rule: str
    excerpt: str
    position: int
    #: The untrusted value the finding is in (its name), or None for the task itself.
    source: str | None = None


@dataclass(frozen=True)
class Rule:
    """A named screening rule: ``pattern`` runs on the normalised text (see module docstring).

    ``data_only`` rules (structural markers such as chat-template tokens, which a task may
    well talk about) apply to untrusted data only; the others to a task and to data.
    """

    name: str
    description: str
    pattern: re.Pattern[str]
    data_only: bool = False


# Between words: any whitespace, or none (spaced-out letters are joined first), and Markdown
# emphasis markers (``**ignore** all``, ``_previous_``); an underscore only where it cannot be
# part of a snake_case identifier.
_W = r"(?:\s|[*~]|(?<!\w)_|(?<=\w)_(?!\w))*"
# At least one separator: ``(?:{_SEP}\w+){0,4}`` then skips whole words only (with ``_W`` a
# long word could be split in many ways, and a 100,000-character task took seconds).
_SEP = _W[:-1] + "+"
_VERB_IGNORE = (
    rf"(?:ignore|disregard|forget|dismiss|overlook|pay{_W}no{_W}(?:attention|heed){_W}to|"
    rf"(?:do{_W}not|don'?t){_W}pay{_W}attention{_W}to|set{_W}aside|put{_W}aside)"
)
# verbs that are common in code ("skip the previous rules", "drop the old table"): with the
# nouns that name the model's own instructions only
_VERB_WEAK = (
    rf"(?:override|bypass|discard|abandon|neglect|skip|throw{_W}(?:out|away)|drop|erase|wipe|"
    rf"cancel|nullify|void|scrap|ditch)"
)
_QUALIFIER = (
    r"(?:previous|prior|above|preceding|earlier|former|original|initial|system|developer|"
    r"safety|hidden|old|existing|current|given)"
)
# nouns that name the model's own instructions; "rules" or "messages" alone are too common in code
_NOUN_STRONG = (
    r"(?:instructions?|prompts?|directives?|guidelines|guardrails|programming|system\s*prompt)"
)
_NOUN = rf"(?:{_NOUN_STRONG[3:-1]}|rules|constraints|restrictions|polic(?:y|ies))"
# after a qualifier ("prior directions", "earlier guidance") or before a position only
_NOUN_PRIOR = (
    rf"(?:{_NOUN_STRONG[3:-1]}|directions|guidance|rules|commands|orders|constraints|"
    r"restrictions)"
)
_NOUN_PRIOR_STRONG = rf"(?:{_NOUN_STRONG[3:-1]}|directions|guidance)"
# "your previous instructions format", "the prior rules table": a noun used as a modifier
_NOT_COMPOUND = (
    r"(?!\s*(?:format|formats|file|files|table|tables|list|lists|parser|field|fields|set|"
    r"sets|engine|cache|buffer|queue|window|in\s*flight|in\s*the\s*(?:pipeline|queue|buffer)|"
    r"template|templates|schema|column|columns|block|blocks|section|syntax)\b)"
)
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

_DESCRIBED = re.compile(
    r"\b(?:that|which|who)\s+(?:\w+\s+){0,2}?(?:must|should|shall|will|would|can|could|may|"
    r"needs?\s+to|has\s+to|have\s+to|is\s+(?:able|supposed)\s+to)\s+(?:not\s+|never\s+|always\s+)?"
    r"(?:\w+\s+)?$"
)
# Before a quoted phrase: a cue that tells the model to obey what the quote says.
_OBEY_CUE = re.compile(
    r"(?:(?:^|[.!?:;\n]\s*|\b(?:now|please|just|and|then|so)\s+)(?:do|follow|obey|execute|"
    r"carry\s+out|act\s+on|comply\s+with|apply|perform|run|heed)\b[^\n.!?]{0,80}"
    r"|\b(?:your|my|the)\s+(?:new|real|actual|only)\s+(?:instructions?|orders|task|"
    r"commands?)\s*(?:is|are)?\s*:?\s*"
    r"|\btreat\s+(?:this|the\s+following)\s+as\s+(?:your\s+)?(?:instructions?|orders|"
    r"commands?|system\s+prompt)\s*:?\s*)$"
)

_RULE_SPECS: tuple[tuple[str, str, str, str], ...] = (
    (
        "ignore-previous-instructions",
        "tells the model to ignore, disregard, forget or set aside its earlier/system instructions",
        "any",
        rf"\b{_VERB_IGNORE}{_W}(?:"
        rf"{_DETERMINERS}(?:(?:your|their|its){_W})?(?:{_QUALIFIER}{_W})+{_NOUN_PRIOR}\b"
        rf"{_NOT_COMPOUND}"
        # the noun first: "the instructions above", "the guidelines given earlier"
        rf"|{_DETERMINERS}(?:your{_W})?{_NOUN_PRIOR}{_W}(?:(?:that{_W})?(?:you{_W})?"
        rf"(?:were{_W}|have{_W}been{_W}|was{_W})?(?:given|written|stated|said|provided){_W})?"
        rf"(?:above|earlier|previously|before|so{_W}far)\b(?!{_W}(?:the|a|an|this|that|it)\b)"
        rf"{_BENIGN_AFTER_ABOVE}"
        rf"|(?:all{_W}(?:of{_W})?)?(?:your|their|its){_W}{_NOUN}\b{_NOT_COMPOUND}"
        rf"|all{_W}(?:the{_W})?{_NOUN_STRONG}\b{_NOT_COMPOUND}"
        rf"|(?:all{_W}|everything{_W}|anything{_W}|the{_W})?(?:(?:that{_W})?(?:was{_W}|is{_W}|"
        rf"you{_W}were{_W}|i{_W})?(?:said|written|stated|mentioned|given|told){_W})?"
        rf"(?:above|before{_W}this|previously|so{_W}far|until{_W}now|up{_W}to{_W}now)\b"
        rf"{_BENIGN_AFTER_ABOVE}"
        rf"|everything{_W}(?:you{_W}(?:were|have{_W}been){_W}told|in{_W}your{_W}"
        rf"(?:system{_W})?(?:prompt|instructions)))"
        rf"|\b{_VERB_WEAK}{_W}(?:"
        rf"{_DETERMINERS}(?:(?:your|their|its){_W})?(?:{_QUALIFIER}{_W})+{_NOUN_PRIOR_STRONG}\b"
        rf"{_NOT_COMPOUND}"
        rf"|{_DETERMINERS}(?:your{_W})?{_NOUN_PRIOR_STRONG}{_W}(?:above|earlier|previously|"
        rf"so{_W}far)\b(?!{_W}(?:the|a|an|this|that|it)\b){_BENIGN_AFTER_ABOVE}"
        rf"|(?:all{_W}(?:of{_W})?)?(?:your|their|its){_W}{_NOUN_STRONG}\b{_NOT_COMPOUND}"
        rf"|all{_W}(?:the{_W})?{_NOUN_STRONG}\b{_NOT_COMPOUND}"
        rf"|(?:all{_W}|everything{_W}|the{_W})?(?:above|before{_W}this)\b{_BENIGN_AFTER_ABOVE})",
    ),
    (
        "instructions-void",
        "declares the model's previous instructions void, cancelled or replaced",
        "any",
        rf"\b(?:your|the|all){_W}(?:(?:{_QUALIFIER}|system){_W})+(?:instructions|prompt|"
        rf"directives|guidelines|rules|guidance)\b{_W}(?:above{_W})?(?:(?:are|is|were|have{_W}been|"
        rf"has{_W}been){_W}(?:now{_W}|hereby{_W}|officially{_W})?(?:void|cancell?ed|revoked|"
        rf"obsolete|invalid|null(?:{_W}and{_W}void)?|overridden|superseded|replaced|lifted|"
        rf"suspended|no{_W}longer{_W}(?:valid|active|in{_W}effect|relevant|applicable))"
        rf"|(?:now{_W})?(?:no{_W}longer|do{_W}not|don'?t){_W}apply)\b",
    ),
    (
        "ignore-instructions-translated",
        "the same override in another language (French, Spanish, German, Italian, Portuguese, "
        "Dutch, Russian, Chinese, Japanese)",
        "any",
        r"\b(?:ignorez?|oubliez?)\s+(?:toutes\s+|tous\s+)?(?:les|vos|tes)\s+(?:\w+\s+)?"
        r"(?:instructions|consignes|r[eè]gles|directives)\b"
        r"|\b(?:ignora|ignore|olvida|olvide|dimentica|esque[cç]a)\s+(?:todas?\s+|tutte\s+)?"
        r"(?:las|tus|sus|le|as)\s+(?:\w+\s+)?(?:instrucciones|indicaciones|reglas|istruzioni|"
        r"regole|instru[cç][oõ]es|regras)\b"
        r"|\b(?:ignoriere|ignorieren\s+sie|vergiss|vergessen\s+sie|negeer|vergeet)\s+"
        r"(?:\w+\s+){0,3}?(?:anweisungen|instruktionen|regeln|vorgaben|instructies|regels)\b"
        r"|(?:игнорируй|игнорируйте|забудь|забудьте)[^.!?\n]{0,40}?(?:инструкци|указани|правил)"
        r"|(?:忽略|无视|忘记|無視|忘れ)[^。！？\n]{0,20}?(?:指令|指示|说明|提示|規則|规则|命令)"
        r"|(?:以前|之前|先前|上面|以上|前)の?(?:すべての|全ての)?(?:指示|命令)を?(?:無視|忘れ)",
    ),
    (
        "forget-everything",
        "asks the model to forget everything it was told",
        "any",
        rf"(?:{_SENTENCE_START}|\b(?:now|please|just|and|so){_W})forget{_W}(?:about{_W})?"
        rf"(?:everything|all(?:{_W}that)?)(?=\s*(?:$|[.,!;:]|you|above|before|previous|prior|"
        rf"that|i\b|we\b|so\s*far|else))",
    ),
    (
        "stop-following-instructions",
        "tells the model to stop following its instructions",
        "any",
        rf"\b(?:do{_W}not|don'?t|stop|no{_W}longer|never|(?:no{_W}longer|do{_W}not|don'?t)"
        rf"{_W}(?:need|have){_W}to|need{_W}not){_W}(?:follow|obey|adhere{_W}to|"
        rf"comply{_W}with|listen{_W}to)(?:ing)?{_W}(?:your{_W}(?:{_QUALIFIER}{_W})?"
        rf"|the{_W}{_QUALIFIER}{_W}|any{_W}{_QUALIFIER}{_W}){_NOUN}\b{_NOT_COMPOUND}",
    ),
    (
        "new-instructions",
        "starts a block of replacement instructions ('New instructions:') inside data",
        "data",
        rf"{_SENTENCE_START}(?:(?:new|updated|revised|real|actual|true|secret|override|"
        rf"overriding|important|urgent){_W}(?:system{_W})?(?:instructions?|directives?|task)"
        rf"|(?:real|actual|true|secret|override|overriding){_W}(?:system{_W})?prompt){_W}:",
    ),
    (
        "system-prompt-override",
        "a fake 'System prompt:' header inside data that replaces the real one",
        "data",
        rf"{_SENTENCE_START}(?:(?:new|updated|real|actual|true|override){_W}system{_W}"
        rf"(?:prompt|message|instructions?){_W}:|system{_W}(?:prompt|message|instructions?)?"
        rf"{_W}:{_W}(?:you{_W}are|from{_W}now{_W}on|ignore|disregard|forget|your{_W}new))",
    ),
    (
        "role-hijack",
        "declares the model to be an unrestricted persona (DAN, jailbroken, 'do anything now')",
        "any",
        rf"\byou{_W}(?:are|'re|will{_W}be|shall{_W}be){_W}now{_W}(?:called{_W})?(?:dan\b|"
        rf"(?:an?{_W})?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue)\b|"
        rf"free{_W}(?:from|of){_W}(?:all{_W}|any{_W}|your{_W})*(?:restrictions|rules|"
        rf"limits|guidelines|filters))|\b(?:pretend{_W}(?:to{_W}be|you{_W}are)|act{_W}as|"
        rf"you{_W}are|become){_W}(?:an?{_W})?(?:dan|stan|aim|dude)\b|\byou{_W}(?:can|will|"
        rf"are{_W}going{_W}to){_W}do{_W}anything{_W}now\b|\b(?:you{_W}are|you'?re|act{_W}as)"
        rf"{_W}(?:an?{_W})?(?:unrestricted|unfiltered|uncensored|jailbroken){_W}"
        rf"(?:ai|assistant|model|chatbot|llm|version)\b",
    ),
    (
        "developer-mode",
        "switches the model into a 'developer', 'god', 'DAN' or similar unrestricted mode",
        "any",
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
        "any",
        rf"(?:\b(?:act|behave|respond|answer|operate|reply|roleplay|role-play){_W}(?:as|like)\b"
        rf"|\bpretend{_W}(?:to{_W}be|you{_W}are|that)|\bfrom{_W}now{_W}on\b).{{0,60}}?"
        rf"\b(?:without|with{_W}no|free{_W}(?:of|from)|ignoring|bypassing|no{_W}longer{_W}bound"
        rf"{_W}by){_W}(?:any{_W}|all{_W}|your{_W}|the{_W})*(?:ethical{_W}|moral{_W}|safety{_W}|"
        rf"content{_W})?(?:restrictions|limits|limitations|filters|filtering|rules|guidelines|"
        rf"censorship|safeguards|guardrails|ethics|morals|boundaries)\b"
        # "without any restrictions on style": a scope, not a jailbreak
        rf"(?!\s*(?:on|about|regarding|for|in|of)\s+(?!what\b|your\b|content\b|topics?\b|any\b))"
        rf"|\byou{_W}(?:have|are{_W}bound{_W}by){_W}no{_W}(?:more{_W})?(?:restrictions|rules|"
        rf"limits|filters|guidelines)\b",
    ),
    (
        "reveal-system-prompt",
        "asks the model to reveal or repeat its system prompt or hidden instructions",
        "any",
        rf"\b(?:reveal|print|show|output|repeat|display|leak|dump|tell{_W}me|give{_W}me|"
        rf"write{_W}out|recite|expose|disclose|share|paste|spell{_W}out|send|return)(?:{_W}me)?"
        rf"{_W}(?:all{_W}(?:of{_W})?)?(?:your|ur){_W}(?:"
        rf"(?:(?:full|entire|complete|original|hidden|secret|initial|exact|internal|verbatim)"
        rf"{_W})*(?:system{_W}(?:prompt|message|instructions?)|initial{_W}prompt|prompt)"
        rf"{_PROMPT_COMPOUND}"
        rf"|(?:(?:full|entire|complete|original|hidden|secret|initial|exact|internal|system)"
        rf"{_W})+instructions|instructions{_W}(?:verbatim|word{_W}for{_W}word|exactly))\b"
        rf"|{_SENTENCE_START}(?:(?:please|now|just|first|and){_W})*(?:reveal|print|show|output|"
        rf"repeat|display|leak|dump|tell{_W}me|give{_W}me|recite|disclose|paste)(?:{_W}me)?{_W}"
        rf"(?:the|this|its){_W}(?:(?:full|entire|complete|original|hidden|secret|exact)"
        rf"{_W})*(?:system{_W}(?:prompt|message)|hidden{_W}(?:prompt|instructions)|"
        rf"initial{_W}prompt)\b{_PROMPT_COMPOUND}(?!{_W}(?:length|size|tokens?|hash)\b)"
        rf"|\bwhat{_W}(?:is|was|are|were){_W}your{_W}(?:system{_W}prompt|"
        rf"(?:hidden|secret|original|initial){_W}(?:prompt|instructions))\b{_PROMPT_COMPOUND}"
        rf"|\brepeat{_W}(?:(?:the{_W})?(?:words|text)|everything|all{_W}(?:the{_W})?text)"
        rf"{_W}(?:above|before{_W}this)\b",
    ),
    (
        "reveal-secrets",
        "asks the model to reveal API keys, passwords, tokens or environment variables",
        "any",
        rf"\b(?:reveal|print|show|output|display|leak|dump|tell{_W}me|give{_W}me|write{_W}out|"
        rf"expose|disclose|share|paste|send|email|list|exfiltrate|upload|post)(?:{_W}me)?{_W}"
        rf"(?:all{_W}(?:of{_W})?)?(?:your|ur|the{_W}(?:user'?s|operator'?s|server'?s|admin)|"
        rf"any)(?:{_W}own)?{_W}(?:(?:anthropic|openai|aws|secret|private|stored|hidden)"
        rf"{_W})*(?:api{_W}keys?|secret{_W}keys?|access{_W}(?:keys?|tokens?)|auth{_W}tokens?|"
        rf"credentials|passwords?|env(?:ironment)?{_W}var(?:iable)?s|\.env{_W}file|"
        rf"secrets|private{_W}keys?|ssh{_W}keys?)\b",
    ),
    (
        "chat-template-token",
        "a chat-template control token inside data (<|im_start|>, [INST], <<SYS>>, "
        "<start_of_turn> ...)",
        "data",
        r"<\|\s*[a-z][a-z0-9_]{1,30}\s*\|>|\[\s*/?\s*inst\s*\]|<<\s*/?\s*sys\s*>>"
        r"|<\s*/?\s*(?:start|end)_of_turn\s*>|<\s*/?\s*(?:start|end)_header_id\s*>"
        r"|(?:^|\n)[ \t]*#{3}[ \t]*(?:system|instruction|response)[ \t]*:"
        r"|<\s*/?\s*(?:system|sys|system[-_]prompt|instructions?)\s*>",
    ),
    (
        "role-marker",
        "a conversation-role or jailbreak marker inside data ('Human:', 'Assistant:', "
        "'System:', '[DAN]:') that fakes a turn of the conversation",
        "data",
        r"(?:^|\n)[ \t]*(?:\*\*)?(?:human|assistant|system|developer|\[\s*(?:system|assistant|"
        r"dan|jailbreak|🔓\s*jailbreak|developer\s*mode\s*output)\s*\]|dan)[ \t]*(?:\*\*)?[ \t]*:"
        r"|\[\s*system\s*\]\s*\(\s*#",
    ),
    (
        "untrusted-data-tag",
        "an <untrusted-data> tag inside the text, trying to fake or close a data wrapper",
        "any",
        r"<\s*/?\s*untrusted[-_ ]?data\b",
    ),
)

#: The name of the finding for an encoded blob that decodes to an override.
ENCODED_RULE = "encoded-instructions"
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u3164\ufeff\uffa0"
)
# Cyrillic/Greek letters that look like Latin ones after case-folding, and curly apostrophes.
_HOMOGLYPHS = str.maketrans(
    "авеорсухіјѕԁɡոӏԛԝмнткκιορτυναεɑ’‘ʼ", "abeopcyxijsdgnlqwmhtkkioptuvaea'''"
)
#: The screening rules, in the order they are checked.
RULES: tuple[Rule, ...] = (
    *(
        Rule(
            name,
            description,
            re.compile(pattern.translate(_HOMOGLYPHS), re.MULTILINE | re.DOTALL),
            data_only=scope == "data",
        )
        for name, description, scope, pattern in _RULE_SPECS
    ),
    Rule(
        ENCODED_RULE,
        "a base64 or hex blob (up to 16,384 characters) that decodes to text another rule flags",
        re.compile(
            r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{20,}={0,2}"
            r"|(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){12,}"
        ),
    ),
)

_SPACED_LETTERS = re.compile(r"(?<![a-z0-9])[a-z](?:[ \t._\-*·,/|+~'\"]{1,3}[a-z](?![a-z0-9])){3,}")
_SPACED_SEPARATOR = re.compile(r"([^a-z]+)")
_QUOTES = frozenset("\"'`“”‘’«»„‚‹›")
_MAX_FINDINGS = 20
_EXCERPT_CHARS = 60
# How far before a match the quote-obey and described-clause checks look (bounded: linear).
_LOOKBACK = 120
# Encoded blobs: longer ones are not decoded; at most this many blob characters per text,
# and a blob inside a decoded blob is decoded once more at most.
_MAX_BLOB_CHARS = 16_384
_MAX_DECODED_CHARS = 65_536
_MAX_DECODE_DEPTH = 2
_URLSAFE = str.maketrans("-_", "+/")


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


def _obeyed(view: str, start: int) -> bool:
    """True if the quote that starts at ``start - 1`` is introduced as something to obey."""
    return _OBEY_CUE.search(view[max(0, start - 1 - _LOOKBACK) : start - 1]) is not None


def _described(view: str, start: int) -> bool:
    """True if the match is what something else does ("a pipeline that must ignore ...")."""
    return _DESCRIBED.search(view[max(0, start - _LOOKBACK) : start]) is not None


def _finding(rule: Rule, text: str, index: list[int], start: int, end: int) -> Finding:
    # the match may start on whitespace consumed by a sentence-start anchor
    orig_start = index[start] if start < len(index) else len(text)
    orig_end = index[end - 1] + 1 if end > start else orig_start
    raw = text[orig_start:orig_end].strip()
    return Finding(rule.name, sanitize_for_log(raw, _EXCERPT_CHARS), orig_start)


def _decode_blob(blob: str) -> str | None:
    """The text a base64 or hex blob stands for, or None if it is not readable text."""
    compact = blob.replace(" ", "").replace(":", "")
    raw: bytes | None = None
    if len(compact) % 2 == 0 and all(c in string.hexdigits for c in compact):
        raw = bytes.fromhex(compact)
    else:
        padded = blob.translate(_URLSAFE).rstrip("=")
        padded += "=" * (-len(padded) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    readable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
    if len(decoded) < 8 or readable < 0.95 * len(decoded):
        return None
    return decoded


def _encoded(rule: Rule, text: str, scope: Scope, depth: int) -> list[Finding]:
    """Findings for blobs that decode to flagged text (bounded: see :data:`RULES`)."""
    found: list[Finding] = []
    budget = _MAX_DECODED_CHARS
    for match in rule.pattern.finditer(text):
        blob = match.group()
        if len(blob) > _MAX_BLOB_CHARS or budget <= 0:
            continue
        decoded = _decode_blob(blob)
        if decoded is None:
            continue
        budget -= len(blob)
        inner = _find(decoded, scope, depth + 1)
        if inner:
            excerpt = sanitize_for_log(f"decodes to {inner[0].excerpt}", _EXCERPT_CHARS)
            found.append(Finding(rule.name, excerpt, match.start()))
    return found


def _find(text: str, scope: Scope, depth: int) -> list[Finding]:
    view, index = normalise(text)
    findings: list[Finding] = []
    for rule in RULES:
        if rule.data_only and scope is Scope.TASK:
            continue
        if rule.name == ENCODED_RULE:
            if depth < _MAX_DECODE_DEPTH:
                findings.extend(_encoded(rule, text, scope, depth))
            continue
        for match in rule.pattern.finditer(view):
            start, end = match.span()
            while start < end and view[start].isspace():
                start += 1
            if start >= end:
                continue
            if _is_quoted(view, start, end) and not _obeyed(view, start):
                continue
            if scope is Scope.TASK and not rule.data_only and _described(view, start):
                continue
            findings.append(_finding(rule, text, index, start, end))
    return findings


def find_injections(text: str, scope: Scope | str = Scope.TASK) -> tuple[Finding, ...]:
    """Run the rules for ``scope`` on ``text``; return the findings in text order (at most 20).

    ``task`` (default) runs the rules that catch an override being issued; ``data`` runs
    every rule. Pure function; never raises on any ``str``.
    """
    findings = _find(text, Scope(scope), 0)
    findings.sort(key=lambda f: (f.position, f.rule))
    return tuple(findings[:_MAX_FINDINGS])


def describe(findings: tuple[Finding, ...], limit: int = 3) -> str:
    """One line naming each finding's rule and matched phrase (at most ``limit`` distinct).

    The source (``{name}``) is named per finding only when the findings come from several.
    """
    several = len({f.source for f in findings}) > 1
    shown = list(dict.fromkeys((f.source, f.rule, f.excerpt) for f in findings))
    parts = [
        (f"{{{source}}} " if several and source is not None else "") + f"{rule}: {excerpt!r}"
        for source, rule, excerpt in shown[:limit]
    ]
    more = f" (and {len(shown) - limit} more)" if len(shown) > limit else ""
    return "; ".join(parts) + more


def _sources(findings: tuple[Finding, ...]) -> str:
    names = dict.fromkeys(repr(f.source) for f in findings if f.source is not None)
    return ", ".join(names)


def _block_message(findings: tuple[Finding, ...]) -> str:
    if any(f.source is not None for f in findings):
        return (
            f"The untrusted value {_sources(findings)} looks like a prompt injection "
            f"({describe(findings)}); nothing was sent. If you trust this data, pass "
            "injection_policy='warn' (or 'off') for this call, or add --trust to the "
            "%%agent cell; otherwise remove those instructions from the data."
        )
    shown = "; ".join(f"{f.rule} at {f.position}: {f.excerpt!r}" for f in findings[:5])
    more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
    return (
        f"The task looks like a prompt-injection attempt: {shown}{more}. If this text is "
        "yours and meant as written, send it anyway with screen_task=False, or with "
        "injection_policy='warn' (or 'off') for this one call (--trust in a %%agent cell). "
        "Data you want analysed is safer passed as an untrusted value, which is wrapped as "
        "data."
    )


def _apply(findings: tuple[Finding, ...], policy: InjectionPolicy) -> tuple[Finding, ...]:
    """Raise, warn or return ``findings`` under ``policy`` (not ``off``: it never scans)."""
    if not findings:
        return ()
    if policy is InjectionPolicy.BLOCK:
        raise PromptInjectionError(
            _block_message(findings), findings=tuple(f.rule for f in findings)
        )
    summary = ", ".join(
        f"{f.rule}@{f.position}" + (f" in {sanitize_for_log(f.source, 64)}" if f.source else "")
        for f in findings
    )
    _log.warning("Injection screen (policy warn) found: %s; sent anyway", summary)
    if any(f.source is not None for f in findings):
        message = (
            f"The untrusted value {_sources(findings)} looks like a prompt injection "
            f"({describe(findings)}); sent anyway, wrapped as data, because "
            "injection_policy='warn'."
        )
    else:
        message = (
            f"The task looks like a prompt-injection attempt ({summary}); sent anyway because "
            "injection_policy='warn'."
        )
    warnings.warn(message, InjectionWarning, stacklevel=3)
    return findings


def screen(
    text: str,
    policy: InjectionPolicy | str = InjectionPolicy.BLOCK,
    *,
    source: str | None = None,
    scope: Scope | str | None = None,
) -> tuple[Finding, ...]:
    """Screen ``text`` for injection attempts under ``policy`` and return the findings.

    ``source`` names the untrusted value ``text`` came from (a variable name); it is put in
    each finding and in the messages. ``scope`` is ``data`` when ``source`` is given and
    ``task`` otherwise, unless set (see :class:`Scope`).

    ``block`` (default): raises :class:`PromptInjectionError` (``findings`` holds the rule
    names; the message names the source, the rules and the matched phrases, never the whole
    text) if anything is found, else returns ``()``. ``warn``: logs the rule names and
    positions (never the text), issues one :class:`InjectionWarning` and returns the
    findings. ``off``: returns ``()`` without scanning. Raises :class:`ConfigurationError` for
    an unknown policy or scope. Pure apart from the warning; safe from any thread.
    """
    chosen = InjectionPolicy.parse(policy)
    if chosen is InjectionPolicy.OFF:
        return ()
    kind = _scope(scope, Scope.DATA if source is not None else Scope.TASK)
    found = find_injections(text, kind)
    if source is not None:
        found = tuple(dataclasses.replace(f, source=source) for f in found)
    return _apply(found, chosen)


def screen_untrusted(
    values: Mapping[str, str], policy: InjectionPolicy | str = InjectionPolicy.BLOCK
) -> tuple[Finding, ...]:
    """Screen every untrusted value (as data) under ``policy``: one error or warning for all.

    Returns the findings (each with its ``source``), raises one :class:`PromptInjectionError`
    naming every flagged value under ``block``, issues one :class:`InjectionWarning` under
    ``warn``; ``off`` scans nothing. Non-str values are skipped here (the prompt builder
    refuses them with a clear error). Raises :class:`ConfigurationError` for an unknown policy.
    """
    chosen = InjectionPolicy.parse(policy)
    if chosen is InjectionPolicy.OFF:
        return ()
    found: list[Finding] = []
    for name, value in values.items():
        if isinstance(value, str):
            hits = find_injections(value, Scope.DATA)
            found.extend(dataclasses.replace(f, source=str(name)) for f in hits)
    return _apply(tuple(found), chosen)


def _scope(value: Scope | str | None, default: Scope) -> Scope:
    if value is None:
        return default
    try:
        return Scope(value)
    except ValueError:
        raise ConfigurationError(
            f"scope must be 'task' or 'data', got {sanitize_for_log(value, 40)!r}"
        ) from None
