"""``idh-predictor`` command line. Bad input ends with one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .console import CANCELLED
from .errors import InputError
from .io.case import Case
from .quality import QualityReport
from .segmentation.network import LAYERS

PROGRESS_LINES = False  # set by --progress-lines: report progress to a parent process (background.py)


def tqdm_progress(description: str, unit: str = "step") -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing one tqdm bar (opened on first call, closed at the end),
    or printing machine-readable progress lines when run by ``background.BackgroundJob``."""
    if PROGRESS_LINES:
        from .background import progress_line

        return lambda done, total: print(progress_line(done, total, description), flush=True)
    bar: tqdm | None = None

    def advance(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit=unit)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return advance


def _phantom(args: argparse.Namespace) -> None:
    from .phantom.cohort import PhantomOptions, case_id, generate_cohort, write_traits_only
    from .phantom.preview import find_real_case, write_preview

    options = PhantomOptions(cases=args.cases, seed=args.seed, size=args.size, effect=args.effect, mix=args.mix,
                             permute_labels=args.permute_labels, mutant_fraction=args.mutant_fraction,
                             dual_echo=args.dual_echo)
    try:
        options.validate()
    except ValueError as error:
        raise SystemExit(f"idh-predictor phantom: {error}") from None
    start = time.perf_counter()
    if args.traits_only:
        if args.preview:
            raise SystemExit("idh-predictor phantom: --preview needs images; drop it or --traits-only")
        path = write_traits_only(args.out, options)
        print(f"wrote the traits of {options.cases} patients (no images) to {path} in {time.perf_counter() - start:.1f} s")
        return
    with tqdm(total=options.cases, desc="phantom patients", unit="case") as bar:
        if args.format == "dicom":
            from .phantom.dicom_study import write_cohort_as_studies

            Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
            # beside the output, not in /tmp: a cluster's workers write the NIfTI cohort there
            with tempfile.TemporaryDirectory(prefix=".idh-phantom-", dir=Path(args.out).resolve().parent) as scratch:
                generate_cohort(Path(scratch) / "cohort", options, workers=args.workers)
                write_cohort_as_studies(Path(scratch) / "cohort", args.out, options.seed, lambda done, total: bar.update(1))
        else:
            generate_cohort(args.out, options, progress=lambda done, total: bar.update(1), workers=args.workers)
    print(f"wrote {options.cases} cases to {args.out} in {time.perf_counter() - start:.1f} s"
          + (" as DICOM studies (reference labels in labels/)" if args.format == "dicom" else ""))
    if args.preview:
        real = find_real_case()
        png = write_preview(Path(args.out) / case_id(0), Path(args.out) / "preview.png", real)
        print(f"preview: {png}" + ("" if real else " (no real case found to show beside it)"))


def _validate(args: argparse.Namespace) -> None:
    from .io.case import read_case
    from .io.cohort import read_cohort

    path = Path(args.path)
    if (path / "clinical.csv").exists():
        cases = read_cohort(path)
        for entry in tqdm(cases, desc="reading cases", unit="case"):
            check_plausible(read_case(entry.folder))
        mutants = sum(c.idh_mutant for c in cases)
        print(f"{path}: cohort of {len(cases)} cases ({mutants} IDH-mutant, {len(cases) - mutants} wildtype), all valid")
    else:
        case = read_case(path, modalities=tuple(args.modalities))
        check_plausible(case)
        dsc = "none" if case.dsc is None else f"{case.dsc.image.GetSize()[3]} frames, TR {case.dsc.repetition_time_s:g} s"
        print(f"{case.case_id}: {', '.join(case.images)} on {case.reference.GetSize()} grid; "
              f"labels {'yes' if case.labels is not None else 'none'}; DSC {dsc}")


def check_plausible(case: Case) -> None:
    """What ``validate`` adds to reading the files, so that it passes nothing ``predict`` would
    refuse: a tumour mask of plausible size, and a DSC series whose bolus is not at its end."""
    import numpy as np
    import SimpleITK as sitk

    from .perfusion.kinetics import bolus_arrival, check_bolus_position
    from .preprocessing.brain import detect_brain
    from .segmentation.checks import check_tumour

    if case.labels is not None:
        quality = QualityReport([])
        brain = detect_brain(case.reference).foreground
        check_tumour(quality, sitk.GetArrayViewFromImage(case.labels), brain, float(np.prod(case.labels.GetSpacing())) / 1000)
        quality.raise_if_failed(case.files.get("seg", case.folder))
    if case.dsc is not None:
        frames = case.dsc.frames.astype(np.float32)
        brain_curve = frames[:, frames[1:4].mean(axis=0) > 0].mean(axis=1)
        bolus_arrival(brain_curve, case.dsc.source)  # refuses a series with no bolus, as predict does
        check_bolus_position(brain_curve, case.dsc.source)


def _preprocess(args: argparse.Namespace) -> None:
    from .preprocessing.prepare import prepare_case_folder, write_prepared
    from .segmentation.model_bundle import find_case_roles

    if _is_cohort(args.case_dir):
        return _run_batch(args, "preprocess", {"modalities": args.modalities, "mode": args.mode})

    check_output_paths(args.case_dir, [], folders=(Path(args.out),))
    check_output_folder(Path(args.out), replaced_if_marked="*_preprocessing.json")
    modalities = tuple(args.modalities) if args.modalities else tuple(sorted(find_case_roles(args.case_dir)))
    prepared = prepare_case_folder(args.case_dir, modalities, args.mode, progress=tqdm_progress("preprocessing", "step"))
    print_quality(prepared.quality)
    out = write_prepared(prepared, args.out)
    for step in prepared.steps:
        print(f"  {step['step']:12s} {step['seconds']:6.1f} s  {step['detail']}")
    print(f"wrote {prepared.case.case_id} ({prepared.input_kind.value}; {', '.join(prepared.case.images)}, brain mask) to {out}")


def print_quality(quality: QualityReport) -> None:
    """Quality verdicts on stderr, so that they show beside progress bars and JSON on stdout."""
    print(f"quality control: {quality.verdict}", file=sys.stderr)
    for line in quality.lines():
        print(f"  {line}", file=sys.stderr)


