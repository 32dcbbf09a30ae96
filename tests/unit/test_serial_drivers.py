"""Serial drivers against frames written out byte by byte from the datasheets (not through the
simulators' encoders)."""

from __future__ import annotations

import pytest
from labctl_drivers import pms5003, sds011
from labctl_drivers.line import LineDriver

from labctl.drivers import driver_registry, serial_driver_registry

# PMS5003 datasheet layout: 42 4D, length 00 1C, 13 data words, checksum of bytes 0-29.
PMS_FRAME = bytes(
    [
        0x42,
        0x4D,
        0x00,
        0x1C,
        0x00,
        0x05,  # PM1.0 CF=1 = 5
        0x00,
        0x0C,  # PM2.5 CF=1 = 12
        0x00,
        0x10,  # PM10 CF=1 = 16
        0x00,
        0x04,  # PM1.0 atm = 4
        0x00,
        0x0B,  # PM2.5 atm = 11
        0x00,
        0x0F,  # PM10 atm = 15
        0x03,
        0xE8,  # >0.3 µm = 1000
        0x01,
        0x2C,  # >0.5 µm = 300
        0x00,
        0x32,  # >1.0 µm = 50
        0x00,
        0x05,  # >2.5 µm = 5
        0x00,
        0x02,  # >5.0 µm = 2
        0x00,
        0x01,  # >10 µm = 1
        0x97,
        0x00,  # version, error code
    ]
)
PMS_FRAME += (sum(PMS_FRAME) & 0xFFFF).to_bytes(2, "big")
# Replies to "set passive" (E1 00) and "sleep" (E4 00), as printed in the PMS5003 manual.
PMS_PASSIVE_REPLY = bytes([0x42, 0x4D, 0x00, 0x04, 0xE1, 0x00, 0x01, 0x74])
PMS_SLEEP_REPLY = bytes([0x42, 0x4D, 0x00, 0x04, 0xE4, 0x00, 0x01, 0x77])

# SDS011 protocol V1.3: PM2.5 = 0x00D4 / 10 = 21.2, PM10 = 0x0136 / 10 = 31.0, ID A160.
SDS_DATA = bytes([0xAA, 0xC0, 0xD4, 0x00, 0x36, 0x01, 0xA1, 0x60])
SDS_DATA += bytes([sum(SDS_DATA[2:8]) & 0xFF, 0xAB])
# Reply to "set query mode" from the manual: AA C5 02 01 01 00 A1 60 05 AB
SDS_MODE_REPLY = bytes([0xAA, 0xC5, 0x02, 0x01, 0x01, 0x00, 0xA1, 0x60, 0x05, 0xAB])
SDS_SLEEP_REPLY = bytes([0xAA, 0xC5, 0x06, 0x01, 0x00, 0x00, 0xA1, 0x60, 0x08, 0xAB])
SDS_FIRMWARE_REPLY = bytes([0xAA, 0xC5, 0x07, 0x0F, 0x07, 0x0A, 0xA1, 0x60, 0x28, 0xAB])


def test_pms5003_data_frame() -> None:
    result = pms5003.decoder().feed(PMS_FRAME)
    [frame] = result.frames
    assert not result.discards
    assert frame.kind == "data"
    assert frame.values == {
        "pm1_cf1": 5.0,
        "pm25_cf1": 12.0,
        "pm10_cf1": 16.0,
        "pm1": 4.0,
        "pm25": 11.0,
        "pm10": 15.0,
        "n0_3": 1000.0,
        "n0_5": 300.0,
        "n1_0": 50.0,
        "n2_5": 5.0,
        "n5_0": 2.0,
        "n10": 1.0,
    }
    assert frame.fields["version"] == 0x97


def test_pms5003_replies() -> None:
    frames = pms5003.decoder().feed(PMS_PASSIVE_REPLY + PMS_SLEEP_REPLY).frames
    assert [(f.kind, f.fields.get("mode"), f.fields.get("sleep")) for f in frames] == [
        ("reply", "passive", None),
        ("reply", None, "sleep"),
    ]
    assert all(not f.values for f in frames)


def test_pms5003_commands_match_the_manual() -> None:
    assert pms5003.command(0xE2) == bytes([0x42, 0x4D, 0xE2, 0x00, 0x00, 0x01, 0x71])
    assert pms5003.command(0xE1, 0) == bytes([0x42, 0x4D, 0xE1, 0x00, 0x00, 0x01, 0x70])
    assert pms5003.command(0xE1, 1) == bytes([0x42, 0x4D, 0xE1, 0x00, 0x01, 0x01, 0x71])
    assert pms5003.command(0xE4, 0) == bytes([0x42, 0x4D, 0xE4, 0x00, 0x00, 0x01, 0x73])
    assert pms5003.command(0xE4, 1) == bytes([0x42, 0x4D, 0xE4, 0x00, 0x01, 0x01, 0x74])


def test_pms5003_bad_checksum_is_discarded_not_decoded() -> None:
    bad = PMS_FRAME[:-1] + bytes([PMS_FRAME[-1] ^ 1])
    result = pms5003.decoder().feed(bad + PMS_FRAME)
    assert len(result.frames) == 1
    assert result.discards[0].reason == "checksum"
    assert result.discarded_bytes == len(bad)


