"""Editing ``wp-config.php``: the database constants rewritten in place, only ever inside
PHP code, or the file refused.

A small scanner follows PHP's own lexer far enough to know, for every byte, whether it is
inline HTML, code, a string, a heredoc or a comment (php-src ``zend_language_scanner``:
``<?php``/``<?=`` open code, ``?>`` closes it even inside a ``//`` comment, ``'…'``
knows only ``\\\\`` and ``\\'``, ``"…"`` and heredocs interpolate ``{$…}``, ``#[`` is an
attribute, not a comment). A constant is rewritten when it is defined exactly once in
code, by a ``define( 'NAME', … );`` statement alone on its line (indentation before it,
anything after its ``;`` kept); every other form is refused, naming the constant and the
line, so that no old credential can survive next to a new one and no define can land in
a comment. The text is handled as bytes decoded with ``surrogateescape``: bytes that are
not UTF-8 in lines cloudboot does not touch stay as they were (PHP accepts them).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

PLACEHOLDER = "put your unique phrase here"
KEYS = (
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
)
# WordPress's own salt alphabet (wp_generate_password with special characters), less
# the quote and backslash so that no escaping is needed.
_SALT_ALPHABET = string.ascii_letters + string.digits + "!@#$%^&*()-_ []{}<>~`+=,.;:/?|"

# PHP's label: a letter, "_" or any byte from 0x80, then digits too. (Written with a
# negated class: a range up to U+10FFFF costs 10 ms to compile, at every start.)
_IDENT = re.compile(r"(?:[A-Za-z_]|[^\x00-\x7f])(?:[A-Za-z0-9_]|[^\x00-\x7f])*")
_OPEN_TAG = re.compile(r"<\?php(?=[ \t\r\n]|$)|<\?=", re.IGNORECASE)
_HEREDOC = re.compile(r"<<<[ \t]*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1\r?\n")
_MENTION = re.compile(r"""define\s*\(\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\1""", re.IGNORECASE)


class WpConfigRefused(Exception):
    """The file cannot be edited exactly; ``problems`` name the constant and line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class _Define:
    """A ``define(`` call in code: where it starts and ends, and its first argument."""

    start: int
    end: int  # just after its ";" (or after ")" when no ";" follows)
    name: str | None  # the constant's name, when the first argument is a plain string
    double_quoted: bool
    complete: bool  # a ")" and a ";" were found


@dataclass
class _Scan:
    """What the scanner learnt of a file."""

    defines: list[_Define] = field(default_factory=list)
    # Spans of text that is not code (comments, strings, heredocs, inline HTML).
    not_code: list[tuple[int, int]] = field(default_factory=list)
    # Offsets where code starts (just after each opening tag), and the state at every
    # line end: True where the line ends in code.
    openers: list[int] = field(default_factory=list)
    code_at_line_end: dict[int, bool] = field(default_factory=dict)


class _Scanner:
    """One pass over the text; see the module's docstring for the rules."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.scan = _Scan()

    def run(self) -> _Scan:
        position = 0
        while position < len(self.text):
            opener = _OPEN_TAG.search(self.text, position)
            html_end = opener.start() if opener else len(self.text)
            self._not_code(position, html_end)
            if opener is None:
                break
            self.scan.openers.append(opener.end())
            position = self._code(opener.end(), closing="?>")
        return self.scan

    def _not_code(self, start: int, end: int) -> None:
        if end > start:
            self.scan.not_code.append((start, end))
            self._line_ends(start, end, code=False)

    def _line_ends(self, start: int, end: int, *, code: bool) -> None:
        index = self.text.find("\n", start, end)
        while index != -1:
            self.scan.code_at_line_end[index] = code
            index = self.text.find("\n", index + 1, end)

    def _code(self, position: int, *, closing: str) -> int:
        """Scan code from ``position`` up to ``closing`` (``?>`` at top level, ``}`` inside
        an interpolation); the offset after it, or the end of the text."""
        text = self.text
        depth = 0
        while position < len(text):
            if closing == "?>" and text.startswith("?>", position):
                return position + 2
            if closing == "}" and text[position] in "{}":
                if text[position] == "}" and depth == 0:
                    return position + 1
                depth += 1 if text[position] == "{" else -1
            position = self._token(position)
        return position

    def _token(self, position: int) -> int:
        """Past one token of code at ``position``, noting what it is."""
        text = self.text
        char, two = text[position], text[position : position + 2]
        if char == "\n":
            self.scan.code_at_line_end[position] = True
            return position + 1
        if char in "'\"`":
            return self._string(position, interpolating=char != "'", quote=char)
        if two == "/*":
            end = text.find("*/", position + 2)
            end = len(text) if end == -1 else end + 2
            self._not_code(position, end)
            return end
        if two == "//" or (char == "#" and text[position + 1 : position + 2] != "["):
            return self._line_comment(position)
        if text.startswith("<<<", position) and (heredoc := _HEREDOC.match(text, position)):
            return self._heredoc(position, heredoc)
        if self._is_define(position):
            self._define(position)
            return position + len("define")
        word = _IDENT.match(text, position)
        return word.end() if word else position + 1

    def _is_define(self, position: int) -> bool:
        text = self.text
        if text[position : position + 6].lower() != "define":
            return False
        before = text[position - 1] if position else ""
        if before and (before.isalnum() or before in "_$\\>:"):
            return False  # part of a name, a variable, a method or a namespaced call
        after = text[position + 6 : position + 7]
        return not (after.isalnum() or after == "_")

    def _string(self, position: int, *, interpolating: bool, quote: str) -> int:
        text = self.text
        end = position + 1
        while end < len(text):
            char = text[end]
            if char == "\\":
                end += 2
                continue
            if char == quote:
                end += 1
                break
            if interpolating and text.startswith("{$", end):
                self._not_code(position, end)
                end = self._code(end + 1, closing="}")
                position = end
                continue
            end += 1
        self._not_code(position, min(end, len(text)))
        return end

    def _line_comment(self, position: int) -> int:
        # A "//" or "#" comment ends at the line end or at "?>", which it does not include.
        text = self.text
        newline = text.find("\n", position)
        newline = len(text) if newline == -1 else newline
        closing = text.find("?>", position, newline)
        end = newline if closing == -1 else closing
        self._not_code(position, end)
        return end

    def _heredoc(self, position: int, match: re.Match[str]) -> int:
        label = match.group(2)
        closing = re.compile(rf"^[ \t]*{re.escape(label)}\b", re.MULTILINE)
        found = closing.search(self.text, match.end())
        end = len(self.text) if found is None else found.end()
        self._not_code(position, end)
        return end

    def _define(self, position: int) -> None:
        """Record the ``define(`` at ``position``: its name and where the statement ends."""
        text = self.text
        after = re.compile(r"define\s*\(\s*", re.IGNORECASE).match(text, position)
        if after is None:
            return
        name: str | None = None
        double_quoted = False
        argument = re.compile(r"(['\"])([A-Za-z_][A-Za-z0-9_]*)\1").match(text, after.end())
        if argument is not None:
            name, double_quoted = argument.group(2), argument.group(1) == '"'
        close = self._matching_paren(text.index("(", position))
        complete = False
        end = len(text) if close is None else close
        if close is not None:
            semicolon = re.compile(r"[ \t]*;").match(text, close)
            if semicolon is not None:
                end, complete = semicolon.end(), True
        self.scan.defines.append(_Define(position, end, name, double_quoted, complete))

    def _matching_paren(self, open_paren: int) -> int | None:
        """The offset after the ``)`` closing the ``(`` at ``open_paren``, skipping
        strings; ``None`` if the text ends first."""
        text = self.text
        depth = 0
        position = open_paren
        while position < len(text):
            char = text[position]
            if char in "'\"":
                position = _skip_string(text, position)
                continue
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return position + 1
            elif text.startswith("?>", position):
                return None
            position += 1
        return None


def _skip_string(text: str, position: int) -> int:
    quote = text[position]
    end = position + 1
    while end < len(text) and text[end] != quote:
        end += 2 if text[end] == "\\" else 1
    return end + 1


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def _line_end(text: str, offset: int) -> int:
    """The offset of the LF ending the line of ``offset`` (or the text's length)."""
    end = text.find("\n", offset)
    return len(text) if end == -1 else end


def escape_php(value: str) -> str:
    """A PHP single-quoted string body: ``\\`` and ``'`` escaped in one pass."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def new_salt() -> str:
    return "".join(secrets.choice(_SALT_ALPHABET) for _ in range(64))


def edit(
    template: bytes, constants: Mapping[str, str], *, salt: Mapping[str, str] | None = None
) -> bytes:
    """``template`` with each of ``constants`` (name → PHP expression) defined once, in
    code; keys and salts still holding WordPress's placeholder filled. Raises
    :class:`WpConfigRefused` for a file that cannot be edited exactly."""
    text = template.decode("utf-8", "surrogateescape")
    scan = _Scanner(text).run()
    problems: list[str] = []
    replacements: list[tuple[int, int, str]] = []
    last_line_end: int | None = None
    for name, expression in constants.items():
        define = _the_define(text, scan, name, problems)
        if define is None:
            continue
        replacements.append((define.start, define.end, _statement(text, define, name, expression)))
        line_end = _line_end(text, define.end)
        last_line_end = line_end if last_line_end is None else max(last_line_end, line_end)
    for key in KEYS:
        define = _the_define(text, scan, key, [])
        if define is not None and f"'{PLACEHOLDER}'" in text[define.start : define.end]:
            value = f"'{escape_php((salt or {}).get(key) or new_salt())}'"
            replacements.append((define.start, define.end, _statement(text, define, key, value)))
    missing = [name for name in constants if not _code_defines(scan, name)]
    insert_at = _insertion_point(text, scan, last_line_end, problems) if missing else None
    if problems:
        raise WpConfigRefused(problems)
    for start, end, statement in sorted(replacements, reverse=True):
        text = text[:start] + statement + text[end:]
    if insert_at is not None:
        ending = "\r\n" if "\r\n" in text[: text.find("\n") + 1] else "\n"
        added = "".join(f"define( '{name}', {constants[name]} );{ending}" for name in missing)
        # The insertion point is the end of a line, before its LF: move past the LF.
        shift = sum(len(s) - (e - st) for st, e, s in replacements if st < insert_at)
        at = insert_at + shift + 1 if insert_at + shift < len(text) else len(text)
        if at == len(text) and not text.endswith("\n"):
            added = ending + added
        text = text[:at] + added + text[at:]
    return text.encode("utf-8", "surrogateescape")


def _code_defines(scan: _Scan, name: str) -> list[_Define]:
    return [d for d in scan.defines if d.name == name]


def _the_define(text: str, scan: _Scan, name: str, problems: list[str]) -> _Define | None:
    """The one rewritable define of ``name``; ``None`` when there is none (then it is
    added) or when it cannot be rewritten (then ``problems`` says why)."""
    found = _code_defines(scan, name)
    elsewhere = _mentions_outside_code(text, scan, name)
    if len(found) > 1:
        lines = ", ".join(str(_line_of(text, d.start)) for d in found)
        problems.append(f"{name} is defined {len(found)} times (lines {lines}): keep one")
        return None
    if not found:
        if elsewhere:
            problems.append(
                f"{name} appears only inside a comment or a string (line {elsewhere[0]}): "
                "define it in code, or remove that line"
            )
        return None
    define = found[0]
    line = _line_of(text, define.start)
    where = f"{name} on line {line}"
    if define.double_quoted:
        problems.append(f"{where} is defined with double quotes: write define( '{name}', … );")
    elif not define.complete:
        problems.append(f"{where}: its define( … ); cannot be read to its end")
    elif "\n" in text[define.start : define.end]:
        problems.append(f"{where} is defined across several lines: write it on one line")
    elif text[_line_start(text, define.start) : define.start].strip(" \t"):
        problems.append(f"{where} shares its line with other code (the <?php tag?): give it a line")
    else:
        return define
    return None


def _mentions_outside_code(text: str, scan: _Scan, name: str) -> list[int]:
    lines = []
    for start, end in scan.not_code:
        for match in _MENTION.finditer(text, start, end):
            if match.group(2) == name:
                lines.append(_line_of(text, match.start()))
    return lines


def _statement(text: str, define: _Define, name: str, expression: str) -> str:
    """``define( 'NAME',<padding>EXPRESSION );`` keeping the padding after the comma, as
    WordPress's installer does."""
    comma = text.find(",", define.start, define.end)
    padding = ""
    if comma != -1:
        after = text[comma + 1 : define.end]
        padding = after[: len(after) - len(after.lstrip(" \t"))]
    return f"define( '{name}',{padding or ' '}{expression} );"


def _insertion_point(
    text: str, scan: _Scan, last_line_end: int | None, problems: list[str]
) -> int | None:
    """Where missing constants go: after the line of the last database constant, or
    else after the first ``<?php`` line; it must be code there."""
    if last_line_end is None:
        if not scan.openers:
            problems.append("the file has no <?php opening tag: it is not PHP code")
            return None
        last_line_end = _line_end(text, scan.openers[0])
    if last_line_end < len(text) and not scan.code_at_line_end.get(last_line_end, False):
        problems.append(
            f"the line after line {_line_of(text, last_line_end)} is not PHP code (a comment "
            "or a string goes on): cloudboot cannot add the missing constants there"
        )
        return None
    return last_line_end
