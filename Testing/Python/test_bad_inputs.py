"""Bad inputs and unlucky environments end with one clear line and the documented exit status,
never with a traceback or a silently wrong result (small phantom cases as the base)."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from IDHPredictorLib import cli
from IDHPredictorLib.cli import main
from IDHPredictorLib.io.cohort import case_folders


def _copy_case(cohort: Path, tmp_path: Path, modalities: tuple[str, ...] = ("flair", "t1ce", "seg")) -> Path:
    source = case_folders(cohort)[0]
    target = tmp_path / source.name
    target.mkdir()
    for modality in modalities:
        shutil.copy(source / f"{source.name}_{modality}.nii.gz", target)
    return target


def _run(arguments: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    status = main(arguments)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def test_truncated_nifti_files_are_refused(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path)
    flair = case / f"{case.name}_flair.nii.gz"
    data = flair.read_bytes()
    flair.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "truncated" in err and flair.name in err
    raw = gzip.decompress(data)
    flair.unlink()
    (case / f"{case.name}_flair.nii").write_bytes(raw[: len(raw) // 2])
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "truncated" in err
    (case / f"{case.name}_flair.nii").unlink()
    flair.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # a sound gzip stream around half an image
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "its header needs" in err and flair.name in err


def test_corrupt_or_misnamed_gzip_files_are_refused(small_cohort: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path)
    flair = case / f"{case.name}_flair.nii.gz"
    data = bytearray(flair.read_bytes())
    clean = bytes(data)
    data[len(data) * 3 // 10] ^= 0xFF  # one flipped byte: decodes into different voxels without an error
    flair.write_bytes(bytes(data))
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "corrupt" in err and flair.name in err
    flair.write_bytes(gzip.decompress(clean))  # an uncompressed NIfTI named .nii.gz
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "not gzip-compressed" in err and f"{case.name}_flair.nii" in err


def test_predict_checks_the_inputs_even_with_a_given_mask(small_cohort: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """DLR descriptors come from the segmentation network, so a case with its own _seg gets the same
    input check as one that is segmented (negated intensities used to give p = 0.68 and exit 0)."""
    case = _copy_case(small_cohort, tmp_path)
    flair = case / f"{case.name}_flair.nii.gz"
    image = sitk.ReadImage(str(flair), sitk.sitkFloat32)
    sitk.WriteImage(-image, str(flair), useCompression=True)
    status, err = _run(["predict", str(case), "--out", str(tmp_path / "p.json")], capsys)
    assert status == 2 and "flair intensities" in err and not (tmp_path / "p.json").exists()


def test_segment_never_overwrites_an_input(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path)
    flair = case / f"{case.name}_flair.nii.gz"
    before = flair.read_bytes()
    status, err = _run(["segment", str(case), "--out", str(flair)], capsys)
    assert status == 2 and "the case's inputs" in err and flair.read_bytes() == before
    status, err = _run(["segment", str(case), "--out", str(tmp_path)], capsys)
    assert status == 2 and "existing folder" in err


def test_output_folders_are_checked_before_any_work(small_cohort: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path)
    keep = tmp_path / "mine" / "important.txt"
    keep.parent.mkdir()
    keep.write_text("not ours to delete")
    status, err = _run(["preprocess", str(case), "--out", str(keep.parent)], capsys)
    assert status == 2 and "holds other files" in err and keep.read_text() == "not ours to delete"
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for command in (["dlr", str(small_cohort)], ["perfusion", str(small_cohort)]):
        for out in (a_file, a_file / "report"):  # an existing file; a folder under a file
            status, err = _run([*command, "--out", str(out)], capsys)
            assert status == 2 and str(a_file) in err, (command, out, err)
    for option in (["--k", "0"], ["--components", "0"], ["--repeats", "0"], ["--split-date", "someday"]):
        with pytest.raises(SystemExit) as refused:  # argparse: exit 2 with the usage line
            main(["dlr", str(small_cohort), "--out", str(tmp_path / "r"), *option])
        assert refused.value.code == 2 and option[0] in capsys.readouterr().err


def test_label_map_outside_the_images_is_refused(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path)
    seg_path = case / f"{case.name}_seg.nii.gz"
    seg = sitk.ReadImage(str(seg_path))
    seg.SetOrigin([o + 1000.0 for o in seg.GetOrigin()])  # a label map from another space
    sitk.WriteImage(seg, str(seg_path))
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "does not overlap" in err


def test_label_map_covering_the_whole_brain_is_refused_by_predict_and_validate(small_cohort: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path)
    flair = sitk.ReadImage(str(case / f"{case.name}_flair.nii.gz"))
    everything = sitk.GetImageFromArray((sitk.GetArrayFromImage(flair) != 0).astype(np.uint8) * 2)
    everything.CopyInformation(flair)
    sitk.WriteImage(everything, str(case / f"{case.name}_seg.nii.gz"))
    status, err = _run(["predict", str(case)], capsys)
    assert status == 2 and "larger than any plausible glioma" in err
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "larger than any plausible glioma" in err


def test_unexpected_errors_and_ctrl_c_end_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    def crash(args: object) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(cli, "_validate", crash)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    status, err = _run(["validate", str(tmp_path)], capsys)
    assert status == 1 and "internal error in 'validate': ZeroDivisionError: simulated bug" in err
    log = next(tmp_path.glob("idh-predictor-validate-*.log"))
    assert "Traceback" in log.read_text() and str(log) in err

    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_validate", interrupted)
    status, err = _run(["validate", str(tmp_path)], capsys)
    assert status == 130 and "cancelled" in err


@pytest.mark.parametrize("delay_s", [0.3, 1.2])
def test_ctrl_c_while_the_libraries_load_says_cancelled(tmp_path: Path, delay_s: float) -> None:
    """The console script holds Ctrl-C while torch and SimpleITK import (the first seconds), so an
    early Ctrl-C ends with "cancelled" and 130 too, not a traceback or a C++ abort."""
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-m", "IDHPredictorLib.console", "validate", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err
    # the command may have finished before the signal on a fast machine: then it refused the empty folder
    assert (process.returncode == 130 and "cancelled" in err) or process.returncode == 2, (process.returncode, err)


def test_ctrl_c_after_the_command_returned_cannot_kill_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C while the finished process shuts down (default handler back in place) killed it with
    -SIGINT after it had printed its result (seen in CI); once the command returns, SIGINT is ignored."""
    import signal

    from IDHPredictorLib import cli, console

    monkeypatch.setattr(cli, "main", lambda: 2)
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert console.main() == 2
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_bundle_with_changed_weights_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    from IDHPredictorLib.errors import InputError
    from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model

    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_MODELS / "segmentation-flair-t1ce", bundle)
    load_model(bundle)  # intact: loads
    state = torch.load(bundle / "weights.pt", weights_only=True)
    torch.save({name: torch.zeros_like(value) for name, value in state.items()}, bundle / "weights.pt")  # all zeroed
    with pytest.raises(InputError, match="does not match the checksum"):
        load_model(bundle)


