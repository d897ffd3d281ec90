"""What the explorer's server accepts and answers: every request body checked, one-line reasons for refusals.

A `RequestError` carries the HTTP status and the reason; a `Reply` the bytes and their type.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np

from vaekit.model.latent_paths import PATHS

MAX_ABS_Z = 10.0  # a code beyond ±10 is far outside p(z) = N(0, I) and only a typo or an attack
MIN_STEPS, MAX_STEPS = 2, 32  # a path has its two ends; more than 32 images no longer fit a strip on screen
PNG, JSON, TEXT = "image/png", "application/json", "text/plain; charset=utf-8"


class RequestError(Exception):
    """A request the explorer refuses: an HTTP status and a one-line reason the sender can act on."""

    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str
    status: HTTPStatus = HTTPStatus.OK


def json_reply(payload: Any) -> Reply:
    return Reply(json.dumps(payload).encode(), JSON)


def _refuse_constant(name: str) -> None:
    # json.loads reads NaN, Infinity and -Infinity, which JSON proper does not have; a code never holds them.
    raise RequestError(HTTPStatus.BAD_REQUEST, f"the body holds {name}, which is not a number; send finite numbers")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not UTF-8 text; send a JSON object") from None
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {error.msg} at line {error.lineno} "
                           f"column {error.colno}") from None
    except RecursionError:
        raise RequestError(HTTPStatus.BAD_REQUEST, "the body is JSON nested too deeply; send a flat object") from None
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object such as {"z": [0, 0]}')
    return body


def expect_fields(body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Refuse a missing field, and an unknown one (a typo would otherwise be silently ignored)."""
    known = required + optional
    for name in body:
        if name not in known:
            raise RequestError(HTTPStatus.BAD_REQUEST, f'unknown field "{name}"; this route takes {", ".join(known)}')
    for name in required:
        if name not in body:
            raise RequestError(HTTPStatus.BAD_REQUEST, f'the field "{name}" is missing')


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def latent_code(body: dict[str, Any], latent_dim: int, classes: int = 0) -> tuple[np.ndarray, int | None]:
    """The body's "z" as one finite code (1, D) within ±MAX_ABS_Z, and for a conditional run (`classes` > 0)
    its "label", the class to decode with (default 0)."""
    expect_fields(body, ("z",), ("label",) if classes else ())
    label = integer_field(body, "label", 0, classes - 1) if classes and "label" in body else (0 if classes else None)
    z = body["z"]
    if not isinstance(z, list) or not all(_is_number(v) for v in z):
        raise RequestError(HTTPStatus.BAD_REQUEST, f'"z" must be a list of {latent_dim} numbers')
    if len(z) != latent_dim:
        raise RequestError(HTTPStatus.BAD_REQUEST, f'"z" has {len(z)} numbers; this run\'s codes have {latent_dim}')
    for i, value in enumerate(z):
        if not math.isfinite(value):  # 1e999 reads as infinity without passing through _refuse_constant
            raise RequestError(HTTPStatus.BAD_REQUEST, f"z[{i}] is {value}; send finite numbers")
        if abs(value) > MAX_ABS_Z:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"z[{i}] = {value} is beyond ±{MAX_ABS_Z:g}, where the prior "
                               f"N(0, 1) has no mass; keep |z| ≤ {MAX_ABS_Z:g}")
    return np.asarray(z, dtype=np.float32)[None], label


def integer_field(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(HTTPStatus.BAD_REQUEST, f'"{name}" must be a whole number from {low} to {high}')
    if not low <= value <= high:
        raise RequestError(HTTPStatus.BAD_REQUEST, f'"{name}" {value}: use {low} to {high}')
    return value


def interpolation_request(body: dict[str, Any], examples: int) -> tuple[int, int, int, str]:
    """(from, to, steps, path) of an interpolation body; the indices are checked by the explorer."""
    expect_fields(body, ("from", "to", "steps"), ("path",))
    start, end = (integer_field(body, name, 0, examples - 1) for name in ("from", "to"))
    steps = integer_field(body, "steps", MIN_STEPS, MAX_STEPS)
    path = body.get("path", "linear")
    if path not in PATHS:
        raise RequestError(HTTPStatus.BAD_REQUEST, f'"path" {json.dumps(path)}: use one of {", ".join(PATHS)}')
    return start, end, steps, path
