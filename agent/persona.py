"""The persona: who the avatar is, how it looks and sounds, which LLM and STT it uses, how it takes turns.

A persona is a YAML file validated by :class:`Persona`. Every field except the few that make a persona
someone (identity, system prompt, greeting, fallback line) has a default here. ``DYAD_<SECTION>__<FIELD>``
environment variables override any field of whichever persona is loaded, e.g.
``DYAD_LLM__BASE_URL=http://127.0.0.1:11434/v1``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    Field,
    FilePath,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from avatar_core.config import (
    AppearanceConfig,
    AppSettings,
    BehaviourConfig,
    StrictModel,
    VoiceConfig,
    resolve_relative,
)

ENV_PREFIX = "DYAD_"
EMBEDDED = "embedded"


# ---------------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------------


class IdentityConfig(StrictModel):
    """Who the avatar is, to people and to LiveKit."""

    display_name: str = Field(min_length=1, max_length=64, description="the name people see")
    livekit_identity: str = Field(
        pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="participant identity in a LiveKit room"
    )
    livekit_name: str | None = Field(None, max_length=128, description="defaults to display_name")
    livekit_metadata: str = Field("", max_length=8192, description="participant metadata string")
    livekit_attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("livekit_attributes")
    @classmethod
    def _no_reserved_attributes(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = [key for key in value if key.startswith("lk.")]
        if reserved:
            raise ValueError(f"attribute keys starting with 'lk.' are reserved by LiveKit: {reserved}")
        return value


class LLMConfig(StrictModel):
    """The language model, always reached through an OpenAI-compatible chat completions endpoint."""

    base_url: str = Field(
        EMBEDDED,
        pattern=r"^(embedded|https?://\S+)$",
        description="'embedded' starts the bundled SmolLM2 server; else any OpenAI-compatible /v1 URL",
    )
    model: str = Field("SmolLM2-135M-Instruct", min_length=1)
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="name of the env var holding the key"
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(120, ge=1, le=4096)
    system_prompt: str = Field(min_length=1)
    greeting: str = Field(description="said when a session starts; empty to wait silently")
    fallback_line: str = Field(min_length=1, description="said when the LLM fails or times out")
    history_turns: int = Field(8, ge=1, le=100, description="user+assistant turns kept in the prompt")
    timeout_s: float = Field(10.0, gt=0.0, le=120.0)
    max_retries: int = Field(2, ge=0, le=5)


class STTConfig(StrictModel):
    """Speech to text: the bundled Whisper tiny.en, or an OpenAI-compatible transcription endpoint."""

    backend: Literal["whisper", "openai"] = "whisper"
    model: str = Field("tiny.en", description="'tiny.en' (bundled) or a CTranslate2 model folder")
    language: str = Field("en", pattern=r"^[a-z]{2,3}$")
    base_url: str | None = Field(None, pattern=r"^https?://\S+$")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    partials: bool | None = Field(
        None,
        description="interim transcripts while the user speaks, every 0.6 s: captions, and the end-of-turn "
        "check reads the words ahead (about a quarter of a core while the user speaks); default: on with "
        "the bundled Whisper, off with an endpoint (each would be a request)",
    )
    beam_size: int = Field(1, ge=1, le=10)
    unclear_line: str = Field(
        "Sorry, I didn't catch that. Could you say it again?",
        max_length=200,
        description="said when someone spoke but the words could not be made out ('' stays silent)",
    )

    @property
    def interim(self) -> bool:
        """Whether interim transcripts are made (``partials``, or its default for the backend)."""
        return self.partials if self.partials is not None else self.backend == "whisper"

    @model_validator(mode="after")
    def _openai_needs_url(self) -> STTConfig:
        if self.backend == "openai" and self.base_url is None:
            raise ValueError("backend 'openai' needs stt.base_url, e.g. https://api.openai.com/v1")
        return self


class TurnTakingConfig(StrictModel):
    """VAD thresholds and timing of turns and barge-in (milliseconds)."""

    vad_threshold: float = Field(0.5, ge=0.05, le=0.95, description="speech probability threshold")
    min_speech_ms: int = Field(250, ge=30, le=3000, description="shorter blips are not speech")
    end_of_turn_silence_ms: int = Field(500, ge=100, le=5000, description="silence that ends a turn")
    barge_in_min_speech_ms: int = Field(
        400, ge=100, le=3000, description="user speech over the avatar longer than this interrupts it"
    )
    max_turn_s: float = Field(30.0, ge=1.0, le=600.0)
    turn_detector: Literal["smart_turn", "silence"] = Field(
        "smart_turn",
        description="'smart_turn': the Smart Turn v3.2 model sets the wait from the words and intonation; "
        "'silence': end_of_turn_silence_ms instead of the model (also the fallback when it is not "
        "installed); the words' check (text_veto_below) applies either way",
    )
    # 120 rather than 150 (2026-12-05, bench/turns.py, two draws: the default and --sentences 10 --seed 1):
    # Smart Turn is asked a VAD window sooner, and less sure with less silence heard, so it waits longer in
    # pauses inside a sentence: 2 of 90 and 4 of 100 cut off against 3 and 6, complete turns ending at
    # p50 267 and 282 ms against 279 and 279 (scratch runs; then bench/results/turns.json: 271 ms, 2 of 90).
    # Sooner is a trade with the words' check (2026-12-06, scratch runs): 96 ms, 251.5 ms p50 and 8 of 90
    # cut off; 64 ms, 241 ms and 11; 120, 268 ms and 4 (docs/design.md, "End of turn").
    min_wait_ms: int = Field(
        120, ge=100, le=2000, description="silence before the turn model is asked; the wait when it is sure"
    )
    # 1000 rather than 1500: bench/turns.py (bench/results/turns.json, 2026-12-05, idle machine, with the
    # words' check) ends unsure turns about 490 ms sooner (p95 1065 vs 1551 ms) for the same 2 of 90 paused
    # utterances cut off (and 11 of 45 pauses after a whole sentence answered, as at 1500).
    max_wait_ms: int = Field(
        1000, ge=200, le=10000, description="the wait when the turn model is sure the user will go on"
    )

    # The words' check (agent/turn_text.py, agent.turn.pause_ends_turn). bench/turns.py (bench/results/
    # turns.json, 2026-12-05; 90 complete utterances, 90 paused inside a sentence) chose each default, the
    # others held: text_veto_below 0.1 cuts off 2 paused ones (0.05: 10, 0.02: 11); text_complete_above 0.5
    # ends complete turns 42 ms sooner at p50 than never (1.0; 271 vs 313 ms) for one more cut-off (0.3:
    # 266 ms and none more here, but two more of 100 on a second draw, --sentences 10 --seed 1, with
    # min_wait_ms 150); trust_smart_turn_above 0.9: p95 1065 ms, as at 0.95, against 1543 at 0.98 and 1551
    # at 1.0 (the veto then holds "how long can I keep a book" 1.5 s in every voice), for the same 2 cut off.
    # veto_wait_ms 1000 since 2026-12-06 (1500 before: 3 of 90 cut off against 4, bench/results/turns.json
    # of 2026-12-06): a complete question the words doubt and Smart Turn is unsure of ("can I borrow a
    # laptop", 0.06) waited 1.5 s, the p95 of bench/latency.py (docs/design.md, "End of turn").
    text_veto_below: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="a pause waits veto_wait_ms when a small language model gives the words so far less "
        "than this probability of ending a sentence; 0 turns the words' check off",
    )
    text_complete_above: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="a pause whose words end a sentence with at least this probability ends the turn as "
        "soon as they are judged (not before min_wait_ms), however unsure Smart Turn is; 1.0: never",
    )
    veto_wait_ms: int = Field(
        1000,
        ge=200,
        le=10000,
        description="the wait in a pause whose words do not end a sentence (longer if the audio's own "
        "wait is: end_of_turn_silence_ms without Smart Turn)",
    )
    trust_smart_turn_above: float = Field(
        0.9,
        ge=0.5,
        le=1.0,
        description="Smart Turn is sure when it gives a pause at least this probability of ending the turn: "
        "the pause then waits for the words' verdict at most min_wait_ms longer than the audio alone would, "
        "and words that do not end a sentence hold it max_wait_ms instead of veto_wait_ms (1.0: practically "
        "never sure)",
    )

    @model_validator(mode="after")
    def _barge_in_after_speech(self) -> TurnTakingConfig:
        if self.barge_in_min_speech_ms < self.min_speech_ms:
            raise ValueError(
                f"barge_in_min_speech_ms ({self.barge_in_min_speech_ms}) must be >= min_speech_ms "
                f"({self.min_speech_ms}): shorter speech is not even detected as speech"
            )
        return self

    @model_validator(mode="after")
    def _waits_ordered(self) -> TurnTakingConfig:
        if self.max_wait_ms <= self.min_wait_ms:
            raise ValueError(
                f"max_wait_ms ({self.max_wait_ms}) must be > min_wait_ms ({self.min_wait_ms}): "
                "the model's probability chooses a wait between the two"
            )
        if self.veto_wait_ms < self.max_wait_ms:
            raise ValueError(
                f"veto_wait_ms ({self.veto_wait_ms}) must be >= max_wait_ms ({self.max_wait_ms}): a pause "
                "whose words do not end a sentence waits at least as long as one Smart Turn doubts"
            )
        if self.text_complete_above <= self.text_veto_below:
            raise ValueError(
                f"text_complete_above ({self.text_complete_above}) must be > text_veto_below "
                f"({self.text_veto_below}): words cannot both end a sentence and not"
            )
        return self


# Knowledge: what a kiosk persona knows and may do. Read by agent.knowledge (the answer policy) and
# agent.tools (time, opening hours, hand-off, declared actions).

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
ToolName = Literal["time", "date", "hours", "open_now", "handoff"]
ALL_TOOLS: tuple[ToolName, ...] = ("time", "date", "hours", "open_now", "handoff")
_HOURS = r"(?:[01]\d|2[0-3]):[0-5]\d-(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)"
PASSAGE_SUFFIXES = (".md", ".markdown", ".txt")
FAQ_SUFFIXES = (".yaml", ".yml")


class FAQEntry(StrictModel):
    """A curated question, other ways people ask it, and the exact answer spoken when it matches."""

    question: NonBlank
    alternatives: list[NonBlank] = Field(default_factory=list, description="other phrasings")
    answer: NonBlank = Field(description="spoken word for word when the question matches")


SlotKind = Literal["name", "date", "number", "text"]


class KioskAction(StrictModel):
    """An action the kiosk can do (published over MQTT when the LLM or a trigger phrase calls it)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="e.g. print_ticket")
    description: NonBlank = Field(description="what it does (the LLM reads this)")
    say: NonBlank = Field(description="what the avatar says when it does it")
    triggers: list[NonBlank] = Field(default_factory=list, description="phrases that call it directly")
    parameters: dict[str, NonBlank] = Field(default_factory=dict, description="argument -> description")
    ask: NonBlank | None = Field(
        None, description="said when a trigger calls it without its parameters; the answer fills them"
    )
    collect: dict[str, SlotKind] = Field(
        default_factory=dict, description="how to read each parameter from the answer to `ask`"
    )

    @model_validator(mode="after")
    def _form(self) -> KioskAction:
        if (self.ask is None) != (not self.collect):
            raise ValueError("`ask` and `collect` go together: the question, and what its answer fills")
        unknown = sorted(set(self.collect) - set(self.parameters))
        if unknown:
            raise ValueError(f"collect names {', '.join(unknown)}, which are not in parameters")
        missing = sorted(set(self.parameters) - set(self.collect)) if self.collect else []
        if missing:
            raise ValueError(f"collect must read every parameter; add {', '.join(missing)}")
        placeholders = set(re.findall(r"{(\w+)}", self.say))
        if not placeholders <= set(self.parameters):
            extra = ", ".join(sorted(placeholders - set(self.parameters)))
            raise ValueError(f"say uses {{{extra}}}, which is not a parameter")
        return self


