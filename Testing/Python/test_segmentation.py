"""Segmentation CNN: shapes, exact dense inference, training, geometry, post-processing, bundles."""

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

from IDHPredictorLib.cli import main
from IDHPredictorLib.errors import InputError
from IDHPredictorLib.io.case import read_case
from IDHPredictorLib.io.cohort import case_folders
from IDHPredictorLib.preprocessing.prepare import prepare_case_folder
from IDHPredictorLib.segmentation.augment import TUMOUR_APPEARANCE, appearance_setting, randomise, tumour_appearance
from IDHPredictorLib.segmentation.data import extract_patches, network_input, pad_for_patches
from IDHPredictorLib.segmentation.enhancing_rule import CANDIDATES_ML, choose_min_enhancing, mean_dice_by_candidate
from IDHPredictorLib.segmentation.evaluation import region_metrics
from IDHPredictorLib.segmentation.inference import dense_scores, predict_labels, segment_case, segment_prepared
from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS, load_model, save_model
from IDHPredictorLib.segmentation.network import LAYERS, PATCH, Architecture, SegmentationCNN
from IDHPredictorLib.segmentation.postprocess import drop_small_enhancing, postprocess
from IDHPredictorLib.segmentation.training import TrainingOptions, train


def _network(channels: int = 2, fc_width: int = 32, seed: int = 0) -> SegmentationCNN:
    torch.manual_seed(seed)
    return SegmentationCNN(Architecture(channels, fc_width)).eval()


def test_shapes_and_layer_names() -> None:
    network = _network(channels=4, fc_width=64)
    x = torch.randn(3, 4, PATCH, PATCH)
    assert network(x).shape == (3, 4, 1, 1)
    expected = {"conv1": (64, 31), "conv3": (64, 27), "conv4": (128, 11), "conv6": (128, 7), "fc7": (64, 1)}
    for layer, (width, size) in expected.items():
        assert network(x, until=layer).shape == (3, width, size, size), layer
    assert set(LAYERS) <= {name for name, _ in network.named_children()}


def test_tumour_appearance_moves_each_tumour_class_into_its_real_world_range() -> None:
    """Every tumour class of a moved tile gets a mean inside its sequence's range, drawn over the
    whole range (a core darker than the brain on FLAIR included), keeps its texture, and the rest
    of the brain is untouched. On T1c the core is never brighter than the oedema; on FLAIR it may be."""
    generator = torch.Generator().manual_seed(0)
    tissue = torch.full((200, 93, 93), 5, dtype=torch.uint8)
    tissue[:, 20:70, 20:70], tissue[:, 35:55, 35:55], tissue[:, 30:34, 30:60] = 2, 1, 3
    tiles = torch.randn(200, 2, 93, 93, generator=generator) * 0.3 + 2.0 * (tissue == 1).unsqueeze(1)
    setting = appearance_setting(("flair", "t1ce"), 1.0)
    shifted = tumour_appearance(tiles, tissue, setting, generator)
    for index, tumour_class in enumerate((1, 2, 3)):
        inside = tissue[0] == tumour_class
        means = shifted[:, :, inside].mean(-1)  # (tiles, channels)
        for channel, modality in enumerate(("flair", "t1ce")):
            low, high = TUMOUR_APPEARANCE[modality][index]
            assert low - 1e-4 <= means[:, channel].min() and means[:, channel].max() <= high + 1e-4
            assert means[:, channel].max() - means[:, channel].min() > 0.6 * (high - low)  # the whole range is drawn
        assert torch.allclose(shifted[:, :, inside].std(-1), tiles[:, :, inside].std(-1), atol=1e-4)
    assert (shifted[:, 0, tissue[0] == 1].mean(-1) < 0).any()  # a core darker than the average brain on FLAIR
    core, oedema = shifted[:, :, tissue[0] == 1].mean(-1), shifted[:, :, tissue[0] == 2].mean(-1)
    assert (core[:, 1] <= oedema[:, 1] + 1e-4).all()  # T1c: the core is the darker, as real cores are
    assert (core[:, 0] > oedema[:, 0]).any() and (core[:, 0] < oedema[:, 0]).any()  # FLAIR: either order
    assert torch.equal(shifted[:, :, tissue[0] == 5], tiles[:, :, tissue[0] == 5])
    half = tumour_appearance(tiles, tissue, setting._replace(probability=0.5), generator)
    unchanged = (half == tiles).flatten(1).all(1).float().mean()
    assert 0.35 < unchanged < 0.65
    assert appearance_setting(("flair",), 0.0) is None
    crops, crop_tissue = randomise(tiles[:8], tissue[:8], generator, 65, setting)  # as training calls it
    assert crops.shape == (8, 2, 65, 65) and crop_tissue.shape == (8, 65, 65)


