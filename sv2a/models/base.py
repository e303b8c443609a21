"""The model contract: one class per kinetic model, one solver for regions and voxels.

Every model is a subclass of :class:`Model` that lives in its own module
(:mod:`sv2a.models.srtm`, :mod:`sv2a.models.one_tcm`, ...) and is registered with
:func:`sv2a.models.registry.register`. The class states what the model is:

``name``
    Registry name (``"srtm2"``); upper case without underscores in file names (``SRTM2``).
``kind``
    ``"plasma"`` (needs ``input=``), ``"reference"`` (needs ``reference=``) or ``"static"``.
``scales``
    Where it runs: ``"region"`` (:func:`sv2a.fit`), ``"voxel"`` (:func:`sv2a.parametric_maps`)
    or both.
``parameters``, ``units``
    The parameters it reports and their units.
``Options``
    A frozen, keyword-only dataclass of its options with their defaults. Choices are typed
    with the ``Literal`` aliases of this module, so one keyword means one thing everywhere.

An *instance* is the solver, prepared for one frame schedule, one input (reference TAC or
plasma input function), one set of frame weights and one set of options: everything that does
not depend on the target TACs (basis functions, integration operators, Gram matrices) is
computed in ``__init__``. :meth:`Model.solve` then fits any number of TACs given as an
``(n, n_frames)`` array -- the regions of :func:`sv2a.fit` or a chunk of voxels of
:func:`sv2a.parametric_maps` -- with matrix algebra over the rows, and :meth:`Model.predict`
computes model TACs from parameters. Both adapters call the same ``solve``, so regional and
voxel estimates cannot drift apart.

``solve`` returns a mapping ``name -> array (n,)`` with the parameters, their standard errors
``<name>_se`` (when ``se=True``), ``rss`` (weighted residual sum of squares), ``n_frames``
(frames used) and ``flag`` (``uint8`` bit field of :data:`FLAGS`). A row whose TAC holds a
non-finite value gets NaN parameters and :data:`FLAG_NONFINITE`; the other rows are unchanged.

Units inside the package: time in minutes, rate constants in 1/min, activity in kBq/mL,
volumes of distribution in mL/cm3.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar, Union, get_args, get_origin

import numpy as np
from numpy.typing import NDArray

from ..errors import DataError, ModelError
from ..frames import FrameSchedule

__all__ = [
    "Kind",
    "Scale",
    "WeightScheme",
    "Weights",
    "Sampling",
    "Convolution",
    "Integration",
    "Method",
    "K2Prime",
    "FLAG_EDGE",
    "FLAG_NONFINITE",
    "FLAG_NEG_DENOMINATOR",
    "FLAG_NEGATIVE",
    "FLAG_NOT_CONVERGED",
    "FLAGS",
    "FAILED",
    "describe_flags",
    "ModelInputs",
    "Model",
    "parse_options",
    "as_rows",
    "clean_rows",
    "finish",
    "select_frames",
    "check_reference",
    "check_enough_frames",
]

FloatArray: TypeAlias = NDArray[np.float64]

#: What a model needs: a plasma input, a reference region, or nothing (static).
Kind: TypeAlias = Literal["plasma", "reference", "static"]
#: Where a model runs: regional TACs (:func:`sv2a.fit`) or voxels (:func:`sv2a.parametric_maps`).
Scale: TypeAlias = Literal["region", "voxel"]
#: Frame weighting schemes (:func:`sv2a.weights.frame_weights`).
WeightScheme: TypeAlias = Literal["uniform", "duration", "kinfitr", "variance"]
#: A scheme name or an explicit array of one weight per frame.
Weights: TypeAlias = Union[WeightScheme, NDArray[Any], "list[float]", "tuple[float, ...]"]
#: Frame-averaged model values (``"frame"``) or point values at frame mid-times (``"mid"``).
Sampling: TypeAlias = Literal["frame", "mid"]
#: How a frame-sampled reference TAC is continued between samples before convolution.
Convolution: TypeAlias = Literal["exact", "step", "kinfitr"]
#: Running integrals of frame-sampled TACs for the linear (graphical) methods: trapezoid on
#: the mid-times (kinfitr, TPCCLIB), kinfitr's framecumsum, or frame averages of the integral
#: of the TAC held at its frame mean (exact between frame averages).
Integration: TypeAlias = Literal["trapezoid", "framecumsum", "frame"]
#: Basis functions with refinement between grid points, or exact nonlinear least squares.
Method: TypeAlias = Literal["basis", "nonlinear"]
#: The reference efflux rate k2' (1/min): a number, or how to estimate it.
K2Prime: TypeAlias = float | Literal["coupled", "srtm", "mrtm"]

#: The best basis function lies at the lowest or highest grid value, or a bounded parameter
#: sits on its bound (the estimate may be clipped).
FLAG_EDGE = 1
#: Non-finite input or result (NaN/inf TAC value, or an undefined parameter).
FLAG_NONFINITE = 2
#: A denominator of the estimator is zero or has the wrong sign (``γ2 ≥ 0`` in MRTM2, a
#: graphical plot without spread in x, a singular design).
FLAG_NEG_DENOMINATOR = 4
#: A rate or amplitude that must be positive is not (R1 ≤ 0, K1 ≤ 0, k2 ≤ 0).
FLAG_NEGATIVE = 8
#: The iterative optimiser stopped before convergence.
FLAG_NOT_CONVERGED = 16
#: Bit -> meaning, for sidecars, messages and the summary warning.
FLAGS: dict[int, str] = {
    FLAG_EDGE: "at grid edge or bound",
    FLAG_NONFINITE: "non-finite",
    FLAG_NEG_DENOMINATOR: "negative denominator",
    FLAG_NEGATIVE: "negative rate or amplitude",
    FLAG_NOT_CONVERGED: "not converged",
}
#: Bits that make an estimate unusable (its parameters are NaN).
FAILED = FLAG_NONFINITE


def describe_flags(flag: NDArray[Any]) -> dict[str, int]:
    """Count rows per flag bit.

    Parameters
    ----------
    flag : array of int
        Flag bit fields (any shape).

    Returns
    -------
    dict
        ``{meaning: count}`` for the bits that occur.

    Examples
    --------
    >>> describe_flags(np.array([0, 1, 3]))
    {'at grid edge or bound': 2, 'non-finite': 1}
    """
    f = np.asarray(flag).astype(np.int64, copy=False)
    out = {}
    for bit, name in FLAGS.items():
        n = int(np.count_nonzero(f & bit))
        if n:
            out[name] = n
    return out


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """Everything a solver needs besides the target TACs (resolved by the adapters).

    Attributes
    ----------
    frames : FrameSchedule
        Frame timing (min).
    weights : array (n_frames,)
        Frame weights (relative inverse variances), common to every row.
    reference : array (n_frames,) or None
        Reference-region TAC (kBq/mL) for reference-tissue models and SUVR.
    input : InputFunction or None
        Metabolite-corrected plasma input (kBq/mL, min) for plasma-input models.
    injected_mbq, body_weight_kg : float or None
        Injected activity (MBq) and body weight (kg) for SUV.
    scale : {"region", "voxel"}
        Which adapter runs the solver (region-only methods refuse ``"voxel"``).
    """

    frames: FrameSchedule
    weights: FloatArray
    reference: FloatArray | None = None
    input: Any = None
    injected_mbq: float | None = None
    body_weight_kg: float | None = None
    scale: Scale = "region"


OptionsT = TypeVar("OptionsT")


class Model:
    """Base class of every kinetic model (see the module docstring for the contract).

    Parameters
    ----------
    inputs : ModelInputs
        Frames, weights and the reference TAC or plasma input.
    options : Options
        The model's options (an instance of its ``Options`` dataclass).
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    scales: ClassVar[frozenset[Scale]]
    parameters: ClassVar[tuple[str, ...]]
    units: ClassVar[Mapping[str, str]]
    description: ClassVar[str]
    Options: ClassVar[type]
    #: Whether the model has a forward model (``predict``) and residuals (static: no).
    predicts: ClassVar[bool] = True
    #: Whether ``__init__`` precomputes anything from the frame weights (basis Gram
    #: matrices). When False, :meth:`with_weights` re-weights a copy instead of rebuilding.
    weights_in_setup: bool = True
    #: Whether :meth:`solve` accepts weights per row (``weights`` (n, n_frames)): the linear
    #: methods, whose weights enter only the per-row regression.
    row_weights: ClassVar[bool] = False

    def __init__(self, inputs: ModelInputs, options: Any) -> None:
        self.inputs = inputs
        self.frames = inputs.frames
        self.options = options
        self.weights = np.asarray(inputs.weights, dtype=float)
        #: Settings recorded in result attrs (the adapters add theirs).
        self.settings: dict[str, Any] = {}
        #: Number of fitted parameters (for the AIC).
        self.n_fitted: int = len(self.parameters)
        #: First frame mid-time used by a linear method (min), else None.
        self.tstar: float | None = None

    # ------------------------------------------------------------------ the contract
    def solve(self, tacs: NDArray[Any], *, se: bool = False) -> dict[str, NDArray[Any]]:
        """Fit every row of ``tacs``.

        Parameters
        ----------
        tacs : array (n, n_frames)
            Target TACs (kBq/mL), one row per region or voxel.
        se : bool
            Also return standard errors ``<name>_se``.

        Returns
        -------
        dict
            ``name -> array (n,)``: the parameters, ``rss``, ``n_frames``, ``flag`` and, with
            ``se=True``, ``<name>_se``.
        """
        raise NotImplementedError

    def predict(self, params: Mapping[str, Any]) -> FloatArray:
        """Model TACs from parameters.

        Parameters
        ----------
        params : mapping name -> array (n,) or float
            Parameters as returned by :meth:`solve` (or one result row).

        Returns
        -------
        array (n, n_frames)
            Model TACs (kBq/mL) on this solver's frames and sampling.
        """
        raise ModelError(f"{self.name}: a static model has no forward model to predict from")

    def with_weights(self, weights: NDArray[Any]) -> Model:
        """The same solver with other frame weights.

        Parameters
        ----------
        weights : array (n_frames,), or (n, n_frames) when ``row_weights``
            Frame weights (per row: one for each TAC later passed to :meth:`solve`).

        Returns
        -------
        Model
            A copy (cheap when the set-up does not depend on the weights), or a new solver.
        """
        inputs = dataclasses.replace(self.inputs, weights=np.asarray(weights, dtype=float))
        if self.weights_in_setup:
            return type(self)(inputs, self.options)
        new = copy.copy(self)
        new.inputs = inputs
        new.weights = inputs.weights
        return new

    # ------------------------------------------------------------------ helpers
    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Names of the options this model takes.

        Returns
        -------
        tuple of str
        """
        return tuple(f.name for f in dataclasses.fields(cls.Options))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default value of every option.

        Returns
        -------
        dict
            ``option -> default``.
        """
        return dataclasses.asdict(cls.Options())


