"""Herald's payload converter (common/payloads.py) reads every payload exactly as the SDK's default one,
with each dataclass's field types looked up once."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from temporalio.converter import DefaultPayloadConverter

import activities
import common
import workflows
from common import payloads
from common.jobs import email_job, new_spec
from common.models import NotificationInput
from common.payloads import PayloadConverter
from common.settings import Settings

SDK = DefaultPayloadConverter()
HERALD = PayloadConverter()


def herald_dataclasses() -> list[type]:
    """Every dataclass defined in Herald's common, activities and workflows modules."""
    found: dict[str, type] = {}
    for package in (common, activities, workflows):
        for module_info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(module_info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


def sample(hint: Any, depth: int = 0) -> Any:
    """A JSON value of type `hint` with every field filled (what a payload of it carries)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        # Optional parts filled at the top only: a job's `then` holds a job, which may hold a `then`.
        if type(None) in args and depth > 1:
            return None
        return sample(next(a for a in args if a is not type(None)), depth)
    if origin is typing.Literal:
        return args[0]
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        item = args[0] if args else str
        return [] if depth > 3 else [sample(item, depth + 1)]
    if origin is dict or hint is dict:
        return {} if depth > 3 or not args else {"k": sample(args[1], depth + 1)}
    if inspect.isclass(hint) and issubclass(hint, enum.Enum):
        return next(iter(hint)).value
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return {f.name: sample(hints[f.name], depth + 1) for f in dataclasses.fields(hint)}
    return {bool: True, int: 3, float: 1.5, str: "x", bytes: "eA==", datetime: "2026-12-06T04:00:00+00:00"}.get(
        hint, "x"
    )


def read(converter: Any, value: Any, hint: type) -> Any:
    [payload] = SDK.to_payloads([value])
    try:
        return converter.from_payloads([payload], [hint])[0]
    except (TypeError, ValueError, RuntimeError) as exc:  # refusing alike is part of reading alike
        return ("refused", type(exc).__name__)


@pytest.mark.parametrize("cls", herald_dataclasses(), ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_herald_dataclass_reads_as_the_sdk_reads_it(cls: type):
    value = sample(cls)
    expected = read(SDK, value, cls)
    assert read(HERALD, value, cls) == expected
    if cls.__module__ == "common.models":  # the payloads themselves: the sample must be a valid one
        assert not isinstance(expected, tuple), expected
    # The same object written back: nothing lost or renamed on the way.
    if not isinstance(expected, tuple):
        assert SDK.to_payloads([read(HERALD, value, cls)]) == SDK.to_payloads([expected])


def test_a_real_job_input_round_trips():
    spec = new_spec("email-1", "email", "jobs", Settings(), recipient="a@example.com")
    job = email_job(spec, "a@example.com", "Hi", "Body")
    [payload] = HERALD.to_payloads([job])
    assert (
        HERALD.from_payloads([payload], [NotificationInput])[0]
        == job
        == SDK.from_payloads([payload], [NotificationInput])[0]
    )


@dataclass
class _Inner:
    n: int


@dataclass
class _Outer:
    inner: _Inner
    when: datetime
    items: list[_Inner] = field(default_factory=list)
    either: _Inner | str | None = None
    derived: int = field(default=0, init=False)


def test_unknown_keys_ignored_and_init_false_fields_restored_as_the_sdk_does():
    value = {"inner": {"n": 1, "extra": 2}, "when": "2026-12-06T04:00:00+00:00", "items": [{"n": 2}],
             "either": {"n": 3}, "derived": 7, "unknown": True}  # fmt: skip
    made = read(HERALD, value, _Outer)
    assert made == read(SDK, value, _Outer)
    assert made.inner == _Inner(1) and made.either == _Inner(3) and made.derived == 7
    assert isinstance(made.when, datetime)


@pytest.mark.parametrize(
    "value",
    [
        {"when": "2026-12-06T04:00:00+00:00"},  # a required field missing
        {"inner": {"n": "not a number"}, "when": "2026-12-06T04:00:00+00:00"},
        {"inner": [1], "when": "2026-12-06T04:00:00+00:00"},
        "not an object",
    ],
)
def test_bad_payloads_are_refused_as_the_sdk_refuses_them(value: Any):
    assert read(HERALD, value, _Outer) == read(SDK, value, _Outer)
    assert read(HERALD, value, _Outer)[0] == "refused"


def test_a_class_s_field_types_are_looked_up_once(monkeypatch: pytest.MonkeyPatch):
    calls: list[type] = []
    real = typing.get_type_hints

    def counting(obj: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counting)
    payloads._fields.cache_clear()
    value = {"inner": {"n": 1}, "when": "2026-12-06T04:00:00+00:00", "items": [{"n": 2}, {"n": 3}]}
    for _ in range(5):
        HERALD.from_payloads(SDK.to_payloads([value]), [_Outer])
    assert sorted(c.__name__ for c in calls) == ["_Inner", "_Outer"]
