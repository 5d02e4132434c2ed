"""Hugging Face Hub interop: an export folder (model.safetensors + config.json + README.md) is a Hub
model repo as it is, so `from_pretrained` takes a repo id wherever it takes a folder, and
`hieratok export --push-to-hub REPO` uploads the folder. Nothing here is needed offline; a repo id
that cannot be fetched fails with the fix (download it elsewhere, pass the folder)."""
from __future__ import annotations

import re
from pathlib import Path

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the Hub spells them
FILES = ["config.json", "model.safetensors", "README.md"]


def looks_like_repo_id(path: str | Path) -> bool:
    s = str(path)
    return bool(REPO_ID.match(s)) and not Path(s).exists() and not s.startswith((".", "/"))


def download(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of a Hub model repo: the Hub cache (HF_HOME), fetched when online."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=FILES))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no access: all mean "not here"
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise FileNotFoundError(
            f"{repo_id} is not a local folder and could not be fetched from the Hugging Face Hub ({reason}); "
            f"offline, run `huggingface-cli download {repo_id}` on a machine with network and pass the folder"
        ) from None


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         message: str = "Upload a HieraTok export") -> str:
    """Create `repo_id` if needed and upload the export folder; returns the commit's URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    missing = [f for f in FILES if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: push an export folder (hieratok export writes one)")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                               allow_patterns=FILES, commit_message=message)
    return str(getattr(commit, "commit_url", commit))
