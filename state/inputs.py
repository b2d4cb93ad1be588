"""Reading a scenario's input from its state: the same one-line refusal everywhere."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ensemble.errors import InvalidInputError, describe_validation_error

Input = TypeVar("Input", bound=BaseModel)


def validated(schema: type[Input], data: Any, scenario: str) -> Input:
    """`data` as `schema` (a dict, or a state dataclass whose input fields are read).

    Raises:
        InvalidInputError: `invalid <scenario> input: field: problem; ...`, on one line.
    """
    if not isinstance(data, dict | schema):
        try:
            data = {k: v for k, v in asdict(data).items() if k in schema.model_fields}
        except TypeError:
            raise InvalidInputError(
                f"invalid {scenario} input: expected an object, got {type(data).__name__}"
            ) from None
    try:
        return schema.model_validate(data, strict=False)
    except ValidationError as error:
        raise InvalidInputError(
            f"invalid {scenario} input: {describe_validation_error(error)}"
        ) from None
