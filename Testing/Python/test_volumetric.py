"""The 3-D SegResNet path: region targets and labels, 3-D randomisation, training, bundle and inference."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from IDHPredictorLib.errors import InputError
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.io.cohort import case_folders
from IDHPredictorLib.segmentation.augment import (
    NON_ENHANCING_REACH_VOXELS,
    RIM_KEPT_VOXELS,
    appearance_setting,
    bright_normal_structures,
    bright_structure_setting,
    non_enhancing_beyond_rim,
    thin_enhancing_rims,
)
from IDHPredictorLib.segmentation.evaluation import region_metrics
from IDHPredictorLib.segmentation.inference import segment_case
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_filter_bank, load_model
from IDHPredictorLib.segmentation.sliding_window import choose_window
from IDHPredictorLib.segmentation.volumetric import (
    VolumetricOptions,
    randomise_volume,
    region_targets,
    regions_to_labels,
    train_volumetric,
    training_precision,
)


def test_regions_become_nested_brats_labels_inside_the_brain() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.random((3, 6, 7, 8))
    brain = rng.random((6, 7, 8)) > 0.2
    labels = regions_to_labels(probabilities, brain)
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    assert not labels[~brain].any()
    whole, core, enhancing = probabilities > 0.5
    assert np.array_equal(labels > 0, whole & brain)
    assert np.array_equal(labels == 4, enhancing & core & whole & brain)  # ET only inside TC inside WT
    tissue = torch.tensor([[[[0, 1, 2, 3, 4, 5]]]])
    targets = region_targets(tissue)[0, :, 0, 0]
    assert targets.tolist() == [[0, 1, 1, 1, 0, 0], [0, 1, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0]]


def test_randomisation_moves_image_and_tissue_map_together() -> None:
    size = 32
    tissue = torch.full((4, size, size, size), 5, dtype=torch.uint8)
    tissue[:, :, :4] = 0  # outside the brain at one edge
    tissue[:, 8:20, 10:18, 6:24] = 1  # an off-centre block of tumour, bright in both channels
    image = torch.where(tissue == 1, 4.0, 0.0).unsqueeze(1).repeat(1, 2, 1, 1, 1)
    image[:, :, :, :4] = 0
    generator = torch.Generator().manual_seed(3)
    out, out_tissue = randomise_volume(image, tissue, generator)
    assert out.shape == image.shape and out_tissue.shape == tissue.shape and out_tissue.dtype == torch.uint8
    assert set(out_tissue.unique().tolist()) <= {0, 1, 5}
    for n in range(4):
        tumour, brain = out_tissue[n] == 1, out_tissue[n] == 5
        assert tumour.sum() > 500  # the block survives rotation, scaling and flipping
        # whatever contrast and noise were drawn, the block stays brighter than the rest of the brain
        assert out[n, :, tumour].mean() > out[n, :, brain].mean() + 1.0
        assert out[n, :, out_tissue[n] == 0].abs().mean() < 0.3 * out[n, :, tumour].abs().mean()
    # with real-world tumour appearance (see augment.tumour_appearance) the block may be darker than the brain
    dark = [randomise_volume(image, tissue, torch.Generator().manual_seed(seed),
                             appearance_setting(("flair", "t1ce"), 1.0)) for seed in range(6)]
    flair_means = [float(out[n, 0, out_tissue[n] == 1].mean()) for out, out_tissue in dark for n in range(4)]
    assert min(flair_means) < 0.0 < 2.0 < max(flair_means)


def test_bright_normal_structures_touch_only_t1c_outside_the_tumour() -> None:
    """Vessels, plexus and dura go on the contrast channel, on non-tumour brain only (their label
    stays background), cover a small share of it, and reach a real vessel's brightness."""
    size = 48
    tissue = torch.full((6, size, size, size), 5, dtype=torch.uint8)
    tissue[:, :, :, :6] = 0  # outside the brain: the rim lies next to it
    tissue[:, 16:32, 16:32, 20:36] = 2  # tumour
    image = torch.zeros(6, 2, size, size, size)
    setting = bright_structure_setting(("flair", "t1ce"), 1.0)
    assert setting is not None and setting[0].tolist() == [False, True]
    added = bright_normal_structures(image, tissue, *setting, torch.Generator().manual_seed(1)) - image
    assert not added[:, 0].any()  # FLAIR untouched
    assert not added[:, 1][tissue != 5].any()  # tumour and outside untouched
    brain = tissue == 5
    for n in range(6):
        bright = added[n, 1][brain[n]] > 1.0
        assert 0.002 < float(bright.float().mean()) < 0.25
        assert float(added[n, 1].max()) >= 1.4
    none_drawn = bright_normal_structures(image, tissue, setting[0], 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(none_drawn, image)
    assert bright_structure_setting(("flair", "t2"), 1.0) is None  # no contrast channel
    assert bright_structure_setting(("flair", "t1ce"), 0.0) is None


def test_thinned_rims_keep_their_outer_voxels_and_give_their_inside_the_core_intensity() -> None:
    """A thick shell of enhancing tumour becomes a rim of at most 3 voxels; the voxels taken from
    it are labelled core and take the core's mean intensity; nothing else changes; crops without
    core, and a zero share, stay as they were."""
    size = 40
    z, y, x = torch.meshgrid(*[torch.arange(size)] * 3, indexing="ij")
    radius = ((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2).float().sqrt()
    tissue = torch.full((4, size, size, size), 5, dtype=torch.uint8)
    tissue[:, radius < 16], tissue[:, radius < 12], tissue[:, radius < 5] = 2, 3, 1
    tissue[3][tissue[3] == 1] = 3  # the last crop: enhancing only, no core to borrow from
    image = torch.randn(4, 2, size, size, size, generator=torch.Generator().manual_seed(0)) * 0.1
    image[:, 1] += 2.0 * (tissue == 3) - 1.0 * (tissue == 1)
    out, out_tissue = thin_enhancing_rims(image, tissue, 1.0, torch.Generator().manual_seed(1))
    moved = (tissue == 3) & (out_tissue != 3)
    assert torch.equal(out_tissue[moved], torch.ones_like(out_tissue[moved]))
    assert torch.equal(out_tissue[~moved], tissue[~moved]) and torch.equal(out[~moved.unsqueeze(1).expand_as(out)],
                                                                        image[~moved.unsqueeze(1).expand_as(image)])
    non_core = ~((tissue == 1) | (tissue == 3))
    for n in range(3):
        assert 0.1 < moved[n].sum() / (tissue[n] == 3).sum() < 0.9
        kept = out_tissue[n] == 3
        near = torch.nn.functional.max_pool3d(non_core[n][None, None].float(), 2 * max(RIM_KEPT_VOXELS) + 1,
                                              stride=1, padding=max(RIM_KEPT_VOXELS))[0, 0] > 0
        assert bool(near[kept].all())  # what enhances is within 3 voxels of the rim's outside
        core_mean = image[n, 1][tissue[n] == 1].mean()
        assert abs(float(out[n, 1][moved[n]].mean() - core_mean)) < 0.05
        assert abs(float(out[n, 0][moved[n]].mean() - image[n, 0][tissue[n] == 1].mean())) < 0.05
    assert not moved[3].any()
    unchanged, unchanged_tissue = thin_enhancing_rims(image, tissue, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(unchanged, image) and torch.equal(unchanged_tissue, tissue)


def test_non_enhancing_tumour_beyond_the_rim_is_oedema_turned_core_next_to_the_enhancing_part() -> None:
    """Only oedema near the enhancing tumour becomes core; it is darker on the T1-weighted channel,
    uniformly shifted on the other; crops without enhancing tumour, and a zero share, stay as they were."""
    size = 40
    z, y, x = torch.meshgrid(*[torch.arange(size)] * 3, indexing="ij")
    radius = ((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2).float().sqrt()
    tissue = torch.full((5, size, size, size), 5, dtype=torch.uint8)
    tissue[:, radius < 18], tissue[:, radius < 9], tissue[:, radius < 5] = 2, 3, 1
    tissue[4][tissue[4] == 3] = 1  # the last crop does not enhance
    image = torch.randn(5, 2, size, size, size, generator=torch.Generator().manual_seed(0)) * 0.1
    darker = torch.tensor([False, True])  # FLAIR, T1c
    out, out_tissue = non_enhancing_beyond_rim(image, tissue, darker, 1.0, torch.Generator().manual_seed(2))
    turned = tissue != out_tissue
    assert bool((tissue[turned] == 2).all()) and bool((out_tissue[turned] == 1).all())
    unturned = ~turned.unsqueeze(1).expand_as(out)
    assert torch.equal(out[unturned], image[unturned])
    reach = max(NON_ENHANCING_REACH_VOXELS)
    for n in range(4):
        assert 0.03 < turned[n].sum() / (tissue[n] == 2).sum() < 0.6
        # within reach of the enhancing shell (Chebyshev distance <= reach, so <= reach * sqrt(3) in mm)
        assert float(radius[turned[n]].max()) <= 9 + reach * 3 ** 0.5
        t1c_shift = (out[n, 1] - image[n, 1])[turned[n]]
        flair_shift = (out[n, 0] - image[n, 0])[turned[n]]
        assert -1.0 <= float(t1c_shift.max()) <= -0.1 and float(t1c_shift.std()) < 1e-5
        assert -0.8 <= float(flair_shift.mean()) <= 0.5 and float(flair_shift.std()) < 1e-5
    assert not turned[4].any()
    unchanged, unchanged_tissue = non_enhancing_beyond_rim(image, tissue, darker, 0.0, torch.Generator().manual_seed(2))
    assert torch.equal(unchanged, image) and torch.equal(unchanged_tissue, tissue)


def test_the_3d_trainer_writes_a_bundle_that_segments_a_case_on_its_own_grid(small_cohort: Path,
                                                                            tmp_path: Path) -> None:
    """Tiny network, crops and run: 3-D convolutions are slow on a CPU. Learning itself is checked
    on the shipped bundle below."""
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    table = list(csv.DictReader((small_cohort / "clinical.csv").read_text(encoding="utf-8").splitlines()))
    chosen = sorted(table, key=lambda row: abs(float(row["whole_radius_mm"]) - 25.0))[:2]
    for row in chosen:
        (cohort / row["case_id"]).symlink_to(small_cohort / row["case_id"])
    options = VolumetricOptions(init_filters=8, crop=16, batch_size=2, steps=10, validation_cases=1, device="cpu",
                                precision="float32")
    record = train_volumetric(cohort, tmp_path / "bundle", options)
    training = record["training"]
    assert training["steps_done"] == 10 and training["cases"] == 1 and len(training["history"]) == 10
    assert training["precision"] == "float32" and training["skipped_steps"] == 0
    assert set(record["metrics"]["validation_simulated"]["dice"]) == {"whole_tumour", "tumour_core", "enhancing"}
    saved = json.loads((tmp_path / "bundle" / "model.json").read_text(encoding="utf-8"))
    assert saved["architecture"]["type"] == "segresnet" and saved["modalities"] == ["flair", "t1ce"]
    assert saved["architecture"]["spacing_mm"] == 2.5  # the small phantom's voxels: inputs are run at this size

    model = load_model(tmp_path / "bundle")
    assert model.is_volumetric
    case = read_case(cohort / chosen[0]["case_id"], modalities=model.modalities, dsc=False)
    reports: list[tuple[int, int]] = []
    labels = segment_case(model.network, model.modalities, case, progress=lambda *done: reports.append(done))
    assert labels.GetSize() == case.labels.GetSize() and labels.GetSpacing() == case.labels.GetSpacing()
    assert set(np.unique(sitk.GetArrayFromImage(labels))) <= {0, 1, 2, 4}
    # progress per sliding window, ending at the window count MONAI actually visited
    assert len(reports) == reports[-1][1] > 1 and reports[-1][0] == reports[-1][1]

    # fine-tuning starts from the bundle's weights (a zero learning rate keeps them exactly), keeps
    # its width and takes the new crop as its sliding window; a 2-D bundle is refused by name
    tuned = replace(options, init_filters=16, crop=32, steps=2, learning_rate=0.0, initial_bundle=str(tmp_path / "bundle"),
                    precision="bfloat16")
    train_volumetric(cohort, tmp_path / "tuned", tuned)
    retuned = load_model(tmp_path / "tuned")
    assert retuned.record["training"]["precision"] == "bfloat16 autocast"
    assert retuned.record["architecture"]["init_filters"] == 8 and retuned.record["architecture"]["crop"] == 32
    assert all(torch.equal(a, b) for a, b in zip(model.network.state_dict().values(),
                                                 retuned.network.state_dict().values()))
    two_d = DEFAULT_MODELS / "segmentation-flair-t1ce"
    with pytest.raises(InputError, match="is not a 3-D bundle for flair, t1ce"):
        train_volumetric(cohort, tmp_path / "refused", replace(tuned, initial_bundle=str(two_d)))
    assert not (tmp_path / "refused").exists()

    # the sliding window is chosen on a simulated cohort, recorded, and then run with
    with pytest.raises(InputError, match="is not a simulated"):
        choose_window(cohort, tmp_path / "bundle")
    with pytest.raises(InputError, match="2-D network, which runs on whole slices"):
        choose_window(small_cohort, two_d)
    chosen = choose_window(small_cohort, tmp_path / "bundle", record=True, candidates=(32,))
    scores = chosen["mean_dice_by_window"]
    assert set(scores) == {"16", "32"} and chosen["cases"] == 6 and len(chosen["per_case"]) == 12
    assert scores[str(chosen["window"])] == max(scores.values())
    rechosen = load_model(tmp_path / "bundle")
    assert rechosen.network.architecture.inference_window == chosen["window"]
    assert rechosen.record["inference"]["window_choice"]["chosen_on"]["phantom"]["options"]["seed"] == 11


def test_training_precision_takes_bfloat16_only_where_the_device_computes_it_natively() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    native_cpu = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert training_precision("auto", cpu) == ("bfloat16" if native_cpu else "float32")
    assert training_precision("auto", cuda) == "bfloat16"
    assert training_precision("float32", cuda) == "float32" and training_precision("bfloat16", cpu) == "bfloat16"
    with pytest.raises(ValueError, match="choose one of auto, float32, bfloat16"):
        training_precision("float16", cpu)


def test_the_3d_trainer_skips_non_finite_steps_and_stops_when_they_persist(small_cohort: Path, tmp_path: Path) -> None:
    """A learning rate of 1e12 sends the weights to infinity after the first step: every later
    step is skipped, and the tenth in a row stops the run before anything is written."""
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for source in case_folders(small_cohort)[1:3]:
        (cohort / source.name).symlink_to(source)
    options = VolumetricOptions(init_filters=8, crop=16, batch_size=1, steps=30, validation_cases=1, device="cpu",
                                precision="float32", learning_rate=1e12)
    with pytest.raises(RuntimeError, match="10 steps in a row up to step 1[1-9] gave a non-finite loss or gradient"):
        train_volumetric(cohort, tmp_path / "bundle", options)
    assert not (tmp_path / "bundle").exists()


def test_the_3d_trainer_refuses_mixed_or_anisotropic_voxel_sizes(small_cohort: Path, full_cohort: Path,
                                                               tmp_path: Path) -> None:
    cohort = tmp_path / "mixed"
    cohort.mkdir()
    for source in (case_folders(small_cohort)[1:3] + case_folders(full_cohort)[:1]):  # distinct case ids
        (cohort / source.name).symlink_to(source)
    options = VolumetricOptions(init_filters=8, crop=16, steps=1, validation_cases=1, device="cpu")
    with pytest.raises(InputError, match="mixes voxel sizes: PHANTOM-000 differ"):
        train_volumetric(cohort, tmp_path / "bundle", options)
    thick = tmp_path / "thick"  # the same two cases with 5 mm slices: one voxel size, but not cubic
    for source in case_folders(small_cohort)[1:3]:
        shutil.copytree(source, thick / source.name)
        for path in (thick / source.name).glob("*.nii.gz"):
            image = sitk.ReadImage(str(path))
            if image.GetDimension() == 3:
                image.SetSpacing((2.5, 2.5, 5.0))
                sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match="anisotropic voxels .PHANTOM-001, PHANTOM-002."):
        train_volumetric(thick, tmp_path / "bundle", options)
    assert not (tmp_path / "bundle").exists()


def test_shipped_3d_bundle_segments_an_unseen_phantom_and_is_no_dlr_filter_bank(full_cohort: Path) -> None:
    bundle = DEFAULT_MODELS / "segmentation-segresnet-flair-t1ce"
    model = load_model(bundle)
    case = read_case(case_folders(full_cohort)[0], modalities=model.modalities, dsc=False)
    predicted = sitk.GetArrayFromImage(segment_case(model.network, model.modalities, case))
    dice = region_metrics(predicted, sitk.GetArrayFromImage(case.labels))
    assert dice["whole_tumour"]["dice"] > 0.75, dice
    with pytest.raises(InputError, match="3-D segmentation network; DLR reads"):
        load_filter_bank(bundle)


def test_the_shipped_3d_bundle_runs_a_coarser_grid_at_its_training_voxel_size(small_cohort: Path) -> None:
    """Trained at 1 mm, run on a 2.5 mm phantom: the box is resampled to 1 mm and back, so that
    the network sees tumours at the size it learnt. Run on the 2.5 mm voxels as they are, it
    finds almost nothing on this case (measured whole tumour 0.05 against 0.82)."""
    model = load_model(DEFAULT_MODELS / "segmentation-segresnet-flair-t1ce")
    assert model.network.architecture.spacing_mm == 1.0
    case = read_case(case_folders(small_cohort)[4], modalities=model.modalities, dsc=False)
    assert case.reference.GetSpacing() == (2.5, 2.5, 2.5)
    reference = sitk.GetArrayFromImage(case.labels)
    predicted = segment_case(model.network, model.modalities, case)
    assert predicted.GetSize() == case.labels.GetSize()
    dice = region_metrics(sitk.GetArrayFromImage(predicted), reference)
    assert dice["whole_tumour"]["dice"] > 0.75 and dice["tumour_core"]["dice"] > 0.7, dice
    model.network.architecture = replace(model.network.architecture, spacing_mm=2.5)  # as if trained on this grid
    as_is = region_metrics(sitk.GetArrayFromImage(segment_case(model.network, model.modalities, case)), reference)
    assert as_is["whole_tumour"]["dice"] < 0.5, as_is


def test_averaged_bundle_holds_the_mean_weights_and_names_both_sources(tmp_path: Path) -> None:
    """WiSE-FT averaging (segmentation.weight_averaging) through the command line: the midpoint of
    two small bundles' weights, a record without the metrics of either, and a mismatch refused."""
    from IDHPredictorLib import cli
    from IDHPredictorLib.segmentation.model_bundle import save_volumetric_model
    from IDHPredictorLib.segmentation.volumetric import VolumetricArchitecture, build_network

    def bundle(name: str, seed: int, width: int = 8) -> Path:
        torch.manual_seed(seed)
        architecture = VolumetricArchitecture(in_channels=2, init_filters=width, crop=32, window=64)
        record = {"description": "test", "inference": {"window": 64, "window_choice": {"window": 64}},
                  "metrics": {"real": 1.0}, "postprocessing": {"min_enhancing_ml": 1.0}}
        return save_volumetric_model(tmp_path / name, build_network(architecture), architecture, ("flair", "t1ce"),
                                     record)

    start, tuned = bundle("start", 0), bundle("tuned", 1)
    assert cli.main(["average-segmentation", str(start), str(tuned), "--out", str(tmp_path / "mean")]) == 0
    mean = load_model(tmp_path / "mean")
    first, second = load_model(start).network.state_dict(), load_model(tuned).network.state_dict()
    name = next(k for k, v in first.items() if v.is_floating_point() and not torch.equal(v, second[k]))
    assert torch.allclose(mean.network.state_dict()[name], (first[name] + second[name]) / 2, atol=2e-3)
    assert "metrics" not in mean.record and "postprocessing" not in mean.record
    assert "window_choice" not in mean.record["inference"] and mean.network.architecture.window is None
    assert mean.record["weight_averaging"]["share_of_fine_tuned"] == 0.5
    assert [Path(s["bundle"]).name for s in mean.record["weight_averaging"]["sources"]] == ["start", "tuned"]
    assert cli.main(["average-segmentation", str(start), str(bundle("wider", 2, width=16)),
                     "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
