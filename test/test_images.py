"""Camera frames: validation on arrival, decoding on demand, clear errors."""

import cv2
import numpy as np
import pytest

from kuavo_smolvla_ros.images import ImageError, compressed_frame, raw_frame


def _rgb(height=6, width=8):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_raw_encodings_decode_to_rgb(encoding):
    rgb = _rgb()
    pixels = rgb[:, :, ::-1] if encoding.startswith("bgr") else rgb
    if encoding.endswith("a8"):
        pixels = np.concatenate([pixels, np.full((6, 8, 1), 255, np.uint8)], axis=2)
    step = pixels.shape[1] * pixels.shape[2] + 4  # padded rows
    padded = np.zeros((6, step), np.uint8)
    padded[:, : pixels.shape[1] * pixels.shape[2]] = pixels.reshape(6, -1)
    frame = raw_frame(encoding, 6, 8, step, padded.tobytes(), expected=(6, 8))
    np.testing.assert_array_equal(frame(), rgb)
    assert frame() is frame()  # decoded once


def test_raw_errors():
    data = _rgb().tobytes()
    with pytest.raises(ImageError, match="unsupported encoding 'mono16'"):
        raw_frame("mono16", 6, 8, 16, data)
    with pytest.raises(ImageError, match="image is 6x8, expected 480x640"):
        raw_frame("rgb8", 6, 8, 24, data, expected=(480, 640))
    with pytest.raises(ImageError, match="has 100 bytes, expected 6 x 24"):
        raw_frame("rgb8", 6, 8, 24, data[:100])
    with pytest.raises(ImageError, match="step 10 is smaller"):
        raw_frame("rgb8", 6, 8, 10, data)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_compressed_frames_decode_lazily_to_rgb(ext):
    rows, cols = np.mgrid[0:16, 0:24]
    rgb = np.stack([rows * 15, cols * 10, np.full_like(rows, 128)], axis=2).astype(np.uint8)  # smooth: JPEG-friendly
    _ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    frame = compressed_frame("jpeg" if ext == ".jpg" else "png", data.tobytes(), expected=(16, 24))
    assert (frame.height, frame.width) == (16, 24)
    decoded = frame()
    assert decoded.shape == (16, 24, 3)
    tolerance = 3 if ext == ".jpg" else 0
    assert np.abs(decoded.astype(int) - rgb).mean() <= tolerance


def test_compressed_errors_are_named():
    _ok, data = cv2.imencode(".jpg", _rgb(16, 24))
    data = data.tobytes()
    with pytest.raises(ImageError, match="neither JPEG nor PNG"):
        compressed_frame("jpeg", b"GIF89a....")
    with pytest.raises(ImageError, match="truncated JPEG"):
        compressed_frame("jpeg", data[: len(data) // 2])
    with pytest.raises(ImageError, match="image is 16x24, expected 480x640"):
        compressed_frame("jpeg", data, expected=(480, 640))
    with pytest.raises(ImageError, match="corrupt JPEG header"):
        compressed_frame("jpeg", b"\xff\xd8garbage\xff\xd9")
    # A valid header with corrupt entropy data passes the cheap check and fails on decode.
    scan = data.index(b"\xff\xda") + 20  # past the start-of-scan header
    broken = data[:scan] + bytes(len(data) - scan - 2) + b"\xff\xd9"
    frame = compressed_frame("jpeg", broken)
    try:
        decoded = frame()
    except ImageError as err:
        assert "corrupt JPEG data" in str(err)
    else:  # libjpeg may conceal the damage: then the shape is still right
        assert decoded.shape == (16, 24, 3)


# ------------------------------------------------------------------ frames to the trained size
def test_resize_with_pad_is_lerobots_smolvla_resize_on_uint8_frames():
    import torch
    from lerobot.policies.common.vla_utils import resize_with_pad as lerobot_resize_with_pad

    from kuavo_smolvla_ros.control.images import resize_with_pad

    image = _rgb(48, 96)
    out = resize_with_pad(image, 64, 64)
    reference = lerobot_resize_with_pad(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, 64, 64,
                                        pad_value=0.0)[0].permute(1, 2, 0).numpy() * 255
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - reference).max() <= 0.5 + 1e-4  # rounding to uint8 only
    assert not out[:32].any() and out[32:].any()  # 48x96 -> 32x64: SmolVLA pads the top (and left) black
    assert resize_with_pad(image, 48, 96) is image  # the trained size passes untouched


def test_the_fitter_passes_trained_sizes_through_and_reports_each_camera_once():
    from kuavo_smolvla_ros.control.images import FrameFitter

    warnings, infos = [], []
    fitter = FrameFitter({"head": (64, 64), "wrist": (60, 80)}, warn=warnings.append, inform=infos.append)
    same = raw_frame("rgb8", 64, 64, 64 * 3, _rgb(64, 64).tobytes())
    assert fitter.fit("head", same) is same
    for _ in range(3):
        wide = fitter.fit("head", raw_frame("rgb8", 48, 96, 96 * 3, _rgb(48, 96).tobytes()))
        assert (wide.height, wide.width) == (64, 64) and wide().shape == (64, 64, 3)
        small = fitter.fit("wrist", raw_frame("rgb8", 30, 40, 40 * 3, _rgb(30, 40).tobytes()))
        assert small().shape == (60, 80, 3)
    assert len(warnings) == 1 and warnings[0].startswith("camera head: frames are 48x96 (HxW), the checkpoint was "
                                                         "trained at 64x64: resized with padding")
    assert "aspect ratio differs" in warnings[0]
    assert len(infos) == 1 and infos[0].startswith("camera wrist: frames are 30x40")
