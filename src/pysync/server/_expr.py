"""Tokenizer and parsers for DynamoDB key-condition and update expressions.

The policy must know exactly which attributes a request pins or writes, so it
parses expressions with a small recursive-descent parser instead of matching
them with regular expressions. The grammar is a strict subset of DynamoDB's:
whatever this module cannot parse is denied, so a parser gap can only refuse a
request DynamoDB would accept, never accept one DynamoDB would read differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn, TypeAlias, cast

from ._errors import ValidationError

MAX_EXPRESSION_LENGTH = 4096  # DynamoDB's own limit for one expression
_MAX_DEPTH = 32  # nesting bound so hostile input cannot exhaust the stack

_KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"})
_COMPARATORS = frozenset({"=", "<>", "<", "<=", ">", ">="})
_PUNCTUATION = frozenset({"(", ")", ",", ".", "[", "]", "+", "-"})
_WHITESPACE = frozenset(" \t\r\n")

TokenKind = Literal["name", "alias", "value", "number", "keyword", "op", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; ``text`` is upper-cased for keywords."""

    kind: TokenKind
    text: str
    pos: int


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def tokenize(expression: str) -> list[Token]:
    """Split an expression into tokens; raise ``ValidationError`` on any unknown character."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValidationError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    tokens: list[Token] = []
    i, n = 0, len(expression)
    while i < n:
        ch = expression[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        start = i
        if ch in "#:":
            i += 1
            while i < n and _is_word_char(expression[i]):
                i += 1
            if i == start + 1:
                raise ValidationError(f"empty placeholder at position {start}")
            tokens.append(Token("alias" if ch == "#" else "value", expression[start:i], start))
        elif ch.isascii() and ch.isdigit():
            while i < n and expression[i].isascii() and expression[i].isdigit():
                i += 1
            tokens.append(Token("number", expression[start:i], start))
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            while i < n and _is_word_char(expression[i]):
                i += 1
            word = expression[start:i]
            if word.upper() in _KEYWORDS:
                tokens.append(Token("keyword", word.upper(), start))
            else:
                tokens.append(Token("name", word, start))
        elif expression.startswith(("<=", ">=", "<>"), i):
            i += 2
            tokens.append(Token("op", expression[start:i], start))
        elif ch in _COMPARATORS or ch in _PUNCTUATION:
            i += 1
            tokens.append(Token("op", ch, start))
        else:
            raise ValidationError(f"unexpected character {ch!r} at position {i}")
    tokens.append(Token("end", "", n))
    return tokens


# --- syntax tree -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Path:
    """A document path; elements are raw names, ``#aliases`` or list indexes."""

    elements: tuple[str | int, ...]

    def top(self, names: Mapping[str, str]) -> str:
        """The top-level attribute name, with an ``#alias`` resolved."""
        return resolve_name(self.elements[0], names)


@dataclass(frozen=True, slots=True)
class Value:
    """A ``:placeholder`` for an ExpressionAttributeValues entry."""

    name: str


@dataclass(frozen=True, slots=True)
class Call:
    """A function call such as ``begins_with(sk, :p)`` or ``if_not_exists(a, :v)``."""

    name: str
    args: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class Arith:
    """``a + b`` or ``a - b`` in an update's SET value."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class Compare:
    """``left <op> right`` for one of ``= <> < <= > >=``."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class Between:
    """``operand BETWEEN low AND high``."""

    operand: Operand
    low: Operand
    high: Operand


@dataclass(frozen=True, slots=True)
class In:
    """``operand IN (a, b, ...)``."""

    operand: Operand
    options: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class BoolOp:
    """``AND`` / ``OR`` of two conditions."""

    op: Literal["AND", "OR"]
    left: Condition
    right: Condition


@dataclass(frozen=True, slots=True)
class Not:
    """``NOT condition``."""

    operand: Condition


Operand: TypeAlias = Path | Value | Call | Arith
Condition: TypeAlias = Compare | Between | In | BoolOp | Not | Call

UpdateAction = Literal["SET", "REMOVE", "ADD", "DELETE"]


@dataclass(frozen=True, slots=True)
class UpdateClause:
    """One action of an update expression: the path it writes and, if any, its value."""

    action: UpdateAction
    path: Path
    value: Operand | None


def resolve_name(element: str | int, names: Mapping[str, str]) -> str:
    """Resolve a path element to an attribute name using ExpressionAttributeNames."""
    if isinstance(element, int):
        raise ValidationError("a document path cannot start with a list index")
    if element.startswith("#"):
        try:
            return names[element]
        except KeyError:
            raise ValidationError(f"ExpressionAttributeNames does not define {element}") from None
    return element


# --- parser ----------------------------------------------------------------


