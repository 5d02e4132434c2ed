"""`hieratok prepare`: sources, manifest, corrupt images, clear errors, and the stock readers."""
import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from data_pipeline.errors import DataError
from data_pipeline.prepare.pipeline import run_prepare
from data_pipeline.prepare.options import PrepareOptions
from hieratok.cli import main as hieratok

CLASSES = ["cat", "dog", "zebra"]


def _photo(rng, w, h) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def image_tree(tmp_path):
    """3 class folders of JPEG/PNG/WEBP images, plus 4 bad files: truncated, empty, not-an-image, corrupt."""
    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    good = []
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i, ext in enumerate(["jpg", "png", "JPEG", "webp", "jpg"]):
            path = root / c / f"img.{i}.{ext}"  # a dot in the stem: keys must stay WebDataset-safe
            _photo(rng, 40 + 8 * i, 36).save(path, format={"jpg": "JPEG", "JPEG": "JPEG"}.get(ext, ext.upper()))
            good.append(path)
    buf = io.BytesIO()
    _photo(rng, 64, 64).save(buf, format="JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("not an image")
    (root / "zebra" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (root / "zebra" / "readme.txt").write_text("ignored: not an image suffix")
    return root, good


def _prepare(src, out, fmt, **kw):
    kw = {"resolution": 32, "workers": 2, "samples_per_shard": 4, "progress": False, **kw}
    return run_prepare(PrepareOptions(src=str(src), out=str(out), format=fmt, **kw))


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["mds", "wds"])
def test_folder_tree_manifest_counts_classes_skips_and_checksums(image_tree, tmp_path, fmt):
    src, good = image_tree
    out = tmp_path / "out"
    m = _prepare(src, out, fmt)
    assert m["classes"] == CLASSES and m["num_classes"] == 3
    assert m["resolution"] == 32 and m["resize"] == "center-crop" and m["format"] == fmt
    assert m["counts"] == {"listed": len(good) + 4, "written": len(good), "skipped": 4}
    reasons = {os.path.basename(s["path"]): s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"truncated.jpg", "empty.png", "notes.jpg", "garbage.png"}
    assert "truncated" in reasons["truncated.jpg"] and "not an image" in reasons["empty.png"]
    split = m["splits"]["all"]
    assert split["per_class"] == {"0": 5, "1": 5, "2": 5}
    assert sum(s["samples"] for s in split["shards"]) == len(good)
    for shard in split["shards"]:
        assert _sha256(out / shard["path"]) == shard["sha256"] and (out / shard["path"]).stat().st_size == shard["bytes"]
    assert json.loads((out / "manifest.json").read_text()) == m


def test_stock_streaming_dataset_reads_mds(image_tree, tmp_path):
    from streaming import StreamingDataset

    src, good = image_tree
    _prepare(src, tmp_path / "out", "mds")
    ds = StreamingDataset(local=str(tmp_path / "out"), shuffle=False, batch_size=1)
    samples = [ds[i] for i in range(ds.num_samples)]
    want = {f"{p.parent.name}/{p.name.rsplit('.', 1)[0].replace('.', '%2E')}": CLASSES.index(p.parent.name) for p in good}
    assert {s["key"]: s["label"] for s in samples} == want
    assert all(s["image"].size == (32, 32) and s["image"].format == "JPEG" for s in samples)


def test_stock_webdataset_reads_wds(image_tree, tmp_path):
    import webdataset as wds

    src, good = image_tree
    m = _prepare(src, tmp_path / "out", "wds", image_format="png")
    urls = [str(tmp_path / "out" / s["path"]) for s in m["splits"]["all"]["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"))
    assert len(samples) == len(good) == len({s["__key__"] for s in samples})
    assert all(s["png"].size == (32, 32) and s["cls"] in (0, 1, 2) for s in samples)
    # lossless PNG: the stored pixels are exactly the source resized and centre-cropped
    from data_pipeline.prepare.image_prep import resize

    stored = next(s["png"] for s in samples if s["__key__"] == "cat/img%2E1")
    expected = resize(Image.open(src / "cat" / "img.1.png").convert("RGB"), 32, "center-crop")
    assert np.array_equal(np.asarray(stored.convert("RGB")), np.asarray(expected))


def test_file_list_csv_with_class_names_and_plain_text(image_tree, tmp_path):
    src, good = image_tree
    csv_list = tmp_path / "list.csv"
    lines = ["path,label"] + [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in good[:6]]
    csv_list.write_text("\n".join(lines) + "\nsrc/missing.jpg,cat\n")
    m = _prepare(csv_list, tmp_path / "a", "wds")
    assert m["classes"] == ["cat", "dog"] and m["counts"]["written"] == 6
    assert m["skipped"][0]["reason"] == "missing file"

    text_list = tmp_path / "list.txt"
    text_list.write_text("\n".join(str(p) for p in good[:5]) + "\n")  # absolute paths, no labels
    m = _prepare(text_list, tmp_path / "b", "mds")
    assert m["classes"] is None and m["splits"]["all"]["per_class"] == {"-1": 5}


def test_val_split_partitions_the_samples(tmp_path):
    m = _prepare("embedded", tmp_path / "out", "wds", limit=80, split_val=0.25, seed=3)
    assert (m["splits"]["train"]["samples"], m["splits"]["val"]["samples"]) == (60, 20)
    import webdataset as wds

    keys = {}
    for split in ("train", "val"):
        urls = [str(tmp_path / "out" / s["path"]) for s in m["splits"][split]["shards"]]
        keys[split] = {s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)}
    assert not keys["train"] & keys["val"] and len(keys["train"] | keys["val"]) == 80


