"""DSC perfusion by tracer kinetics on the patient's own anatomy and tumour.

* Arterial input: gamma variate first pass (Thompson et al. 1964; alpha ~3, beta ~1.5 s)
  plus a delayed, dispersed recirculation and a slow steady-state tail.
* Tissue concentration per class: C_t = CBV * (C_a conv h), h(t) = exp(-t/MTT)/MTT, so the
  area under C_t is CBV times that of C_a (indicator dilution). Normal values: CBV 2 % white,
  4.5 % grey matter, MTT ~4 s (Ostergaard, JMRI 2005). Solid tumour has CBV = rCBV * CBV_wm.
* delta-R2* = r2 * C, with an effective r2 larger in tissue than in large vessels, chosen so
  the signal drops ~70 % in arteries, ~25 % in grey and ~12 % in white matter at TE 30 ms.
* Leakage (Boxerman, Schmainda & Weisskoff, AJNR 2006): delta-R2*_tumour(t) gains
  -K2 * integral_0^t delta-R2*_ref, K2 > 0 for the T1-dominant leakage of enhancing tumour.
* S(t) = sum over classes of fraction * S0 * exp(-TE * delta-R2*), Rician noise.
* Dual echo (optional): leaked tracer both shortens T1 (a gain E1(t) on the signal, the same at
  every echo time) and adds an extravascular delta-R2*_ev(t) = T2_LEAKAGE_SHARE * K2 * integral ref
  (T2* leakage). E1 is chosen so that the long echo is the single-echo series unchanged:
  E1 * exp(-TE * delta-R2*_ev) = exp(TE * K2 * integral ref). The short echo (TE 2-3 ms, baseline
  SHORT_ECHO_GAIN x higher: less T2* decay) is S0' * E1 * exp(-TE_short * (delta-R2*_vessels +
  delta-R2*_ev)). ln(S_short / S_long) / (TE_long - TE_short) is then T1-free but keeps the T2*
  leakage, which BSW removes (with K2 < 0 in its sign convention), as on real dual-echo data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .anatomy import Grid
from .traits import PatientTraits

R2_ARTERY = 5.0    # 1/s per mmol/L, large vessels
R2_TISSUE = 44.0   # 1/s per mmol/L of blood-pool concentration, microvasculature (effective)
CBV_WM = 0.02
SHORT_ECHO_GAIN = 1.8  # baseline signal at TE ~2 ms over that at TE 30 ms (tissue T2* ~50 ms)
T2_LEAKAGE_SHARE = 0.5  # extravascular delta-R2* of leaked tracer, as a share of the BSW K2 term
# class -> (CBV, MTT s, baseline T2*-weighted signal at TE 30 ms relative to white matter)
NORMAL_KINETICS = {"wm": (CBV_WM, 4.0, 1.0), "gm": (0.045, 3.5, 1.12), "csf": (0.0, 4.0, 1.6)}


@dataclass
class SimulatedDsc:
    """4-D series (t, z, y, x) int16 on ``grid``, its timing and the simulator's truth."""

    signal: np.ndarray
    grid: Grid
    repetition_time_s: float
    echo_time_s: float
    bolus_arrival_s: float
    aif_voxels: list[tuple[int, int, int]]  # ITK index order (x, y, z)
    short_echo: np.ndarray | None = None     # (t, z, y, x) int16 of a dual-echo series' short echo
    short_echo_time_s: float | None = None

    def image(self, signal: np.ndarray | None = None) -> sitk.Image:
        """4-D SimpleITK image (of ``signal``, default the long echo), time last, 4th spacing = TR."""
        frames = self.signal if signal is None else signal
        return sitk.JoinSeries([self.grid.image(frame) for frame in frames], 0.0, self.repetition_time_s)


def dsc_grid(structural: Grid, rng: np.random.Generator) -> Grid:
    """DSC geometry: 2 x 2 x 5 mm (also for small phantoms: DSC stays realistic), slightly rotated
    and shifted.

    A real DSC series is acquired apart from the structural scans, so masks have to be
    resampled into it; a few degrees of in-plane rotation and a few mm of shift force that.
    """
    spacing = (2.0, 2.0, 5.0)
    extent = np.asarray(structural.size) * np.asarray(structural.spacing)
    size = tuple(int(round(e / s)) for e, s in zip(extent, spacing))
    rotation = np.asarray(sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, np.deg2rad(rng.uniform(-4, 4))).GetMatrix()).reshape(3, 3)
    centre = np.asarray(structural.origin) + (extent - np.asarray(structural.spacing)) / 2.0 + rng.uniform(-3, 3, 3)
    origin = centre - rotation @ ((np.asarray(size) - 1) * np.asarray(spacing) / 2.0)
    return Grid(size, spacing, tuple(float(o) for o in origin), tuple(float(d) for d in rotation.ravel()))


