"""Where an image file ends, so that what follows it is never stored.

A PNG followed by an HTML page is a valid PNG (decoders stop at IEND) and, served from our origin
to a browser that sniffs, a page: a polyglot. Uploads and vendor results are therefore stored cut
at the end of the image itself — PNG after its IEND chunk, JPEG after the EOI marker that ends its
first image, WebP at the length its RIFF header declares. Cutting rather than re-encoding keeps
the pixels, the colour profile and the EXIF orientation exactly as the client sent them, costs no
decode and no generation loss, and is exact: these three formats say where they end.

Pillow decodes these formats but does not say where in the bytes an image ends, hence this walk
over the container structure (chunk, marker and RIFF lengths). It runs after Pillow accepted the
image, so it only needs to follow a structure already known to be sound; anything it cannot
follow is refused as corrupt rather than stored whole.
"""

from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NoImageEnd(ValueError):
    """The bytes do not show where the image ends (truncated or malformed container)."""


def image_end(data: bytes, image_format: str) -> int:
    """How many leading bytes of ``data`` are the image of ``image_format`` (Pillow's name)."""
    if image_format == "PNG":
        return _png_end(data)
    if image_format in ("JPEG", "MPO"):
        # An MPO (phone cameras) is several JPEGs in a row; the first is the photo, the others
        # previews or depth maps that nothing here uses, so only the first is kept.
        return _jpeg_end(data)
    if image_format == "WEBP":
        return _webp_end(data)
    raise NoImageEnd(f"no rule for {image_format}")


def _png_end(data: bytes) -> int:
    if not data.startswith(PNG_SIGNATURE):
        raise NoImageEnd("no PNG signature")
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        tag = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if tag == b"IEND":
            if pos > len(data):
                break
            return pos
    raise NoImageEnd("no IEND chunk")


# Markers that stand alone, without a length: TEM and the restart markers RST0-7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA


def _jpeg_end(data: bytes) -> int:
    if not data.startswith(b"\xff\xd8"):
        raise NoImageEnd("no JPEG SOI marker")
    size = len(data)
    pos = 2
    while pos < size:
        if data[pos] != 0xFF:
            raise NoImageEnd("expected a marker")
        while pos < size and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            return pos
        if marker in _STANDALONE or marker == _SOI:
            continue
        if pos + 2 > size:
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise NoImageEnd("bad segment length")
        # Segment lengths are how EXIF thumbnails (whole JPEGs, EOI included) are skipped.
        pos += length
        if marker == _SOS:
            pos = _entropy_end(data, pos)
    raise NoImageEnd("no EOI marker")


def _entropy_end(data: bytes, pos: int) -> int:
    """The position of the marker that ends the entropy-coded data of a scan starting at ``pos``.
    Inside it 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; anything else is
    the next marker."""
    size = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= size:
            raise NoImageEnd("scan data runs to the end")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:
            pos += 1  # fill byte before a marker
        else:
            return pos


def _webp_end(data: bytes) -> int:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise NoImageEnd("no RIFF/WEBP header")
    riff_size = int.from_bytes(data[4:8], "little")
    # The RIFF size counts every byte after its own field, padding of the last chunk included.
    end = 8 + riff_size
    if end > len(data):
        raise NoImageEnd("RIFF size beyond the data")
    return end
