"""What a player needs of an HLS segment, read in pure Python: an MPEG-TS whose video is H.264 a decoder can start on.

The controller needs no ffprobe (nor any other program): the segment is parsed here, strictly enough that
garbage, a truncated file, an audio-only or an empty segment fails, and what a decoder joining on this
segment needs is there: the sequence and picture parameter sets (SPS, PPS) and a key frame (an IDR slice).
The picture size comes from the SPS (ITU-T H.264 7.3.2.1.1), cropping included.

Structure checked (ISO/IEC 13818-1): whole 188-byte packets each starting with 0x47, no transport errors,
continuous continuity counters on the video PID, a PAT and a PMT whose CRC32s hold, a video stream in the
PMT, PES packets that start where the packets say and are as long as they declare.
"""

from __future__ import annotations

from dataclasses import dataclass

PACKET = 188
SYNC = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF

# PMT stream types (ISO/IEC 13818-1 table 2-34, and the registered ones players meet).
VIDEO_TYPES = {0x01: "mpeg1video", 0x02: "mpeg2video", 0x10: "mpeg4", 0x1B: "h264", 0x24: "hevc", 0x42: "cavs", 0xD1: "dirac",
               0xEA: "vc1"}
AUDIO_TYPES = {0x03: "mp2", 0x04: "mp2", 0x0F: "aac", 0x11: "aac_latm", 0x81: "ac3", 0x87: "eac3"}

# H.264 NAL unit types (table 7-1).
NAL_SLICE, NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD = 1, 5, 6, 7, 8, 9
# Profiles whose SPS carries chroma format, bit depths and scaling matrices (7.3.2.1.1).
HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}
PROFILE_NAMES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10", 122: "High 4:2:2", 244: "High 4:4:4"}


class SegmentError(ValueError):
    """The segment is not a playable MPEG-TS with H.264 video; the message says what is wrong, in a player's terms."""


@dataclass(frozen=True)
class Video:
    """The video of a segment, as a decoder starting on it would find it."""

    codec: str
    width: int = 0
    height: int = 0
    profile: str = ""
    level: float = 0.0
    frames: int = 0  # pictures: slices that start one (first_mb_in_slice 0)
    key_frames: int = 0  # IDR pictures
    starts_with_key_frame: bool = False

    def summary(self) -> str:
        if self.codec != "h264":
            return self.codec
        start = "starts on a key frame" if self.starts_with_key_frame else "first key frame later"
        return (f"h264 {self.width}x{self.height} {self.profile} {self.level:.1f}, {self.frames} frames, "
                f"{self.key_frames} key, {start}")


def inspect(data: bytes) -> Video:
    """The segment's video, or SegmentError naming the first thing that makes it unplayable."""
    codec, elementary = demux(data)
    return h264_video(elementary) if codec == "h264" else Video(codec)


def demux(data: bytes) -> tuple[str, bytes]:
    """(the first video stream's codec, its elementary stream: the PES payloads in order)."""
    if not data:
        raise SegmentError("empty segment")
    if len(data) % PACKET:
        raise SegmentError(f"{len(data)} bytes: not whole 188-byte MPEG-TS packets (truncated, or not MPEG-TS)")
    sections: dict[int, bytearray] = {}  # PSI being assembled, by PID
    pmt_pid: int | None = None
    video: tuple[int, int] | None = None  # (PID, stream type)
    pes: list[bytearray] = []  # the video PID's PES packets, each as it arrived
    counter: int | None = None
    for offset in range(0, len(data), PACKET):
        packet = data[offset:offset + PACKET]
        number = offset // PACKET
        if packet[0] != SYNC:
            raise SegmentError(f"packet {number}: sync byte {packet[0]:#04x}, expected 0x47 (not MPEG-TS, or corrupted)")
        if packet[1] & 0x80:
            raise SegmentError(f"packet {number}: transport error indicator set")
        start = bool(packet[1] & 0x40)
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        control = (packet[3] >> 4) & 0x3
        if pid == NULL_PID:
            continue
        if control == 0:
            raise SegmentError(f"packet {number}: reserved adaptation field control 00")
        payload_at = 4
        discontinuity = False
        if control & 0x2:  # adaptation field
            length = packet[4]
            if length > PACKET - 5 or (control == 3 and length > PACKET - 6):
                raise SegmentError(f"packet {number}: adaptation field of {length} bytes does not fit")
            discontinuity = length > 0 and bool(packet[5] & 0x80)
            payload_at = 5 + length
        payload = packet[payload_at:] if control & 0x1 else b""

        if video is not None and pid == video[0]:
            if control & 0x1:  # the counter counts packets with a payload (2.4.3.3)
                cc = packet[3] & 0xF
                if counter is not None and not discontinuity and cc not in ((counter + 1) & 0xF, counter):
                    raise SegmentError(f"packet {number}: video continuity counter {cc} after {counter}: packets are missing")
                counter = cc
            if start:
                pes.append(bytearray(payload))
            elif payload:
                if not pes:
                    raise SegmentError(f"packet {number}: video data before the first PES start: the segment does not start on a packet")
                pes[-1] += payload
            continue
        if pid in (PAT_PID, pmt_pid):
            table = psi_section(sections, pid, start, payload, number)
            if table is None:
                continue
            if pid == PAT_PID and pmt_pid is None:
                pmt_pid = parse_pat(table)
            elif pid == pmt_pid and video is None:
                streams, video = parse_pmt(table)
                if video is None:
                    raise SegmentError(f"no video stream in the segment (streams: {', '.join(streams) or 'none'})")
    if pmt_pid is None:
        raise SegmentError("no program association table (PAT): not an MPEG-TS segment a player can open")
    if video is None:
        raise SegmentError("no program map table (PMT) for the program: a player finds no streams")
    codec = VIDEO_TYPES[video[1]]
    if not pes:
        raise SegmentError(f"no {codec} packets: the PMT lists video on PID {video[0]:#x} but the segment carries none")
    return codec, b"".join(pes_payload(p, i) for i, p in enumerate(pes))