def _train_segmentation(args: argparse.Namespace) -> None:
    from .segmentation.training import TrainingOptions, train
    from .segmentation.volumetric import VolumetricOptions, train_volumetric

    with tqdm(desc="training", bar_format="{desc} [{elapsed}]") as bar:
        if args.network == "segresnet":
            options = VolumetricOptions(modalities=tuple(args.modalities), steps=args.steps, seed=args.seed,
                                        device=args.device, max_minutes=args.max_minutes,
                                        tumour_appearance=args.tumour_appearance, crop=args.crop,
                                        bright_structures=args.bright_structures, thin_rims=args.thin_rims,
                                        non_enhancing_band=args.non_enhancing_band,
                                        batch_size=args.batch_size, learning_rate=args.learning_rate,
                                        initial_bundle=args.fine_tune, precision=args.precision)
            record = train_volumetric(args.cohort, args.out, options, progress=bar.set_description_str)
        else:
            options = TrainingOptions(modalities=tuple(args.modalities), fc_width=args.fc_width, epochs=args.epochs,
                                      patches_per_epoch=args.patches_per_epoch, seed=args.seed, device=args.device,
                                      randomise=not args.no_randomise, max_minutes=args.max_minutes,
                                      tumour_appearance=args.tumour_appearance)
            record = train(args.cohort, args.out, options, resume=args.resume, stop_after=args.stop_after,
                           progress=bar.set_description_str)
    dice = record["metrics"]["validation_simulated"]["dice"]
    print(f"wrote {args.out}; validation Dice " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))


def _segment(args: argparse.Namespace) -> None:
    from .case_commands import SegmentOptions, segment_case

    options = SegmentOptions(args.model, args.preprocess, not args.no_postprocess, args.device)
    if _is_cohort(args.case_dir):
        if args.report or args.overlay:
            raise SystemExit(f"idh-predictor segment: {args.case_dir} is a cohort: each case's report goes to "
                             "DIR/<case>/<case>_seg.report.json; drop --report and --overlay")
        return _run_batch(args, "segment", options)
    report = Path(args.report) if args.report else report_path_for(Path(args.out))
    check_output_paths(args.case_dir, [Path(p) for p in (args.out, report, args.overlay) if p])
    record, (prepared, result, bundle) = segment_case(args.case_dir, Path(args.out), report, options, tqdm_progress)
    print_quality(result.quality)
    print(f"wrote {args.out} (labels on the original {record['case_id']} reference grid) and {report}")
    if args.overlay:
        import SimpleITK as sitk

        from .segmentation.figures import overlay_figure

        case = prepared.case
        flair = case.images.get("flair", case.reference)
        reference = None if case.labels is None else sitk.GetArrayFromImage(case.labels)
        overlay_figure(sitk.GetArrayFromImage(flair), sitk.GetArrayFromImage(result.prepared_labels), reference,
                       args.overlay, f"{case.case_id}: {bundle.name}")
        print(f"overlay: {args.overlay}")


def _is_cohort(path: str) -> bool:
    from .batch import is_cohort

    return is_cohort(path)


def _run_batch(args: argparse.Namespace, command: str, options: object) -> None:
    """``preprocess``/``segment``/``predict`` over a cohort: every case into ``--out DIR/<case>/``, resumable."""
    from dataclasses import asdict, is_dataclass

    from .batch import SUMMARY, run_batch

    out = Path(args.out)
    check_output_folder(out)
    settings = asdict(options) if is_dataclass(options) else dict(options)
    for key in ("model", "dlr_model", "fusion_model", "perfusion_model"):
        if settings.get(key):
            settings[key] = str(Path(settings[key]).resolve())
    summary = run_batch(command, args.case_dir, out, settings, args.workers, tqdm_progress(f"{command} cohort", "case"),
                        ages_needed=bool(settings.get("fusion_model")))
    print(f"{command}: {len(summary.computed)} cases done now, {len(summary.skipped)} already done (skipped), "
          f"{len(summary.failures)} failed; outputs in {out}/<case>/, summary {out / SUMMARY}")
    if summary.not_cases:
        print(f"  left out (no images, not case folders): {', '.join(summary.not_cases)}", file=sys.stderr)
    for failure in summary.failures:
        print(f"  failed {failure.label}: {failure.message}", file=sys.stderr)
    if summary.failures:
        raise SystemExit(f"idh-predictor {command}: {len(summary.failures)} cases failed (listed above and in {out / SUMMARY})")


def check_output_paths(case_dir: str | Path, outputs: list[Path], folders: tuple[Path, ...] = ()) -> None:
    """Before any work: refuse output files that are one of the case's inputs (images, label map,
    JSON sidecars), existing folders or names without an image extension, and output locations
    that cannot be written."""
    from .io.case import find_case_files
    from .io.dsc import sidecar_path
    from .io.images import IMAGE_SUFFIXES

    _, files = find_case_files(case_dir)
    inputs = {path.resolve() for path in files.values()} | {Path(case_dir).resolve()}
    inputs |= {sidecar.resolve() for sidecar in map(sidecar_path, files.values()) if sidecar.is_file()}  # TR, TE
    for output in [*outputs, *folders]:
        if output.resolve() in inputs:
            raise InputError(output, "is one of the case's inputs", "Write the output to another path")
        check_writable(output)
    for output in outputs:
        if output.is_dir():
            raise InputError(output, "is an existing folder", "Give a file name, e.g. SEG.nii.gz")
        if not output.name.lower().endswith((*IMAGE_SUFFIXES, ".json", ".png")):
            raise InputError(output, "has no file extension this output can take",
                             f"End the name with one of {', '.join(IMAGE_SUFFIXES)} (images), .json or .png")
    for folder in folders:
        check_output_folder(folder)


