"""ops/backup.py: what restore refuses before it writes anything: a manifest path that leaves the
backup or the models dir, and (with RECSYS_BACKUP_KEY) a manifest it did not sign."""

from __future__ import annotations

import json

import pytest

from recsys_faust.ops import backup
from recsys_faust.ranking.model.artifact import sha256_file
from recsys_faust.settings import Settings


def _backup(tmp_path, model_file="models/v1/item_factors.npy", key=None):
    src = tmp_path / "backup"
    (src / "topics").mkdir(parents=True)
    (src / "models" / "v1").mkdir(parents=True)
    (src / "topics" / "t.jsonl").write_text("")
    (src / "models" / "v1" / "item_factors.npy").write_bytes(b"factors")
    target = src / model_file
    digest = sha256_file(target) if target.exists() else "0" * 64
    manifest = {"format": backup.FORMAT, "created_at": 0, "database": None,
                "topics": {"t": {"file": "t.jsonl", "records": 0, "sha256": sha256_file(src / "topics" / "t.jsonl")}},
                "models": [{"file": model_file, "sha256": digest}]}
    text = json.dumps(manifest, indent=2)
    (src / backup.MANIFEST).write_text(text)
    if key:
        (src / backup.MANIFEST_MAC).write_text(backup._mac(key, text.encode()))
    return src


def test_a_well_formed_backup_passes_its_checks(tmp_path):
    manifest = backup._check(_backup(tmp_path), None, lambda line: None)
    assert manifest["models"][0]["file"] == "models/v1/item_factors.npy"


def test_a_path_that_leaves_the_models_dir_is_refused_before_any_write(tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("mine")
    src = _backup(tmp_path, model_file="models/../../elsewhere.txt")
    with pytest.raises(backup.BackupError, match="outside"):
        backup._check(src, None, lambda line: None)
    models = tmp_path / "models-dir"
    settings = Settings(models_dir=models, broker="kafka://127.0.0.1:1")
    with pytest.raises(backup.BackupError, match="outside"):
        backup.restore(settings, src, echo=lambda line: None)   # refused before it talks to Kafka
    assert outside.read_text() == "mine" and not models.exists()


def test_with_a_backup_key_only_a_manifest_it_signed_is_restored(tmp_path):
    key = "k" * 32
    signed = _backup(tmp_path / "a", key=key)
    assert backup._check(signed, key, lambda line: None)["format"] == backup.FORMAT
    unsigned = _backup(tmp_path / "b")
    with pytest.raises(backup.BackupError, match="not signed"):
        backup._check(unsigned, key, lambda line: None)
    forged = _backup(tmp_path / "c", key="another key entirely, 32 chars!")
    with pytest.raises(backup.BackupError, match="not signed"):
        backup._check(forged, key, lambda line: None)
    said = []
    backup._check(unsigned, None, said.append)
    assert "not authenticated" in said[0]
