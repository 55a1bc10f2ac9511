"""Herald's payload converter: the SDK's JSON, with a dataclass's field types looked up once per class.

The SDK's converter calls `typing.get_type_hints` on every dataclass value it reads (a job's input, a
slice's result, every nested dataclass in them), which re-evaluates the class's string annotations
each time: some 6% of a worker's CPU per job in a profile at saturation (bench/README.md). This reads
the same JSON into the same values, with each class's hints kept after the first read.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from temporalio.converter import (
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name], f.init) for f in dataclasses.fields(cls))


class DataclassFields(JSONTypeConverter):
    """A dataclass from its JSON object as the SDK's `value_to_type` makes it (unknown keys ignored,
    a missing required field a TypeError, `init=False` fields restored), its field types cached."""

    def __init__(self) -> None:
        self.converters: list[JSONTypeConverter] = [self]

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        init: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for name, field_hint, in_init in _fields(hint):
            if name not in value:
                continue
            try:
                converted = value_to_type(field_hint, value[name], self.converters)
            except Exception as err:
                raise TypeError(f"Failed converting field {name} on dataclass {hint}") from err
            (init if in_init else later)[name] = converted
        made = hint(**init)
        for name, converted in later.items():
            object.__setattr__(made, name, converted)
        return made


class PayloadConverter(CompositePayloadConverter):
    """The SDK's default converters, in its order, the JSON one reading dataclasses with DataclassFields.
    Constructed without arguments (the SDK makes one per workflow run)."""

    def __init__(self) -> None:
        json_plain = JSONPlainPayloadConverter(custom_type_converters=[DataclassFields()])
        super().__init__(
            *(
                json_plain if isinstance(converter, JSONPlainPayloadConverter) else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )
