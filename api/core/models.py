"""The bases of every request and answer model, and the tagged unions' error paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler
from pydantic.json_schema import JsonDict
from pydantic_core import InitErrorDetails, PydanticCustomError


class Body(BaseModel):
    # Unknown fields are mistakes (a typo'd `delay` must not silently send now).
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


def errors_at(errors: list[InitErrorDetails], title: str = "job") -> ValidationError:
    return ValidationError.from_exception_data(title, errors)


def untagged(tag: str, tags: tuple[str, ...], title: str | None = None) -> Callable[..., Any]:
    """A tagged union's errors at the body's own paths (`job.to`, `items.3.to`, and `type` or `channel`
    for the tag itself), not pydantic's (`job.email.to`, `email.items.3.to`)."""
    message = "must be one of " + ", ".join(f"'{name}'" for name in tags)

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            errors: list[InitErrorDetails] = []
            for error in exc.errors():
                loc = error["loc"]
                # The tag of this union (loc ()), not of a `then` inside it, whose errors arrive renamed.
                if error["type"] == "union_tag_not_found" and not loc:
                    errors.append(InitErrorDetails(type="missing", loc=(tag,), input=value))
                    continue
                if error["type"] == "union_tag_invalid" and not loc:
                    errors.append(
                        InitErrorDetails(
                            type=PydanticCustomError("union_tag_invalid", message), loc=(tag,), input=error["input"]
                        )
                    )
                    continue
                if loc and loc[0] in tags:
                    loc = loc[1:]
                # The same type and message, without the context object each built-in type requires.
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(error["type"], error["msg"]), loc=loc, input=error["input"]
                    )
                )
            raise errors_at(errors, title or exc.title) from None

    return validate


DATE_TIME: JsonDict = {"format": "date-time"}


def absent_unless(description: str, **extra: Any) -> Any:
    """A key that is left out when it does not apply, and never null when it is there."""

    def schema_extra(schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        schema.update(extra)

    return Field(None, description=description, json_schema_extra=schema_extra)


class Answer(BaseModel):
    # Keys the view adds and this file does not know yet pass through unchanged (see the docstring).
    model_config = ConfigDict(extra="allow")
