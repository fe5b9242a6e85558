"""PricingData -> quote fields, and frame decoding, with yfinance's own pricing_pb2."""

from __future__ import annotations

import base64
import json

import pytest

from tickerhub_yahoo.pricing import MARKET_STATES, tick_from_pricing, time_ms
from tickerhub_yahoo.streamer import FrameError, decode_frame, pricing_data_class

T0 = 1_764_081_000_000  # 2025-11-25T14:30:00Z in ms


def pricing(**fields: object) -> object:
    return pricing_data_class()(**fields)


def frame(message: object) -> str:
    encoded = base64.b64encode(message.SerializeToString()).decode()  # type: ignore[attr-defined]
    return json.dumps({"type": "pricing", "message": encoded})


def test_a_full_frame_maps_every_field() -> None:
    tick = tick_from_pricing(
        pricing(
            id="aapl",
            price=225.44,
            time=T0,
            currency="USD",
            exchange="NMS",
            market_hours=1,
            change_percent=1.2345,
            day_volume=4_000_000,
            day_high=226.5,
            day_low=220.1,
            change=2.75,
            short_name="Apple Inc.",
            open_price=221.0,
            previous_close=222.69,
        )
    )
    assert tick is not None
    assert tick.symbol == "AAPL"
    assert tick.time_ms == T0
    assert tick.fields == {
        "price": 225.44,
        "change": 2.75,
        "change_percent": 1.2345,
        "day_high": 226.5,
        "day_low": 220.1,
        "open": 221.0,
        "previous_close": 222.69,
        "currency": "USD",
        "exchange": "NMS",
        "name": "Apple Inc.",
        "volume": 4_000_000,
        "market_state": "REGULAR",
        "market_time": "2025-11-25T14:30:00Z",
    }


def test_absent_fields_are_left_out_but_a_zero_change_is_a_change() -> None:
    tick = tick_from_pricing(pricing(id="MSFT", price=410.1, market_hours=2))
    assert tick is not None
    assert tick.fields == {
        "price": 410.1,
        "change": 0.0,
        "change_percent": 0.0,
        "market_state": "POST",
    }
    assert tick.time_ms == 0


def test_market_hours_words() -> None:
    assert MARKET_STATES == {0: "PRE", 1: "REGULAR", 2: "POST", 3: "POSTPOST"}
    tick = tick_from_pricing(pricing(id="X", price=1.0, market_hours=9))
    assert tick is not None
    assert "market_state" not in tick.fields


@pytest.mark.parametrize("message", [pricing(price=1.0), pricing(id="AAPL"), pricing()])
def test_no_symbol_or_no_price_is_no_tick(message: object) -> None:
    assert tick_from_pricing(message) is None


def test_times_in_seconds_are_scaled_and_nonsense_is_zero() -> None:
    assert time_ms(T0 // 1000) == T0
    assert time_ms(T0) == T0
    assert time_ms(-5) == 0
    assert time_ms(True) == 0
    assert time_ms("1") == 0


def test_decode_frame_round_trip_and_bare_base64() -> None:
    cls = pricing_data_class()
    message = pricing(id="AAPL", price=1.5)
    assert decode_frame(frame(message), cls).id == "AAPL"
    bare = base64.b64encode(message.SerializeToString())  # type: ignore[attr-defined]
    assert decode_frame(bare, cls).price == 1.5  # version=1: the base64 alone


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("{not json", "not_json"),
        ('{"type": "pricing"}', "no_message"),
        ('{"message": 5}', "no_message"),
        ('{"message": "%%%not base64%%%"}', "not_base64"),
        ("%%%", "not_base64"),
    ],
)
def test_garbage_frames_raise_frame_error(raw: str, kind: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(raw, pricing_data_class())
    assert info.value.kind == kind


def test_a_truncated_frame_is_not_pricing_data() -> None:
    data = pricing(id="AAPL", price=225.44, short_name="Apple Inc.").SerializeToString()  # type: ignore[attr-defined]
    cut = base64.b64encode(data[: len(data) - 3]).decode()
    with pytest.raises(FrameError) as info:
        decode_frame(json.dumps({"message": cut}), pricing_data_class())
    assert info.value.kind == "not_pricing_data"
