"""What a metrics file records about the weights it was computed with (path, hash, test-made or not)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

# written next to every weights file that hieratok.eval.weights_for_tests makes
TEST_MADE_SUFFIX = ".test-made.json"


def mark_test_made(path: str | Path, note: str, **details) -> None:
    path = Path(path)
    sidecar = path.with_name(path.name + TEST_MADE_SUFFIX)
    sidecar.write_text(json.dumps({"note": note, **details}, indent=2, sort_keys=True))


def weights_provenance(path: str | Path) -> dict:
    """{path, sha256 (first 16 hex), test_made[, test_made_note]} for a weights file."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    sidecar = path.with_name(path.name + TEST_MADE_SUFFIX)
    info = {"path": str(path.resolve()), "sha256": digest.hexdigest()[:16], "test_made": sidecar.is_file()}
    if info["test_made"]:
        info["test_made_note"] = json.loads(sidecar.read_text()).get("note", "")
    return info