def read_faq_file(path: Path) -> list[FAQEntry]:
    """The curated questions of a YAML knowledge file (``faq:`` list); a ValueError names the bad entry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path.name}: cannot be read as YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("faq"), list) or not data["faq"]:
        raise ValueError(f"{path.name}: expected `faq:` with a list of question/answer entries")
    entries = []
    for index, entry in enumerate(data["faq"]):
        try:
            entries.append(FAQEntry.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in (f"faq.{index}", *first["loc"]))
            raise ValueError(f"{path.name}: {where}: {first['msg']}") from None
    return entries


def _knowledge_file(path: Path) -> Path:
    """A knowledge file must be passages (.md/.markdown/.txt, not empty) or a valid YAML ``faq:`` file."""
    suffix = path.suffix.lower()
    if suffix in FAQ_SUFFIXES:
        read_faq_file(path)
    elif suffix not in PASSAGE_SUFFIXES:
        raise ValueError(f"{path.name}: use .md/.markdown/.txt passages or a .yaml `faq:` file")
    elif not path.read_text(encoding="utf-8", errors="replace").strip():
        raise ValueError(f"{path.name} is empty: write the facts in it or remove it from the list")
    return path


KnowledgeFile = Annotated[FilePath, AfterValidator(_knowledge_file)]


class KnowledgeConfig(StrictModel):
    """Facts (curated questions, passage files, opening hours), the honest fallback, tools and actions."""

    files: list[KnowledgeFile] = Field(
        default_factory=list,
        description="Markdown/text passages or YAML `faq:` files; relative to the persona file",
    )
    faq: list[FAQEntry] = Field(default_factory=list, description="curated questions and answers")
    unknown_line: NonBlank = Field(
        "I'm sorry, I don't know that. A member of staff can help you.",
        description="said when nothing relevant is known",
    )
    handoff_line: NonBlank = Field(
        "Of course. I'll ask a member of staff to come and help you.",
        description="said when someone asks for a person",
    )
    timezone: str = Field("UTC", description="IANA time zone of the place, e.g. Europe/London")
    opening_hours: dict[Weekday, str] = Field(
        default_factory=dict,
        description="per day '09:00-17:00', several as '09:00-12:00, 13:00-17:00', or 'closed'",
    )
    tools: list[ToolName] = Field(
        default_factory=lambda: list(ALL_TOOLS),
        description="deterministic tools answered without the LLM",
    )
    actions: list[KioskAction] = Field(default_factory=list)
    direct_threshold: float = Field(
        0.6, gt=0.0, le=1.0, description="match confidence above which a curated answer is spoken directly"
    )
    min_relevance: float = Field(
        0.5, gt=0.0, le=1.0, description="share of the question's words a passage must contain to be used"
    )
    max_passages: int = Field(3, ge=1, le=10, description="passages given to the LLM per turn")
    passage_answers: Literal["auto", "llm", "quote"] = Field(
        "auto",
        description="found passages go to the LLM, or their best sentence is quoted; auto quotes with the "
        "embedded SmolLM2-135M (too small to answer from them without inventing) and asks any other LLM",
    )

    @field_validator("files", mode="before")
    @classmethod
    def _relative_files(cls, value: object, info: ValidationInfo) -> object:
        return [resolve_relative(v, info) for v in value] if isinstance(value, list) else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/London") from None
        return value

    @field_validator("opening_hours")
    @classmethod
    def _hours_format(cls, value: dict[str, str]) -> dict[str, str]:
        for day, spec in value.items():
            spec = spec.strip().lower()
            ranges = [] if spec == "closed" else [r.strip() for r in spec.split(",")]
            if spec != "closed" and not all(re.fullmatch(_HOURS, r) for r in ranges):
                raise ValueError(f"{day}: {spec!r} is not 'HH:MM-HH:MM[, HH:MM-HH:MM]' or 'closed'")
            if any(r[:5] >= r[6:] for r in ranges):  # zero-padded times compare as strings
                raise ValueError(f"{day}: {spec!r} closes before it opens")
        return {day: spec.strip().lower() for day, spec in value.items()}

    def faq_entries(self) -> list[FAQEntry]:
        """Curated questions written here and in the YAML files, in order."""
        entries = list(self.faq)
        for path in self.files:
            if path.suffix.lower() in FAQ_SUFFIXES:
                entries.extend(read_faq_file(path))
        return entries

    def passage_files(self) -> list[Path]:
        """The Markdown/text files."""
        return [p for p in self.files if p.suffix.lower() in PASSAGE_SUFFIXES]


class Persona(StrictModel):
    """Everything that makes one avatar."""

    identity: IdentityConfig
    appearance: AppearanceConfig = AppearanceConfig()
    voice: VoiceConfig = VoiceConfig()
    llm: LLMConfig
    stt: STTConfig = STTConfig()
    turn_taking: TurnTakingConfig = TurnTakingConfig()
    behaviour: BehaviourConfig = BehaviourConfig()
    knowledge: KnowledgeConfig = KnowledgeConfig()


SECTIONS = tuple(Persona.model_fields)


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config: where (dotted field path), what, and how to fix it."""

    location: str
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}\n    hint: {self.hint}"


