"""The web app serves one folder: case names that lead outside it are refused, uploads are checked
for size, type and naming before anything is written, and written whole or not at all."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from IDHPredictorLib.errors import InputError
from IDHPredictorLib.io.cohort import case_folders
from IDHPredictorLib.web import data_folder
from IDHPredictorLib.web.data_folder import DataFolder


@pytest.fixture()
def served(small_cohort: Path, tmp_path: Path) -> DataFolder:
    for case in case_folders(small_cohort)[:2]:
        shutil.copytree(case, tmp_path / "data" / case.name)
    (tmp_path / "data" / "notes").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "data" / "link-out").symlink_to(tmp_path / "secret")
    return DataFolder(tmp_path / "data")


def test_only_the_folders_cases_are_offered_and_resolved(served: DataFolder, small_cohort: Path) -> None:
    names = [case.name for case in case_folders(small_cohort)[:2]]
    assert served.cases() == names
    assert served.resolve(names[0]) == served.root / names[0]
    assert DataFolder(served.root / names[0]).cases() == ["."]


@pytest.mark.parametrize("name", ["../secret", "link-out", "/etc", "..", "a/../../secret", "..\\secret", ""])
def test_a_name_leading_outside_is_refused(served: DataFolder, name: str) -> None:
    with pytest.raises(InputError, match="outside the data folder|is not a case"):
        served.resolve(name)


def test_an_upload_is_checked_then_written_whole(served: DataFolder, small_cohort: Path) -> None:
    case = case_folders(small_cohort)[0]
    files = {f"NEW_{p.name.split('_', 1)[1]}": p.read_bytes() for p in case.iterdir() if p.name.endswith(".nii.gz")}
    name = served.save_upload(files)
    assert name == "uploads/NEW" and "uploads/NEW" in served.cases()
    assert sorted(os.listdir(served.resolve(name))) == sorted(files)

    flair = next(content for key, content in files.items() if key.endswith("_flair.nii.gz"))
    refusals = {
        "not a NIfTI file": {"NEW_flair.exe": flair},
        "not a plain file name": {"../NEW_flair.nii.gz": flair},
        "not gzip-compressed": {"NEW_flair.nii.gz": gzip.decompress(flair)},
        "do not name one case": {"A_flair.nii.gz": flair, "B_t1ce.nii.gz": flair},
        "holds no file": {},
    }
    for message, upload in refusals.items():
        with pytest.raises(InputError, match=message):
            served.save_upload(upload)
    assert sorted(os.listdir(served.root / "uploads")) == ["NEW"]  # nothing half-written


def test_an_upload_over_the_size_limit_is_refused(served: DataFolder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_folder, "MAX_UPLOAD_BYTES", 2**20)
    with pytest.raises(InputError, match="is 2 MB, over the 1 MB limit"):
        served.save_upload({"BIG_flair.nii.gz": b"\x1f\x8b" + bytes(2**21)})
    assert not (served.root / "uploads").exists()