def psi_section(sections: dict[int, bytearray], pid: int, start: bool, payload: bytes, number: int) -> bytes | None:
    """A whole PSI section once its last packet is in (a section may span packets), else None."""
    if start:
        if not payload:
            raise SegmentError(f"packet {number}: table start without a payload")
        pointer = payload[0]
        sections[pid] = bytearray(payload[1 + pointer:])
    elif pid in sections:
        sections[pid] += payload
    else:
        return None
    buffer = sections[pid]
    if len(buffer) < 3:
        return None
    length = 3 + (((buffer[1] & 0x0F) << 8) | buffer[2])
    if len(buffer) < length:
        return None
    section = bytes(buffer[:length])
    del sections[pid]
    if crc32_mpeg2(section) != 0:
        raise SegmentError(f"PID {pid:#x}: table CRC32 does not match: the segment is corrupted")
    return section


def parse_pat(section: bytes) -> int:
    if section[0] != 0x00:
        raise SegmentError(f"PID 0 carries table id {section[0]:#x}, not a program association table")
    for at in range(8, len(section) - 4, 4):
        program = (section[at] << 8) | section[at + 1]
        if program != 0:  # 0 names the network PID
            return ((section[at + 2] & 0x1F) << 8) | section[at + 3]
    raise SegmentError("the program association table lists no program")


def parse_pmt(section: bytes) -> tuple[list[str], tuple[int, int] | None]:
    """(every stream's codec, (video PID, stream type) of the first video stream or None)."""
    if section[0] != 0x02:
        raise SegmentError(f"the PMT PID carries table id {section[0]:#x}, not a program map table")
    info_length = ((section[10] & 0x0F) << 8) | section[11]
    at = 12 + info_length
    streams: list[str] = []
    video = None
    while at + 5 <= len(section) - 4:
        stream_type = section[at]
        pid = ((section[at + 1] & 0x1F) << 8) | section[at + 2]
        es_info = ((section[at + 3] & 0x0F) << 8) | section[at + 4]
        streams.append(VIDEO_TYPES.get(stream_type) or AUDIO_TYPES.get(stream_type) or f"type {stream_type:#04x}")
        if video is None and stream_type in VIDEO_TYPES:
            video = (pid, stream_type)
        at += 5 + es_info
    return streams, video


def pes_payload(packet: bytes | bytearray, index: int) -> bytes:
    """The elementary stream bytes of one PES packet (2.4.3.6), checked against what its header declares."""
    if len(packet) < 9 or packet[:3] != b"\x00\x00\x01":
        raise SegmentError(f"video PES packet {index}: no PES start code where the packet says one starts")
    stream_id = packet[3]
    if not 0xE0 <= stream_id <= 0xEF:
        raise SegmentError(f"video PES packet {index}: stream id {stream_id:#x} is not a video stream")
    if packet[6] & 0xC0 != 0x80:
        raise SegmentError(f"video PES packet {index}: malformed PES header")
    begin = 9 + packet[8]
    declared = (packet[4] << 8) | packet[5]
    if declared and len(packet) != 6 + declared:
        raise SegmentError(f"video PES packet {index}: {len(packet) - 6} bytes where its header declares {declared} (truncated)")
    if begin > len(packet):
        raise SegmentError(f"video PES packet {index}: header longer than the packet")
    return bytes(packet[begin:])


