"""pi_stream.checks.ts reads an HLS segment in pure Python (the controller has no ffprobe): real segments made by ffmpeg
here, compared with what ffprobe says of them, pass with their size; garbage, truncated, audio-only, other codecs and
corrupted segments fail with a reason a user can act on."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from pi_stream.checks import ts

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg and ffprobe make and judge the test segments")


def make(directory: Path, name: str, *args: str, size: str = "640x360", rate: int = 10, seconds: float = 2,
         pix_fmt: str = "yuv420p", audio: bool = False) -> bytes:
    """A segment as the appliance's capture makes one: a test pattern through ffmpeg's mpegts muxer. Video PES
    packets declare their length, as nginx-rtmp's do (ffmpeg leaves it 0 by default)."""
    out = directory / f"{name}.ts"
    if not out.exists():
        sine = ["-f", "lavfi", "-i", "sine", "-c:a", "aac"] if audio else []
        subprocess.run(["ffmpeg", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}", *sine,
                        "-t", str(seconds), "-pix_fmt", pix_fmt, *args, "-f", "mpegts", "-omit_video_pes_length", "0", str(out)],
                       check=True, timeout=60)
    return out.read_bytes()


def ffprobe(data: bytes, directory: Path) -> dict:
    path = directory / "probe.ts"
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height,profile",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)["streams"][0]


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("segments")


H264 = {
    # name: (ffmpeg arguments, size)
    "high-640x360": (["-c:v", "libx264", "-g", "10"], "640x360"),  # the test pattern camera's default: 360 = 22.5 macroblocks, cropped
    "high-1920x1080": (["-c:v", "libx264", "-g", "10"], "1920x1080"),
    "high-176x144": (["-c:v", "libx264"], "176x144"),
    "odd-642x362": (["-c:v", "libx264"], "642x362"),
    "baseline": (["-c:v", "libx264", "-profile:v", "baseline"], "320x240"),
    "scaling-matrices": (["-c:v", "libx264", "-x264-params", "cqm=jvt"], "640x360"),
    "poc-type-1": (["-c:v", "libx264", "-x264-params", "poc_type=1"], "640x360"),
    "interlaced": (["-c:v", "libx264", "-flags", "+ildct+ilme", "-x264-params", "interlaced=1"], "640x360"),
}


@pytest.mark.parametrize("name", [*H264, "with-audio"])
def test_h264_segments_pass_with_the_size_ffprobe_reads(name, segments):
    args, size = H264.get(name, H264["high-640x360"])
    data = make(segments, name, *args, size=size, audio=name == "with-audio")
    video = ts.inspect(data)
    probed = ffprobe(data, segments)
    assert (video.codec, f"{video.width}x{video.height}") == ("h264", size) == (probed["codec_name"], f"{probed['width']}x{probed['height']}")
    assert video.profile == probed["profile"]
    assert video.key_frames >= 1 and video.frames >= 20 and video.starts_with_key_frame
    assert video.summary().startswith(f"h264 {size} {probed['profile']} ")


def test_4_4_4_and_4_2_2_crop_by_their_own_units(segments):
    for pix_fmt, profile in (("yuv444p", "High 4:4:4"), ("yuv422p", "High 4:2:2")):
        video = ts.inspect(make(segments, pix_fmt, "-c:v", "libx264", size="642x362", pix_fmt=pix_fmt))
        assert (video.width, video.height, video.profile) == (642, 362, profile)


def test_frames_and_key_frames_are_counted(segments):
    video = ts.inspect(make(segments, "gop5", "-c:v", "libx264", "-g", "5", "-bf", "0", rate=10, seconds=2))
    assert (video.frames, video.key_frames) == (20, 4)


def test_a_segment_without_video_fails(segments, tmp_path):
    audio = tmp_path / "audio.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "sine", "-t", "2", "-c:a", "aac", "-f", "mpegts",
                    str(audio)], check=True, timeout=60)
    with pytest.raises(ts.SegmentError, match=r"no video stream in the segment \(streams: aac\)"):
        ts.inspect(audio.read_bytes())


def test_other_codecs_are_named_not_passed(segments):
    assert ts.inspect(make(segments, "mpeg2", "-c:v", "mpeg2video")).codec == "mpeg2video"
    hevc = ts.inspect(make(segments, "hevc", "-c:v", "libx265", "-x265-params", "log-level=error", seconds=1))
    assert (hevc.codec, hevc.summary()) == ("hevc", "hevc")


