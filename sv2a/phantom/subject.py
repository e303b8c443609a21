"""One simulated SV2A PET scan in memory: :func:`make_subject` -> :class:`PhantomSubject`.

The image is built region by region: the exact frame-averaged TAC of each region is computed
once (:mod:`sv2a.phantom.simulate`), the noise-free image is the label lookup ``tac[labels]``,
then each frame is blurred with the scanner PSF (Gaussian, FWHM per axis) and Gaussian noise
with ``var = Pc C exp(lambda t) / dt`` is added (independent or spatially correlated per voxel,
or per region). ``noise=0, fwhm=0`` gives exact data: every voxel of a region holds its
analytic TAC.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ..blood import InputFunction
from ..errors import ModelError
from ..frames import FrameSchedule
from .geometry import BLOOD_POOLS, Anatomy, make_anatomy
from .simulate import (
    blur,
    calibrate_pc,
    correlated_noise,
    fwhm_to_sigma,
    noise_sd,
    region_table,
    regional_tacs,
)
from .tracers import TracerPreset, get_preset

if TYPE_CHECKING:
    from ..atlas import Atlas
    from ..io import DynamicPET

__all__ = ["PhantomSubject", "make_subject", "truth_table", "default_pc", "TRUTH_COLUMNS"]

#: truth.tsv columns after participant_id / session / region (see :func:`truth_table`).
TRUTH_COLUMNS = ["K1", "k2", "k3", "k4", "vB", "VT", "VND", "VS", "BPND", "BPND_CS", "DVR_CS",
                 "SUVR_CS"]


@dataclass(frozen=True, eq=False)
class PhantomSubject:
    """A simulated scan with its ground truth.

    Attributes
    ----------
    image : ndarray (x, y, z, frames), float32, or None
        Decay-corrected activity (kBq/mL); ``None`` when made with ``image=False``.
    frames : FrameSchedule
        Frame timing (min), with the radionuclide half-life.
    affine : ndarray (4, 4)
        Voxel -> RAS mm.
    labels : ndarray (x, y, z) uint8
        Region labels; ``label_names`` maps index -> name.
    input : InputFunction
        True input on a fine grid: total plasma, parent fraction, whole blood (min, kBq/mL).
    blood : DataFrame
        Manual arterial samples as written to BIDS (``time`` in s, kBq/mL, fraction).
    params : DataFrame
        Kinetic parameters of every region (K1 k2 k3 k4 vB VT VND VS).
    truth : DataFrame
        One row per region with activity: :data:`TRUTH_COLUMNS`.
    tacs : xarray.DataArray
        Noise-free, unblurred regional TACs (region, frame), kBq/mL.
    preset : TracerPreset
    meta : dict
        Simulation settings (species, tracer, seed, noise, Pc, FWHM, ``injected_mbq`` (MBq),
        ``body_weight_kg`` (kg), ...).
    motion : DataFrame or None
        True head motion per frame (made with ``motion > 0``): frame, frame_start/frame_end
        (min), trans_x/y/z (mm), rot_x/y/z (degrees), framewise_displacement (mm); see
        :mod:`sv2a.phantom.motion`.
    """

    image: np.ndarray | None
    frames: FrameSchedule
    affine: np.ndarray
    labels: np.ndarray
    label_names: dict
    input: InputFunction
    blood: pd.DataFrame
    params: pd.DataFrame
    truth: pd.DataFrame
    tacs: xr.DataArray
    preset: TracerPreset
    meta: dict = field(default_factory=dict)
    motion: pd.DataFrame | None = None

    def atlas(self) -> Atlas:
        """The label image as an atlas.

        Returns
        -------
        sv2a.atlas.Atlas
            Labels, region names and affine (voxel -> RAS mm) of the phantom.
        """
        from ..atlas import Atlas

        return Atlas(self.labels, dict(self.label_names), self.affine, source="phantom")

    def pet(self) -> DynamicPET:
        """The image as a dynamic PET object, ready for the package's models.

        Returns
        -------
        sv2a.io.DynamicPET
            Image (kBq/mL, decay corrected) with frames and affine; ``meta`` holds the BIDS
            sidecar plus ``injected_mbq`` (MBq) and ``body_weight_kg`` (kg).

        Raises
        ------
        ModelError
            The phantom was made with ``image=False``.
        """
        from ..io import DynamicPET

        if self.image is None:
            raise ModelError("this phantom was made with image=False; no image to wrap")
        meta = self.pet_sidecar()
        meta.update(injected_mbq=self.meta["injected_mbq"],
                    body_weight_kg=self.meta["body_weight_kg"], tracer=self.preset.tracer_name,
                    radionuclide=self.preset.radionuclide, original_units="kBq/mL")
        return DynamicPET.from_array(self.image, self.frames, self.affine, meta=meta)

    def pet_sidecar(self) -> dict[str, Any]:
        """BIDS-PET JSON sidecar of the image.

        Returns
        -------
        dict
            BIDS fields (times in s, ``InjectedRadioactivity`` in MBq, ``BodyWeight`` in kg)
            plus ``sv2aPhantom``: the simulation settings.
        """
        p, m = self.preset, self.meta
        fwhm = m["fwhm_mm"]
        bids = self.frames.to_bids()
        return {
            "Manufacturer": "sv2a phantom",
            "ManufacturersModelName": p.scanner,
            "Units": "kBq/mL",
            "TracerName": p.tracer_name.split("]")[-1],
            "TracerRadionuclide": p.radionuclide,
            "TracerMolecularWeight": 0,
            "InjectedRadioactivity": round(float(m["injected_mbq"]), 4),
            "InjectedRadioactivityUnits": "MBq",
            "InjectedMass": p.injected_mass_ug,
            "InjectedMassUnits": "ug",
            "SpecificRadioactivity": round(float(m["injected_mbq"]) / p.injected_mass_ug, 4),
            "SpecificRadioactivityUnits": "MBq/ug",
            "MolarActivity": p.molar_activity_gbq_umol,
            "MolarActivityUnits": "GBq/umol",
            "ModeOfAdministration": "bolus",
            "BodyWeight": round(float(m["body_weight_kg"]), 4),
            "BodyWeightUnits": "kg",
            "TimeZero": "00:00:00",
            "ScanStart": 0,
            "InjectionStart": 0,
            "FrameTimesStart": bids["FrameTimesStart"],
            "FrameDuration": bids["FrameDuration"],
            "AcquisitionMode": "list mode",
            "ImageDecayCorrected": True,
            "ImageDecayCorrectionTime": 0,
            "ReconMethodName": "simulated (exact model + Gaussian PSF + Gaussian noise)",
            "ReconMethodParameterLabels": ["none"],
            "ReconMethodParameterUnits": ["none"],
            "ReconMethodParameterValues": [0],
            "ReconFilterType": "Gaussian" if np.any(np.asarray(fwhm) > 0) else "none",
            "ReconFilterSize": [float(v) for v in np.broadcast_to(fwhm, (3,))],
            "AttenuationCorrection": "simulated",
            "PlasmaAvail": True,
            "MetaboliteAvail": True,
            "sv2aPhantom": {k: v for k, v in m.items() if k not in ("injected_mbq",
                                                                    "body_weight_kg")},
        }

    def blood_sidecar(self) -> dict[str, Any]:
        """BIDS ``_blood.json`` sidecar of :attr:`blood`.

        Returns
        -------
        dict
            BIDS blood fields (time in s, activities in kBq/mL).
        """
        return {
            "Description": "simulated manual arterial samples (Feng input x parent fraction)",
            "PlasmaAvail": True,
            "MetaboliteAvail": True,
            "MetaboliteMethod": "simulated HPLC",
            "MetaboliteRecoveryCorrectionApplied": False,
            "WholeBloodAvail": True,
            "DispersionCorrected": False,
            "WithdrawalRate": 0,
            "TubingType": "n/a",
            "TubingLength": 0,
            "DispersionConstant": 0,
            "Haematocrit": 0.42,
            "time": {"Description": "sample time after injection", "Units": "s"},
            "whole_blood_radioactivity": {"Description": "whole blood activity",
                                          "Units": "kBq/mL"},
            "plasma_radioactivity": {"Description": "total plasma activity (parent + "
                                     "metabolites)", "Units": "kBq/mL"},
            "metabolite_parent_fraction": {"Description": "parent fraction of plasma activity",
                                           "Units": "unitless"},
        }


def _preset_tacs(preset: TracerPreset, frame_average: str = "uniform"
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    table = region_table(preset)
    return table, regional_tacs(preset.input, table, preset.frames(),
                                decay_weighted=frame_average == "decay")


@functools.lru_cache(maxsize=32)
def default_pc(preset_key: str, mode: str = "voxel") -> float:
    """Noise calibration of a preset: the Pc giving its design CV in the last frame.

    Voxel: ``noise_cv_voxel`` (human UCB-J: 15 % in the frontal cortex, 85-90 min). Region:
    ``noise_cv_region`` for a region of the reference volume (20 mL for humans, the noise
    region's volume for rodents).

    Parameters
    ----------
    preset_key : str
        Preset key (:func:`~sv2a.phantom.available_presets`).
    mode : {'voxel', 'region'}
        Voxel noise or one noise value per region.

    Returns
    -------
    float
        Pc ((kBq/mL) min) at ``noise = 1``.
    """
    from .tracers import PRESETS

    preset = PRESETS[preset_key]
    table, tacs = _preset_tacs(preset)
    fr = preset.frames()
    c = tacs[list(table.index).index(preset.noise_region), -1]
    cv = preset.noise_cv_voxel if mode == "voxel" else preset.noise_cv_region
    return calibrate_pc(cv, c, fr.mid[-1], fr.duration[-1], fr.decay_constant)


def _region_ref_ml(preset: TracerPreset) -> float:
    if preset.species == "human":
        return 20.0  # design: 2 % CV for a 20 mL cortical ROI
    return make_anatomy(preset.species).volumes_ml()[preset.noise_region]


def truth_table(params: pd.DataFrame, tacs: np.ndarray, frames: FrameSchedule,
                preset: TracerPreset) -> pd.DataFrame:
    """Ground truth per region: rates, VT, VND, VS, BPND and CS-referenced values.

    ``BPND = VS / VND``; ``BPND_CS = VT / VT_CS - 1``; ``DVR_CS = VT / VT_CS``; ``SUVR_CS`` =
    frame-duration-weighted mean of the noise-free, unblurred TAC over the preset window divided
    by that of the centrum semiovale (CS; NaN for rodents, which have no reference region).
    Regions without tissue activity (ventricles) are left out.

    Parameters
    ----------
    params : pandas.DataFrame
        Kinetic parameters per region (:func:`~sv2a.phantom.simulate.region_table`).
    tacs : numpy.ndarray
        Noise-free TACs (n_regions, n_frames) in ``params`` order (kBq/mL).
    frames : FrameSchedule
        Frame timing (min).
    preset : TracerPreset
        Gives the reference region and the SUVR window (min).

    Returns
    -------
    pandas.DataFrame
        Index ``region``, columns :data:`TRUTH_COLUMNS`: ``K1`` (mL/cm3/min), ``k2 k3 k4``
        (1/min), ``vB`` (unitless), ``VT VND VS`` (mL/cm3), ``BPND BPND_CS DVR_CS SUVR_CS``
        (unitless).
    """
    t = params.copy()
    keep = t["VT"] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t["BPND"] = np.where(t["VND"] > 0, t["VS"] / t["VND"], np.nan)
    ref = preset.reference
    if ref is not None and ref in t.index:
        vt_ref = float(t.loc[ref, "VT"])
        t["BPND_CS"] = t["VT"] / vt_ref - 1.0
        t["DVR_CS"] = t["VT"] / vt_ref
        w = frames.overlap_weights(*preset.suvr_window)
        means = (tacs * w).sum(axis=1) / w.sum()
        t["SUVR_CS"] = means / means[list(t.index).index(ref)]
    else:
        t["BPND_CS"] = np.nan
        t["DVR_CS"] = np.nan
        t["SUVR_CS"] = np.nan
    t = t.loc[keep, TRUTH_COLUMNS]
    t.index.name = "region"
    return t


def _input_grid(delay: float, t_end: float) -> np.ndarray:
    fine = delay + np.arange(0.0, 5.0, 0.0025)
    coarse = np.arange(delay + 5.0, t_end + 0.05, 0.05)
    return np.unique(np.concatenate([[0.0], fine, coarse, [t_end]]))


def _blood_samples(inp, times_s: np.ndarray, rng: np.random.Generator, cv: float
                   ) -> pd.DataFrame:
    t = times_s / 60.0
    tot = inp.total_plasma(t)
    wb = inp.whole_blood(t)
    pf = inp.parent_fraction(t)
    if cv > 0:
        tot = tot * (1.0 + cv * rng.standard_normal(t.size))
        wb = wb * (1.0 + cv * rng.standard_normal(t.size))
        pf = np.clip(pf + (2.0 / 3.0) * cv * rng.standard_normal(t.size), 0.0, 1.0)
    return pd.DataFrame({
        "time": np.round(times_s, 3),
        "whole_blood_radioactivity": np.clip(wb, 0.0, None),
        "plasma_radioactivity": np.clip(tot, 0.0, None),
        "metabolite_parent_fraction": pf,
    })


def make_subject(
    species: str = "human",
    tracer: str | None = None,
    seed: int | np.random.Generator | None = 0,
    *,
    noise: float = 1.0,
    fwhm: float | tuple[float, float, float] | None = None,
    voxel_mm: float | None = None,
    noise_mode: str = "voxel",
    noise_fwhm: float = 0.0,
    pc: float | None = None,
    params: Mapping | pd.DataFrame | None = None,
    injected_mbq: float | None = None,
    body_weight_kg: float | None = None,
    frames: FrameSchedule | None = None,
    frame_average: str = "uniform",
    blood_noise: float | None = None,
    blood_times_s=None,
    anatomy: Anatomy | None = None,
    image: bool = True,
    extra_meta: Mapping[str, Any] | None = None,
    motion: float = 0.0,
) -> PhantomSubject:
    """Simulate one dynamic SV2A PET scan with its blood data and ground truth, in memory.

    Parameters
    ----------
    species : {"human", "rat", "mouse"}
        Species of the anatomy and preset.
    tracer : str, optional
        ``ucbj``, ``synvest1`` or ``synvest2`` (default: human/mouse UCB-J, rat SynVesT-1).
    seed : int or numpy Generator
        Random seed of the image and blood noise (same seed -> identical data).
    noise : float
        Noise level relative to the preset calibration (1 = design: human UCB-J voxel CV 15 %
        in the frontal cortex at 85-90 min; SD scales linearly, ``Pc = noise^2 Pc_0``);
        0 = noise free.
    fwhm : float or (fx, fy, fz)
        Gaussian PSF FWHM (mm), per axis if a triple; default the preset's (human 4.5 mm
        PET/MR, rat 1.5, mouse 1.2); 0 = no blurring.
    voxel_mm : float, optional
        Voxel size (mm) of the grid (coarser = faster; default human 2, rat 0.3, mouse 0.15).
    noise_mode : {"voxel", "region"}
        Independent (or correlated, ``noise_fwhm`` mm) voxel noise, or one noise value per
        region and frame (design CV ``noise_cv_region`` for a 20 mL human ROI, scaled by
        volume as 1/sqrt(V)).
    pc : float, optional
        Explicit Pc ((kBq/mL) min); overrides ``noise``.
    params : mapping or DataFrame, optional
        Region -> {parameter: value} overrides in the preset's parameterisation (1TCM: K1, VT,
        vB, VND; 2TCM: K1, k2, k3, k4, vB), or a complete table as returned by
        :func:`~sv2a.phantom.simulate.region_table`.
    injected_mbq : float, optional
        Injected activity (MBq); default the preset's. The input amplitude scales with
        ``injected_mbq / body_weight_kg``, so SUVs do not depend on either.
    body_weight_kg : float, optional
        Body weight (kg); default the preset's.
    frames : FrameSchedule, optional
        Default the preset's frame protocol.
    frame_average : {"uniform", "decay"}
        Plain time average of the decay-corrected curve over each frame (matches the models'
        frame integration, exact recovery) or the scanner-like decay-weighted average.
    blood_noise : float, optional
        CV of the blood activity samples (parent-fraction SD = 2/3 of it); default 0.03 when
        ``noise > 0``, else 0.
    blood_times_s : array_like, optional
        Manual sampling times (s); default the preset's schedule up to the end of the scan.
    anatomy : Anatomy, optional
        Label image (default :func:`~sv2a.phantom.geometry.make_anatomy`).
    image : bool
        False skips the image (TACs, blood and truth only: fast).
    extra_meta : mapping, optional
        Extra entries for :attr:`PhantomSubject.meta` (and the sidecar's ``sv2aPhantom``).
    motion : float
        Head-motion level (0 = still, default; 1 = up to 4 mm / 2 deg, 2 = up to 8 mm /
        4 deg, still for the first 10 min): applied to the finished image, frame by frame
        (trilinear); its random draws come after those of the noise and blood samples, which
        therefore equal the ``motion=0`` ones. The truth is :attr:`PhantomSubject.motion`
        (:func:`sv2a.phantom.motion.draw_motion`).

    Returns
    -------
    PhantomSubject
        Image (kBq/mL), frames (min), labels, input function, blood samples, kinetic
        parameters, truth and noise-free regional TACs.

    Raises
    ------
    ModelError
        Unknown species / tracer / mode, negative noise or FWHM, missing region parameters,
        or non-positive ``injected_mbq`` / ``body_weight_kg``.

    Examples
    --------
    Exact data on a coarse grid (noise free, no blurring): every voxel of a region holds its
    analytic TAC.

    >>> s = make_subject("human", "ucbj", seed=0, noise=0, fwhm=0, voxel_mm=8.0)
    >>> s.image.shape, s.image.dtype.name
    ((24, 28, 24, 39), 'float32')
    >>> float(s.truth.loc["frontal_cortex", "VT"]), s.meta["injected_mbq"]
    (18.0, 600.0)
    >>> import numpy as np
    >>> voxel = s.image[s.labels == 1][0]  # label 1 = frontal_cortex
    >>> bool(np.allclose(voxel, s.tacs.sel(region="frontal_cortex")))
    True
    """
    preset = get_preset(species, tracer)
    if noise_mode not in ("voxel", "region"):
        raise ModelError(f"noise_mode must be 'voxel' or 'region', got {noise_mode!r}")
    if frame_average not in ("uniform", "decay"):
        raise ModelError(f"frame_average must be 'uniform' or 'decay', got {frame_average!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ModelError(f"noise must be a number >= 0, got {noise!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    anat = anatomy if anatomy is not None else make_anatomy(preset.species, voxel_mm)
    fr = frames if frames is not None else preset.frames()
    if fr.half_life is None:
        fr = FrameSchedule(fr.start, fr.end, half_life=preset.half_life, source=fr.source)
    dose = float(preset.injected_mbq if injected_mbq is None else injected_mbq)
    weight = float(preset.body_weight_kg if body_weight_kg is None else body_weight_kg)
    for what, v in (("injected_mbq", dose), ("body_weight_kg", weight)):
        if not (np.isfinite(v) and v > 0):
            raise ModelError(f"{what} must be a positive number, got {v!r}")
    inp = preset.input.scaled((dose / weight) / preset.suv_factor)

    if isinstance(params, pd.DataFrame):
        table = params.copy()
    else:
        table = region_table(preset, params)
    missing = [n for n in anat.names.values() if n not in table.index and n not in BLOOD_POOLS]
    if missing:
        raise ModelError(f"no kinetic parameters for phantom regions {missing}")
    tacs = regional_tacs(inp, table, fr, decay_weighted=frame_average == "decay")
    names = list(table.index)

    # ---- truth and noise-free TACs of the labelled regions
    truth = truth_table(table, tacs, fr, preset)
    vols = anat.volumes_ml()
    counts = np.bincount(anat.labels.ravel(), minlength=max(anat.names) + 1)
    lab_regions = [n for n in anat.names.values() if n in truth.index]
    order = [names.index(n) for n in lab_regions]
    nvox = [int(counts[anat.index_of[n]]) for n in lab_regions]
    from ..tacs import tacs_from_arrays

    tac_da = tacs_from_arrays(tacs[order], fr.start, fr.end, lab_regions,
                              volume_ml=[vols[n] for n in lab_regions], n_voxels=nvox,
                              half_life=fr.half_life, source="phantom",
                              attrs={"noise_free": 1, "blurred": 0})

    # ---- noise level
    fwhm_mm = preset.fwhm_mm if fwhm is None else fwhm
    fwhm_arr = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,))
    if np.any(fwhm_arr < 0) or not np.all(np.isfinite(fwhm_arr)):
        raise ModelError(f"fwhm must be >= 0 mm, got {fwhm!r}")
    if pc is None:
        pc_val = float(noise) ** 2 * default_pc(preset.key, noise_mode)
    else:
        pc_val = float(pc)
    bcv = (0.03 if (noise > 0 or (pc or 0) > 0) else 0.0) if blood_noise is None else blood_noise

    # ---- image
    img = None
    if image:
        lut = np.zeros((max(anat.names) + 1, fr.n), dtype=np.float64)
        for k, n in anat.names.items():
            if n in BLOOD_POOLS:  # whole blood (heart cavity): the input's own curve
                lut[k] = regional_tacs(inp, pd.DataFrame([{"K1": 0.0, "vB": 1.0}]), fr,
                                       decay_weighted=frame_average == "decay")[0]
                continue
            lut[k] = tacs[names.index(n)]
        if pc_val > 0 and noise_mode == "region":
            ref_ml = _region_ref_ml(preset)
            for k in anat.names:
                v = counts[k] * anat.voxel_mm**3 / 1000.0
                if v > 0:
                    sd = noise_sd(lut[k], fr, pc_val * ref_ml / v)
                    lut[k] = lut[k] + sd * rng.standard_normal(fr.n)
        img = _render(anat, lut.astype(np.float32), fr, fwhm_to_sigma(fwhm_arr, anat.voxel_mm),
                      pc_val if noise_mode == "voxel" else 0.0, rng,
                      fwhm_to_sigma(noise_fwhm, anat.voxel_mm))

    # ---- blood
    if blood_times_s is None:
        bt = np.asarray(preset.blood_times_s, dtype=float)
        bt = bt[bt <= fr.end[-1] * 60.0 + 1e-6]
        if bt.size == 0 or bt[-1] < fr.end[-1] * 60.0 - 1e-6:
            bt = np.append(bt, fr.end[-1] * 60.0)
    else:
        bt = np.asarray(blood_times_s, dtype=float)
    blood = _blood_samples(inp, bt, rng, float(bcv))
    tg = _input_grid(inp.delay, float(max(fr.end[-1], bt[-1] / 60.0)))
    input_fn = InputFunction(time=tg, plasma=inp.total_plasma(tg),
                             parent_fraction=inp.parent_fraction(tg),
                             whole_blood=inp.whole_blood(tg),
                             meta={"source": "phantom (exact Feng input, fine grid)"},
                             source=f"phantom {preset.key} input")

    meta = {
        "species": preset.species, "tracer": preset.tracer, "preset": preset.key,
        "seed": seed if isinstance(seed, int | None) else "generator",
        "noise": float(noise), "noise_mode": noise_mode, "noise_fwhm_mm": float(noise_fwhm),
        "pc": pc_val, "fwhm_mm": [float(v) for v in fwhm_arr], "voxel_mm": anat.voxel_mm,
        "frame_average": frame_average, "blood_noise_cv": float(bcv),
        "injected_mbq": dose, "body_weight_kg": weight, "model": preset.model,
    }
    meta.update(extra_meta or {})
    motion_truth = None
    if motion:  # after every other draw: the noise and blood are those of motion=0
        from .motion import apply_motion, draw_motion

        motion_truth = draw_motion(fr, motion, rng)
        if img is not None:
            img = apply_motion(img, motion_truth, [anat.voxel_mm] * 3)
        meta["motion"] = float(motion)
    return PhantomSubject(img, fr, np.asarray(anat.affine), anat.labels, dict(anat.names),
                          input_fn, blood, table, truth, tac_da, preset, meta, motion_truth)


@functools.lru_cache(maxsize=4)
def _blurred_basis(anat: Anatomy, sigma: tuple[float, ...], present: tuple[int, ...]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Support and blurred region masks of an anatomy, computed once per grid and PSF.

    Returns the flat (Fortran order) indices of the voxels where any blurred mask is > 0 and
    the masks on them, (regions x support) float32; both read-only (shared between scans).
    """
    nvox = int(np.prod(anat.shape))
    blurring = bool(np.any(np.asarray(sigma) > 0))
    cols = []
    for k in present:
        m = (anat.labels == k).astype(np.float32)
        if blurring:
            m = blur(m, sigma)
        cols.append(m.ravel(order="F"))
    full = np.stack(cols) if cols else np.zeros((0, nvox), dtype=np.float32)
    support = np.flatnonzero(np.any(full > 0, axis=0))
    basis = np.ascontiguousarray(full[:, support])
    support.setflags(write=False)
    basis.setflags(write=False)
    return support, basis


def _render(anat: Anatomy, lut: np.ndarray, fr: FrameSchedule, sigma, pc: float,
            rng: np.random.Generator, noise_sigma) -> np.ndarray:
    """Image (x, y, z, t) float32 in Fortran order (each frame contiguous, as NIfTI stores it).

    The PSF is linear, so ``blur(sum_r tac_r(f) mask_r) = sum_r tac_r(f) blur(mask_r)``: each
    region mask is blurred once per grid and PSF (cached across scans) and every frame is one
    row of a matrix product ``TAC (frames x regions) @ B (regions x support)`` over the voxels
    a blurred mask reaches (the support); the rest of the grid is 0. Without blurring B holds
    one-hot masks and each voxel gets its region's TAC value exactly. White voxel noise is drawn
    on the support only (outside it the noise-free value and hence the noise SD are 0);
    correlated noise is drawn on the whole grid, then smoothed.
    """
    shape = anat.shape
    nvox = int(np.prod(shape))
    present = tuple(k for k in np.unique(anat.labels).tolist() if k != 0 and np.any(lut[k] != 0))
    sig = tuple(float(v) for v in np.broadcast_to(np.asarray(sigma, dtype=float), (3,)))
    support, basis = _blurred_basis(anat, sig, present)
    data = np.ascontiguousarray(lut[list(present)].T) @ basis  # (frames, support), C order
    if pc > 0:
        white = not np.any(np.asarray(noise_sigma) > 0)
        fac = (pc * np.exp(fr.decay_constant * fr.mid) / fr.duration).astype(np.float32)
        sd = np.empty(support.size, dtype=np.float32)
        for f in range(fr.n):
            row = data[f]
            np.maximum(row, np.float32(0), out=sd)
            sd *= fac[f]
            np.sqrt(sd, out=sd)
            if white:
                sd *= rng.standard_normal(support.size, dtype=np.float32)
            else:
                sd *= correlated_noise(rng, shape, noise_sigma).ravel(order="F")[support]
            row += sd
    out = np.zeros((nvox, fr.n), dtype=np.float32, order="F")
    for f in range(fr.n):  # np.put: the fastest scatter into a contiguous frame
        np.put(out[:, f], support, data[f])
    return out.reshape((*shape, fr.n), order="F")
