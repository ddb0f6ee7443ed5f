"""site.yml `hls:`: fragment and playlist lengths, which set the stream's latency.

A playlist must hold at least two fragments, or players stall between them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pi_stream.site.fields import Fields


@dataclass(frozen=True)
class Hls:
    fragment_seconds: int
    playlist_seconds: int


def parse_hls(section: Fields) -> Hls:
    """`hls: {fragment_seconds: 1, playlist_seconds: 4}`."""
    hls = Hls(
        fragment_seconds=section.integer("fragment_seconds", 1, 1, 10),
        playlist_seconds=section.integer("playlist_seconds", 4, 2, 120),
    )
    if hls.playlist_seconds < 2 * hls.fragment_seconds:
        section.error("playlist_seconds", "must hold at least two fragments (2 x fragment_seconds)")
    section.done()
    return hls
