# TOML value validators: each takes a raw value as tomllib parsed it and returns the typed
# value, or raises ValueError whose text is the reason shown after "FILE: key: ". config.py
# builds migproxy's configuration from them; the lab's scenario files use them too.
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

# Validators: take the raw TOML value, return the typed value or raise ValueError(reason).
Validator = Callable[[object], Any]


def show(value: object) -> str:
    """Render a received value the way it would be spelled in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def wrong(expected: str, value: object) -> ValueError:
    return ValueError(f"must be {expected}, got {show(value)}")


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def as_float(value: object) -> float | None:
    """The value as a finite float if it is a TOML integer or float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def int_between(low: int, high: int) -> Validator:
    def check(value: object) -> int:
        if is_int(value) and low <= value <= high:
            return value
        raise wrong(f"an integer between {low} and {high}", value)

    return check


def integer(value: object) -> int:
    if is_int(value):
        return value
    raise wrong("an integer", value)


def number(expected: str, accept: Callable[[float], bool]) -> Validator:
    def check(value: object) -> float:
        number = as_float(value)
        if number is not None and accept(number):
            return number
        raise wrong(expected, value)

    return check


fraction = number("a number between 0.0 and 1.0", lambda n: 0.0 <= n <= 1.0)
positive = number("a finite number greater than 0", lambda n: n > 0)
non_negative = number("a finite number >= 0", lambda n: n >= 0)


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise wrong("true or false", value)


def one_of(choices: tuple[str, ...]) -> Validator:
    expected = "one of " + ", ".join(json.dumps(choice) for choice in choices)

    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise wrong(expected, value)

    return check


def string_list(expected: str, item: Callable[[str], Any]) -> Validator:
    def check(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise wrong(expected, value)
        out = []
        for element in value:
            if not isinstance(element, str):
                raise wrong(expected, element)
            try:
                out.append(item(element))
            except ValueError as err:
                raise ValueError(f"{json.dumps(element)}: {err}") from None
        return tuple(out)

    return check
