"""A safe arithmetic evaluator: walks the `ast` of an expression, never calls eval or exec.

Only numbers, arithmetic operators, parentheses and a whitelist of math functions and
constants are accepted, and results are kept small, so a model-written expression cannot
touch the interpreter or exhaust memory (`9**9**9` is refused before it is computed).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from ensemble.errors import EnsembleError

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
# About 4000 decimal digits: below Python's int-to-str limit (4300), so every result prints.
MAX_INT_BITS = 13_000

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_REFUSED_NAMES: dict[type[ast.AST], str] = {
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Not: "not",
    ast.Lambda: "lambda",
    ast.ListComp: "a list comprehension",
    ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Compare: "a comparison",
    ast.BoolOp: "and/or",
    ast.IfExp: "if/else",
    ast.Subscript: "indexing",
    ast.NamedExpr: "assignment (:=)",
    ast.JoinedStr: "an f-string",
}
"""How a refused operator or construct is named in the error message."""
FUNCTIONS: dict[str, Callable[..., Any]] = {"abs": abs, "round": round, "min": min, "max": max}
FUNCTIONS.update(
    (name, getattr(math, name))
    for name in ("sqrt", "log", "log10", "exp", "sin", "cos", "tan", "floor", "ceil")
)
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


class CalculatorError(EnsembleError, ValueError):
    """The expression is not allowed, malformed, or its value cannot be computed safely."""


def evaluate(expression: str) -> float | int:
    """Compute an arithmetic expression such as `2 * (3 + sqrt(16)) ** 2`.

    The expression has at most 500 characters of numbers, `+ - * / // % **`, unary signs,
    parentheses, and the functions and constants in `FUNCTIONS` and `CONSTANTS`. The value is
    an int when integer arithmetic keeps it exact.

    Raises:
        CalculatorError: A construct outside the whitelist, a too long expression, a result
            too large to compute safely, or a math error such as division by zero.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(
            f"expression is too long ({len(expression)} characters, at most "
            f"{MAX_EXPRESSION_CHARS} are allowed)"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as error:
        raise CalculatorError(f"not a valid arithmetic expression: {expression!r}") from error
    try:
        result = _eval(tree.body)
    except CalculatorError:
        raise
    except ZeroDivisionError as error:
        raise CalculatorError("division by zero") from error
    except OverflowError as error:
        raise CalculatorError("the result is too large") from error
    except (ValueError, TypeError) as error:
        raise CalculatorError(f"cannot compute {expression!r}: {error}") from error
    except RecursionError as error:
        raise CalculatorError("the expression is nested too deeply") from error
    return _checked(result)


def _eval(node: ast.expr) -> Number:
    """Evaluate one whitelisted node; anything else is refused by name."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculatorError(f"only numbers are allowed, not {value!r}")
        return value
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise CalculatorError(f"operator {_name(node.op)} is not allowed")
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(op(left, right))
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise CalculatorError(f"operator {_name(node.op)} is not allowed")
        return _checked(unary(_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise CalculatorError(f"function {node.id} must be called, e.g. {node.id}(2)")
        raise CalculatorError(f"name {node.id!r} is not allowed; {_allowed_names()}")
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Attribute):
        raise CalculatorError(f"attribute access (.{node.attr}) is not allowed")
    raise CalculatorError(f"{_name(node)} is not allowed in a calculator expression")


def _call(node: ast.Call) -> Number:
    """Call a whitelisted function by plain name with positional number arguments."""
    if not isinstance(node.func, ast.Name):
        if isinstance(node.func, ast.Attribute):
            raise CalculatorError(f"attribute access (.{node.func.attr}) is not allowed")
        raise CalculatorError("only the whitelisted functions may be called")
    name = node.func.id
    function = FUNCTIONS.get(name)
    if function is None:
        raise CalculatorError(f"calling {name!r} is not allowed; {_allowed_names()}")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise CalculatorError(f"{name}() takes plain positional arguments only")
    args = [_eval(arg) for arg in node.args]
    if name in ("min", "max") and not args:
        raise CalculatorError(f"{name}() needs at least one argument")
    return _checked(function(*args))


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse powers whose exponent or (for ints) result size would be unreasonable."""
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exponent} is too large (at most {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base).bit_length() * exponent > MAX_INT_BITS:
            raise CalculatorError("the result of ** would be too large")


def _checked(value: Any) -> Number:
    """Keep results real, finite and small, whatever produced them."""
    if isinstance(value, int):  # bools too, returned as ints
        if value.bit_length() > MAX_INT_BITS:
            raise CalculatorError("the result is too large")
        return int(value)
    if not isinstance(value, float):
        raise CalculatorError("the result is not a real number")
    if not math.isfinite(value):
        raise CalculatorError("the result is not a finite number")
    return value


def _name(node: ast.AST) -> str:
    """A readable name for a refused operator or construct, so the model can correct itself."""
    return _REFUSED_NAMES.get(type(node), type(node).__name__)


def _allowed_names() -> str:
    """List what may be named, so the model can correct itself."""
    return "allowed: " + ", ".join([*FUNCTIONS, *CONSTANTS])