def test_short_side_keeps_the_aspect_ratio(image_tree, tmp_path):
    from streaming import StreamingDataset

    src, _ = image_tree
    _prepare(src, tmp_path / "out", "mds", resize="short-side", limit=6)
    ds = StreamingDataset(local=str(tmp_path / "out"), shuffle=False, batch_size=1)
    sizes = {ds[i]["image"].size for i in range(ds.num_samples)}
    assert all(h == 32 and w >= 32 for w, h in sizes) and any(w > 32 for w, _ in sizes)


@pytest.mark.parametrize("make_src, message", [
    (lambda p: p / "nowhere", "source not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no images"),
    (lambda p: (p / "c" / "cat").mkdir(parents=True) or p / "c", "holds no images"),
    (lambda p: (p / "l.txt").write_text("# only a comment\n") and p / "l.txt", "holds no images"),
    (lambda p: (p / "l.csv").write_text("a.jpg,1\nb.jpg\n") and p / "l.csv", "label every line or none"),
    (lambda p: (p / "l.csv").write_text("a.jpg\nx/../a.png\n") and p / "l.csv", "repeats the sample key"),
])
def test_missing_empty_or_malformed_sources_fail_clearly(tmp_path, make_src, message):
    src = make_src(tmp_path)
    with pytest.raises(DataError, match=message):
        _prepare(src, tmp_path / "out", "mds")


def test_cli_reports_errors_and_summary(tmp_path, capsys):
    assert hieratok(["prepare", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                     "--format", "wds"]) == 2
    assert "source not found" in capsys.readouterr().err
    assert hieratok(["prepare", "--src", "embedded", "--out", str(tmp_path / "o"), "--format", "wds",
                     "--resolution", "32", "--limit", "20", "--workers", "1", "--shard-size", "8KB",
                     "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 20 and summary["splits"]["all"]["shards"] >= 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("someone's file")
    assert hieratok(["prepare", "--src", "embedded", "--out", str(tmp_path / "full"), "--format", "mds"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert hieratok(["prepare", "--src", "embedded", "--out", "s3://b/p", "--format", "wds"]) == 2
    assert "--format mds only" in capsys.readouterr().err