def test_sds011_data_and_replies() -> None:
    frames = (
        sds011.decoder()
        .feed(SDS_DATA + SDS_MODE_REPLY + SDS_SLEEP_REPLY + SDS_FIRMWARE_REPLY)
        .frames
    )
    assert frames[0].values == {"pm25": 21.2, "pm10": 31.0}
    assert frames[0].fields["device_id"] == "A160"
    assert frames[1].fields["mode"] == "query" and frames[1].fields["set"] == 1
    assert frames[2].fields["state"] == "sleep"
    assert frames[3].fields["firmware"] == "2015-07-10"


def test_sds011_commands_match_the_manual() -> None:
    # "Set data reporting mode: query" from the V1.3 manual, to every sensor (FF FF).
    assert sds011.set_reporting_mode(True) == bytes.fromhex(
        "AA B4 02 01 01 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB"
    )
    assert sds011.query() == bytes.fromhex(
        "AA B4 04 00 00 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB"
    )
    assert sds011.set_sleep(True) == bytes.fromhex(
        "AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 FF FF 05 AB"
    )
    assert sds011.set_working_period(1) == bytes.fromhex(
        "AA B4 08 01 01 00 00 00 00 00 00 00 00 00 00 FF FF 08 AB"
    )
    assert sds011.firmware_version() == bytes.fromhex(
        "AA B4 07 00 00 00 00 00 00 00 00 00 00 00 00 FF FF 05 AB"
    )


def test_sds011_wrong_tail_or_checksum_is_discarded() -> None:
    bad_tail = SDS_DATA[:-1] + b"\xac"
    bad_sum = SDS_DATA[:8] + bytes([SDS_DATA[8] ^ 0xFF]) + b"\xab"
    result = sds011.decoder().feed(b"\x00\xaa" + bad_tail + bad_sum + SDS_DATA)
    assert [f.values["pm25"] for f in result.frames] == [21.2]
    assert result.discarded_bytes == 2 + 20


def test_split_reads_decode_the_same() -> None:
    d = pms5003.decoder()
    frames = []
    for b in PMS_FRAME + PMS_SLEEP_REPLY:
        frames += d.feed(bytes([b])).frames
    assert [f.raw for f in frames] == [PMS_FRAME, PMS_SLEEP_REPLY]
    assert d.pending == 0


def test_truncated_frame_at_end_of_stream() -> None:
    d = sds011.decoder()
    assert not d.feed(SDS_DATA[:6]).frames
    flushed = d.flush()
    assert [x.reason for x in flushed.discards] == ["truncated"]


def test_line_driver_json_and_key_value() -> None:
    drv = LineDriver.from_options({"channels": {"pm25": "µg/m³", "rh": "%"}})
    result = drv.decoder().feed(
        b'{"pm25": 12.5, "rh": 60, "fw": "1.2"}\r\n'
        b"pm25=13.0, rh=61 extra=x\n"
        b"pm25=abc\n"  # a declared channel that is not a number: the whole line goes
        b"nothing=1\n"
        b'{"pm25": NaN}\n'
        b"\n"
        b"pm25=14"
    )
    assert [f.values for f in result.frames] == [
        {"pm25": 12.5, "rh": 60.0},
        {"pm25": 13.0, "rh": 61.0},
    ]
    assert result.frames[0].fields["fw"] == "1.2"
    assert [d.reason for d in result.discards] == ["syntax", "syntax", "syntax"]


def test_line_driver_overlong_line_is_discarded() -> None:
    drv = LineDriver.from_options({"channels": {"pm25": "µg/m³"}, "max_line": 16})
    d = drv.decoder()
    r1 = d.feed(b"x" * 40)
    r2 = d.feed(b"yy\npm25=1\n")
    assert [x.reason for x in r1.discards + r2.discards] == ["length", "length"]
    assert [f.values for f in r2.frames] == [{"pm25": 1.0}]


def test_registries_keep_kinds_apart() -> None:
    assert {"pms5003", "sds011", "line"} <= serial_driver_registry().names()
    assert "pms5003" not in driver_registry().names()
    assert "mqtt-sensor" in driver_registry().names()


def test_bad_options_are_explained() -> None:
    with pytest.raises(ValueError, match="bad options for driver 'pms5003': mode"):
        pms5003.Pms5003Driver.from_options({"mode": "sometimes"})
    with pytest.raises(ValueError, match="poll_intervall_s"):
        sds011.Sds011Driver.from_options({"poll_intervall_s": 3})


def test_channels_follow_mode() -> None:
    passive = pms5003.Pms5003Driver.from_options({"mode": "passive", "poll_interval_s": 60})
    assert passive.poll() == pms5003.command(0xE2)
    assert {c.rate_hz for c in passive.channels()} == {1 / 60}
    assert pms5003.Pms5003Driver.from_options({}).poll() is None
    sds = sds011.Sds011Driver.from_options({"working_period_min": 2})
    assert {c.rate_hz for c in sds.channels()} == {1 / 120}