def test_dense_inference_equals_patchwise_at_sampled_voxels() -> None:
    network = _network()
    rng = np.random.default_rng(0)
    channels = rng.standard_normal((2, 11, 37, 42)).astype(np.float32)  # 11 slices: two z batches
    scores = dense_scores(network, channels)  # (4, z, ceil((y-1)/4)+1, ceil((x-1)/4)+1)
    lattice = np.array([(z, 4 * i, 4 * j) for z in range(11) for i in range(scores.shape[2])
                        for j in range(scores.shape[3]) if 4 * i < 37 and 4 * j < 42])
    chosen = lattice[rng.choice(len(lattice), 40, replace=False)]
    with torch.no_grad():
        patches = torch.from_numpy(extract_patches(pad_for_patches(channels), chosen, PATCH, PATCH // 2))
        patchwise = network(patches).flatten(1).numpy()
    dense = np.stack([scores[:, z, y // 4, x // 4] for z, y, x in chosen])
    np.testing.assert_allclose(dense, patchwise, rtol=1e-4, atol=1e-4)


def test_a_tiny_network_overfits_a_tiny_phantom(small_cohort: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "one"
    cohort.mkdir()
    rows = (small_cohort / "clinical.csv").read_text(encoding="utf-8").splitlines()
    # a mid-sized tumour (whole-tumour radius nearest 25 mm): a tiny network can learn it in a few epochs
    table = list(csv.DictReader(rows))
    chosen = min(table, key=lambda row: abs(float(row["whole_radius_mm"]) - 25.0))["case_id"]
    case = small_cohort / chosen
    (cohort / case.name).symlink_to(case)
    (cohort / "clinical.csv").write_text("\n".join([rows[0], *[r for r in rows if r.startswith(case.name)]]) + "\n",
                                         encoding="utf-8")
    data = network_input(read_case(case, modalities=("flair", "t1ce"), dsc=False), ("flair", "t1ce"))
    reference = np.asarray((0, 1, 2, 4), np.uint8)[data.classes]

    def whole_tumour_dice(network: SegmentationCNN) -> float:
        return region_metrics(predict_labels(network, data.channels, data.brain), reference)["whole_tumour"]["dice"]

    torch.manual_seed(0)
    untrained = whole_tumour_dice(SegmentationCNN(Architecture(2, 32)))
    options = TrainingOptions(fc_width=32, epochs=4, patches_per_epoch=16 * 81 * 20, batch_size=16, validation_cases=0,
                              randomise=False, learning_rate=0.05)
    train(cohort, tmp_path / "bundle", options)
    trained = whole_tumour_dice(load_model(tmp_path / "bundle").network)
    assert trained > 0.6 and trained > untrained + 0.3, (untrained, trained)
    record = json.loads((tmp_path / "bundle" / "model.json").read_text(encoding="utf-8"))
    assert record["modalities"] == ["flair", "t1ce"] and "SIMULATED" in record["trained_on"]
    assert len(record["training"]["history"]) == 4


def test_output_geometry_equals_input_geometry_also_oblique(small_cohort: Path, tmp_path: Path) -> None:
    source = case_folders(small_cohort)[0]
    case_dir = tmp_path / "OBL"
    case_dir.mkdir()
    rotation = sitk.Euler3DTransform((0, 0, 0), 0.2, -0.1, 0.3).GetMatrix()
    for modality in ("flair", "t1ce"):
        image = sitk.ReadImage(str(source / f"{source.name}_{modality}.nii.gz"))
        image.SetDirection(rotation)
        image.SetOrigin((12.5, -30.25, 7.0))
        sitk.WriteImage(image, str(case_dir / f"OBL_{modality}.nii.gz"))
    case = read_case(case_dir, modalities=("flair", "t1ce"), dsc=False)
    labels = segment_case(_network(), ("flair", "t1ce"), case)
    reference = case.reference
    assert labels.GetSize() == reference.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), reference.GetOrigin())
    np.testing.assert_allclose(labels.GetSpacing(), reference.GetSpacing())
    np.testing.assert_allclose(labels.GetDirection(), rotation, atol=1e-6)
    inside = sitk.GetArrayFromImage(reference) != 0
    predicted = sitk.GetArrayFromImage(labels)
    assert predicted.any() and not (predicted.astype(bool) & ~inside).any()  # voxels land inside the brain


def test_postprocessing_keeps_subregions_nested() -> None:
    rng = np.random.default_rng(1)
    labels = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(12, 30, 30), p=[0.5, 0.15, 0.2, 0.15])
    labels[:, :5] = 0
    out = postprocess(labels)
    whole, core, enhancing = out > 0, np.isin(out, (1, 4)), out == 4
    assert whole.any()
    assert not (core & ~whole).any() and not (enhancing & ~core).any()
    assert set(np.unique(out)) <= {0, 1, 2, 4}


def test_small_enhancing_regions_become_core_below_the_bundles_volume() -> None:
    labels = np.zeros((20, 30, 30), np.uint8)
    labels[4:16, 8:22, 8:22] = 1
    labels[8:13, 12:17, 12:17] = 4
    kept = postprocess(labels)
    enhancing = int((kept == 4).sum())
    assert enhancing > 0
    same = kept.copy()
    assert drop_small_enhancing(same, enhancing / 1000.0, (1.0, 1.0, 1.0)) == 0.0 and np.array_equal(same, kept)
    relabelled = kept.copy()
    assert drop_small_enhancing(relabelled, (enhancing + 1) / 1000.0, (1.0, 1.0, 1.0)) == pytest.approx(enhancing / 1000)
    assert not (relabelled == 4).any() and np.array_equal(relabelled > 0, kept > 0)
    assert np.array_equal(np.isin(relabelled, (1, 4)), np.isin(kept, (1, 4)))  # the core keeps those voxels
    coarse = kept.copy()  # the same voxels on a 2 mm grid hold 8 times the volume
    assert drop_small_enhancing(coarse, 8 * enhancing / 1000.0, (2.0, 2.0, 2.0)) == 0.0
    assert drop_small_enhancing(kept.copy(), 0.0, (1.0, 1.0, 1.0)) == 0.0


def test_the_enhancing_volume_is_chosen_on_simulated_cases_and_honoured(small_cohort: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    rows = [{"predicted_ml": 0.3, "reference_has_enhancing": False, "dice": 0.0},  # a false finding
            {"predicted_ml": 0.8, "reference_has_enhancing": True, "dice": 0.6},
            {"predicted_ml": 0.0, "reference_has_enhancing": False, "dice": 1.0}]
    scores = mean_dice_by_candidate(rows, (0.0, 0.5, 1.0))
    assert scores == pytest.approx({0.0: 1.6 / 3, 0.5: 2.6 / 3, 1.0: 2.0 / 3})

    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_MODELS / "segmentation-flair-t1ce", bundle)
    assert main(["tune-segmentation", str(small_cohort), "--model", str(bundle), "--record"]) == 0
    out = capsys.readouterr().out
    record = json.loads((bundle / "model.json").read_text(encoding="utf-8"))["postprocessing"]
    assert f"chosen: {record['min_enhancing_ml']} mL, recorded" in out and record["cases"] == 6
    assert set(record["mean_enhancing_dice_by_ml"]) == {str(m) for m in CANDIDATES_ML}
    assert record["mean_enhancing_dice_by_ml"][str(record["min_enhancing_ml"])] == max(
        record["mean_enhancing_dice_by_ml"].values())
    assert record["chosen_on"]["phantom"]["options"]["seed"] == 11

    # a recorded volume larger than any tumour leaves no enhancing voxel, and the core unchanged
    case = next(f for f in case_folders(small_cohort) if (sitk.GetArrayFromImage(sitk.ReadImage(
        str(f / f"{f.name}_seg.nii.gz"))) == 4).any())
    prepared = prepare_case_folder(case, ("flair", "t1ce"))
    model = load_model(bundle)
    plain = sitk.GetArrayFromImage(segment_prepared(replace(model, record={}), prepared).prepared_labels)
    model.record["postprocessing"] = {"min_enhancing_ml": 1e6}
    ruled_result = segment_prepared(model, prepared)
    ruled = sitk.GetArrayFromImage(ruled_result.prepared_labels)
    assert (plain == 4).any() and not (ruled == 4).any()
    said = [c for c in ruled_result.quality.checks if c.name == "enhancing"]  # and quality control says so
    assert len(said) == 1 and said[0].verdict == "warn" and "shown as core" in said[0].message
    assert np.array_equal(np.isin(ruled, (1, 4)), np.isin(plain, (1, 4)))

    real_like = tmp_path / "not-simulated"
    real_like.mkdir()
    (real_like / case.name).symlink_to(case)
    with pytest.raises(InputError, match="is not a simulated"):
        choose_min_enhancing(real_like, bundle)


def test_bundle_round_trip_and_clear_errors(tmp_path: Path) -> None:
    network = _network(fc_width=16)
    bundle = save_model(tmp_path / "b", network, ("flair", "t1ce"), {"trained_on": "test"})
    loaded = load_model(bundle)
    x = torch.randn(2, 2, PATCH, PATCH)
    with torch.no_grad():
        assert torch.equal(loaded.network(x), network(x))
    assert loaded.modalities == ("flair", "t1ce")

    record = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    record["architecture"]["fc_width"] = 64
    (bundle / "model.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(InputError, match="weights do not load into the recorded architecture"):
        load_model(bundle)
    record["architecture"]["fc_width"] = 16
    record["bundle_format"] = 99
    (bundle / "model.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(InputError, match="bundle format 99"):
        load_model(bundle)
    record["bundle_format"] = 1
    (bundle / "model.json").write_text(json.dumps(record), encoding="utf-8")
    (bundle / "weights.pt").write_bytes((bundle / "weights.pt").read_bytes()[:100])
    with pytest.raises(InputError, match="weights.pt: does not match the checksum in model.json"):
        load_model(bundle)
    (bundle / "weights.pt").unlink()
    with pytest.raises(InputError, match="bundle is missing weights.pt"):
        load_model(bundle)
    with pytest.raises(InputError, match="not a model bundle"):
        load_model(tmp_path)


def test_segment_and_evaluate_commands(small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bundle = save_model(tmp_path / "b", _network(fc_width=16), ("flair", "t1ce"), {"trained_on": "test"})
    case = case_folders(small_cohort)[0]
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(case), "--model", str(bundle), "--out", str(out)]) == 0
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(case / f"{case.name}_flair.nii.gz"))
    assert written.GetSize() == source.GetSize() and written.GetOrigin() == source.GetOrigin()
    reference = case / f"{case.name}_seg.nii.gz"
    truth = sitk.ReadImage(str(reference))
    array = sitk.GetArrayFromImage(truth)
    predicted = np.where(array == 4, 3, array)  # BraTS 2023 enhancing label
    predicted[:, :, : array.shape[2] // 2] = 0  # half the tumour missed
    prediction = sitk.GetImageFromArray(predicted)
    prediction.CopyInformation(truth)
    sitk.WriteImage(prediction, str(tmp_path / "half.nii.gz"))
    whole_truth, whole_predicted = (array > 0).sum(), (predicted > 0).sum()
    capsys.readouterr()
    assert main(["evaluate-segmentation", str(tmp_path / "half.nii.gz"), str(reference)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["whole_tumour"]["dice"] == pytest.approx(2 * whole_predicted / (whole_truth + whole_predicted))
    assert metrics["enhancing"]["ppv"] == 1.0  # label 3 read as enhancing
    assert main(["evaluate-segmentation", str(small_cohort), "--model", str(bundle)]) == 2
    assert "cohort mode needs --out" in capsys.readouterr().err


def test_training_resumes_from_its_checkpoint(small_cohort: Path, tmp_path: Path) -> None:
    tiny = dict(fc_width=8, patches_per_epoch=8 * 81 * 2, batch_size=8, validation_cases=1, randomise=True)
    first = train(small_cohort, tmp_path / "a", TrainingOptions(epochs=2, **tiny), stop_after=1)
    assert (tmp_path / "a.checkpoint.pt").exists() and len(first["training"]["history"]) == 1
    resumed = train(small_cohort, tmp_path / "a", TrainingOptions(epochs=2, **tiny), resume=True)
    straight = train(small_cohort, tmp_path / "b", TrainingOptions(epochs=2, **tiny))
    history, reference = resumed["training"]["history"], straight["training"]["history"]
    assert len(history) == 2 and history[0] == first["training"]["history"][0]
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in reference], rel=1e-4)


def test_default_bundle_follows_the_case_modalities() -> None:
    from IDHPredictorLib.segmentation.model_bundle import default_bundle_for

    assert default_bundle_for({"flair", "t1ce"}).name == "segmentation-segresnet-flair-t1ce"
    assert default_bundle_for({"flair", "t1", "t2"}).name == "segmentation-flair"
    assert default_bundle_for({"flair", "t1", "t1ce", "t2"}).name == "segmentation-segresnet-flair-t1ce"
    with pytest.raises(InputError, match="no shipped segmentation model"):
        default_bundle_for({"t1", "t2"})
    for bundle in DEFAULT_MODELS.glob("segmentation-*"):
        assert "SIMULATED" in load_model(bundle).record["trained_on"]


@pytest.mark.parametrize("bundle", ["segmentation-flair-t1ce", "segmentation-flair-t1ce-appearance"])
def test_shipped_flair_t1ce_models_segment_an_unseen_phantom(full_cohort: Path, bundle: str) -> None:
    from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS

    model = load_model(DEFAULT_MODELS / bundle)
    case = read_case(case_folders(full_cohort)[0], modalities=model.modalities, dsc=False)
    predicted = sitk.GetArrayFromImage(segment_case(model.network, model.modalities, case))
    dice = region_metrics(predicted, sitk.GetArrayFromImage(case.labels))
    assert dice["whole_tumour"]["dice"] > 0.75, dice


def test_bfloat16_inference_stays_within_tolerance_of_float32(small_cohort: Path) -> None:
    """The CUDA fast path (bfloat16 autocast), run on CPU: the shipped model's labels barely move."""
    from IDHPredictorLib.segmentation.data import axial_case
    from IDHPredictorLib.segmentation.inference import probabilities_full_resolution
    from IDHPredictorLib.segmentation.model_bundle import DEFAULT_MODELS

    model = load_model(DEFAULT_MODELS / "segmentation-flair-t1ce")
    case = read_case(case_folders(small_cohort)[0], modalities=model.modalities, dsc=False)
    data = network_input(axial_case(case, model.modalities), model.modalities, with_labels=False)
    labels = {}
    for mixed in (False, True):
        scores = dense_scores(model.network, data.channels, mixed=mixed)
        labels[mixed] = probabilities_full_resolution(scores, *data.channels.shape[2:]).argmax(axis=0)[data.brain]
    agreement = float(np.mean(labels[False] == labels[True]))
    assert agreement >= 0.995, agreement
    float32 = dense_scores(model.network, data.channels[:, :4], mixed=False)
    bfloat16 = dense_scores(model.network, data.channels[:, :4], mixed=True)
    assert not np.array_equal(float32, bfloat16)  # the autocast path really ran in bfloat16
    np.testing.assert_allclose(bfloat16, float32, atol=0.05 * float(np.abs(float32).max()))
