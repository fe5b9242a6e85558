"""The JSON log formatter and the plain histogram behind /metrics (unit level; the
services' own output is tested with subprocesses in tests/test_json_logs.py)."""

from __future__ import annotations

import logging
import sys

import orjson

from tickerhub_core.logs import JsonFormatter
from tickerhub_core.metrics import Buckets, histogram_family


def record(msg: str, *args: object, name: str = "app", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_one_json_object_with_the_standard_fields_and_extras() -> None:
    line = JsonFormatter().format(record("closed %s", "conn", peer="1.2.3.4:5", code=4008))
    entry = orjson.loads(line)
    assert entry["msg"] == "closed conn"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "app"
    assert entry["ts"].endswith("+00:00")
    assert entry["peer"] == "1.2.3.4:5"
    assert entry["code"] == 4008
    assert "\n" not in line


def test_uvicorn_access_fields_and_redaction_of_every_field() -> None:
    rec = record(
        '%s - "%s %s HTTP/%s" %d',
        "10.0.0.1:1234",
        "GET",
        "/x?api_key=SECRETSECRETSECRET",
        "1.1",
        200,
        name="uvicorn.access",
        note="api_key=SECRETSECRETSECRET",
    )
    entry = orjson.loads(
        JsonFormatter(redact=lambda s: s.replace("SECRETSECRETSECRET", "***")).format(rec)
    )
    assert entry["peer"] == "10.0.0.1:1234"
    assert entry["status"] == 200
    assert entry["path"] == "/x?api_key=***"
    assert entry["note"] == "api_key=***"
    assert "SECRET" not in orjson.dumps(entry).decode()


def test_exceptions_become_a_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("app", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = orjson.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in entry["exc"]


def test_buckets_are_cumulative_with_inf() -> None:
    b = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        b.observe(value)
    assert b.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert b.count == 4
    family = histogram_family("x_seconds", "doc", b)
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("x_seconds_count", None)] == 4
    assert samples[("x_seconds_sum", None)] == 2.65
