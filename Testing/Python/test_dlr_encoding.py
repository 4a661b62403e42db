"""Fisher vector, selectors, metrics and splits of the DLR pipeline, on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.feature import fisher_vector
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from IDHPredictorLib.dlr.fisher import FisherVectorEncoder, MixtureTables, bound_rounding_factor, improved_fisher_vector
from IDHPredictorLib.dlr.fisher import fisher_vector as fisher_vector_of
from IDHPredictorLib.dlr.model import dlr_pipeline, selection_classifier
from IDHPredictorLib.dlr.selection import FScoreSelector, WelchTTestSelector, f_scores
from IDHPredictorLib.segmentation.network import LAYER_GEOMETRY, LAYERS, Architecture, SegmentationCNN
from IDHPredictorLib.validation.crossval import out_of_fold_scores
from IDHPredictorLib.validation.metrics import binary_metrics, metrics_with_ci, rank_auc
from IDHPredictorLib.validation.splits import leave_one_out, repeated_kfold


def _gmm(descriptors: np.ndarray, components: int) -> GaussianMixture:
    return GaussianMixture(components, covariance_type="diag", random_state=0).fit(descriptors)


def _skimage_reference(descriptors: np.ndarray, gmm: GaussianMixture) -> np.ndarray:
    """skimage's improved Fisher vector in VLFeat's layout: its K weight terms dropped, renormalised
    without them, and its variance block (opposite sign to VLFeat's) negated."""
    reference = fisher_vector(descriptors, gmm, improved=True)[gmm.n_components:]
    reference /= np.linalg.norm(reference)
    reference[reference.size // 2:] *= -1
    return reference


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def test_fisher_vector_matches_skimage_without_weight_terms() -> None:
    rng = np.random.default_rng(0)
    descriptors = np.concatenate([rng.normal(0, 1, (200, 6)), rng.normal(3, 0.5, (150, 6))])
    gmm = _gmm(descriptors, 4)
    ours = improved_fisher_vector(descriptors[:120], gmm.weights_, gmm.means_, gmm.covariances_)
    assert ours.shape == (2 * 4 * 6,)
    assert _relative_error(ours, _skimage_reference(descriptors[:120], gmm)) < 1e-5


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_fisher_vector_matches_skimage_on_overlapping_clusters(offset: float) -> None:
    # float32 descriptors as the CNN gives them, a GMM fitted on other "patients", clusters that
    # overlap (so that many descriptors take the exact several-component path) and, at offset 1000,
    # lie far from the origin (where uncentred float32 scores would lose the candidates)
    rng = np.random.default_rng(5)
    centres, spreads = rng.normal(0, 0.5, (8, 24)) + offset, rng.uniform(0.3, 1.5, (8, 24))

    def patient(count: int) -> np.ndarray:
        members = rng.integers(0, 8, count)
        return (centres[members] + spreads[members] * rng.normal(size=(count, 24))).astype(np.float32)

    gmm = _gmm(patient(3000).astype(np.float64), 8)
    descriptors = patient(5000)  # > 2 chunks of 2048 rows and several 1024-row blocks
    second_best = np.sort(gmm.predict_proba(descriptors.astype(np.float64)), axis=1)[:, -2]
    assert np.mean(second_best > 1e-6) > 0.05  # the exact path is exercised, not only posteriors of 1
    mixture = MixtureTables.from_gmm(gmm.weights_, gmm.means_, gmm.covariances_)
    parallel = fisher_vector_of(descriptors, mixture, threads=2)
    # 1e-13 at offset 0; at 1000 both sides' float64 second moments (x^2 ~ 1e6) round to ~1e-7
    assert _relative_error(parallel, _skimage_reference(descriptors.astype(np.float64), gmm)) < 1e-6
    np.testing.assert_allclose(fisher_vector_of(descriptors, mixture, threads=1), parallel, rtol=0, atol=1e-12)


def test_fisher_vector_matches_skimage_with_more_than_64_components() -> None:
    # more components than bits in one mask word, and an odd dimension count (bounds on 3 of 5)
    rng = np.random.default_rng(6)
    centres = rng.normal(0, 2, (90, 5))
    descriptors = (centres[rng.integers(0, 90, 4000)] + rng.normal(0, 0.4, (4000, 5))).astype(np.float32)
    gmm = _gmm(descriptors[:3000].astype(np.float64), 70)
    ours = improved_fisher_vector(descriptors[3000:], gmm.weights_, gmm.means_, gmm.covariances_)
    assert _relative_error(ours, _skimage_reference(descriptors[3000:].astype(np.float64), gmm)) < 1e-6


def test_bounds_and_their_rounding_margin_hold() -> None:
    # the float32 bounds must be within their worst-case rounding margin of the exact exponent summed
    # over the bound's dimensions, which itself is at least the log-density: checked for descriptors
    # far from the origin and precisions spread over six orders of magnitude
    rng = np.random.default_rng(7)
    means, variances = rng.normal(500, 3, (16, 40)), 10.0 ** rng.uniform(-4, 2, (16, 40))
    mixture = MixtureTables.from_gmm(np.full(16, 1 / 16), means, variances)
    x = (means[rng.integers(0, 16, 3000)] + rng.normal(0, 3, (3000, 40))).astype(np.float32)
    subset = np.arange(mixture.bound_dimensions)
    assert len(subset) == 20
    centred = (x[:, subset] - mixture.centre[subset]).astype(np.float32)
    bounds = np.hstack([centred, centred * centred]) @ mixture.bound_weights.T + mixture.bound_offset  # float32
    input_norms = np.stack([np.linalg.norm(centred, axis=1), np.linalg.norm(centred * centred, axis=1)], axis=1)
    margin = bound_rounding_factor(len(subset)) * (input_norms @ mixture.bound_norms[:, :2].T + mixture.bound_norms[:, 2])

    def log_density(dimensions: np.ndarray) -> np.ndarray:
        differences = x.astype(np.float64)[:, None, dimensions] - means[:, dimensions]
        return mixture.log_norms - 0.5 * np.einsum("nkd,kd->nk", differences ** 2, 1 / variances[:, dimensions])

    partial = log_density(subset)
    assert np.all(np.abs(bounds - partial) <= margin)
    assert np.all(partial >= log_density(np.arange(40)))


def test_fisher_vector_refuses_descriptors_it_cannot_encode_exactly() -> None:
    mixture = MixtureTables.from_gmm(np.array([1.0]), np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fisher_vector_of(np.array([[0.0, np.nan, 1.0]]), mixture)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fisher_vector_of(np.array([[0.0, 1.0, -np.inf]]), mixture)
    # finite, but its square overflows float32 in the bounds: an error, not a descriptor silently left out
    with pytest.raises(ValueError, match="overflow float32"):
        fisher_vector_of(np.array([[1e20, 0.0, 0.0], [0.0, 0.0, 0.0]]), mixture)


def test_fisher_vector_ignores_descriptor_order() -> None:
    rng = np.random.default_rng(1)
    descriptors = rng.normal(size=(300, 5))
    gmm = _gmm(descriptors, 3)
    args = (gmm.weights_, gmm.means_, gmm.covariances_)
    shuffled = descriptors[rng.permutation(len(descriptors))]
    np.testing.assert_allclose(improved_fisher_vector(descriptors, *args), improved_fisher_vector(shuffled, *args), atol=1e-12)


def test_fisher_vector_of_a_single_component_by_hand() -> None:
    # x = 0 and 2 under N(0.5, 1): u = mean(x - 0.5) = 0.5; v = mean((x - 0.5)^2 - 1) / sqrt(2) = 0.25 / sqrt(2)
    vector = improved_fisher_vector(np.array([[0.0], [2.0]]), np.array([1.0]), np.array([[0.5]]), np.array([[1.0]]))
    u, v = np.sqrt(0.5), np.sqrt(0.25 / np.sqrt(2))  # signed square roots
    np.testing.assert_allclose(vector, np.array([u, v]) / np.hypot(u, v), rtol=1e-12)


def test_encoder_output_size_and_names() -> None:
    rng = np.random.default_rng(2)
    patients = [rng.normal(size=(rng.integers(50, 90), 4)) for _ in range(6)]
    encoder = FisherVectorEncoder(n_components=3, descriptors_per_patient=40).fit(patients)
    encoded = encoder.transform(patients)
    assert encoded.shape == (6, 2 * 3 * 4)
    np.testing.assert_allclose(np.linalg.norm(encoded, axis=1), 1.0)
    names = encoder.feature_names("conv6")
    assert len(names) == 24 and names[0] == "conv6 filter 1, component 1, mean" and names[-1].endswith("variance")


def test_selectors_keep_informative_features_and_never_none() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 20)
    X = rng.normal(size=(40, 50))
    X[:, 7] += 2.0 * y  # the one informative feature
    assert WelchTTestSelector().fit(X, y).get_support()[7]
    assert np.argmax(f_scores(X, y)) == 7
    assert FScoreSelector(k=1).fit(X, y).get_support(indices=True).tolist() == [7]
    constant = np.ones((40, 3))
    assert WelchTTestSelector().fit(constant, y).get_support().sum() == 1  # at least one feature survives


@pytest.mark.parametrize("labels", [(1, 2), ("wildtype", "mutant"), (False, True)])
def test_selectors_encode_any_two_labels_like_zero_and_one(labels: tuple) -> None:
    rng = np.random.default_rng(5)
    y01 = np.repeat([0, 1], 15)
    X = rng.normal(size=(30, 20))
    X[:, 3] += 1.5 * y01
    y = np.array(labels)[y01]  # {1, 2} used to become all True under astype(bool)
    assert np.allclose(f_scores(X, y), f_scores(X, y01))
    assert np.array_equal(WelchTTestSelector().fit(X, y).p_values_, WelchTTestSelector().fit(X, y01).p_values_)
    assert FScoreSelector(k=1).fit(X, y).get_support(indices=True).tolist() == [3]


def test_inner_choice_of_k_fits_small_training_folds_without_warnings() -> None:
    import warnings

    from IDHPredictorLib.dlr.model import selection_classifier

    generator = np.random.default_rng(0)
    y = np.array([1, 1, 1] + [0] * 10)  # a training fold of a small cohort: 3 mutants
    X = generator.normal(size=(13, 50))
    X[:, 0] += 2 * y
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # five inner folds would warn (a fold without a mutant)
        search = selection_classifier("auto", 0).fit(X, y)
    assert search.n_splits_ == 3


def test_selectors_refuse_targets_that_are_not_two_classes() -> None:
    X = np.random.default_rng(6).normal(size=(30, 4))
    with pytest.raises(ValueError, match="exactly two classes"):
        WelchTTestSelector().fit(X, np.repeat([0, 1, 2], 10))
    with pytest.raises(ValueError, match="exactly two classes"):
        FScoreSelector().fit(X, np.ones(30))
    with pytest.raises(ValueError, match="continuous|Unknown label type"):
        f_scores(X, np.linspace(0, 1, 30))


def test_selection_is_fitted_on_the_training_fold_only(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    n = 24
    y = np.tile([0, 1], n // 2)
    X = np.column_stack([np.arange(n), rng.normal(size=(n, 30))])  # column 0 identifies the patient
    seen: list[set[int]] = []
    original_fit = WelchTTestSelector.fit

    def spy(self, features, labels):
        seen.append(set(np.asarray(features)[:, 0].astype(int)))
        return original_fit(self, features, labels)

    monkeypatch.setattr(WelchTTestSelector, "fit", spy)
    splits = leave_one_out(n)
    out_of_fold_scores(lambda: selection_classifier(k=5), X, y, splits)
    assert len(seen) == n
    for (train, test), patients in zip(splits, seen):
        assert patients == set(train.tolist()) and test[0] not in patients


def _synthetic_descriptor_cohort(n: int, shift: float, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Patients as bags of 4-D descriptors; mutants' bags have a shifted second cluster."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    bags = [np.concatenate([rng.normal(0, 1, (60, 4)), rng.normal(3 + shift * label, 1, (40, 4))]) for label in y]
    return bags, y


def test_dlr_pipeline_learns_a_signal_and_permuted_labels_give_chance() -> None:
    bags, y = _synthetic_descriptor_cohort(40, shift=1.0, seed=5)
    splits = leave_one_out(len(y))

    def make() -> object:
        return dlr_pipeline(k=8, n_components=4)

    true_auc = binary_metrics(y, out_of_fold_scores(make, bags, y, splits))["auc"]
    assert true_auc > 0.9
    # under shuffled labels one LOOCV AUC on 40 patients has sd ~0.09: average four permutations
    permuted_aucs = []
    for seed in range(4):
        permuted = np.random.default_rng(seed).permutation(y)
        permuted_aucs.append(binary_metrics(permuted, out_of_fold_scores(make, bags, permuted, splits))["auc"])
    assert abs(np.mean(permuted_aucs) - 0.5) < 0.1


def test_permutation_test_separates_a_signal_from_none() -> None:
    from IDHPredictorLib.dlr.permutation import permutation_test
    from IDHPredictorLib.validation.permutation import leakage_verdict, verdict_text

    bags, y = _synthetic_descriptor_cohort(40, shift=1.0, seed=5)
    signal = permutation_test(bags, y, shuffles=20, k=8, components=4)
    assert signal["observed_auc"] > 0.9 and len(signal["null_aucs"]) == 20
    assert signal["p_value"] == pytest.approx(1 / 21)  # no shuffle reaches the true AUC
    assert abs(signal["null_mean"] - 0.5) < 0.12 and leakage_verdict(signal)
    noise, y_noise = _synthetic_descriptor_cohort(40, shift=0.0, seed=6)
    chance = permutation_test(noise, y_noise, shuffles=20, k=8, components=4)
    assert chance["p_value"] > 0.05 and leakage_verdict(chance)
    # the shuffles are drawn before they are farmed out: two processes give the same test
    assert permutation_test(noise, y_noise, shuffles=20, k=8, components=4, workers=2) == chance
    # a pipeline that leaks: the null AUCs stay high, and the verdict says so
    assert not leakage_verdict({**chance, "null_mean": 0.8, "null_sd": 0.05})
    # five shuffles: their mean strays 0.1 from 0.5 too often for any verdict
    assert leakage_verdict({**chance, "shuffles": 5}) is None
    # shuffled AUCs centred below 0.5 are no leakage (leakage only raises them): passed, and named
    low = {**chance, "null_mean": 0.38, "null_sd": 0.16}
    assert leakage_verdict(low) and verdict_text(low).startswith("passed (no leakage; shuffled AUCs below 0.5")
    assert verdict_text({**chance, "null_mean": 0.8, "null_sd": 0.05}).startswith("FAILED")


def test_metrics_against_a_hand_computed_confusion_matrix() -> None:
    y = np.array([1, 1, 1, 0, 0])
    scores = np.array([2.0, 1.0, -1.0, -2.0, 0.5])  # calls: TP, TP, FN, TN, FP
    metrics = binary_metrics(y, scores)
    expected = {"auc": 5 / 6, "acc": 3 / 5, "sens": 2 / 3, "spec": 1 / 2, "ppv": 2 / 3, "npv": 1 / 2,
                "mcc": (2 * 1 - 1 * 1) / np.sqrt(3 * 3 * 2 * 2)}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    with_ci = metrics_with_ci(y, scores, resamples=200)
    assert with_ci["acc"]["value"] == pytest.approx(0.6) and with_ci["acc"]["ci_low"] is None  # 2 and 3 patients
    assert with_ci["acc"]["ci_note"].startswith("no interval")


def test_rank_auc_equals_scikit_learns_with_and_without_ties() -> None:
    generator = np.random.default_rng(7)
    for size in (5, 23, 200):
        y = generator.permutation(np.arange(size) % 3 == 0).astype(int)
        continuous = generator.normal(size=size) + y
        tied = np.round(continuous)  # a handful of distinct values: many ties across the classes
        for scores in (continuous, tied):
            assert rank_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_metrics_of_a_single_class_do_not_crash() -> None:
    metrics = binary_metrics(np.ones(4), np.array([1.0, 2.0, -1.0, 3.0]))
    assert metrics["auc"] is None and metrics["spec"] is None  # no wild-type patient
    assert metrics["sens"] == 0.75 and metrics["ppv"] == 1.0 and metrics["npv"] == 0.0
    assert metrics["mcc"] is None  # an empty confusion-matrix row: undefined, not 0
    with_ci = metrics_with_ci(np.ones(4), np.array([1.0, 2.0, -1.0, 3.0]), resamples=50)
    assert with_ci["auc"]["value"] is None and with_ci["auc"]["ci_low"] is None and with_ci["auc"]["ci_high"] is None


def test_bootstrap_interval_is_stratified_and_honest_about_small_classes() -> None:
    generator = np.random.default_rng(3)
    # one mutant among five: the old percentile bootstrap printed a zero-width 1.00 (1.00-1.00)
    lone = metrics_with_ci(np.array([1, 0, 0, 0, 0]), np.array([2.0, -1.0, -0.5, -2.0, 0.1 - 0.2]))
    assert lone["auc"]["value"] == 1.0 and lone["auc"]["ci_low"] is None and "fewer than" in lone["auc"]["ci_note"]
    y = np.repeat([1, 0], [12, 40])
    scores = generator.normal(size=52) + 1.2 * y
    result = metrics_with_ci(y, scores, resamples=400)
    auc = result["auc"]
    assert auc["ci_low"] < auc["value"] < auc["ci_high"] and auc["ci_high"] - auc["ci_low"] > 0.1
    # stratified: every resample keeps 12 mutants, so no resample is dropped and the interval is
    # the same as a hand-made class-wise resampling with the same generator
    again = np.random.default_rng(0)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    manual = []
    for _ in range(400):
        index = np.concatenate([again.choice(positives, 12), again.choice(negatives, 40)])
        manual.append(binary_metrics(y[index], scores[index])["auc"])
    assert auc["ci_low"] == pytest.approx(np.percentile(manual, 2.5))
    assert auc["ci_high"] == pytest.approx(np.percentile(manual, 97.5))


def test_kfold_keeps_a_patients_samples_in_one_fold() -> None:
    groups = np.repeat(np.arange(20), 8)  # 8 windows per patient
    y = np.repeat(np.tile([0, 1], 10), 8)
    for train, test in repeated_kfold(y, folds=5, repeats=2, groups=groups)[1]:
        assert not set(groups[train]) & set(groups[test])


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_geometry_is_the_receptive_field(layer: str) -> None:
    """Output (0, i) depends on exactly input columns stride*i .. stride*i + 2*offset."""
    torch.manual_seed(0)
    network = SegmentationCNN(Architecture(in_channels=1)).eval()
    stride, offset = LAYER_GEOMETRY[layer]
    x = torch.randn(1, 1, 2 * offset + 1 + 3 * stride, 2 * offset + 1 + 3 * stride)
    base = network(x, until=layer)
    i = 2  # an output column away from the edges
    window = slice(stride * i, stride * i + 2 * offset + 1)
    outside = x.clone()
    outside[..., :window.start] += 5
    outside[..., window.stop:] += 5
    inside = x.clone()
    inside[..., window] += 5
    assert torch.allclose(network(outside, until=layer)[..., 0, i], base[..., 0, i])
    assert not torch.allclose(network(inside, until=layer)[..., 0, i], base[..., 0, i])


def test_temporal_split_trains_on_earlier_diagnoses() -> None:
    import datetime as dt

    from IDHPredictorLib.validation.splits import temporal

    dates = [dt.date(2012, 1, 1), dt.date(2016, 3, 1), dt.date(2014, 12, 31), dt.date(2015, 1, 1)]
    [(train, test)] = temporal(dates, dt.date(2015, 1, 1))
    assert train.tolist() == [0, 2] and test.tolist() == [1, 3]
