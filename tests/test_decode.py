"""decode.py: the header sniff agrees with PIL, each decode path gives PIL's pixels, and the uint8 ->
[-1, 1] conversion is x / 127.5 - 1 for every byte value."""
import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_pipeline.loading.augment import collate, to_unit_range
from data_pipeline.loading.decode import decode_uint8, encoded_size


def _photo(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), (xx + yy) % 256], -1)
    noisy = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB").convert(mode)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@settings(max_examples=30, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 300), progressive=st.booleans(), gray=st.booleans(),
       exif=st.booleans(), subsampling=st.sampled_from([0, 1, 2]))
def test_jpeg_size_from_the_header_matches_pil(w, h, progressive, gray, exif, subsampling):
    img = _photo(w, h, "L" if gray else "RGB")
    kw = {"progressive": progressive, "quality": 90}
    if not gray:
        kw["subsampling"] = subsampling
    if exif:  # an APP1 segment ahead of the frame header
        e = Image.Exif()
        e[0x010E] = "x" * 300
        kw["exif"] = e.tobytes()
    data = _encode(img, "JPEG", **kw)
    assert encoded_size(data) == ("JPEG", *Image.open(io.BytesIO(data)).size)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_png_size_from_the_header_matches_pil(mode):
    data = _encode(_photo(37, 21, mode), "PNG")
    assert encoded_size(data) == ("PNG", 37, 21)


def test_other_formats_and_damaged_headers_are_left_to_pil():
    assert encoded_size(_encode(_photo(8, 8), "BMP")) is None
    assert encoded_size(b"") is None and encoded_size(b"\xff\xd8\xff") is None
    assert encoded_size(b"\xff\xd8\x00\x00garbage-garbage") is None
    assert encoded_size(_encode(_photo(8, 8), "PNG")[:20]) is None


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_lossless_images_decode_to_the_stored_pixels(fmt):
    img = _photo(40, 30, seed=3)
    want = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    data = _encode(img, fmt)
    assert torch.equal(decode_uint8(data, 32), want)
    assert torch.equal(decode_uint8(Image.open(io.BytesIO(data)), 32), want)


def test_grayscale_and_palette_images_come_out_rgb():
    for mode, fmt in (("L", "JPEG"), ("P", "PNG"), ("RGBA", "PNG")):
        assert decode_uint8(_encode(_photo(20, 10, mode), fmt), 8).shape == (3, 10, 20)


def test_small_jpegs_decode_full_size_and_large_ones_at_a_reduced_scale_never_below_r():
    small = _encode(_photo(70, 50), "JPEG", quality=95)
    out = decode_uint8(small, 32)
    ref = torch.from_numpy(np.array(Image.open(io.BytesIO(small)))).permute(2, 0, 1)
    assert out.shape == (3, 50, 70) and (out.int() - ref.int()).abs().max() <= 2  # both libjpeg-turbo
    large = _encode(_photo(300, 260), "JPEG")
    reduced = decode_uint8(large, 64)  # the smallest DCT scale that keeps the short side >= 64: 1/4
    assert reduced.shape == (3, 65, 75)


def test_unit_range_is_x_over_127_5_minus_1_for_every_byte_value():
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16).contiguous()
    batch = collate([{"image": values[i], "label": i, "key": str(i)} for i in range(2)])
    assert batch["image"].dtype == torch.uint8
    out = to_unit_range(batch)["image"]
    assert out.dtype == torch.float32 and out.shape == (2, 3, 16, 16)
    assert torch.equal(out, values.float() / 127.5 - 1) and out.min() == -1 and out.max() == 1