class PersonaError(ValueError):
    """A persona could not be loaded; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem(s)\n{lines}")


def _model_at(path: tuple[str | int, ...]) -> type[StrictModel] | None:
    """The config model that owns the field at ``path`` (for listing valid names in hints)."""
    model: type[StrictModel] = Persona
    for part in path[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, StrictModel)):
            return None
        model = annotation
    return model


def _field_description(path: tuple[str | int, ...]) -> str:
    model = _model_at(path)
    field = model.model_fields.get(str(path[-1])) if model and path else None
    return f" ({field.description})" if field and field.description else ""


def _hint(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc: tuple[str | int, ...] = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(loc)
        valid = ", ".join(model.model_fields) if model else "see `dyad persona show default`"
        return f"remove it or fix its spelling; valid names here: {valid}"
    if kind == "missing":
        return f"add `{loc[-1]}:` to this section{_field_description(loc)}"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bounds = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ctx.items())
        return f"use a value {bounds}{_field_description(loc)}"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the listed values')}"
    if kind == "string_pattern_mismatch":
        return f"the value must match {ctx.get('pattern')}{_field_description(loc)}"
    if kind in {"path_not_file", "path_not_exists"}:
        return "give a path to an existing file; relative paths start at the persona file's folder"
    if kind in {"float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"}:
        return f"write a plain number{_field_description(loc)}"
    if kind in {"bool_parsing", "bool_type"}:
        return "write true or false"
    if kind in {"string_type", "string_too_short", "string_too_long"}:
        return f"write a quoted string{_field_description(loc)}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "this must be a mapping of `name: value` lines, indented under its section"
    if kind == "multiple_of":
        return f"use a multiple of {ctx.get('multiple_of')}"
    if kind == "value_error":
        return "see the message; `dyad persona show default` prints a valid persona"
    return "see `dyad persona show default` for a valid persona"


def issues_from_validation(error: ValidationError, env_sources: Mapping[str, str]) -> list[ConfigIssue]:
    """Turn pydantic's errors into :class:`ConfigIssue` s, naming env vars that supplied a bad value."""
    issues = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if "input" in item and item["type"] not in {"missing", "extra_forbidden"}:
            shown = repr(item["input"])
            message += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
        for prefix, var in env_sources.items():
            if location == prefix or location.startswith(prefix + "."):
                message += f" [set by environment variable {var}]"
        issues.append(ConfigIssue(location, message, _hint(item)))
    return issues


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects a key written twice (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a persona YAML file into a mapping; syntax errors become a :class:`PersonaError`."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PersonaError(
            source, [ConfigIssue("(file)", "no such file", "check the path or use `dyad persona list`")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(source, [ConfigIssue("(file)", str(exc), "save the file as UTF-8 text")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise PersonaError(
            source,
            [
                ConfigIssue(
                    where,
                    f"YAML syntax error: {exc.problem}",
                    "write each key only once"
                    if "duplicate key" in str(exc.problem)
                    else "check indentation (spaces, not tabs), a ':' after each key, and closed quotes",
                )
            ],
        ) from None
    except yaml.YAMLError as exc:
        raise PersonaError(source, [ConfigIssue("(file)", f"YAML error: {exc}", "fix the YAML")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PersonaError(
            source,
            [
                ConfigIssue(
                    "(top level)",
                    f"expected a mapping of sections, got {type(data).__name__}",
                    f"start the file with sections such as `identity:` and `llm:`; sections: {SECTIONS}",
                )
            ],
        )
    return data


def env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Collect ``DYAD_<SECTION>__<FIELD>[__<FIELD>]`` variables into a nested mapping.

    Values are parsed as YAML scalars, so ``0.5`` is a number and ``true`` a boolean. Returns the
    mapping and, for error messages, which dotted location each variable set.
    """
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        if parts[0] not in SECTIONS or not all(parts):
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        sources[".".join(parts)] = var
    return tree, sources


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, merging nested mappings."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_persona(
    data: Mapping[str, Any], *, source: str, base_dir: Path | None, env: Mapping[str, str] | None = None
) -> Persona:
    """Validate a persona mapping, with environment overrides applied on top."""
    overrides, env_sources = env_overrides(os.environ if env is None else env)
    merged = deep_merge(dict(data), overrides)
    try:
        return Persona.model_validate(merged, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise PersonaError(source, issues_from_validation(exc, env_sources)) from None


def persona_search_path(settings: AppSettings) -> list[Path]:
    """Folders searched for ``NAME.yaml``, first match wins."""
    dirs = [settings.personas_dir] if settings.personas_dir else []
    return [*dirs, settings.configs() / "personas"]


def available_personas(settings: AppSettings) -> dict[str, Path]:
    """Every persona name that ``load_persona`` resolves, with its file."""
    found = {"default": settings.configs() / "default.yaml"}
    for folder in reversed(persona_search_path(settings)):
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.glob("*.yaml"))})
    return found


def resolve_persona_path(name_or_path: str, settings: AppSettings) -> Path:
    """A persona name (``default``, ``library``) or a path to a YAML file -> the file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in {".yaml", ".yml"} or candidate.parent != Path("."):
        return candidate
    known = available_personas(settings)
    if name_or_path in known:
        return known[name_or_path]
    raise PersonaError(
        name_or_path,
        [
            ConfigIssue(
                "(name)",
                f"no persona named {name_or_path!r}",
                f"use one of {sorted(known)} or a path to a .yaml file",
            )
        ],
    )


def check_joint_voice(persona: Persona, source: str, settings: AppSettings) -> Persona:
    """In joint mode, ``voice.speaker`` must be one of the checkpoint's speakers (read from its header).

    Without a checkpoint there is nothing to check: start-up speaks with Kokoro then, and says so."""
    from avatar_core.model.checkpoint import checkpoint_path, checkpoint_voices

    if persona.voice.mode != "joint":
        return persona
    path = checkpoint_path(settings.model)
    if not path.exists():
        return persona
    try:
        voices = checkpoint_voices(path)
    except ValueError as exc:
        raise PersonaError(
            source,
            [
                ConfigIssue(
                    "voice.mode",
                    f"joint mode needs the joint model, which cannot be read: {exc}",
                    "point DYAD_MODEL at a checkpoint from `dyad train fit`, or use voice.mode: cascade",
                )
            ],
        ) from None
    if persona.voice.speaker not in voices:
        raise PersonaError(
            source,
            [
                ConfigIssue(
                    "voice.speaker",
                    f"the joint model ({path.name}) has no speaker {persona.voice.speaker!r}; "
                    f"it speaks {', '.join(voices)}",
                    f"use one of {', '.join(voices)}, or voice.mode: cascade to speak "
                    f"{persona.voice.speaker} with Kokoro",
                )
            ],
        )
    return persona


def load_persona(
    name_or_path: str | None = None,
    *,
    settings: AppSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> Persona:
    """Load, merge environment overrides into, and validate a persona by name or path (a joint-mode
    speaker against the checkpoint's speakers too)."""
    settings = settings or AppSettings()
    path = resolve_persona_path(name_or_path or settings.persona, settings)
    data = read_yaml(path)
    persona = validate_persona(data, source=str(path), base_dir=path.parent.resolve(), env=env)
    return check_joint_voice(persona, str(path), settings)