class _Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = tokenize(expression)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def at(self, kind: TokenKind, text: str | None = None) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == kind and (text is None or tok.text == text)

    def expect(self, kind: TokenKind, text: str | None = None) -> Token:
        if not self.at(kind, text):
            self.fail(f"expected {text or kind}")
        return self.advance()

    def fail(self, what: str) -> NoReturn:
        tok = self.tok
        found = tok.text or "end of expression"
        raise ValidationError(f"invalid expression: {what}, found {found!r} at {tok.pos}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ValidationError("expression nested too deeply")

    def finish(self) -> None:
        if not self.at("end"):
            self.fail("end of expression")

    # operands

    def path(self) -> Path:
        elements: list[str | int] = [self.name()]
        while True:
            if self.at("op", "."):
                self.advance()
                elements.append(self.name())
            elif self.at("op", "["):
                self.advance()
                elements.append(int(self.expect("number").text))
                self.expect("op", "]")
            else:
                return Path(tuple(elements))

    def name(self) -> str:
        if self.at("name") or self.at("alias"):
            return self.advance().text
        self.fail("an attribute name")

    def operand(self) -> Operand:
        if self.at("value"):
            return Value(self.advance().text)
        if self.at("name") and self.tokens[self.i + 1].text == "(":
            return self.call()
        return self.path()

    def call(self) -> Call:
        self.enter()
        name = self.advance().text
        self.expect("op", "(")
        args = [self.sum_operand()]
        while self.at("op", ","):
            self.advance()
            args.append(self.sum_operand())
        self.expect("op", ")")
        self.depth -= 1
        return Call(name, tuple(args))

    def sum_operand(self) -> Operand:
        left = self.operand()
        if self.at("op", "+") or self.at("op", "-"):
            op = self.advance().text
            return Arith(op, left, self.operand())
        return left

    # conditions

    def condition(self) -> Condition:
        self.enter()
        left = self.conjunction()
        while self.at("keyword", "OR"):
            self.advance()
            left = BoolOp("OR", left, self.conjunction())
        self.depth -= 1
        return left

    def conjunction(self) -> Condition:
        left = self.negation()
        while self.at("keyword", "AND"):
            self.advance()
            left = BoolOp("AND", left, self.negation())
        return left

    def negation(self) -> Condition:
        if self.at("keyword", "NOT"):
            self.enter()
            self.advance()
            result = Not(self.negation())
            self.depth -= 1
            return result
        if self.at("op", "("):
            self.advance()
            inner = self.condition()
            self.expect("op", ")")
            return inner
        return self.predicate()

    def predicate(self) -> Condition:
        left = self.operand()
        if self.at("op") and self.tok.text in _COMPARATORS:
            op = self.advance().text
            return Compare(op, left, self.operand())
        if self.at("keyword", "BETWEEN"):
            self.advance()
            low = self.operand()
            self.expect("keyword", "AND")
            return Between(left, low, self.operand())
        if self.at("keyword", "IN"):
            self.advance()
            self.expect("op", "(")
            options = [self.operand()]
            while self.at("op", ","):
                self.advance()
                options.append(self.operand())
            self.expect("op", ")")
            return In(left, tuple(options))
        if isinstance(left, Call):
            return left
        self.fail("a comparison")

    # update expressions

    def update(self) -> list[UpdateClause]:
        clauses: list[UpdateClause] = []
        seen: set[str] = set()
        if self.at("end"):
            self.fail("SET, REMOVE, ADD or DELETE")
        while not self.at("end"):
            keyword = self.expect("keyword").text
            if keyword not in ("SET", "REMOVE", "ADD", "DELETE") or keyword in seen:
                raise ValidationError(f"invalid expression: unexpected or repeated {keyword}")
            seen.add(keyword)
            action = cast(UpdateAction, keyword)
            while True:
                clauses.append(self.update_action(action))
                if not self.at("op", ","):
                    break
                self.advance()
        return clauses

    def update_action(self, action: UpdateAction) -> UpdateClause:
        path = self.path()
        if action == "SET":
            self.expect("op", "=")
            return UpdateClause(action, path, self.sum_operand())
        if action == "REMOVE":
            return UpdateClause(action, path, None)
        return UpdateClause(action, path, Value(self.expect("value").text))


def parse_condition(expression: str) -> Condition:
    """Parse a condition-style expression (as used by ``KeyConditionExpression``)."""
    parser = _Parser(expression)
    result = parser.condition()
    parser.finish()
    return result


def parse_update(expression: str) -> list[UpdateClause]:
    """Parse an ``UpdateExpression`` into its actions, in order."""
    parser = _Parser(expression)
    result = parser.update()
    parser.finish()
    return result
