"""Reading the site's own text files (site.yml, inventory.yml, viewers.htpasswd) as UTF-8, or saying why not.

An editor can save a file as UTF-16 (Windows Notepad's "Unicode"), and a
mistaken copy can put binary data where YAML was: either must become one
sentence naming the fix, not a UnicodeDecodeError traceback.
"""

from __future__ import annotations

import codecs
from pathlib import Path

# Byte-order marks of the encodings an editor might have used instead; UTF-8's own is accepted (and dropped).
OTHER_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def read_utf8(path: Path) -> str:
    """The file's text. ValueError with the fix when it is not UTF-8; OSError as open() raises it."""
    data = Path(path).read_bytes()
    for mark, encoding in OTHER_ENCODINGS:
        if data.startswith(mark):
            raise ValueError(f"the file is {encoding} text (it starts with a {encoding} byte-order mark): save it as UTF-8")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): save it as UTF-8, "
            "or replace it if it is not the file you meant"
        ) from None
