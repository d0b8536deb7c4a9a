"""A YAML config file as plain data, with the line of every value and ``${ENV}`` expanded.

Values under keys ending in ``_file`` are paths; relative ones are taken relative to the
directory of the YAML file, so a config works from any working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from receiver.config.fields import Loc
from receiver.errors import ConfigProblem
from receiver.fieldpath import field_path

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


@dataclass
class Document:
    """One config file: its data, where each value starts, and what is wrong with it."""

    file: str
    base: Path
    data: Any = None
    lines: dict[Loc, int] = field(default_factory=dict)
    key_lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    problem_locs: set[Loc] = field(default_factory=set)
    warnings: list[ConfigProblem] = field(default_factory=list)
    """What is valid but almost surely a mistake: said by ``check``, never refused."""
    references: dict[Loc, list[str]] = field(default_factory=dict)
    """The ``${NAME}`` environment variables each value named, set or not."""
    written: dict[Loc, str] = field(default_factory=dict)
    """The text of a value YAML read as something other than what it shows: ``NO`` read
    as false, ``010`` as 8, a date, or a ``#channel`` read as a comment (no value)."""

    def line(self, loc: Loc, *, key: bool = False) -> int | None:
        """Line of the value at ``loc`` (of its key with ``key``), else of its nearest parent."""
        if key and loc in self.key_lines:
            return self.key_lines[loc]
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def add(self, loc: Loc, reason: str, *, line: int | None = None, key: bool = False) -> None:
        found = line if line is not None else self.line(loc, key=key)
        self.problems.append(ConfigProblem(self.file, found, field_path(loc), reason))
        self.problem_locs.add(loc)

    def warn(self, loc: Loc, reason: str) -> None:
        self.warnings.append(ConfigProblem(self.file, self.line(loc), field_path(loc), reason))

    def covers(self, loc: Loc) -> bool:
        """True when a problem was already reported at ``loc`` or one of its parents, or at
        its ``_file`` twin (the value came, or failed to come, from that file)."""
        twin: Loc = (*loc[:-1], f"{loc[-1]}_file") if loc and isinstance(loc[-1], str) else ()
        return any(
            loc[: len(seen)] == seen or (twin and twin == seen) for seen in self.problem_locs
        )