def test_clinical_table_and_sidecar_mistakes_are_named(small_cohort: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from IDHPredictorLib.errors import InputError
    from IDHPredictorLib.io.cohort import read_clinical
    from IDHPredictorLib.io.dsc import read_dsc_series

    table = (small_cohort / "clinical.csv").read_text(encoding="utf-8").splitlines()
    header, first = table[0].split(","), table[1].split(",")
    first[header.index("age")] = "nan"
    (tmp_path / "clinical.csv").write_text("\n".join([table[0], ",".join(first)]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a plausible age"):
        read_clinical(tmp_path / "clinical.csv")
    (tmp_path / "clinical.csv").write_bytes("\n".join([table[0], table[1] + ",Z\u00fcrich"]).encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_clinical(tmp_path / "clinical.csv")
    case = case_folders(small_cohort)[0]
    shutil.copy(case / f"{case.name}_dsc.nii.gz", tmp_path / "x_dsc.nii.gz")
    for sidecar, message in (('{"RepetitionTime": "1.4 s"}', "not a number"), ("[1.5, 0.03]", "not an object")):
        (tmp_path / "x_dsc.json").write_text(sidecar, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            read_dsc_series(tmp_path / "x_dsc.nii.gz")
    status, err = _run(["predict", str(case), "--heatmap", str(tmp_path / "h.png")], capsys)
    assert status == 2 and "need --perfusion-model" in err
    status, err = _run(["segment", str(case), "--out", str(tmp_path / "labels")], capsys)
    assert status == 2 and "no file extension" in err
    (tmp_path / "a-file").write_text("not a folder")
    status, err = _run(["segment", str(case), "--out", str(tmp_path / "a-file" / "seg.nii.gz")], capsys)
    assert status == 2 and "cannot be written" in err


def test_split_plans_are_checked_before_any_work() -> None:
    from IDHPredictorLib.errors import InputError
    from IDHPredictorLib.validation.splits import check_split_plan

    balanced = [1] * 5 + [0] * 5
    check_split_plan(balanced, "clinical.csv", folds=4, test_fraction=0.1)  # test split 1 + 1, folds over 4 + 4: fine
    for y, folds, fraction, message in (([1] * 8, 5, None, "one genotype only"),
                                        (balanced, 1, None, "at least 2 folds"),
                                        (balanced, 5, 1.5, "not between 0 and 1"),
                                        ([1] * 2 + [0] * 8, 5, 0.1, "at least 2 patients of each genotype"),
                                        (balanced, 5, 0.1, "Use --folds 4"),
                                        ([1] * 9 + [0], 2, None, "single patient of one genotype")):
        with pytest.raises(InputError, match=message):
            check_split_plan(y, "clinical.csv", folds=folds, test_fraction=fraction)


def test_every_option_named_in_a_message_exists() -> None:
    """Error messages and fixes may only suggest options the command line has."""
    import argparse
    import ast

    from IDHPredictorLib.cli import build_parser

    parser = build_parser()
    options = {o for a in parser._actions for o in a.option_strings}
    per_command: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                per_command[name] = {o for a in command._actions for o in a.option_strings}
                options.update(per_command[name])
    library = Path(__file__).resolve().parents[2] / "IDHPredictorLib"
    suggested = {}
    for path in library.rglob("*.py"):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # arguments of programs we run (e.g. git) are not messages to the user
        program_arguments = {id(element) for call in ast.walk(tree) if isinstance(call, ast.Call)
                             and getattr(call.func, "attr", None) == "run" and call.args and isinstance(call.args[0], ast.List)
                             for element in call.args[0].elts}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in program_arguments:
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    suggested.setdefault(option, path.name)
                for command, option in re.findall(r"\b([a-z][a-z-]*) (--[a-z][a-z0-9-]*)", node.value):
                    if command in per_command and option not in per_command[command]:
                        suggested[f"{command} {option}"] = path.name  # named with a command that lacks it
    assert suggested, "no message names an option: the scan is broken"
    unknown = {option: where for option, where in suggested.items() if option not in options}
    assert not unknown, f"messages suggest options no command has: {unknown}"


def test_intensities_scaled_by_1e30_give_the_clean_answer(small_cohort: Path) -> None:
    from dataclasses import replace

    from IDHPredictorLib.io.case import read_case
    from IDHPredictorLib.preprocessing.prepare import prepare_case
    from IDHPredictorLib.segmentation.inference import segment_prepared
    from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model

    model = load_model(DEFAULT_MODELS / "segmentation-flair-t1ce")
    case = read_case(case_folders(small_cohort)[0], ("flair", "t1ce"), dsc=False)
    clean = segment_prepared(model, prepare_case(case)).labels
    scaled = replace(case, images={**case.images, "flair": sitk.Cast(case.images["flair"] * 1e30, sitk.sitkFloat32)})
    result = segment_prepared(model, prepare_case(scaled))
    assert result.quality.verdict != "fail"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.labels), sitk.GetArrayFromImage(clean))


def test_dsc_series_with_reversed_frames_is_refused(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path, ("flair", "t1ce", "seg", "dsc"))
    source = case_folders(small_cohort)[0]
    shutil.copy(source / f"{source.name}_dsc.json", case)
    model = Path(__file__).resolve().parents[2] / "Resources" / "models" / "perfusion-lstm"
    assert main(["predict", str(case), "--skip-dlr", "--perfusion-model", str(model)]) == 0  # in order: analysed
    capsys.readouterr()
    dsc_path = case / f"{case.name}_dsc.nii.gz"
    dsc = sitk.ReadImage(str(dsc_path))
    frames = sitk.GetArrayFromImage(dsc)  # (t, z, y, x)
    reversed_series = sitk.GetImageFromArray(np.ascontiguousarray(frames[::-1]), isVector=False)
    reversed_series.CopyInformation(dsc)
    sitk.WriteImage(reversed_series, str(dsc_path))
    status, err = _run(["predict", str(case), "--skip-dlr", "--perfusion-model", str(model)], capsys)
    assert status == 2 and "frames look reversed" in err
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "frames look reversed" in err


def test_swapped_flair_and_t1ce_files_are_refused(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The tissue-contrast check refuses every swapped phantom case and passes every correct one;
    ``segment`` on a swapped copy ends with exit 2 and the reason."""
    from dataclasses import replace

    from IDHPredictorLib.io.case import read_case
    from IDHPredictorLib.quality import QualityReport
    from IDHPredictorLib.segmentation.data import axial_case
    from IDHPredictorLib.segmentation.inference import checked_network_input
    from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model

    model = load_model(DEFAULT_MODELS / "segmentation-flair-t1ce")
    verdicts = []
    for folder in case_folders(small_cohort):
        case = read_case(folder, model.modalities, labels=False, dsc=False)
        swapped = replace(case, images={"flair": case.images["t1ce"], "t1ce": case.images["flair"]})
        for candidate in (case, swapped):
            quality = QualityReport([])
            checked_network_input(model, axial_case(candidate, model.modalities), quality)
            verdicts.append(next(c.verdict for c in quality.checks if c.name == "flair_t1ce_contrast"))
    assert verdicts == ["pass", "fail"] * (len(verdicts) // 2), verdicts

    case = _copy_case(small_cohort, tmp_path, ("flair", "t1ce"))
    flair, t1ce = (case / f"{case.name}_{m}.nii.gz" for m in ("flair", "t1ce"))
    flair.rename(tmp_path / "flair"), t1ce.rename(flair), (tmp_path / "flair").rename(t1ce)
    status, err = _run(["segment", str(case), "--out", str(tmp_path / "seg.nii.gz")], capsys)
    assert status == 2 and "look swapped" in err and not (tmp_path / "seg.nii.gz").exists()


def test_dsc_frame_order_comes_from_the_sidecar_volume_timing(small_cohort: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """Frames stored out of order are put back in time order by BIDS ``VolumeTiming``;
    inconsistent timing (wrong count, repeated or uneven onsets, a TR it contradicts) is refused."""
    import json

    from IDHPredictorLib.io.dsc import read_dsc_series

    case = _copy_case(small_cohort, tmp_path, ("flair", "t1ce", "seg", "dsc"))
    source = case_folders(small_cohort)[0]
    sidecar = json.loads((source / f"{source.name}_dsc.json").read_text())
    dsc_path, sidecar_path = case / f"{case.name}_dsc.nii.gz", case / f"{case.name}_dsc.json"
    in_order = read_dsc_series(source / f"{source.name}_dsc.nii.gz")
    frames, tr = in_order.frames, in_order.repetition_time_s
    order = np.random.default_rng(0).permutation(len(frames))
    shuffled = sitk.GetImageFromArray(np.ascontiguousarray(frames[order]), isVector=False)
    shuffled.CopyInformation(in_order.image)
    sitk.WriteImage(shuffled, str(dsc_path))

    sidecar_path.write_text(json.dumps({**sidecar, "VolumeTiming": [float(i * tr) for i in order]}))
    np.testing.assert_array_equal(read_dsc_series(dsc_path).frames, frames)
    without_tr = {k: v for k, v in sidecar.items() if k != "RepetitionTime"}
    sidecar_path.write_text(json.dumps({**without_tr, "VolumeTiming": [float(i * tr) for i in order]}))
    assert read_dsc_series(dsc_path).repetition_time_s == pytest.approx(tr)

    onsets = [float(i * tr) for i in order]
    for timing, message in ((onsets[:-1], "onsets for"), ([onsets[0], *onsets[:-1]], "same onset"),
                            ([t * (1.5 if t > 10 * tr else 1.0) for t in onsets], "unevenly spaced"),
                            ([2 * t for t in onsets], "apart but the TR is")):
        sidecar_path.write_text(json.dumps({**sidecar, "VolumeTiming": timing}))
        status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
        assert status == 2 and message in err, err


def test_json_sidecars_and_the_descriptor_cache_are_checked_before_any_work(small_cohort: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    """A report or prediction written over the DSC sidecar (TR, TE) is refused like one over an
    image; a --cache that is a file is refused before descriptors are computed."""
    case = _copy_case(small_cohort, tmp_path, ("flair", "t1ce", "seg", "dsc"))
    source = case_folders(small_cohort)[0]
    sidecar = case / f"{case.name}_dsc.json"
    shutil.copy(source / sidecar.name, sidecar)
    before = sidecar.read_bytes()
    status, err = _run(["segment", str(case), "--out", str(tmp_path / "s.nii.gz"), "--report", str(sidecar)], capsys)
    assert status == 2 and "is one of the case's inputs" in err
    model = Path(__file__).resolve().parents[2] / "Resources" / "models" / "perfusion-lstm"
    status, err = _run(["predict", str(case), "--skip-dlr", "--perfusion-model", str(model), "--out", str(sidecar)], capsys)
    assert status == 2 and "is one of the case's inputs" in err and sidecar.read_bytes() == before
    (tmp_path / "afile").write_text("not a folder")
    status, err = _run(["dlr", str(small_cohort), "--out", str(tmp_path / "dlr"), "--cache", str(tmp_path / "afile" / "c")],
                       capsys)
    assert status == 2 and "cannot be written" in err


def test_validate_refuses_a_dsc_series_without_a_bolus(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = _copy_case(small_cohort, tmp_path, ("flair", "t1ce", "seg", "dsc"))
    dsc_path = case / f"{case.name}_dsc.nii.gz"
    dsc = sitk.ReadImage(str(dsc_path))
    frames = sitk.GetArrayFromImage(dsc)
    flat = sitk.GetImageFromArray(np.ascontiguousarray(np.repeat(frames[:1], len(frames), axis=0)), isVector=False)
    flat.CopyInformation(dsc)
    sitk.WriteImage(flat, str(dsc_path))
    status, err = _run(["validate", str(case), "--modalities", "flair", "t1ce"], capsys)
    assert status == 2 and "no contrast bolus" in err