def _allowed(tp: Any) -> tuple[Any, ...] | None:
    """Literal choices admitted by a type hint (None when the hint admits other values)."""
    origin = get_origin(tp)
    if origin is Literal:
        return get_args(tp)
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for a in get_args(tp):
            sub = _allowed(a)
            if sub is None:
                return None if a is not type(None) else None
            out.extend(sub)
        return tuple(out)
    return None


def parse_options(cls: type[OptionsT], options: Mapping[str, Any], model: str) -> OptionsT:
    """Build an options dataclass from keyword options, refusing unknown ones.

    Parameters
    ----------
    cls : dataclass type
        The model's ``Options``.
    options : mapping
        Keyword options given by the user.
    model : str
        Model name, for messages.

    Returns
    -------
    Options
        ``cls(**options)``.

    Raises
    ------
    ModelError
        An option the model does not take (the message lists the valid ones), or a value
        outside a ``Literal`` choice.
    """
    if isinstance(options, cls):
        return options
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ModelError(
            f"model '{model}' does not take option(s) {', '.join(unknown)}; valid options: "
            f"{', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in options.items():
        choices = _allowed(hints[key])
        if choices is not None and isinstance(value, str) and value not in choices:
            raise ModelError(
                f"{model}: {key}={value!r} is not one of {', '.join(map(repr, choices))}"
            )
    return cls(**options)


def as_rows(tacs: Any, n_frames: int, what: str = "TACs") -> FloatArray:
    """TACs as a float64 array ``(n, n_frames)`` (a 1-D array is one row).

    Parameters
    ----------
    tacs : array_like
        One TAC (n_frames,) or many (n, n_frames), kBq/mL.
    n_frames : int
        Number of frames expected.
    what : str
        Name for messages.

    Returns
    -------
    array (n, n_frames)

    Raises
    ------
    DataError
        Wrong shape.
    """
    y = np.asarray(tacs, dtype=float)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2 or y.shape[1] != n_frames:
        raise DataError(
            f"{what}: expected an array (n_tacs, {n_frames}) (one row per voxel/region, one "
            f"column per frame), got shape {y.shape}"
        )
    return y


def clean_rows(y: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Zero the rows holding a non-finite value (for the algebra) and report them.

    Parameters
    ----------
    y : array (n, n_frames)

    Returns
    -------
    y : array (n, n_frames)
        Copy with bad rows zeroed (the input when all rows are finite).
    bad : bool array (n,)
    """
    bad = ~np.all(np.isfinite(y), axis=1)
    if bad.any():
        y = np.where(bad[:, None], 0.0, y)
    return y, bad


def finish(out: dict[str, NDArray[Any]], flag: NDArray[Any], bad: NDArray[np.bool_],
           n_frames: int | NDArray[Any]) -> dict[str, NDArray[Any]]:
    """Common tail of every solver: flag non-finite results, blank rows with bad input.

    Parameters
    ----------
    out : dict name -> array (n,)
        Parameters, standard errors and ``rss``.
    flag : int array (n,)
        Bits found by the solver.
    bad : bool array (n,)
        Rows whose input TAC held a non-finite value (their numbers become NaN).
    n_frames : int or int array (n,)
        Frames used per row.

    Returns
    -------
    dict
        ``out`` with ``flag`` (uint8) and ``n_frames`` (int) added.
    """
    n = bad.size
    nonfinite = bad.copy()
    for k, v in out.items():
        if not k.endswith("_se"):
            nonfinite |= ~np.isfinite(v)
    fl = np.asarray(flag, dtype=np.uint8) | np.where(nonfinite, FLAG_NONFINITE, 0).astype(
        np.uint8)
    for k in out:
        out[k] = np.where(bad, np.nan, np.asarray(out[k], dtype=float))
    out["flag"] = fl
    out["n_frames"] = np.broadcast_to(np.asarray(n_frames, dtype=int), (n,)).copy()
    return out


def select_frames(
    t_mid: FloatArray,
    *,
    tstar: float | None = None,
    n_frames: int | None = None,
    model: str,
    min_frames: int = 3,
) -> NDArray[np.bool_]:
    """Boolean mask of the frames used by a linear (graphical) fit.

    Parameters
    ----------
    t_mid : array (n_frames,)
        Frame mid-times (min).
    tstar : float, optional
        Use frames whose mid-time is ``>= tstar`` (min).
    n_frames : int, optional
        Use the last ``n_frames`` frames (kinfitr's ``last10frames`` is ``n_frames=10``).
        Give at most one of ``tstar``/``n_frames``; with neither, all frames are used.
    model : str
        Model name, for messages.
    min_frames : int
        Fewest frames the regression may use (at least parameters + 1).

    Returns
    -------
    bool array (n_frames,)

    Raises
    ------
    ModelError
        Both ``tstar`` and ``n_frames`` given, or invalid values.
    FitError
        Fewer than ``min_frames`` frames after ``tstar`` (names t* and the last mid-time).

    Examples
    --------
    >>> select_frames(np.array([5.0, 15.0, 25.0, 35.0, 45.0]), tstar=20, model="logan")
    array([False, False,  True,  True,  True])
    """
    from ..errors import FitError

    t_mid = np.asarray(t_mid, dtype=float)
    n = t_mid.size
    if tstar is not None and n_frames is not None:
        raise ModelError(f"{model}: give tstar= or n_frames=, not both")
    if n_frames is not None:
        if int(n_frames) != n_frames or n_frames < 1:
            raise ModelError(f"{model}: n_frames must be a positive integer, got {n_frames!r}")
        if n_frames < min_frames or n_frames > n:
            raise FitError(
                f"{model}: n_frames={n_frames} but the fit needs {min_frames}..{n} frames "
                f"(the scan has {n})"
            )
        mask = np.zeros(n, bool)
        mask[n - int(n_frames):] = True
        return mask
    if tstar is None:
        mask = np.ones(n, bool)
    else:
        ts = float(tstar)
        if not np.isfinite(ts) or ts < 0:
            raise ModelError(f"{model}: tstar must be a time >= 0 min, got {tstar!r}")
        mask = t_mid >= ts - 1e-9
    if mask.sum() < min_frames:
        raise FitError(
            f"{model}: only {int(mask.sum())} frame(s) have mid-time >= t* = {tstar} min (last "
            f"mid-time {t_mid[-1]:.4g} min); the fit needs at least {min_frames}. Use an "
            "earlier tstar= or n_frames="
        )
    return mask


def check_reference(reference: Any, n_frames: int) -> FloatArray:
    """Validate a reference-region TAC.

    Parameters
    ----------
    reference : array_like (n_frames,)
        Reference TAC (kBq/mL).
    n_frames : int
        Number of frames of the targets.

    Returns
    -------
    array (n_frames,)
        The TAC as float64.

    Raises
    ------
    ShapeMismatchError
        Not one value per frame.
    DataError
        Non-finite values, or not positive in any frame.
    """
    from ..errors import ShapeMismatchError

    r = np.asarray(getattr(reference, "values", reference), dtype=float).reshape(-1)
    if r.size != n_frames:
        raise ShapeMismatchError(
            f"the reference TAC has {r.size} values but the targets have {n_frames} frames; "
            "give one reference value per frame"
        )
    if not np.all(np.isfinite(r)):
        raise DataError(
            "the reference TAC has non-finite values at frame index "
            f"{np.flatnonzero(~np.isfinite(r)).tolist()}; check the reference mask and image"
        )
    if not np.any(r > 0):
        raise DataError(
            "the reference TAC is zero (or negative) in every frame; the reference mask "
            "probably lies outside the brain or the image is empty"
        )
    return r


#: Fewest frames any dynamic model can be fitted to: every model with a forward model fits at
#: least two parameters per TAC and needs one frame more than it fits
#: (:func:`check_enough_frames` applies the exact count of a prepared solver).
MIN_DYNAMIC_FRAMES = 3


def check_enough_frames(solver: Model) -> None:
    """Refuse a fit with no more frames than fitted parameters (nothing to estimate from).

    Parameters
    ----------
    solver : Model
        A prepared solver (its frame weights and ``n_fitted``).

    Raises
    ------
    FitError
        Fewer frames with non-zero weight than ``n_fitted + 1`` (a one-frame image given to
        a dynamic model, say); static models (``n_fitted = 0``) need one frame.
    """
    from ..errors import FitError

    used = int(np.count_nonzero(np.asarray(solver.weights) > 0))
    need = solver.n_fitted + 1 if solver.n_fitted else 1
    if used < need:
        raise FitError(
            f"{solver.name}: {used} frame(s) with non-zero weight, but the model fits "
            f"{solver.n_fitted} parameter(s) per TAC and needs at least {need}; a dynamic "
            "model needs a dynamic scan (use SUV/SUVR for a static image)")