def read_document(
    path: Path, *, unset_is_empty: bool = False, verbatim: Callable[[Loc], bool] | None = None
) -> Document:
    """Read and compose ``path``; problems are collected on the document, never raised.
    ``unset_is_empty``: an unset ``${VAR}`` reads as empty, no problem (for the commands
    that use no secret: ``rules``, ``explain``, ``replay``, a team lead's ``check``).
    ``verbatim``: the values whose ``${...}`` is not an environment variable (a KPI
    query's ``${region}`` is the incident's group label)."""
    doc = Document(file=str(path), base=path.parent)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        doc.add((), f"cannot read the file: {reason}")
        return doc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        builder = _Builder(loader, doc, unset_is_empty, verbatim)
        doc.data = {} if root is None else builder.value(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if (
            problem.startswith("expected <block end>")
            or "mapping values are not allowed" in problem
        ):
            # What the parser says of a line indented wrong, or of a "key: value" inside a
            # value: people read its words as noise.
            problem += " (is this line, or the one before it, indented wrong?)"
        elif "'\\t'" in problem:
            # An editor's tab: the parser names the character, not the rule it breaks.
            problem += " (YAML does not allow tabs for indentation or after a value: use spaces)"
        doc.add((), f"YAML syntax error: {problem}", line=mark.line + 1 if mark else None)
    finally:
        loader.dispose()
    return doc


class _Builder:
    def __init__(
        self,
        loader: yaml.SafeLoader,
        doc: Document,
        unset_is_empty: bool,
        verbatim: Callable[[Loc], bool] | None = None,
    ) -> None:
        self.loader = loader
        self.doc = doc
        self.unset_is_empty = unset_is_empty
        self.verbatim = verbatim
        self.active: set[int] = set()

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        self.doc.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if id(node) in self.active:  # an alias inside its own anchor
            self.doc.add(loc, "recursive YAML alias")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, (*loc, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, loc)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self.loader.flatten_mapping(node)
        # flatten_mapping puts the pairs of "<<" merges first; the file's own keys override
        # them silently, but the same key twice among the file's own keys is a mistake.
        inherited = len(node.value) - own
        result: dict[str, Any] = {}
        own_keys: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.doc.add(loc, "mapping keys must be plain names", line=key_line)
                continue
            # The key's source text: YAML 1.1 would read `no:` or `on:` as booleans.
            key = key_node.value
            here = (*loc, key)
            if index >= inherited:
                if key in own_keys:
                    # Not through add(): errors in the first value must still be reported.
                    reason = f'duplicate key "{key}" (first at line {self.doc.key_lines[here]})'
                    self.doc.problems.append(
                        ConfigProblem(self.doc.file, key_line, field_path(here), reason)
                    )
                    continue
                own_keys.add(key)
            self.doc.key_lines[here] = key_line
            value = self.value(value_node, here)
            if key.endswith("_file") and isinstance(value, str) and value:
                value = str(self.doc.base / value)  # an absolute value replaces the base
            result[key] = value
        return result

    def scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        try:
            value = self.loader.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            self.doc.add(loc, exc.problem or "cannot read this value")
            return None
        except (ValueError, OverflowError) as exc:
            # PyYAML's own constructors raise these for a value of a known form that is
            # none (2024-02-30, !!int abc): said like any bad value, never a traceback.
            # The value itself is not quoted: it may be a secret.
            said = str(exc).replace(node.value, "…") if node.value else str(exc)
            self.doc.add(loc, f"cannot read this value: {said}")
            return None
        if node.style is None and not isinstance(value, str):
            self.unquoted(node, value, loc)
        if not isinstance(value, str) or (self.verbatim is not None and self.verbatim(loc)):
            return value
        return self.expand(value, loc)

    def unquoted(self, node: yaml.ScalarNode, value: object, loc: Loc) -> None:
        """Note the text of a plain scalar that YAML did not read as text (YAML 1.1 reads
        ``NO`` as false and ``010`` as 8), so that a field wanting text can say why it got
        none; and warn of a value a ``#`` turned into a comment (``#inc-checkout``)."""
        if node.value:
            if value is not None:  # null and ~ say what YAML makes of them
                self.doc.written[loc] = node.value
            return
        mark = node.start_mark
        line = mark.buffer[mark.pointer :].split("\n", 1)[0] if mark.buffer else ""
        rest = line.lstrip(" \t")
        # "# note" is a comment; "#inc-checkout" right after the colon is a value someone
        # forgot to quote, and the field silently gets none.
        if len(rest) > 1 and rest[0] == "#" and not rest[1].isspace() and line != rest:
            self.doc.written[loc] = rest.split(" #", 1)[0].rstrip()
            self.doc.warn(
                loc,
                "has no value: YAML reads a # after a space as the start of a comment, so "
                'the text after it is dropped; quote the value to keep it ("#…")',
            )

    def expand(self, text: str, loc: Loc) -> str:
        def substitute(found: re.Match[str]) -> str:
            ref = _VARIABLE.fullmatch(found.group(1))
            if ref is None:
                self.doc.add(
                    loc, f"bad reference {found.group(0)}: use ${{NAME}} or ${{NAME:-default}}"
                )
                return ""
            name, default = ref.groups()
            self.doc.references.setdefault(loc, []).append(name)
            value = os.environ.get(name)
            if default is not None:
                return value or default  # like the shell: unset or empty takes the default
            if value is None:
                if not self.unset_is_empty:
                    self.doc.add(loc, f"environment variable {name} is not set")
                return ""
            return value

        return _REFERENCE.sub(substitute, text)