def check_writable(output: Path) -> None:
    """``output`` can be created: its nearest existing ancestor is a folder we may write to."""
    parent = next((p for p in output.resolve().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(output, f"cannot be written ({parent} is not a folder you can write to)",
                         "Choose a folder you can write to")


def check_output_folder(folder: Path, replaced_if_marked: str | None = None) -> None:
    """Before any work: ``folder`` is a folder (or can be made) that we may write to. With
    ``replaced_if_marked`` (a file pattern), the command replaces the folder as a whole, so an
    existing one must be empty or an earlier output of the command (holding a marked file):
    replacing anything else would delete the user's files."""
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "exists and is not a folder", "Give a folder name for the output")
    check_writable(folder / "x")
    if replaced_if_marked and folder.is_dir() and any(folder.iterdir()) and not any(folder.glob(replaced_if_marked)):
        raise InputError(folder, "is a folder that holds other files, which writing the output would delete",
                         "Give a new or empty folder")


def report_path_for(labels: Path) -> Path:
    """``SEG.nii.gz`` -> ``SEG.report.json`` beside it."""
    name = labels.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return labels.with_name(f"{name}.report.json")


def _evaluate_segmentation(args: argparse.Namespace) -> None:
    from .segmentation.evaluation import evaluate_cohort, evaluate_files

    if args.model:
        if not args.out:
            raise SystemExit("idh-predictor evaluate-segmentation: cohort mode needs --out DIR for its CSV and summary")
        check_output_folder(Path(args.out))
        summary = evaluate_cohort(args.prediction, args.model, args.out, args.record_as,
                                  tqdm_progress(f"evaluating {Path(args.model).name}", "case"), args.workers)
        print(json_dumps(summary))
    else:
        if args.reference is None:
            raise SystemExit("idh-predictor evaluate-segmentation: give PRED REF, or COHORT --model BUNDLE --out DIR")
        print(json_dumps(evaluate_files(args.prediction, args.reference)))


def _tune_segmentation(args: argparse.Namespace) -> None:
    from .segmentation.enhancing_rule import choose_min_enhancing
    from .segmentation.model_bundle import load_model
    from .segmentation.sliding_window import choose_window

    if load_model(args.model).is_volumetric:
        window = choose_window(args.cohort, args.model, args.record, args.workers, print)
        print(f"chosen sliding window: {window['window']} voxels" + (
            f", recorded in {Path(args.model) / 'model.json'}" if args.record
            else " (not recorded; add --record: the enhancing volume below was measured with the bundle's own window)"))
    result = choose_min_enhancing(args.cohort, args.model, args.record, args.workers,
                                  tqdm_progress(f"segmenting with {Path(args.model).name}", "case"))
    scores = ", ".join(f"{ml} mL {dice:.3f}" for ml, dice in result["mean_enhancing_dice_by_ml"].items())
    print(f"mean enhancing Dice on {result['cases']} simulated cases ({result['cases_without_enhancing']} without "
          f"enhancing tumour) by smallest enhancing volume: {scores}")
    print(f"chosen: {result['min_enhancing_ml']} mL" + (f", recorded in {Path(args.model) / 'model.json'}"
                                                       if args.record else " (not recorded; add --record)"))


def _average_segmentation(args: argparse.Namespace) -> None:
    from .segmentation.weight_averaging import average_bundles

    check_output_folder(Path(args.out), replaced_if_marked="model.json")  # a bundle may be replaced, nothing else
    out = average_bundles(args.start, args.fine_tuned, args.out, args.share)
    print(f"wrote {out}; choose its window and smallest enhancing volume next: "
          f"idh-predictor tune-segmentation COHORT --model {out} --record")


def auc_text(metrics: dict) -> str:
    """``0.912 (95% CI 0.861-0.955)``, ``0.900 (no interval: ...)`` or ``n/a``."""
    auc = metrics["auc"]
    if auc["value"] is None:
        return "n/a"
    if auc["ci_low"] is None:
        return f"{auc['value']:.3f} ({auc.get('ci_note') or 'no interval'})"
    return f"{auc['value']:.3f} (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f})"


def _dlr(args: argparse.Namespace) -> None:
    from .dlr.evaluate import DlrSettings, evaluate_dlr
    from .validation.permutation import permutation_text

    check_output_folder(Path(args.out))
    if args.cache:
        check_output_folder(Path(args.cache))
    if args.save_model:
        check_output_folder(Path(args.save_model), replaced_if_marked="model.json")

    settings = DlrSettings(
        model=Path(args.model) if args.model else DlrSettings.model,
        single_modality_model=None if args.no_single_modality else (Path(args.single_modality_model) if args.single_modality_model
                                                                   else DlrSettings.single_modality_model),
        layer=args.layer, validation=args.validation, split_date=args.split_date,
        folds=args.folds, repeats=args.repeats, k=args.k, components=args.components,
        radiomics=not args.no_radiomics, compare_layers=args.compare_layers, permute_labels=args.permute_labels,
        permutation_shuffles=args.permutation_test, seed=args.seed, cache_dir=Path(args.cache) if args.cache else None, workers=args.workers)
    started = time.perf_counter()
    results = evaluate_dlr(Path(args.cohort), Path(args.out), settings, lambda name: tqdm_progress(name),
                           Path(args.save_model) if args.save_model else None)
    for result in results:
        print(f"{result.name:45s} AUC {auc_text(result.metrics)}")
        if "permutation_test" in result.extra:
            print(f"  {permutation_text(result.extra['permutation_test'])}")
    print(f"report: {Path(args.out) / 'report.json'}, {Path(args.out) / 'table.md'}, {Path(args.out) / 'roc.png'} "
          f"({time.perf_counter() - started:.0f} s)")
    if args.save_model:
        print(f"model bundle: {args.save_model}")


def _perfusion(args: argparse.Namespace) -> None:
    from .perfusion.evaluate import PerfusionSettings, evaluate_perfusion
    from .perfusion.patterns import pattern_test_text
    from .perfusion.training import LstmTraining
    from .validation.permutation import permutation_text

    check_output_folder(Path(args.out))
    if args.save_model:
        check_output_folder(Path(args.save_model), replaced_if_marked="model.json")

    settings = PerfusionSettings(folds=args.folds, test_fraction=args.test_fraction, permute_labels=args.permute_labels,
                                 permutation_shuffles=args.permutation_test, seed=args.seed, workers=args.workers,
                                 training=LstmTraining(epochs=args.epochs, seed=args.seed, device=args.device))
    started = time.perf_counter()
    summary = evaluate_perfusion(Path(args.cohort), Path(args.out), settings, lambda name: tqdm_progress(name),
                                 Path(args.save_model) if args.save_model else None)
    for result in summary["results"]:
        print(f"{result.section:28s} {result.name:45s} AUC {auc_text(result.metrics)}")
        if "permutation_test" in result.extra:
            print(f"  {permutation_text(result.extra['permutation_test'])}")
    for name, test in summary["delong"].items():
        print(f"DeLong LSTM vs {name}: difference {test['difference']:+.3f}, p = {test['p_value']:.3g}")
    for ranking, key in (("mean", "patterns"), ("summed", "patterns_by_summed_attention")):
        print(f"temporal patterns by genotype ({ranking} attention per segment): {pattern_test_text(summary[key])}")
    print(f"report: {Path(args.out)} ({time.perf_counter() - started:.0f} s)")


def _fusion(args: argparse.Namespace) -> None:
    from .fusion.evaluate import FusionSettings, evaluate_fusion
    from .perfusion.training import LstmTraining

    check_output_folder(Path(args.out))
    if args.save_model:
        check_output_folder(Path(args.save_model), replaced_if_marked="model.json")
    settings = FusionSettings(folds=args.folds, inner_folds=args.inner_folds, coverage=args.coverage,
                              radiomics=args.radiomics, seed=args.seed, workers=args.workers,
                              training=LstmTraining(epochs=args.epochs, seed=args.seed, device=args.device))
    started = time.perf_counter()
    summary = evaluate_fusion(Path(args.cohort), Path(args.out), settings, lambda name: tqdm_progress(name),
                              Path(args.save_model) if args.save_model else None)
    for result in summary["results"]:
        calibration = result.extra.get("calibration")
        calibration_text = f"  Brier {calibration['brier']:.3f}  ECE {calibration['ece']:.3f}" if calibration else ""
        print(f"{result.name:45s} AUC {auc_text(result.metrics)}{calibration_text}")
    coverage = summary["coverage"]
    print(f"prediction sets at {settings.coverage:.0%}: coverage wildtype {coverage['wildtype']:.3f}, mutant "
          f"{coverage['mutant']:.3f}, overall {coverage['overall']:.3f}; uncertain {summary['uncertain_fraction']:.1%}")
    print(f"report: {Path(args.out)} ({time.perf_counter() - started:.0f} s)")
    if args.save_model:
        print(f"model bundle: {args.save_model}")


def _validate_deployment(args: argparse.Namespace) -> None:
    from .dlr.predict import DEFAULT_DLR_MODEL
    from .fusion.bundle import DEFAULT_FUSION_MODEL
    from .fusion.deployment import CNN, MASK_SOURCES, record_deployment_validation, validate_deployment

    out = Path(args.out)
    check_output_folder(out)
    fusion_bundle = Path(args.fusion_model or DEFAULT_FUSION_MODEL)
    dlr_bundle = None if args.no_dlr_model else Path(args.dlr_model or DEFAULT_DLR_MODEL)
    started = time.perf_counter()
    summary = validate_deployment(Path(args.cohort), out, fusion_bundle, dlr_bundle, tqdm_progress("cases"), args.seed)
    for model, entry in summary["models"].items():
        cells = "   ".join(f"{source} masks AUC {auc_text(entry[source])} ECE {entry[source]['ece']:.3f}" for source in MASK_SOURCES)
        print(f"{model:32s} {cells}   DeLong p {entry['delong_cnn_vs_reference']['p_value']:.3f}")
    if summary["refused_on_cnn_masks"]:
        print(f"refused on the {CNN} path (left out of both columns): {', '.join(summary['refused_on_cnn_masks'])}")
    print(f"{summary['patients']} {summary['labels']} patients; report: {out} ({time.perf_counter() - started:.0f} s)")
    if args.record:
        record_deployment_validation(summary, fusion_bundle, dlr_bundle)
        print(f"recorded in {fusion_bundle}/model.json" + (f" and {dlr_bundle}/model.json" if dlr_bundle else ""))


def _predict(args: argparse.Namespace) -> None:
    import json

    from .case_commands import PredictOptions, predict_case, quality_reports

    if not args.dlr_model and not args.perfusion_model and args.skip_dlr:
        raise SystemExit("idh-predictor predict: nothing to do (give --perfusion-model or drop --skip-dlr)")
    if (args.heatmap or args.rcbv_map) and not args.perfusion_model:
        raise SystemExit("idh-predictor predict: --heatmap and --rcbv-map need --perfusion-model BUNDLE")
    if args.coverage is not None and not args.fusion_model:
        raise SystemExit("idh-predictor predict: --coverage applies to the fused answer; give --fusion-model BUNDLE")
    if args.fusion_model and (args.skip_dlr or args.dlr_model):
        raise SystemExit("idh-predictor predict: --fusion-model brings its own DLR model (drop --dlr-model and --skip-dlr)")
    options = PredictOptions(args.dlr_model, args.fusion_model, args.perfusion_model, args.skip_dlr, args.preprocess,
                             args.coverage)
    if _is_cohort(args.case_dir):
        per_case = [name for name, value in (("--labels", args.labels), ("--heatmap", args.heatmap),
                                             ("--rcbv-map", args.rcbv_map), ("--age", args.age),
                                             ("--dicom-out", args.dicom_out)) if value is not None]
        if per_case or not args.out:
            raise SystemExit(f"idh-predictor predict: {args.case_dir} is a cohort: give --out DIR for the per-case "
                             f"folders{' and drop ' + ', '.join(per_case) if per_case else ''} (ages come from clinical.csv)")
        return _run_batch(args, "predict", options)
    if args.fusion_model and args.age is None:
        raise SystemExit("idh-predictor predict: --fusion-model needs --age YEARS")
    if args.dicom_out and getattr(args, "study", None) is None:
        raise SystemExit("idh-predictor predict: --dicom-out needs a DICOM study folder as input (its series are referenced)")
    check_output_paths(args.case_dir, [Path(p) for p in (args.out, args.labels, args.heatmap, args.rcbv_map) if p])
    if args.dicom_out:
        check_output_folder(Path(args.dicom_out))
        if not args.labels:  # the SEG needs the mask the prediction used
            args.labels = str(Path(args.case_dir).parent / "labels.nii.gz")
    result = predict_case(args.case_dir, options, args.age, Path(args.labels) if args.labels else None,
                          Path(args.heatmap) if args.heatmap else None, Path(args.rcbv_map) if args.rcbv_map else None,
                          tqdm_progress)
    for quality in quality_reports(result):
        print_quality(quality)
    if args.dicom_out:
        _write_dicom(args, result)
    text = json.dumps(result, indent=2)
    if args.out:
        from .io.atomic import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    print(text)


def _write_dicom(args: argparse.Namespace, result: dict) -> None:
    """SEG and SR for a study input, on the reference series the labels were written on."""
    from .io.case import REFERENCE_ORDER, read_label_map
    from .io.dicom_export import export_dicom

    reference = next(role for role in REFERENCE_ORDER if role in args.study)
    out = export_dicom(read_label_map(Path(args.labels)), args.study[reference].files, result, args.dicom_out)
    print(f"wrote DICOM SEG and SR on series #{args.study[reference].number} ({reference}) to {out}", file=sys.stderr)


def _web(args: argparse.Namespace) -> None:
    try:
        from .web.app import run_web_app
    except ImportError as error:
        raise InputError("idh-predictor web", f"needs the web extra ({error.name} is not installed)",
                         "pip install 'idhpredictor[web]'") from error
    run_web_app(args.data_dir, args.host, args.port, args.reports)


def _demo(args: argparse.Namespace) -> None:
    from .demo import DemoSettings, run_demo

    if args.cases is not None and args.cases < 12:
        raise SystemExit("idh-predictor demo: --cases must be at least 12 (folds need both genotypes)")
    workers = args.workers or min(4, os.cpu_count() or 1)
    settings = DemoSettings.quick(args.cases, workers, args.seed) if args.quick else \
        DemoSettings(**({"cases": args.cases} if args.cases else {}), workers=workers, seed=args.seed)
    started = time.perf_counter()
    report = run_demo(args.out, settings, lambda name: tqdm_progress(name), " ".join(["idh-predictor", *sys.argv[1:]]))
    print(f"report: {report} ({time.perf_counter() - started:.0f} s)")


def json_dumps(value: object) -> str:
    """Pretty JSON for terminal output."""
    import json

    return json.dumps(value, indent=2)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value exits 2 with argparse's usage line)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, got {value}")
    return value


def crop_size(text: str) -> int:
    """argparse type: a 3-D crop edge, a positive multiple of 16 (SegResNet halves the grid three times)."""
    value = positive_int(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"must be a multiple of 16, got {value}")
    return value


def share(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def k_option(text: str) -> int | str:
    """argparse type for --k: "auto" or a number of features >= 1."""
    return "auto" if text == "auto" else positive_int(text)


def iso_date(text: str) -> dt.date:
    """argparse type: a date as YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _add_series_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series", action="append", default=[], metavar="ROLE=SERIES",
                        help="for a DICOM study folder: the series (SeriesInstanceUID or series number) to use as "
                        "t1, t1ce, t2, flair or dsc, overriding recognition; repeatable")


def _add_scheduler_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run per-case work and cross-validation folds on this Dask cluster (e.g. tcp://head:8786; "
                        "default: $IDH_PREDICTOR_SCHEDULER, else this machine). Cohort and outputs must be on a file "
                        "system every worker sees; pip install 'idhpredictor[cluster]'")


def _add_cluster_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workers", type=positive_int, default=1, help=f"local processes for the {what} (default 1)")
    _add_scheduler_option(parser)


def cluster_paths(args: argparse.Namespace) -> list[Path]:
    """The inputs and outputs a cluster's workers must see: the cohort or case, the model bundles
    named, and the output location (its nearest existing folder, as the command creates it)."""
    paths = []
    for name in ("cohort", "case_dir", "prediction", "out", "model", "single_modality_model", "dlr_model",
                 "fusion_model", "perfusion_model"):
        value = getattr(args, name, None)
        if value:
            path = Path(value).resolve()
            paths.append(next(p for p in (path, *path.parents) if p.exists()))
    return paths


@contextlib.contextmanager
def study_input(args: argparse.Namespace) -> Iterator[None]:
    """For a DICOM study given as the case: recognise its series (listing them on stderr), and run
    the command on a temporary case folder of links to them (``args.study``: the assignment)."""
    from .io.dicom_study import as_case_folder, listing

    attribute = "path" if args.command == "validate" else "case_dir"
    overrides = {}
    for item in args.series:
        role, separator, key = item.partition("=")
        if not separator or not key:
            raise SystemExit(f"idh-predictor {args.command}: --series takes ROLE=SERIES, e.g. flair=7 (got {item!r})")
        overrides[role.strip().lower()] = key.strip()
    with as_case_folder(getattr(args, attribute), overrides) as study:
        if study.assigned is not None:
            print(f"DICOM study {getattr(args, attribute)}:\n{listing(study.series, study.assigned)}", file=sys.stderr)
        setattr(args, attribute, str(study.folder))
        args.study = study.assigned
        yield


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with one sub-command per pipeline stage."""
    parser = argparse.ArgumentParser(prog="idh-predictor", description="IDH mutation prediction for gliomas (research use).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    parser.add_argument("--progress-lines", action="store_true",
                        help="print progress as plain lines (for a parent process such as Slicer), not bars")
    commands = parser.add_subparsers(dest="command", required=True)

    phantom = commands.add_parser("phantom", help="generate a simulated glioma cohort")
    phantom.add_argument("--out", required=True, help="output cohort folder (replaced when complete)")
    phantom.add_argument("--cases", type=int, default=20)
    phantom.add_argument("--format", choices=("nifti", "dicom"), default="nifti",
                         help="nifti: BraTS-layout case folders; dicom: one DICOM study per patient as a scanner sends it "
                         "(a localiser and a diffusion series besides T1, T1c, T2, FLAIR and DSC), the reference "
                         "labels in labels/<id>_seg.nii.gz")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--size", choices=("full", "small"), default="full",
                         help="full: BraTS 240x240x155 at 1 mm; small: same field of view at 2.5 mm")
    phantom.add_argument("--effect", type=float, default=1.0, help="genotype effect size (0 none, 1 literature)")
    phantom.add_argument("--mix", choices=("choi", "li"), default="choi",
                         help="grade/genotype mix: choi (grades II-IV), li (grade II, 74%% mutant)")
    phantom.add_argument("--mutant-fraction", type=float, default=None,
                         help="share of IDH-mutant patients (default: the mix's prevalence; 0.5 for a balanced sample)")
    phantom.add_argument("--permute-labels", action="store_true", help="shuffle IDH labels (leakage check)")
    phantom.add_argument("--dual-echo", action="store_true",
                         help="also write a short-echo DSC series (<id>_dsc-short): dual-echo DSC, T1 effects separable")
    phantom.add_argument("--traits-only", action="store_true",
                         help="write only clinical.csv (the same rows as the full cohort for this seed), no images")
    phantom.add_argument("--preview", action="store_true", help="write preview.png beside a real case if available")
    phantom.add_argument("--workers", type=positive_int, default=None, help="parallel processes (default: one per core, max 4)")
    _add_scheduler_option(phantom)
    phantom.set_defaults(run=_phantom)

    validate = commands.add_parser("validate", help="read and check a case folder or a cohort")
    validate.add_argument("path", help="case folder, cohort folder, or a DICOM study folder (shows the series found "
                          "and the role given to each)")
    validate.add_argument("--modalities", nargs="+", default=["t1", "t1ce", "t2", "flair"])
    _add_series_option(validate)
    validate.set_defaults(run=_validate)

    prep = commands.add_parser("preprocess", help="raw or normalised scans -> BraTS-ready case: brain detection, "
                               "reorientation, co-registration, skull stripping, N4, 1 mm resampling")
    prep.add_argument("case_dir", help="case folder, a DICOM study folder, or a cohort folder (every case, resumable)")
    prep.add_argument("--out", required=True, help="output case folder (BraTS layout + <id>_brainmask + <id>_preprocessing.json); "
                      "for a cohort, a cohort folder (one such folder per case, clinical.csv copied, batch.json)")
    prep.add_argument("--modalities", nargs="+", choices=("t1", "t1ce", "t2", "flair"),
                      help="series to process (default: all the case has)")
    prep.add_argument("--mode", choices=("auto", "always"), default="auto",
                      help="auto: the whole chain only when the input needs it (skull, thick slices, several grids)")
    _add_series_option(prep)
    _add_cluster_options(prep, "cases (cohort input)")
    prep.set_defaults(run=_preprocess)

    train = commands.add_parser("train-segmentation", help="train the segmentation CNN on a labelled cohort")
    train.add_argument("cohort")
    train.add_argument("--out", required=True, help="model bundle folder to write")
    train.add_argument("--modalities", nargs="+", default=["flair", "t1ce"])
    train.add_argument("--fc-width", type=int, default=512, help="fully connected width (paper: 4096)")
    train.add_argument("--epochs", type=positive_int, default=6)
    train.add_argument("--patches-per-epoch", type=int, default=259200, help="patch labels per epoch (81 per tile)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--resume", action="store_true", help="continue from <out>.checkpoint.pt")
    train.add_argument("--stop-after", type=int, help="end this run after N epochs (resume later)")
    train.add_argument("--no-randomise", action="store_true", help="switch off domain randomisation")
    randomisation_shares = (  # (flag, default share of training crops, networks, what those crops get)
        ("--tumour-appearance", 0.5, "li2017 and segresnet", "tumour classes with a real-world mean "
                                                             "intensity (fluid-dark necrosis, faint oedema, enhancing not "
                                                             "bright on FLAIR)"),
        ("--bright-structures", 0.5, "segresnet", "contrast-enhancing normal structures on T1c (vessels, choroid "
                                                  "plexus, dura), which the phantom lacks"),
        ("--thin-rims", 0.0, "segresnet", "enhancing rims thinned to 1-3 voxels, their inside becoming core (the "
                                          "phantom's rims are thicker than real ones)"),
        ("--non-enhancing-band", 0.0, "segresnet", "non-enhancing tumour beyond the enhancing rim (oedema-like, "
                                                   "darker on T1c), beyond what the phantom has"),
    )
    for flag, default, networks, what in randomisation_shares:
        train.add_argument(flag, type=share, default=default, metavar="SHARE",
                           help=f"{networks}: share of training crops given {what}; 0 switches it off "
                                f"(default {default})")
    train.add_argument("--network", choices=("li2017", "segresnet"), default="li2017",
                       help="li2017: the paper's 2-D patch CNN; segresnet: MONAI's 3-D SegResNet (needs monai)")
    train.add_argument("--steps", type=positive_int, default=3000, help="segresnet: training steps")
    train.add_argument("--crop", type=crop_size, default=128, help="segresnet: cube edge of the training crops "
                       "and of the sliding window (a multiple of 16)")
    train.add_argument("--batch-size", type=positive_int, default=2, help="segresnet: crops per step")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="segresnet: AdamW peak learning rate")
    train.add_argument("--fine-tune", metavar="BUNDLE", help="segresnet: start from this 3-D bundle's weights "
                       "(e.g. to add a randomisation on a CPU; use a lower --learning-rate)")
    train.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                       help="segresnet: auto (default) trains in bfloat16 autocast where the device computes it "
                       "natively (CUDA; CPUs with AVX-512 BF16 or AMX, 2.4x faster there), else in float32")
    train.add_argument("--max-minutes", type=float,
                       help="end training after this wall time (li2017: after the epoch in progress)")
    train.set_defaults(run=_train_segmentation)

    segment = commands.add_parser("segment", help="segment a case with a model bundle")
    segment.add_argument("case_dir", help="case folder, a DICOM study folder, or a cohort folder (every case, resumable)")
    segment.add_argument("--model", help="bundle folder (default: the shipped one matching the case's modalities)")
    segment.add_argument("--out", required=True, help="output label map, e.g. SEG.nii.gz; for a cohort, a folder "
                         "(DIR/<case>/<case>_seg.nii.gz, DIR/batch.json; a second run skips finished cases)")
    segment.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    segment.add_argument("--no-postprocess", action="store_true")
    segment.add_argument("--overlay", help="also write a PNG of the prediction (and the case's _seg if present)")
    segment.add_argument("--preprocess", choices=("auto", "always", "never"), default="auto",
                         help="auto: raw scans (skull, thick slices, several grids) go through preprocessing first")
    segment.add_argument("--report", help="JSON with preprocessing steps and quality verdicts (default: SEG.report.json)")
    _add_series_option(segment)
    _add_cluster_options(segment, "cases (cohort input)")
    segment.set_defaults(run=_segment)

    evaluate = commands.add_parser("evaluate-segmentation",
                                   help="Dice/PPV/sensitivity of PRED vs REF, or of a bundle on a labelled cohort")
    evaluate.add_argument("prediction", help="predicted label map, or a cohort folder with --model")
    evaluate.add_argument("reference", nargs="?", help="reference label map")
    evaluate.add_argument("--model", help="bundle to evaluate on the cohort")
    evaluate.add_argument("--out", help="cohort mode: folder for per-case CSV and summary JSON")
    evaluate.add_argument("--record-as", help="cohort mode: also store the summary in the bundle's model.json")
    _add_cluster_options(evaluate, "cases")
    evaluate.set_defaults(run=_evaluate_segmentation)

    tune = commands.add_parser("tune-segmentation", help="choose a bundle's sliding window (3-D) and smallest enhancing volume on a "
                               "simulated cohort (smaller enhancing regions become core)")
    tune.add_argument("cohort", help="labelled simulated cohort (idh-predictor phantom); never the real cases")
    tune.add_argument("--model", required=True, help="segmentation bundle")
    tune.add_argument("--record", action="store_true", help="write the choice into the bundle's model.json")
    _add_cluster_options(tune, "cases")
    tune.set_defaults(run=_tune_segmentation)

    average = commands.add_parser("average-segmentation", help="average a 3-D bundle's weights with those of one "
                                  "fine-tuned from it (WiSE-FT), into a new bundle")
    average.add_argument("start", help="3-D bundle the fine-tuning started from")
    average.add_argument("fine_tuned", help="3-D bundle fine-tuned from it (train-segmentation --fine-tune)")
    average.add_argument("--out", required=True, help="folder for the averaged bundle")
    average.add_argument("--share", type=share, default=0.5, help="weight of the fine-tuned bundle (0-1)")
    average.set_defaults(run=_average_segmentation)

    dlr = commands.add_parser("dlr", help="evaluate deep-learning radiomics (and the radiomics baseline) on a cohort")
    dlr.add_argument("cohort", help="cohort folder: case folders with _seg masks + clinical.csv")
    dlr.add_argument("--out", required=True, help="folder for report.json, table.md, roc.png")
    dlr.add_argument("--model", help="segmentation bundle used as filter bank (default: FLAIR+T1c)")
    dlr.add_argument("--single-modality-model", help="second bundle for single-modality DLR (default: FLAIR)")
    dlr.add_argument("--no-single-modality", action="store_true", help="skip single-modality DLR")
    dlr.add_argument("--layer", choices=LAYERS, default="conv6", help="layer whose responses are the descriptors")
    dlr.add_argument("--compare-layers", action="store_true", help="also evaluate every layer (paper Table 3)")
    dlr.add_argument("--validation", choices=("loocv", "temporal", "kfold"), default="loocv")
    dlr.add_argument("--split-date", type=iso_date, default=dt.date(2015, 1, 1), help="temporal: train on diagnoses before this date")
    dlr.add_argument("--folds", type=int, default=5, help="kfold: number of folds")
    dlr.add_argument("--repeats", type=positive_int, default=5, help="kfold: repetitions (scores averaged)")
    dlr.add_argument("--k", type=k_option, default="auto", help="features kept after the F-score ranking, or auto (nested CV)")
    dlr.add_argument("--components", type=positive_int, default=64, help="Gaussian components of the Fisher vector GMM")
    dlr.add_argument("--no-radiomics", action="store_true", help="skip the pyradiomics baseline")
    dlr.add_argument("--permute-labels", action="store_true", help="shuffle IDH labels: the leakage check (AUC ~0.5)")
    dlr.add_argument("--permutation-test", type=non_negative_int, default=0, metavar="SHUFFLES",
                     help="also run a label-permutation test of the main DLR model with this many shuffles "
                          "(20 or more; --folds-fold CV, reusing each fold's Fisher vectors)")
    dlr.add_argument("--save-model", help="also fit on the whole cohort and write a DLR bundle here")
    dlr.add_argument("--cache", help="descriptor cache folder (default: COHORT/.idhpredictor-cache)")
    dlr.add_argument("--seed", type=int, default=0)
    dlr.add_argument("--workers", type=positive_int, default=1, help="processes for cross-validation folds and radiomics features")
    _add_scheduler_option(dlr)
    dlr.set_defaults(run=_dlr)

    perfusion = commands.add_parser("perfusion", help="evaluate the DSC attention-LSTM and its baselines on a cohort")
    perfusion.add_argument("cohort", help="cohort folder: case folders with _dsc, _seg + clinical.csv")
    perfusion.add_argument("--out", required=True, help="folder for report.json, table.md, roc.png, patterns.json, heat maps")
    perfusion.add_argument("--folds", type=int, default=5)
    perfusion.add_argument("--test-fraction", type=float, default=0.1, help="patients held out as the test split")
    perfusion.add_argument("--epochs", type=positive_int, default=150, help="maximum epochs (early stopping on validation loss)")
    perfusion.add_argument("--permute-labels", action="store_true", help="shuffle IDH labels: the leakage check (AUC ~0.5)")
    perfusion.add_argument("--permutation-test", type=non_negative_int, default=0, metavar="SHUFFLES",
                           help="also run a label-permutation test of the LSTM's cross-validation with this many shuffles "
                                "(20 or more; reuses the DSC analysis, retrains the fold networks)")
    perfusion.add_argument("--workers", type=positive_int, default=1, help="processes for the fold networks")
    _add_scheduler_option(perfusion)
    perfusion.add_argument("--save-model", help="write the model trained on all non-test patients as a bundle here")
    perfusion.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    perfusion.add_argument("--seed", type=int, default=0)
    perfusion.set_defaults(run=_perfusion)

    fusion = commands.add_parser("fusion", help="evaluate DLR + perfusion + age fused by nested stacking, with prediction sets")
    fusion.add_argument("cohort", help="cohort folder: case folders with images, _seg, _dsc + clinical.csv")
    fusion.add_argument("--out", required=True, help="folder for report.json, table.md, roc.png, reliability.png")
    fusion.add_argument("--coverage", type=float, default=0.9, help="prediction-set coverage per class (default 0.9)")
    fusion.add_argument("--folds", type=int, default=5, help="outer cross-validation folds")
    fusion.add_argument("--inner-folds", type=int, default=3, help="folds inside each outer training set for the stacker")
    fusion.add_argument("--radiomics", action="store_true", help="add the radiomics baseline as a component")
    fusion.add_argument("--epochs", type=positive_int, default=150, help="LSTM maximum epochs")
    fusion.add_argument("--workers", type=positive_int, default=1, help="processes for the component fits")
    _add_scheduler_option(fusion)
    fusion.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    fusion.add_argument("--save-model", help="write the fusion bundle (its own DLR and LSTM, the stackers, the conformal sets) here")
    fusion.add_argument("--seed", type=int, default=0)
    fusion.set_defaults(run=_fusion)

    deployment = commands.add_parser("validate-deployment",
                                     help="apply the fusion and DLR bundles unchanged to a held-out labelled cohort, "
                                          "on its reference masks and on the CNN's masks")
    deployment.add_argument("cohort", help="held-out cohort folder: case folders with images, _seg (and _dsc) + clinical.csv")
    deployment.add_argument("--out", required=True, help="folder for report.json, table.md, per_case.csv, the CNN masks")
    deployment.add_argument("--fusion-model", help="fusion bundle (default: the shipped one)")
    deployment.add_argument("--dlr-model", help="stand-alone DLR bundle (default: the shipped one)")
    deployment.add_argument("--no-dlr-model", action="store_true", help="validate the fusion bundle only")
    deployment.add_argument("--record", action="store_true",
                            help="store the figures in the bundles' model.json, beside their cross-validated ones")
    deployment.add_argument("--seed", type=int, default=0, help="bootstrap seed of the confidence intervals")
    deployment.set_defaults(run=_validate_deployment)

    predict = commands.add_parser("predict", help="IDH prediction for one case")
    predict.add_argument("case_dir", help="case folder, a DICOM study folder (series recognised from their headers), or a "
                         "cohort folder with --out DIR (DIR/<case>/prediction.json; resumable; ages from clinical.csv)")
    predict.add_argument("--dicom-out", help="for a DICOM study: write a DICOM SEG of the tumour and an SR measurement "
                         "report (TID 1500) into this new folder")
    predict.add_argument("--dlr-model", help="DLR bundle (default: the shipped one)")
    predict.add_argument("--fusion-model", help="fusion bundle: one calibrated answer from DLR, perfusion (when the case "
                         "has _dsc and _seg) and age, with its prediction set")
    predict.add_argument("--age", type=float, help="the patient's age in years (needed by --fusion-model)")
    predict.add_argument("--coverage", type=float, help="with --fusion-model: prediction set at this coverage per class "
                         "(default: the bundle's, 0.9 for the shipped one)")
    predict.add_argument("--skip-dlr", action="store_true", help="perfusion only")
    predict.add_argument("--perfusion-model", help="perfusion bundle: adds probability, temporal pattern and rCBV")
    predict.add_argument("--heatmap", help="with --perfusion-model: write the attention heat map PNG here")
    predict.add_argument("--rcbv-map", help="with --perfusion-model: write the rCBV map (DSC grid) here, e.g. rcbv.nii.gz")
    predict.add_argument("--out", help="also write the result as JSON here")
    predict.add_argument("--preprocess", choices=("auto", "always", "never"), default="auto",
                         help="auto: raw scans (skull, thick slices, several grids) go through preprocessing first")
    predict.add_argument("--labels", help="when the case has no _seg: write the CNN's tumour labels here "
                         "(the T1c's original geometry), e.g. SEG.nii.gz")
    _add_series_option(predict)
    _add_cluster_options(predict, "cases (cohort input)")
    predict.set_defaults(run=_predict)

    demo = commands.add_parser("demo", help="the whole pipeline on a fresh phantom cohort -> report.html")
    demo.add_argument("--out", default="demo", help="output folder (default: demo)")
    demo.add_argument("--cases", type=int, help="cohort size (default 48; 24 with --quick)")
    demo.add_argument("--quick", action="store_true",
                      help="24 patients (12 IDH-mutant), 5-fold instead of LOOCV, no layer comparison, FLAIR-only DLR or "
                      "radiomics baseline: a first try in minutes")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="phantom and model seed (default 0)")
    demo.add_argument("--workers", type=positive_int, help="parallel processes (default: one per core, max 4)")
    _add_scheduler_option(demo)
    demo.set_defaults(run=_demo)

    web = commands.add_parser("web", help="the workflow as a web app in the browser (trame-slicer; pip install 'idhpredictor[web]')")
    web.add_argument("data_dir", nargs="?", default=".", help="the case folder or cohort folder to serve (default: here); "
                     "nothing outside it is served")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    web.add_argument("--port", type=non_negative_int, default=8080, help="port (default 8080; 0: any free port)")
    web.add_argument("--reports", help="where Export writes report folders (default: DATA_DIR/reports)")
    web.set_defaults(run=_web)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``idh-predictor`` console script."""
    global PROGRESS_LINES
    args = build_parser().parse_args(argv)
    from . import bundle

    bundle.COMMAND_LINE = ["idh-predictor", *(sys.argv[1:] if argv is None else argv)]
    bundle.CODE_AT_START = bundle.code_version()
    PROGRESS_LINES = args.progress_lines
    if PROGRESS_LINES:  # run by a parent that may cancel: unwind on SIGTERM so partial outputs are removed
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        from .compute import scheduler_address, use_scheduler

        address = scheduler_address(args.scheduler) if hasattr(args, "scheduler") else None
        if address and args.command in ("preprocess", "segment", "predict") and not _is_cohort(args.case_dir):
            address = None  # one case: nothing to distribute
        with use_scheduler(address, cluster_paths(args) if address else ()):
            if hasattr(args, "series"):
                with study_input(args):
                    args.run(args)
            else:
                args.run(args)
    except InputError as error:
        print(f"idh-predictor: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as error:  # option errors raised as SystemExit("message"): bad input, exit 2 as documented
        if isinstance(error.code, str):
            print(error.code, file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(CANCELLED, file=sys.stderr)
        return 130
    except Exception as error:  # anything else: one line for the user, the traceback in a file
        log = crash_log(args.command)
        print(f"idh-predictor: internal error in '{args.command}': {type(error).__name__}: {error}. "
              f"Full traceback: {log}. Please report it with that file.", file=sys.stderr)
        return 1
    finally:  # later library calls in the same process (tests, notebooks) must not claim this command
        bundle.COMMAND_LINE = bundle.CODE_AT_START = None
    return 0


def crash_log(command: str) -> Path:
    """Write the current exception's traceback to a file in the temporary folder; return its path."""
    import tempfile
    import traceback

    handle, name = tempfile.mkstemp(prefix=f"idh-predictor-{command}-", suffix=".log")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(f"idh-predictor {__version__} {' '.join(sys.argv)}\n")
        traceback.print_exc(file=out)
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())
