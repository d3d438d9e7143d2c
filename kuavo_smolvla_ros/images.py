"""Camera frames from ROS image messages (raw ``Image`` or ``CompressedImage``) to HxWx3 uint8 RGB.

Messages are checked when they arrive (encoding, size, a JPEG/PNG header, image dimensions bounded by
:data:`MAX_PIXELS` before anything is decoded) and decoded only when an inference needs them (:class:`Frame`
is a zero-argument loader), so frames the policy never uses cost no decoding. Decoding is strict: a JPEG the
decoder reports as corrupt (libjpeg-turbo's warnings, through ``simplejpeg``'s ``strict`` mode) or a PNG
libpng cannot decode (chunk CRCs) is an :class:`ImageError`, never a garbage image. (A JPEG has no checksum: damage
that decodes without any decoder report cannot be told from a real image.) Works on rclpy messages and
rosbags records alike (same field names); no ROS imports.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

#: Raw encodings accepted: channels and whether the colour order is BGR.
RAW_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True)}
_MAGIC = {"jpeg": b"\xff\xd8", "png": b"\x89PNG"}
#: The largest frame accepted (pixels, and pixels per side): 4096x4096, over 50 times a Kuavo camera's
#: 640x480. Larger dimensions (e.g. a 27-byte JPEG header claiming 13400x13400) are refused before decoding.
MAX_PIXELS = 4096 * 4096
MAX_SIDE = 8192


class ImageError(ValueError):
    """A camera message that cannot be used; the message says why."""


def _check_size(height: int, width: int, expected: tuple[int, int] | None) -> None:
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image {height}x{width}")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise ImageError(f"image claims {height}x{width} pixels, more than the {MAX_PIXELS} accepted")
    if expected and tuple(expected) != (height, width):
        raise ImageError(f"image is {height}x{width}, expected {expected[0]}x{expected[1]}")


class Frame:
    """A validated camera frame; calling it decodes to an HxWx3 uint8 RGB array (cached)."""

    __slots__ = ("_array", "_decode", "height", "width")

    def __init__(self, height: int, width: int, decode):
        self.height, self.width = height, width
        self._decode = decode
        self._array: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self._array is None:
            self._array = self._decode()
        return self._array

    def decode(self) -> np.ndarray:
        """Decode without keeping the result (for one-pass consumers such as the bag converter)."""
        return self._array if self._array is not None else self._decode()


def raw_frame(encoding: str, height: int, width: int, step: int, data, expected: tuple[int, int] | None = None
              ) -> Frame:
    """A frame from a ``sensor_msgs/Image`` (rgb8, bgr8, rgba8 or bgra8)."""
    if encoding not in RAW_ENCODINGS:
        raise ImageError(f"unsupported encoding {encoding!r} (supported: {', '.join(RAW_ENCODINGS)})")
    channels, bgr = RAW_ENCODINGS[encoding]
    _check_size(height, width, expected)
    if step < width * channels:
        raise ImageError(f"step {step} is smaller than width {width} x {channels} channels")
    buffer = memoryview(data).cast("B") if not isinstance(data, bytes | bytearray) else data
    if len(buffer) != height * step:
        raise ImageError(f"{encoding} image data has {len(buffer)} bytes, expected {height} x {step}")

    def decode() -> np.ndarray:
        pixels = np.frombuffer(buffer, dtype=np.uint8).reshape(height, step)[:, : width * channels]
        pixels = pixels.reshape(height, width, channels)[:, :, :3]
        return np.ascontiguousarray(pixels[:, :, ::-1] if bgr else pixels)

    return Frame(height, width, decode)


def compressed_frame(fmt: str, data, expected: tuple[int, int] | None = None) -> Frame:
    """A frame from a ``sensor_msgs/CompressedImage`` holding a JPEG or PNG (colour)."""
    payload = bytes(data)
    kind = next((k for k, magic in _MAGIC.items() if payload.startswith(magic)), None)
    if kind is None:
        raise ImageError(f"compressed image (format {fmt!r}) is neither JPEG nor PNG")
    if kind == "jpeg" and not payload.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageError("truncated JPEG (no end-of-image marker)")
    size = jpeg_size(payload) if kind == "jpeg" else None
    if size is not None:
        height, width = size
        _check_size(height, width, expected)
        return Frame(height, width, lambda: _decode_jpeg(payload, height, width))
    return _pillow_frame(kind, payload, expected)


#: The JPEG markers :func:`jpeg_size` reads past (length-prefixed segments Pillow skips or only stores).
_SKIPPED_SEGMENTS = frozenset({0xC4, 0xCC, 0xDC, 0xDD, 0xDF, 0xFE})
#: Frame markers it reads the size from: baseline, extended sequential, progressive (Huffman).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2})


def jpeg_size(payload: bytes) -> tuple[int, int] | None:
    """(height, width) of a JPEG from its frame header, read without decoding (a few microseconds), or None
    where the header is anything but the plain layout cameras write (SOI, APP0, quantization and Huffman tables,
    one baseline/extended/progressive 8-bit frame header with 1, 3 or 4 components, then the scan), or breaks
    any rule Pillow's header reader applies: the caller then asks Pillow, which reports what is wrong in its
    own words. Within that layout it accepts exactly the headers Pillow accepts and reads the same size."""
    end = len(payload)
    if end < 4 or payload[0] != 0xFF or payload[1] != 0xD8 or payload[2] != 0xFF:
        return None
    at, size = 2, None
    while at + 4 <= end:
        if payload[at] != 0xFF:
            return None
        marker = payload[at + 1]
        length = (payload[at + 2] << 8) | payload[at + 3]
        body, at = at + 4, at + 2 + length
        if length < 2 or at > end:
            return None
        if marker == 0xDA:  # start of scan: the header is complete
            return size
        if marker in _SOF_MARKERS:
            components = payload[body + 5] if length >= 8 else 0
            if size is not None or payload[body] != 8 or components not in (1, 3, 4) or length != 8 + 3 * components:
                return None
            size = ((payload[body + 1] << 8) | payload[body + 2], (payload[body + 3] << 8) | payload[body + 4])
            if size[0] <= 0 or size[1] <= 0 or size[0] * size[1] > MAX_PIXELS:
                return None
        elif marker == 0xDB:  # quantization tables: Pillow refuses a table cut short
            table = body
            while table < at:
                table += 1 + (64 if payload[table] < 16 else 128)
            if table != at:
                return None
        elif marker == 0xE0:  # APP0: Pillow reads a JFIF version from it
            if payload[body: body + 4] == b"JFIF" and length < 9:
                return None
        elif marker not in _SKIPPED_SEGMENTS:  # other APPn (EXIF, ICC...), other frame types, fill bytes
            return None
    return None


def _pillow_frame(kind: str, payload: bytes, expected: tuple[int, int] | None) -> Frame:
    """A frame whose size Pillow reads from the header (PNG, and JPEG headers :func:`jpeg_size` leaves)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: the size check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as header:  # reads the header only
                width, height = header.size
    except Image.DecompressionBombError:
        raise ImageError(f"{kind.upper()} header claims more pixels than {MAX_PIXELS} (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(f"corrupt {kind.upper()} header (Pillow cannot identify it)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"corrupt {kind.upper()} header: {err}") from None
    _check_size(height, width, expected)
    return Frame(height, width, lambda: _decode_jpeg(payload, height, width) if kind == "jpeg"
                 else _decode_png(payload, height, width))


def _decode_jpeg(payload: bytes, height: int, width: int) -> np.ndarray:
    """Strict JPEG decoding (libjpeg-turbo through simplejpeg): any decoder warning is an error."""
    import simplejpeg

    try:
        image = simplejpeg.decode_jpeg(payload, colorspace="RGB", strict=True)
    except ValueError as err:
        raise ImageError(f"corrupt JPEG data ({err})") from None
    if image.shape[:2] != (height, width):
        raise ImageError(f"JPEG data is {image.shape[1]}x{image.shape[0]}, its header says {width}x{height}")
    return image


def _decode_png(payload: bytes, height: int, width: int) -> np.ndarray:
    """PNG decoding with OpenCV (libpng: a chunk failing its CRC is an error); RGB, alpha dropped."""
    import cv2

    image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (height, width):
        raise ImageError("corrupt PNG data")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
