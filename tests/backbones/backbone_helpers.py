"""Helpers shared by the backbone tests."""

from __future__ import annotations

from pathlib import Path


def put_in_hf_cache(hf_cache: Path, repo_id: str, save) -> Path:
    """Lay out `repo_id` as huggingface_hub caches it (refs/main -> snapshots/<commit>/); `save(dir)` fills it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hf_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    (repo_dir / "blobs").mkdir()
    save(snapshot)
    return snapshot