def nal_units(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 and 00 00 00 01), each without its start code."""
    leading = len(stream) - len(stream.lstrip(b"\x00"))
    if leading < 2 or stream[leading:leading + 1] != b"\x01":
        raise SegmentError("the video does not start with an H.264 start code (not an Annex B byte stream)")
    starts = []
    at = leading - 2
    while at >= 0:
        starts.append(at + 3)
        at = stream.find(b"\x00\x00\x01", at + 3)
    units = []
    for i, begin in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(stream)
        unit = stream[begin:end].rstrip(b"\x00")  # trailing zeros belong to the next start code (or are padding)
        if unit:
            units.append(unit)
    return units


def h264_video(stream: bytes) -> Video:
    sps: Sps | None = None
    pps = False
    frames = key_frames = 0
    first_picture_key: bool | None = None
    for unit in nal_units(stream):
        if unit[0] & 0x80:
            raise SegmentError("an H.264 NAL unit has its forbidden bit set: the video is corrupted")
        kind = unit[0] & 0x1F
        if kind == NAL_SPS and sps is None:
            sps = parse_sps(unit)
        elif kind == NAL_PPS:
            pps = True
        elif kind in (NAL_SLICE, NAL_IDR):
            if len(unit) < 2:
                raise SegmentError("an H.264 slice without a header: the video is corrupted")
            if unit[1] & 0x80:  # first_mb_in_slice ue(v) == 0: this slice starts a picture
                frames += 1
                key_frames += kind == NAL_IDR
                if first_picture_key is None:
                    first_picture_key = kind == NAL_IDR
                    if kind == NAL_IDR and (sps is None or not pps):
                        raise SegmentError("the first key frame comes before its SPS and PPS: a player joining here shows nothing")
    if sps is None:
        raise SegmentError("no H.264 sequence parameter set (SPS): a player joining on this segment cannot decode it")
    if not pps:
        raise SegmentError("no H.264 picture parameter set (PPS): a player joining on this segment cannot decode it")
    if not frames:
        raise SegmentError("no H.264 pictures in the segment")
    if not key_frames:
        raise SegmentError(f"no key frame (IDR) in {frames} frames: a player joining on this segment cannot start")
    return Video("h264", sps.width, sps.height, sps.profile, sps.level, frames, key_frames, bool(first_picture_key))


@dataclass(frozen=True)
class Sps:
    width: int
    height: int
    profile: str
    level: float


class Bits:
    """An RBSP bit reader (emulation prevention bytes removed) with exp-Golomb codes (9.1)."""

    def __init__(self, rbsp: bytes) -> None:
        self.data, self.at = rbsp, 0

    def bit(self) -> int:
        if self.at >= 8 * len(self.data):
            raise SegmentError("the H.264 SPS ends early: the video is corrupted")
        value = (self.data[self.at >> 3] >> (7 - (self.at & 7))) & 1
        self.at += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise SegmentError("an H.264 SPS field is out of range: the video is corrupted")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def unescape(unit: bytes) -> bytes:
    """The RBSP of a NAL unit: every 00 00 03 loses its 03 (7.4.1)."""
    out = bytearray()
    zeros = 0
    for byte in unit:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def parse_sps(unit: bytes) -> Sps:
    """Profile, level and the cropped picture size from a sequence parameter set (7.3.2.1.1, 7.4.2.1.1)."""
    bits = Bits(unescape(unit[1:]))
    profile_idc = bits.bits(8)
    constraints = bits.bits(8)
    level_idc = bits.bits(8)
    if bits.ue() > 31:
        raise SegmentError("the H.264 SPS id is out of range: the video is corrupted")
    chroma_format_idc, separate_planes = 1, 0
    if profile_idc in HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise SegmentError("the H.264 SPS chroma format is out of range: the video is corrupted")
        if chroma_format_idc == 3:
            separate_planes = bits.bit()
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.bit():
                    skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    order_type = bits.ue()
    if order_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif order_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    elif order_type != 2:
        raise SegmentError("the H.264 SPS picture order type is out of range: the video is corrupted")
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    width, height = 16 * width_mbs, 16 * height_map_units * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        chroma_type = 0 if separate_planes else chroma_format_idc
        unit_x = 1 if chroma_type in (0, 3) else 2
        unit_y = (2 - frame_mbs_only) * (2 if chroma_type == 1 else 1)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise SegmentError("the H.264 SPS gives no picture size: the video is corrupted")
    profile = PROFILE_NAMES.get(profile_idc, f"profile {profile_idc}")
    if profile_idc == 66 and constraints & 0x40:  # constraint_set1_flag: what every Main decoder plays
        profile = "Constrained Baseline"
    return Sps(width, height, profile, level_idc / 10)


def skip_scaling_list(bits: Bits, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected); over a section with its CRC the result is 0."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc
