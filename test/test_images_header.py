"""The JPEG size read from the frame header without decoding (``images.jpeg_size``) agrees with Pillow's header
reader: whatever it accepts, Pillow opens with the same size; whatever else it leaves to Pillow."""

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from kuavo_smolvla_ros.images import ImageError, compressed_frame, jpeg_size


def _jpeg(height=48, width=64, **params):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if params.get("progressive") else []
    return cv2.imencode(".jpg", image, flags)[1].tobytes()


def _pillow_size(payload: bytes):
    try:
        with Image.open(io.BytesIO(payload)) as image:
            return image.size[1], image.size[0]
    except Exception:
        return None


@pytest.mark.parametrize("shape", [(48, 64), (480, 640), (1, 1), (7, 300)])
@pytest.mark.parametrize("progressive", [False, True])
def test_camera_jpegs_are_sized_from_the_header(shape, progressive):
    payload = _jpeg(*shape, progressive=progressive)
    assert jpeg_size(payload) == shape == _pillow_size(payload)
    frame = compressed_frame("jpeg", payload)
    assert (frame.height, frame.width) == shape
    assert frame().shape == (*shape, 3)


def test_headers_it_does_not_know_are_left_to_pillow():
    payload = _jpeg()
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 8) + b"Exif\0\0\0\0"  # an APP1 segment after SOI
    with_exif = payload[:2] + exif + payload[2:]
    assert jpeg_size(with_exif) is None
    assert (compressed_frame("jpeg", with_exif).height, compressed_frame("jpeg", with_exif).width) == (48, 64)
    assert jpeg_size(b"\xff\xd8\xff\xd9") is None
    with pytest.raises(ImageError, match="corrupt JPEG header"):  # Pillow's words, as before
        compressed_frame("jpeg", b"\xff\xd8\xff\xe0\x00\x02\xff\xd9")


def test_damaged_headers_agree_with_pillow():
    """Random byte changes and cuts in the header: a size is read only where Pillow reads the same one."""
    payload = _jpeg()
    scan = payload.index(b"\xff\xda")
    rng = np.random.default_rng(1)
    accepted = 0
    for trial in range(3000):
        damaged = bytearray(payload)
        for _ in range(rng.integers(1, 4)):
            damaged[rng.integers(2, scan + 12)] = rng.integers(0, 256)
        if trial % 5 == 0:  # cut inside the header (kept a JPEG by its end marker)
            damaged = damaged[: rng.integers(2, scan + 12)] + b"\xff\xd9"
        damaged = bytes(damaged)
        size = jpeg_size(damaged)
        if size is not None:
            accepted += 1
            assert size == _pillow_size(damaged), damaged[: scan + 12].hex()
    assert accepted > 100  # most single changes land in table contents, which change no size
