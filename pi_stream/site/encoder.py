"""site.yml `encoder:`: the H.264 encoders the capture role tries on the Pi, in order.

The first that passes a test encode on the Pi is used, so the list may name a
hardware encoder a given board lacks (a Pi 5 has none) with a software one after it.
"""

from __future__ import annotations

from pi_stream.site.fields import Fields

DEFAULT_ENCODERS = ("h264_v4l2m2m", "libx264")
KNOWN_ENCODERS = ("h264_v4l2m2m", "h264_omx", "libx264", "libopenh264")


def parse_encoder(section: Fields) -> tuple[str, ...]:
    """`encoder: {candidates: [h264_v4l2m2m, libx264]}`."""
    candidates = section.items("candidates") or list(DEFAULT_ENCODERS)
    for i, candidate in enumerate(candidates):
        if candidate not in KNOWN_ENCODERS:
            section.error(f"candidates[{i}]", f"{candidate!r} is not one of: {', '.join(KNOWN_ENCODERS)}")
    section.done()
    return tuple(candidates)