@pytest.mark.parametrize("data,reason", [
    (b"", "empty segment"),
    (b"<html>404 Not Found</html>", "not whole 188-byte MPEG-TS packets"),
    (bytes(188 * 10), "sync byte 0x00, expected 0x47"),
    (random.Random(7).randbytes(188 * 50), "sync byte"),
    (b"\x47\x1f\xff\x10" + bytes(184), "no program association table"),  # null packets only
], ids=["empty", "html", "zeros", "random", "null-packets"])
def test_what_is_not_mpeg_ts_fails(data, reason):
    with pytest.raises(ts.SegmentError, match=reason):
        ts.inspect(data)


def packets(data: bytes) -> list[bytearray]:
    return [bytearray(data[i:i + 188]) for i in range(0, len(data), 188)]


def pid(packet: bytearray) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


def video_packets(data: bytes) -> list[int]:
    """Indexes of the packets on the video PID (0x100 from ffmpeg's muxer)."""
    return [i for i, p in enumerate(packets(data)) if pid(p) == 0x100]


def tables(data: bytes) -> list[bytearray]:
    """The first PAT and PMT (PIDs 0 and 0x1000 from ffmpeg's muxer), as a segment starts."""
    found = {}
    for packet in packets(data):
        found.setdefault(pid(packet), packet)
    return [found[0], found[0x1000]]


def test_corruption_fails_with_what_a_player_would_meet(segments):
    good = make(segments, "high-640x360", *H264["high-640x360"][0])
    ts.inspect(good)

    with pytest.raises(ts.SegmentError, match="not whole 188-byte MPEG-TS packets"):
        ts.inspect(good[:188 * 12 + 100])
    # Cut at a packet boundary inside a frame: the PES packet is shorter than it declares.
    inside = next(i for i in video_packets(good)[1:] if not packets(good)[i][1] & 0x40)
    with pytest.raises(ts.SegmentError, match=r"bytes where its header declares \d+ \(truncated\)"):
        ts.inspect(good[:188 * inside])

    lost = packets(good)
    del lost[video_packets(good)[5]]
    with pytest.raises(ts.SegmentError, match="continuity counter .* packets are missing"):
        ts.inspect(b"".join(lost))

    flipped = packets(good)
    flipped[1][10] ^= 0xFF  # inside the PMT
    with pytest.raises(ts.SegmentError, match="CRC32 does not match"):
        ts.inspect(b"".join(flipped))

    errored = packets(good)
    errored[video_packets(good)[3]][1] |= 0x80
    with pytest.raises(ts.SegmentError, match="transport error indicator"):
        ts.inspect(b"".join(errored))


def test_a_segment_that_starts_mid_frame_or_lacks_a_key_frame_fails(segments):
    good = make(segments, "gop-long", "-c:v", "libx264", "-g", "100", seconds=4)
    all_packets = packets(good)
    video = video_packets(good)
    # Cut after the tables at a packet that continues a PES: a segment that does not start on a frame.
    middle = next(i for i in video if not all_packets[i][1] & 0x40 and i > video[0])
    with pytest.raises(ts.SegmentError, match="before the first PES start"):
        ts.inspect(b"".join(tables(good) + all_packets[middle:]))
    # The tables, then only frames after the key frame (and its SPS and PPS): nothing a player can start on.
    starts = [i for i in video if all_packets[i][1] & 0x40]
    with pytest.raises(ts.SegmentError, match=r"no H.264 sequence parameter set"):
        ts.inspect(b"".join(tables(good) + all_packets[starts[3]:]))


