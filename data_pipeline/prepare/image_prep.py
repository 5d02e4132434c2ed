"""One source image -> the encoded bytes stored in a shard, or `SkippedImage` with the reason.

Resize modes (the prepared resolution R):
  center-crop: the short side is scaled to R, then the centre R x R is cut (ADM / ImageNet eval).
  short-side:  the short side is scaled to R and the aspect ratio kept (training crops later).
Large JPEGs are decoded at a reduced DCT scale (never below 2R) and downscaled with a box
pre-reduction, which is both faster and anti-aliased.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from data_pipeline.prepare.sources import SourceItem

RESIZE_MODES = ("center-crop", "short-side")
IMAGE_FORMATS = ("jpeg", "png")


class SkippedImage(Exception):
    """The image can't be used (corrupt, truncated, unreadable, missing); str(e) is the reason."""


@dataclass(frozen=True)
class ImageSpec:
    resolution: int
    resize: str = "center-crop"
    image_format: str = "jpeg"
    quality: int = 95
    seed: int = 0  # of the `embedded` source


def _open_file(path: str, resolution: int) -> Image.Image:
    try:
        img = Image.open(path)
        if img.format == "JPEG":
            img.draft("RGB", (2 * resolution, 2 * resolution))
        img.load()  # decodes every byte: truncated or corrupt data raises here, not later
        img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise SkippedImage("missing file") from None
    except PermissionError as e:
        raise SkippedImage(f"unreadable: {e.strerror}") from None
    except Image.DecompressionBombError as e:
        raise SkippedImage(f"too large: {e}") from None
    except Image.UnidentifiedImageError:
        raise SkippedImage("not an image (unidentified format or empty file)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise SkippedImage(f"corrupt or truncated: {type(e).__name__}: {e}") from None
    if img.width < 1 or img.height < 1:
        raise SkippedImage(f"empty image ({img.width}x{img.height})")
    return img


def load_rgb(item: SourceItem, spec: ImageSpec) -> Image.Image:
    if item.embedded_index is not None:
        from data_pipeline.prepare.embedded import embedded_sample

        return embedded_sample(spec.seed, item.embedded_index)[1]
    img = _open_file(item.path, spec.resolution)
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)  # transparent pixels become white
        img = img.convert("RGB")
    return img


def resize(img: Image.Image, resolution: int, mode: str) -> Image.Image:
    w, h = img.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    if size != (w, h):
        img = img.resize(size, Image.BICUBIC, reducing_gap=2.0)
    if mode == "center-crop":
        left = (size[0] - resolution) // 2
        top = (size[1] - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
    return img


def encode(img: Image.Image, spec: ImageSpec) -> bytes:
    buf = io.BytesIO()
    if spec.image_format == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="JPEG", quality=spec.quality, subsampling=0 if spec.quality >= 90 else 2)
    return buf.getvalue()


def prepared_bytes(item: SourceItem, spec: ImageSpec) -> bytes:
    return encode(resize(load_rgb(item, spec), spec.resolution, spec.resize), spec)
