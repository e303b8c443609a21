"""Tracer presets of the SV2A phantom: kinetics, input function, frames, dose and scanner.

Every number is a *design* value of this package (not a measurement) chosen to lie inside the
ranges reported in the literature: human [11C]UCB-J (Finnema 2018 JCBFM; Koole 2019
EJNMMI; Rossano 2020 JCBFM), human [18F]SynVesT-1 and [18F]SynVesT-2, rat [18F]SynVesT-1
(2TCM, Wimberley 2025 EJNMMI Res) and mouse [11C]UCB-J (1TCM with IDIF, Bertoglio 2020 JCBFM).

Input function (Feng et al. 1993, Int J Biomed Comput), total plasma, ``s = t - delay``::

    Cp_tot(s) = (A1 s - A2 - A3) exp(-l1 s) + A2 exp(-l2 s) + A3 exp(-l3 s),  s >= 0

so ``Cp_tot(0) = 0``; parent fraction ``f(t) = a + (1 - a) exp(-t / tau)`` (t since
injection); parent (metabolite-corrected) plasma ``Cp = f Cp_tot``; whole blood
``C_WB = r Cp_tot`` (blood-to-plasma ratio r). Amplitudes are given for the preset's
injected dose and body weight and scale with dose / weight, so SUVs do not depend on them.

Examples
--------
>>> p = get_preset("human", "ucbj")
>>> p.model, p.radionuclide, round(float(p.input.parent_fraction(15.0)), 3)
('1tcm', 'C11', 0.351)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ModelError

if TYPE_CHECKING:
    from ..frames import FrameSchedule

__all__ = ["FengInput", "TracerPreset", "PRESETS", "get_preset", "available_presets"]


@dataclass(frozen=True)
class FengInput:
    """Analytic input function: Feng total plasma x parent fraction (minutes, kBq/mL).

    Parameters
    ----------
    A1 : float
        kBq/mL/min. ``A2, A3`` : kBq/mL.
    lambda1, lambda2, lambda3 : float
        Rates (1/min).
    delay : float
        Arrival time of the bolus at the sampling site (min); the curves are 0 before it.
    parent_plateau, parent_tau : float
        Parent fraction ``a + (1 - a) exp(-t/tau)``; ``tau`` in min.
    blood_to_plasma : float
        Whole blood / total plasma ratio (constant).
    """

    A1: float
    A2: float
    A3: float
    lambda1: float
    lambda2: float
    lambda3: float
    delay: float
    parent_plateau: float
    parent_tau: float
    blood_to_plasma: float = 1.0

    def scaled(self, factor: float) -> FengInput:
        """The same curve shapes with amplitudes multiplied by ``factor``.

        Parameters
        ----------
        factor : float
            Amplitude ratio (unitless), e.g. the ratio of injected activity per body weight
            (MBq/kg) to the preset's.

        Returns
        -------
        FengInput
            A new input function; rates, delay and parent fraction unchanged.
        """
        return replace(self, A1=self.A1 * factor, A2=self.A2 * factor, A3=self.A3 * factor)

    # ---- exponential-term representation: list of (coef, power, rate) in s = t - delay
    def total_terms(self) -> list[tuple[float, int, float]]:
        """Total plasma as ``sum c s^n exp(-a s)`` terms (``s = t - delay``).

        Returns
        -------
        list of (float, int, float)
            ``(c, n, a)``: ``c`` in kBq/mL (n = 0) or kBq/mL/min (n = 1), ``a`` in 1/min.
        """
        return [(self.A1, 1, self.lambda1), (-(self.A2 + self.A3), 0, self.lambda1),
                (self.A2, 0, self.lambda2), (self.A3, 0, self.lambda3)]

    def parent_terms(self) -> list[tuple[float, int, float]]:
        """Metabolite-corrected plasma as exponential terms in ``s = t - delay``.

        Returns
        -------
        list of (float, int, float)
            ``(c, n, a)`` as :meth:`total_terms`.
        """
        a = self.parent_plateau
        mu = 1.0 / self.parent_tau
        b = (1.0 - a) * np.exp(-mu * self.delay)  # f(t) = a + b exp(-mu s)
        out = []
        for c, n, r in self.total_terms():
            out.append((c * a, n, r))
            out.append((c * b, n, r + mu))
        return out

    def whole_blood_terms(self) -> list[tuple[float, int, float]]:
        """Whole blood as exponential terms in ``s = t - delay``.

        Returns
        -------
        list of (float, int, float)
            ``(c, n, a)`` as :meth:`total_terms`.
        """
        return [(c * self.blood_to_plasma, n, r) for c, n, r in self.total_terms()]

    # ---- point evaluation
    def _eval(self, terms: list[tuple[float, int, float]], t: ArrayLike) -> np.ndarray:
        s = np.asarray(t, dtype=float) - self.delay
        sp = np.maximum(s, 0.0)
        out = np.zeros_like(sp)
        for c, n, r in terms:
            out += c * sp**n * np.exp(-r * sp)
        return np.where(s > 0, out, 0.0)

    def total_plasma(self, t: ArrayLike) -> np.ndarray:
        """Total plasma activity (parent + metabolites).

        Parameters
        ----------
        t : array_like
            Times since injection (min).

        Returns
        -------
        numpy.ndarray
            kBq/mL (decay corrected), same shape as ``t``; 0 before :attr:`delay`.
        """
        return self._eval(self.total_terms(), t)

    def parent_fraction(self, t: ArrayLike) -> np.ndarray:
        """Parent (unmetabolised) fraction of plasma activity.

        Parameters
        ----------
        t : array_like
            Times since injection (min).

        Returns
        -------
        numpy.ndarray
            Fraction (0-1), same shape as ``t``.
        """
        t = np.asarray(t, dtype=float)
        return self.parent_plateau + (1 - self.parent_plateau) * np.exp(-t / self.parent_tau)

    def plasma(self, t: ArrayLike) -> np.ndarray:
        """Metabolite-corrected (parent) plasma activity.

        Parameters
        ----------
        t : array_like
            Times since injection (min).

        Returns
        -------
        numpy.ndarray
            kBq/mL (decay corrected), same shape as ``t``.
        """
        return self._eval(self.parent_terms(), t)

    def whole_blood(self, t: ArrayLike) -> np.ndarray:
        """Whole blood activity.

        Parameters
        ----------
        t : array_like
            Times since injection (min).

        Returns
        -------
        numpy.ndarray
            kBq/mL (decay corrected), same shape as ``t``.
        """
        return self._eval(self.whole_blood_terms(), t)


@dataclass(frozen=True)
class TracerPreset:
    """A species x tracer simulation preset (all times in min, activity kBq/mL).

    Attributes
    ----------
    key : str
        ``"<species>_<tracer>"``.
    model : str
        ``"1tcm"`` (regions give K1, VT, vB) or ``"2tcm"`` (K1, k2, k3, k4, vB).
    regions : mapping
        Region name -> kinetic parameters. For 1TCM also ``VND`` may be given per region
        (default :attr:`vnd`); extracerebral tissue has ``VND == VT`` (no specific binding).
    vnd : float
        Non-displaceable distribution volume (mL/cm3) of brain tissue (1TCM presets).
    input : FengInput
        Input function at :attr:`injected_mbq` and :attr:`body_weight_kg`.
    frames_n_by_seconds : tuple
        Frame protocol ``((count, seconds), ...)``.
    fwhm_mm, voxel_mm : float
        Default scanner resolution and image voxel size.
    suvr_window : (float, float)
        SUV/SUVR window (min).
    reference : str or None
        Reference region for ``*_CS`` truth values (``None`` for rodents: no true reference).
    noise_region : str
        Region whose last-frame CV defines the noise calibration.
    noise_cv_voxel, noise_cv_region : float
        Design CVs of a voxel / a 20 mL (human) or whole-region (rodent) ROI in the last frame.
    blood_times_s : tuple
        Manual arterial sampling times (s).
    """

    key: str
    species: str
    tracer: str
    tracer_name: str
    radionuclide: str
    model: str
    regions: Mapping[str, Mapping[str, float]]
    vnd: float | None
    input: FengInput
    frames_n_by_seconds: tuple
    injected_mbq: float
    body_weight_kg: float
    fwhm_mm: float
    voxel_mm: float
    suvr_window: tuple[float, float]
    reference: str | None
    noise_region: str
    noise_cv_voxel: float
    noise_cv_region: float
    blood_times_s: tuple
    scanner: str = "simulated"
    injected_mass_ug: float = 1.5
    molar_activity_gbq_umol: float = 100.0
    notes: str = ""
    extra: Mapping = field(default_factory=dict)

    def frames(self) -> FrameSchedule:
        """The preset's frame protocol.

        Returns
        -------
        sv2a.frames.FrameSchedule
            Frame start / end times (min) with the radionuclide half-life.
        """
        from ..frames import frames_from_counts
        from ..units import half_life

        return frames_from_counts(self.frames_n_by_seconds,
                                  half_life=half_life(self.radionuclide),
                                  source=f"phantom preset {self.key}")

    @property
    def half_life(self) -> float:
        """Radionuclide half-life (min)."""
        from ..units import half_life

        return half_life(self.radionuclide)

    @property
    def suv_factor(self) -> float:
        """kBq/mL per SUV unit at the preset dose and weight (MBq / kg)."""
        return self.injected_mbq / self.body_weight_kg


def _freeze(d: dict) -> Mapping:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in d.items()})


def _seq(*parts) -> tuple:
    out: list[float] = []
    for start, stop, step in parts:
        out.extend(np.arange(start, stop, step).tolist())
    return tuple(float(x) for x in out)


# ------------------------------------------------------------------ human [11C]UCB-J
_HUMAN_UCBJ_REGIONS = {  # VT (mL/cm3), K1 (mL/cm3/min), vB: design values
    "frontal_cortex": (18.0, 0.40, 0.05),
    "dlpfc": (18.0, 0.40, 0.05),
    "anterior_cingulate": (18.5, 0.42, 0.05),
    "posterior_cingulate": (19.0, 0.45, 0.05),
    "temporal_cortex": (19.0, 0.40, 0.05),
    "parietal_cortex": (17.5, 0.40, 0.05),
    "occipital_cortex": (17.0, 0.45, 0.05),
    "insula": (20.0, 0.45, 0.05),
    "hippocampus": (13.0, 0.30, 0.05),
    "amygdala": (16.5, 0.32, 0.05),
    "caudate": (16.0, 0.35, 0.05),
    "putamen": (20.0, 0.45, 0.05),
    "thalamus": (14.0, 0.42, 0.05),
    "cerebellum_cortex": (15.0, 0.40, 0.05),
    "brainstem": (9.0, 0.30, 0.05),
    # deep white matter = the same tissue as the centrum semiovale (CS is its eroded core)
    "white_matter": (3.8, 0.135, 0.03),
    "centrum_semiovale": (3.8, 0.135, 0.03),
}
_HUMAN_VND = 2.8  # CS VT / VND = 1.36 (Rossano 2020: 1.35-1.40)
# extracerebral tissue: SUV(60-90) ~0.3 (design), no specific binding; CSF: no activity
_SCALP = {"K1": 0.05, "VT": 1.2, "vB": 0.02, "VND": 1.2}
_CSF = {"K1": 0.0, "VT": 0.0, "vB": 0.0, "VND": 0.0}

_HUMAN_BLOOD_S = _seq((10, 121, 10), (150, 301, 30), (360, 601, 120), (900, 1801, 300),
                      (2400, 7201, 600))
_RODENT_BLOOD_S = _seq((5, 61, 5), (75, 181, 15), (240, 601, 60), (900, 3601, 300))


def _human_1tcm(vt_k1_vb: dict, vnd: float) -> dict:
    out = {k: {"VT": v[0], "K1": v[1], "vB": v[2], "VND": vnd} for k, v in vt_k1_vb.items()}
    out["ventricles"] = dict(_CSF)
    out["scalp"] = dict(_SCALP)
    return out


def _human_ucbj() -> TracerPreset:
    return TracerPreset(
        key="human_ucbj", species="human", tracer="ucbj", tracer_name="[11C]UCB-J",
        radionuclide="C11", model="1tcm",
        regions=_freeze(_human_1tcm(_HUMAN_UCBJ_REGIONS, _HUMAN_VND)), vnd=_HUMAN_VND,
        input=FengInput(1150.0, 36.0, 9.0, 4.0, 0.40, 0.003, 0.25, 0.20, 9.0, 1.0),
        frames_n_by_seconds=((6, 10), (3, 20), (6, 30), (5, 60), (5, 120), (14, 300)),
        injected_mbq=600.0, body_weight_kg=75.0, fwhm_mm=4.5, voxel_mm=2.0,
        suvr_window=(60.0, 90.0), reference="centrum_semiovale", noise_region="frontal_cortex",
        noise_cv_voxel=0.15, noise_cv_region=0.02, blood_times_s=_HUMAN_BLOOD_S,
        scanner="PET/MR (simulated)",
        notes="design preset; calibration: cortical peak SUV ~7.6, SUV(60-90) ~4.7, "
              "SUVR_CS(60-90) 2-3.4 % above DVR_CS",
    )


def _human_synvest1() -> TracerPreset:
    # Cortex VT 19 / K1 0.36, cerebellum 15 / 0.315, CS 3.5 / 0.109 (k2_CS 0.031,
    # k2_cerebellum 0.021: SynVesT-1 SRTM study); other regions scaled from the UCB-J preset.
    vnd = 2.6  # CS VT / VND ~1.35
    regs = {}
    for name, (vt, k1, vb) in _HUMAN_UCBJ_REGIONS.items():
        if name in ("white_matter", "centrum_semiovale"):
            regs[name] = (3.5, 0.109, vb)
        elif name == "cerebellum_cortex":
            regs[name] = (15.0, 0.315, vb)
        else:
            regs[name] = (round(vnd + (vt - _HUMAN_VND) * (19.0 - vnd) / (18.0 - _HUMAN_VND), 3),
                          round(k1 * 0.9, 4), vb)
    return TracerPreset(
        key="human_synvest1", species="human", tracer="synvest1",
        tracer_name="[18F]SynVesT-1", radionuclide="F18", model="1tcm",
        regions=_freeze(_human_1tcm(regs, vnd)), vnd=vnd,
        input=FengInput(1150.0 * 185 / 600, 36.0 * 185 / 600, 9.0 * 185 / 600, 4.0, 0.40,
                        0.003, 0.25, 0.25, 15.0, 1.0),
        frames_n_by_seconds=((6, 30), (3, 60), (2, 120), (22, 300)),
        injected_mbq=185.0, body_weight_kg=75.0, fwhm_mm=4.5, voxel_mm=2.0,
        suvr_window=(60.0, 90.0), reference="centrum_semiovale", noise_region="frontal_cortex",
        noise_cv_voxel=0.15, noise_cv_region=0.02, blood_times_s=_HUMAN_BLOOD_S,
        scanner="PET/MR (simulated)",
    )


def _human_synvest2() -> TracerPreset:
    # Cortex VT 4.6 / K1 0.5, putamen 5.0 / 0.55, CS 1.9 / 0.2 (design values); specific
    # binding of other regions scaled from UCB-J (VS x 0.21), K1 x 1.25.
    vnd = 1.4
    regs = {}
    for name, (vt, k1, vb) in _HUMAN_UCBJ_REGIONS.items():
        if name in ("white_matter", "centrum_semiovale"):
            regs[name] = (1.9, 0.2, vb)
        else:
            regs[name] = (round(vnd + (vt - _HUMAN_VND) * 3.2 / 15.2, 3), round(k1 * 1.25, 4), vb)
    return TracerPreset(
        key="human_synvest2", species="human", tracer="synvest2",
        tracer_name="[18F]SynVesT-2", radionuclide="F18", model="1tcm",
        regions=_freeze(_human_1tcm(regs, vnd)), vnd=vnd,
        input=FengInput(1150.0 * 185 / 600, 36.0 * 185 / 600, 9.0 * 185 / 600, 4.0, 0.40,
                        0.003, 0.25, 0.15, 16.0, 1.0),
        frames_n_by_seconds=((6, 30), (3, 60), (2, 120), (10, 300)),
        injected_mbq=185.0, body_weight_kg=75.0, fwhm_mm=4.5, voxel_mm=2.0,
        suvr_window=(30.0, 60.0), reference="centrum_semiovale", noise_region="frontal_cortex",
        noise_cv_voxel=0.15, noise_cv_region=0.02,
        blood_times_s=tuple(t for t in _HUMAN_BLOOD_S if t <= 3600),
        scanner="PET/MR (simulated)",
    )


_RODENT_FRAMES = ((12, 10), (6, 30), (5, 60), (5, 180), (7, 300))


def _rat_synvest1() -> TracerPreset:
    p = {
        "cortex": (0.60, 0.25, 0.30, 0.04, 0.04),
        "hippocampus": (0.55, 0.25, 0.25, 0.04, 0.04),
        "striatum": (0.60, 0.25, 0.32, 0.04, 0.04),
        "thalamus": (0.65, 0.25, 0.26, 0.04, 0.04),
        "cerebellum": (0.60, 0.25, 0.22, 0.04, 0.04),
        "brainstem": (0.55, 0.25, 0.12, 0.04, 0.04),
        "olfactory_bulb": (0.60, 0.25, 0.28, 0.04, 0.04),
        "other_brain": (0.55, 0.25, 0.22, 0.04, 0.04),
        # Harderian glands: high extracerebral uptake behind the eyes (spill-in tests)
        "harderian_gland": (1.00, 0.10, 0.15, 0.05, 0.10),
        # heart wall (the left-ventricular cavity is whole blood, not a tissue): high flow,
        # little binding (VND 2, VS 0.4 mL/cm3: SV2A of cardiac nerve terminals), 10 % blood
        "myocardium": (0.60, 0.30, 0.02, 0.10, 0.10),
    }
    regs = {k: dict(zip(("K1", "k2", "k3", "k4", "vB"), v, strict=True)) for k, v in p.items()}
    return TracerPreset(
        key="rat_synvest1", species="rat", tracer="synvest1", tracer_name="[18F]SynVesT-1",
        radionuclide="F18", model="2tcm", regions=_freeze(regs), vnd=None,
        # amplitudes for 20 MBq / 0.3 kg (66.7 kBq/g, 8.3 x the human UCB-J dose per weight)
        input=FengInput(9600.0, 300.0, 75.0, 6.0, 0.60, 0.005, 0.1, 0.08, 10.5, 0.85),
        frames_n_by_seconds=_RODENT_FRAMES, injected_mbq=20.0, body_weight_kg=0.3,
        fwhm_mm=1.5, voxel_mm=0.3, suvr_window=(30.0, 60.0), reference=None,
        noise_region="cortex", noise_cv_voxel=0.25, noise_cv_region=0.05,
        blood_times_s=_RODENT_BLOOD_S, scanner="Inveon (simulated)", injected_mass_ug=0.5,
        notes="no true reference region; brainstem is a pseudo-reference with BPND 3 by design",
    )


def _mouse_ucbj() -> TracerPreset:
    vnd = 3.0  # design: no reference region exists in mice (Bertoglio 2020)
    p = {"cortex": (20.0, 0.70), "hippocampus": (19.0, 0.65), "striatum": (21.0, 0.70),
         "thalamus": (19.0, 0.75), "cerebellum": (16.0, 0.70), "brainstem": (12.0, 0.65),
         "other_brain": (17.0, 0.65)}
    regs = {k: {"VT": vt, "K1": k1, "vB": 0.05, "VND": vnd} for k, (vt, k1) in p.items()}
    regs["harderian_gland"] = {"VT": 30.0, "K1": 0.9, "vB": 0.10, "VND": 30.0}
    # heart wall (the left-ventricular cavity is whole blood, not a tissue): high flow, little
    # binding (SV2A of cardiac nerve terminals), 10 % blood
    regs["myocardium"] = {"VT": 3.5, "K1": 0.8, "vB": 0.10, "VND": vnd}
    return TracerPreset(
        key="mouse_ucbj", species="mouse", tracer="ucbj", tracer_name="[11C]UCB-J",
        radionuclide="C11", model="1tcm", regions=_freeze(regs), vnd=vnd,
        # amplitudes for 10 MBq / 0.025 kg (400 kBq/g)
        input=FengInput(40000.0, 1500.0, 250.0, 6.0, 0.60, 0.01, 0.1, 0.10, 7.5, 0.85),
        frames_n_by_seconds=_RODENT_FRAMES, injected_mbq=10.0, body_weight_kg=0.025,
        fwhm_mm=1.2, voxel_mm=0.15, suvr_window=(30.0, 60.0), reference=None,
        noise_region="cortex", noise_cv_voxel=0.25, noise_cv_region=0.05,
        blood_times_s=_RODENT_BLOOD_S, scanner="small-animal PET (simulated)",
        injected_mass_ug=0.3,
        notes="1TCM with image-derived input in practice (Bertoglio 2020); no reference region",
    )


PRESETS: Mapping[str, TracerPreset] = MappingProxyType({
    p.key: p for p in (_human_ucbj(), _human_synvest1(), _human_synvest2(), _rat_synvest1(),
                       _mouse_ucbj())
})

_TRACER_ALIASES = {
    "ucbj": "ucbj", "ucb-j": "ucbj", "[11c]ucb-j": "ucbj", "11c-ucb-j": "ucbj",
    "synvest1": "synvest1", "synvest-1": "synvest1", "sdm8": "synvest1", "sdm-8": "synvest1",
    "[18f]synvest-1": "synvest1", "18f-synvest-1": "synvest1",
    "synvest2": "synvest2", "synvest-2": "synvest2", "sdm2": "synvest2", "sdm-2": "synvest2",
    "[18f]synvest-2": "synvest2", "18f-synvest-2": "synvest2",
}
_DEFAULT_TRACER = {"human": "ucbj", "rat": "synvest1", "mouse": "ucbj"}


def available_presets() -> list[str]:
    """Keys of the tracer presets.

    Returns
    -------
    list of str
        ``"<species>_<tracer>"``, sorted.

    Examples
    --------
    >>> available_presets()
    ['human_synvest1', 'human_synvest2', 'human_ucbj', 'mouse_ucbj', 'rat_synvest1']
    """
    return sorted(PRESETS)


def get_preset(species: str = "human", tracer: str | None = None) -> TracerPreset:
    """The simulation preset of a species and tracer.

    Parameters
    ----------
    species : {"human", "rat", "mouse"}
        Species (case-insensitive).
    tracer : str, optional
        ``ucbj``, ``synvest1`` or ``synvest2`` (aliases such as ``[11C]UCB-J`` or ``SDM-8``
        accepted); None picks the species' default (human/mouse UCB-J, rat SynVesT-1).

    Returns
    -------
    TracerPreset
        Read-only preset (kinetics, input, frames, dose, scanner).

    Raises
    ------
    ModelError
        Unknown species, or no preset for that species and tracer.

    Examples
    --------
    >>> get_preset("rat").key, get_preset("human", "[18F]SynVesT-1").tracer_name
    ('rat_synvest1', '[18F]SynVesT-1')
    """
    sp = str(species).strip().lower()
    if sp not in _DEFAULT_TRACER:
        raise ModelError(f"unknown phantom species {species!r}; choose human, rat or mouse")
    tr = _DEFAULT_TRACER[sp] if tracer is None else _TRACER_ALIASES.get(
        str(tracer).strip().lower().replace(" ", ""))
    key = f"{sp}_{tr}"
    if tr is None or key not in PRESETS:
        raise ModelError(
            f"no phantom preset for species {species!r} and tracer {tracer!r}; available: "
            f"{', '.join(available_presets())}"
        )
    return PRESETS[key]
