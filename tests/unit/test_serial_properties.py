"""Property tests of the serial decoders: no input crashes them, nothing they decode has a
bad checksum, chunking does not change what they find, a valid frame in noise is found."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from labctl_drivers import pms5003, sds011
from labctl_drivers.line import LineDriver

from labctl.serial_driver import DecodeResult, FrameDecoder

MAX = settings(max_examples=300, deadline=None)


def pms_valid(raw: bytes) -> bool:
    return sum(raw[:-2]) & 0xFFFF == int.from_bytes(raw[-2:], "big")


def sds_valid(raw: bytes) -> bool:
    return len(raw) == 10 and raw[9] == 0xAB and sum(raw[2:8]) & 0xFF == raw[8]


DECODERS: list[tuple[Callable[[], FrameDecoder], Callable[[bytes], bool]]] = [
    (pms5003.decoder, pms_valid),
    (sds011.decoder, sds_valid),
]


def pms_frame(words: list[int]) -> bytes:
    body = b"BM\x00\x1c" + b"".join(w.to_bytes(2, "big") for w in words) + b"\x00\x00"
    return body + (sum(body) & 0xFFFF).to_bytes(2, "big")


def sds_frame(a: int, b: int) -> bytes:
    p = bytes([a & 0xFF, a >> 8, b & 0xFF, b >> 8, 0x12, 0x34])
    return b"\xaa\xc0" + p + bytes([sum(p) & 0xFF, 0xAB])


def feed_chunks(d: FrameDecoder, data: bytes, cuts: list[int]) -> DecodeResult:
    out = DecodeResult()
    prev = 0
    for c in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        r = d.feed(data[prev:c])
        out.frames += r.frames
        out.discards += r.discards
        prev = c
    return out


# Streams biased towards the frame markers, so false starts are common.
noisy = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"BM", b"BM\x00\x1c", b"BM\x00\x04", b"\xaa\xc0", b"\xaa\xc5", b"\xab"]),
    ),
    max_size=20,
).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=1000), max_size=30)


@MAX
@given(data=noisy, cuts=cuts)
def test_any_stream_any_chunking(data: bytes, cuts: list[int]) -> None:
    for make, valid in DECODERS:
        whole = make().feed(data)
        d = make()
        chunked = feed_chunks(d, data, cuts)
        tail = d.flush()
        # every decoded frame is valid; chunking changes nothing that was decoded
        assert all(valid(f.raw) for f in chunked.frames)
        assert [f.raw for f in chunked.frames] == [f.raw for f in whole.frames]
        # every byte is accounted for: in a frame or in a discarded run
        accounted = sum(len(f.raw) for f in chunked.frames) + chunked.discarded_bytes
        assert accounted + tail.discarded_bytes == len(data)


@MAX
@given(
    before=noisy,
    after=noisy,
    words=st.lists(st.integers(0, 0xFFFF), min_size=12, max_size=12),
    cuts=cuts,
)
def test_pms_frame_in_noise_is_found(
    before: bytes, after: bytes, words: list[int], cuts: list[int]
) -> None:
    frame = pms_frame(words)
    # noise before and after: the decoder resynchronises on the frame
    found = feed_chunks(pms5003.decoder(), before + frame + after, cuts)
    raws = [f.raw for f in found.frames]
    assert raws.count(frame) >= 1
    assert all(pms_valid(r) for r in raws)


@MAX
@given(before=noisy, a=st.integers(0, 0xFFFF), b=st.integers(0, 0xFFFF), cuts=cuts)
def test_sds_frame_in_noise_is_found(before: bytes, a: int, b: int, cuts: list[int]) -> None:
    frame = sds_frame(a, b)
    found = feed_chunks(sds011.decoder(), before + frame, cuts)
    matches = [f for f in found.frames if f.raw == frame]
    assert matches
    assert matches[-1].values == {"pm25": a / 10, "pm10": b / 10}


@MAX
@given(data=st.binary(max_size=400), cuts=cuts)
def test_line_decoder_never_raises(data: bytes, cuts: list[int]) -> None:
    drv = LineDriver.from_options({"channels": {"pm25": "µg/m³"}, "max_line": 64})
    d = drv.decoder()
    out = feed_chunks(d, data + b"\npm25=3\n", cuts)
    assert out.frames[-1].values == {"pm25": 3.0}
    assert all(v == v for f in out.frames for v in f.values.values())  # no NaN
