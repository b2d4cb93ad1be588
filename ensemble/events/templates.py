"""Jinja in its sandbox: what a subscription may compute from an event, and nothing more.

Filters (`data.kind == "report"`), inputs (`"Digest of {{ data.title }}"`) and dedupe keys are
written by the operator but filled from event data that anyone with a publisher key controls.
`SandboxedEnvironment` refuses attribute tricks (`__class__`, `mro`, unsafe methods), and
`StrictUndefined` makes a missing field an error (the delivery is dead-lettered with it) instead
of an empty string that would start a run with a blank question.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

MAX_RENDERED_CHARS = 20_000
"""A rendered value longer than this is refused (an input is a question, not a book)."""


class TemplateFailure(Exception):
    """A template or filter could not be evaluated for one event (the reason is the message)."""


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    """The one sandboxed environment (no autoescape: the output is run input, not HTML)."""
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def check_template(text: str) -> None:
    """Compile `text` once so a syntax error is found when the file is loaded.

    Raises:
        TemplateError: The template does not compile.
    """
    environment().from_string(text)


def check_expression(text: str) -> None:
    """Compile a filter expression once (see `check_template`)."""
    environment().compile_expression(text)


def render(text: str, context: dict[str, Any]) -> str:
    """Fill `text` from the event.

    Raises:
        TemplateFailure: A missing field, a sandbox refusal, or an over-long result.
    """
    try:
        rendered = _template(text).render(context)
    except TemplateError as error:
        raise TemplateFailure(_reason(error)) from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        raise TemplateFailure(f"{type(error).__name__}: {error}") from None
    if len(rendered) > MAX_RENDERED_CHARS:
        raise TemplateFailure(f"renders {len(rendered)} characters; at most {MAX_RENDERED_CHARS}")
    return rendered


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Fill every string inside `value` (lists and mappings too); other values stay as they are."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    return value


def matches(expression: str, context: dict[str, Any]) -> bool:
    """Whether the filter expression is true for the event.

    Raises:
        TemplateFailure: The expression could not be evaluated (a missing field, a refusal).
    """
    try:
        return bool(_expression(expression)(**context))
    except TemplateError as error:
        raise TemplateFailure(_reason(error)) from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        raise TemplateFailure(f"{type(error).__name__}: {error}") from None


@lru_cache(maxsize=512)
def _template(text: str) -> Any:
    return environment().from_string(text)


@lru_cache(maxsize=512)
def _expression(text: str) -> Callable[..., Any]:
    return environment().compile_expression(text, undefined_to_none=False)


def _reason(error: TemplateError) -> str:
    message = str(error.message or error).strip().splitlines()[0]
    return f"{type(error).__name__}: {message}"