def to_dsc_space(fraction: np.ndarray, structural: Grid, target: Grid) -> np.ndarray:
    """Resample a fraction map into DSC space: Gaussian partial-volume blur, then linear."""
    image = sitk.SmoothingRecursiveGaussian(structural.image(fraction.astype(np.float32)),
                                            [s / 2.5 for s in target.spacing])
    reference = target.image(np.zeros(target.shape, np.float32))
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0))


def gamma_variate(t: np.ndarray, arrival: float, alpha: float, beta: float) -> np.ndarray:
    """Unit-peak gamma variate, zero before ``arrival``."""
    tau = np.clip(t - arrival, 0.0, None)
    curve = tau ** alpha * np.exp(-tau / beta)
    return curve / curve.max()


def arterial_concentration(rng: np.random.Generator, t: np.ndarray, arrival: float) -> np.ndarray:
    """C_a(t) in mmol/L: first pass + recirculation + steady-state tail."""
    peak = rng.uniform(7.0, 10.0)
    first = gamma_variate(t, arrival, rng.uniform(2.5, 3.5), rng.uniform(1.2, 1.8))
    recirculation = 0.2 * gamma_variate(t, arrival + rng.uniform(7.0, 9.0), 3.0, 2.5)
    tau = np.clip(t - arrival, 0.0, None)
    tail = 0.08 / (1.0 + np.exp(-(tau - 8.0) / 2.0)) * np.exp(-tau / 300.0) * (t > arrival)
    return peak * (first + recirculation + tail)


def tissue_delta_r2(c_a: np.ndarray, dt: float, cbv: float, mtt: float) -> np.ndarray:
    """delta-R2*(t) of tissue with blood volume ``cbv`` and mean transit time ``mtt``."""
    residue_density = np.exp(-np.arange(len(c_a)) * dt / mtt) * dt / mtt
    return R2_TISSUE * cbv * np.convolve(c_a, residue_density)[: len(c_a)]


def simulate_dsc(rng: np.random.Generator, structural: Grid, fractions: dict[str, np.ndarray],
                 traits: PatientTraits, tumour_centre_index: tuple[int, int, int], dual_echo: bool = False) -> SimulatedDsc:
    """Simulate one patient's DSC series from structural-space tissue fractions (with a short echo
    when ``dual_echo``; the long echo and every other draw are the same either way)."""
    grid = dsc_grid(structural, rng)
    frames = int(rng.integers(55, 66))
    tr = float(np.round(rng.uniform(1.4, 1.6), 3))
    te = float(np.round(rng.uniform(0.028, 0.032), 4))
    arrival = float(rng.uniform(12.0, 20.0))
    t = np.arange(frames) * tr
    c_a = arterial_concentration(rng, t, arrival)
    tissue_arrival = np.interp(t - rng.uniform(0.5, 1.5), t, c_a, left=0.0)

    solid_cbv = traits.rcbv * CBV_WM
    kinetics = {**NORMAL_KINETICS,
                "oedema": (0.8 * CBV_WM, 4.5, 1.35), "nonenhancing": (solid_cbv, 4.5, 1.3),
                "necrosis": (0.1 * CBV_WM, 5.0, 1.5), "enhancing": (solid_cbv, 5.0, 1.25)}
    leakage = {"enhancing": traits.leakage, "nonenhancing": 0.3 * traits.leakage}
    reference = tissue_delta_r2(tissue_arrival, tr, 0.03, 4.0)
    reference_integral = np.cumsum(reference) * tr
    names = list(kinetics)
    vessels = {name: tissue_delta_r2(tissue_arrival, tr, kinetics[name][0], kinetics[name][1]) for name in names}
    basis = np.stack([kinetics[name][2] * np.exp(-te * (vessels[name] - leakage.get(name, 0.0) * reference_integral))
                      for name in names])  # (classes, t)
    dsc_fractions = np.stack([to_dsc_space(fractions[name], structural, grid) for name in names], axis=-1)
    aif_voxels = _aif_voxels(grid, dsc_fractions, tumour_centre_index, structural)
    signal = _with_artery(dsc_fractions.reshape(-1, len(names)) @ basis, aif_voxels, grid, 0.7 * 1.1 * np.exp(-te * R2_ARTERY * c_a))

    scale = rng.uniform(800.0, 1500.0)
    series = _rician_series(rng, signal, scale, frames, grid)
    simulated = SimulatedDsc(series, grid, tr, te, arrival, aif_voxels)
    if dual_echo:  # drawn last, so that the rest of the patient is the same with or without it
        short_te = float(np.round(rng.uniform(0.002, 0.003), 4))
        extravascular = {name: T2_LEAKAGE_SHARE * leakage.get(name, 0.0) * reference_integral for name in names}
        # the T1 gain that leaves the long echo as the single-echo series: exp(te * (K2 ref_int + dR2*_ev))
        t1_gain = {name: np.exp(te * (leakage.get(name, 0.0) * reference_integral + extravascular[name])) for name in names}
        short_basis = np.stack([SHORT_ECHO_GAIN * kinetics[name][2] * t1_gain[name]
                                * np.exp(-short_te * (vessels[name] + extravascular[name])) for name in names])
        artery = SHORT_ECHO_GAIN * 0.7 * 1.1 * np.exp(-short_te * R2_ARTERY * c_a)
        short = _with_artery(dsc_fractions.reshape(-1, len(names)) @ short_basis, aif_voxels, grid, artery)
        simulated.short_echo, simulated.short_echo_time_s = _rician_series(rng, short, scale, frames, grid), short_te
    return simulated