def test_sps_fields_and_escapes_are_read_bit_exactly():
    assert ts.unescape(b"\x00\x00\x03\x01\x00\x00\x03\x00") == b"\x00\x00\x01\x00\x00\x00"
    bits = ts.Bits(bytes([0b10100110, 0b01000000]))  # ue: 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3
    assert [bits.ue(), bits.ue(), bits.ue(), bits.ue()] == [0, 1, 2, 3]
    bits = ts.Bits(bytes([0b01001100, 0b10000000]))  # se: 010 -> 1, 011 -> -1, 00100 -> 2
    assert [bits.se(), bits.se(), bits.se()] == [1, -1, 2]
    with pytest.raises(ts.SegmentError, match="ends early"):
        ts.Bits(b"\x00").ue()
    assert ts.crc32_mpeg2(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value


def mux(elementary: bytes, stream_type: int = 0x1B) -> bytes:
    """A minimal MPEG-TS of one stream (PAT, PMT, one PES per 2,000 bytes), for elementary streams edited by hand."""
    def section(table_id: int, body: bytes) -> bytes:
        head = bytes([table_id, 0xB0 | (len(body) + 9) >> 8, (len(body) + 9) & 0xFF, 0, 1, 0xC1, 0, 0])
        crc = ts.crc32_mpeg2(head + body)
        return head + body + crc.to_bytes(4, "big")

    def packet(pid: int, payload: bytes, start: bool, counter: int) -> bytes:
        header = bytes([0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF])
        if len(payload) < 184:  # stuffing in an adaptation field
            stuffing = 184 - len(payload) - 1
            return header + bytes([0x30 | counter]) + bytes([stuffing]) + (b"\x00" + b"\xff" * (stuffing - 1) if stuffing else b"") + payload
        return header + bytes([0x10 | counter]) + payload

    pat = section(0x00, bytes([0, 1, 0xF0, 0x00]))
    pmt = section(0x02, bytes([0xE1, 0x00, 0xF0, 0x00, stream_type, 0xE1, 0x00, 0xF0, 0x00]))
    out = [packet(0, b"\x00" + pat, True, 0), packet(0x1000, b"\x00" + pmt, True, 0)]
    counter = 0
    for at in range(0, len(elementary), 2000):
        chunk = elementary[at:at + 2000]
        pes = b"\x00\x00\x01\xe0" + (len(chunk) + 3).to_bytes(2, "big") + b"\x80\x00\x00" + chunk
        for offset in range(0, len(pes), 184):
            out.append(packet(0x100, pes[offset:offset + 184], offset == 0, counter))
            counter = (counter + 1) & 0xF
    return b"".join(out)


def annex_b(segments: Path) -> list[bytes]:
    """The NAL units (with their start codes) of a raw H.264 stream from ffmpeg: SPS, PPS, SEI, an IDR, P frames."""
    raw = segments / "raw.h264"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=10", "-t", "1",
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", "-bf", "0", "-f", "h264", str(raw)], check=True, timeout=60)
    return [b"\x00\x00\x00\x01" + unit for unit in ts.nal_units(raw.read_bytes())]


def test_a_hand_muxed_stream_passes_until_what_a_joining_player_needs_is_taken_out(segments):
    units = annex_b(segments)
    kinds = [unit[4] & 0x1F for unit in units]
    assert kinds[:2] == [ts.NAL_SPS, ts.NAL_PPS] and ts.NAL_IDR in kinds
    video = ts.inspect(mux(b"".join(units)))
    assert (video.width, video.height, video.frames, video.key_frames) == (320, 180, 10, 1)

    without = lambda kind: mux(b"".join(u for u in units if u[4] & 0x1F != kind))  # noqa: E731
    with pytest.raises(ts.SegmentError, match=r"no key frame \(IDR\) in 9 frames"):
        ts.inspect(without(ts.NAL_IDR))
    with pytest.raises(ts.SegmentError, match="the first key frame comes before its SPS and PPS"):
        ts.inspect(without(ts.NAL_PPS))
    late = [units[kinds.index(ts.NAL_IDR)], *(u for u in units if u[4] & 0x1F != ts.NAL_IDR)]
    with pytest.raises(ts.SegmentError, match="the first key frame comes before its SPS and PPS"):
        ts.inspect(mux(b"".join(late)))
    with pytest.raises(ts.SegmentError, match="forbidden bit"):
        ts.inspect(mux(b"".join(units[:2]) + b"\x00\x00\x00\x01\xe5" + b"".join(units[2:])))
    with pytest.raises(ts.SegmentError, match="not a video stream"):
        ts.inspect(mux(b"".join(units)).replace(b"\x00\x00\x01\xe0", b"\x00\x00\x01\xc0"))
    assert ts.inspect(mux(b"".join(units), stream_type=0x24)).codec == "hevc"