def _with_artery(signal: np.ndarray, aif_voxels: list[tuple[int, int, int]], grid: Grid, artery: np.ndarray) -> np.ndarray:
    """(voxels, t) signal with the artery's curve mixed (70 %) into the AIF voxels."""
    for x, y, z in aif_voxels:
        flat = np.ravel_multi_index((z, y, x), grid.shape)
        signal[flat] = 0.3 * signal[flat] + artery
    return signal


def _rician_series(rng: np.random.Generator, signal: np.ndarray, scale: float, frames: int, grid: Grid) -> np.ndarray:
    """(voxels, t) noiseless signal -> (t, z, y, x) int16 magnitude with Rician noise."""
    sigma = np.float32(0.012)  # relative to white matter's baseline signal
    # in place: the series is ~25 M samples, and the temporaries of the plain expressions took
    # a third of a patient's simulation time (the values are the same to the last bit)
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    noise *= sigma
    signal += noise  # the real channel
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    noise *= sigma  # the imaginary channel
    magnitude = np.hypot(signal, noise, out=signal)
    magnitude *= scale
    np.clip(np.rint(magnitude, out=magnitude), 0, 32767, out=magnitude)
    return magnitude.astype(np.int16).T.reshape((frames, *grid.shape))


def _aif_voxels(grid: Grid, dsc_fractions: np.ndarray, tumour_centre_index: tuple[int, int, int],
                structural: Grid) -> list[tuple[int, int, int]]:
    """A 2 x 2 in-plane cluster where the middle cerebral artery runs, opposite the tumour.

    Target: 40 mm lateral of the brain's centre on the side away from the tumour, 20 mm below
    it (the Sylvian fissure); the nearest grey-matter-rich DSC voxel is taken.
    """
    parenchyma = dsc_fractions[..., 0] + dsc_fractions[..., 1]  # wm + gm
    zyx = np.argwhere(parenchyma > 0.5)
    points = grid.physical_points(zyx[:, ::-1])
    centre = points.mean(axis=0)
    tumour_x = structural.physical_points(np.asarray([tumour_centre_index[::-1]]))[0, 0]
    side = -1.0 if tumour_x > centre[0] else 1.0
    target = centre + np.array([side * 40.0, 0.0, -20.0])
    gm_rich = dsc_fractions[..., 1][tuple(zyx.T)] > 0.4
    distance = np.linalg.norm(points - target, axis=1) + np.where(gm_rich, 0.0, 20.0)
    z, y, x = zyx[distance.argmin()]
    x = min(x, grid.size[0] - 2)
    y = min(y, grid.size[1] - 2)
    return [(int(x + dx), int(y + dy), int(z)) for dy in (0, 1) for dx in (0, 1)]
