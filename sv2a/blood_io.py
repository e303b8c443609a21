"""Reading BIDS blood recordings: :func:`load_blood` -> :class:`~sv2a.blood.InputFunction`.

A recording is a ``*_blood.tsv`` table (``time`` in seconds unless its sidecar says
otherwise; ``whole_blood_radioactivity``, ``plasma_radioactivity`` in the units its sidecar
gives; ``metabolite_parent_fraction`` as a fraction or %) with a JSON sidecar. Values are
converted to minutes and kBq/mL.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .blood import InputFunction, check_sampling
from .errors import DataError, InputFunctionError, MetadataError, Sv2aWarning, UnitsError
from .sidecar import describe_sources, read_metadata, sidecar_places
from .units import activity_factor, time_factor

__all__ = ["PLASMA_BLOOD_RATIO", "load_blood", "read_blood_table"]

_BLOOD_COLUMNS = {
    "whole_blood": "whole_blood_radioactivity",
    "plasma": "plasma_radioactivity",
    "parent_fraction": "metabolite_parent_fraction",
}

#: ``Units`` of ``metabolite_parent_fraction`` read as a fraction (0..1) or as percent
#: (compared in lower case); any other unit (an activity, a time) is refused.
FRACTION_UNITS = ("", "unitless", "fraction", "1", "arbitrary", "a.u.", "ratio", "n/a",
                  "none")
PERCENT_UNITS = ("%", "percent")

#: Plausible median plasma / whole-blood ratio of a recording (unitless). The ratio is
#: 1 / (1 - Hct (1 - r)) with Hct the haematocrit (0.3-0.55) and r the red-cell / plasma
#: concentration ratio of the tracer: 1 for a tracer that enters red cells freely, 0 for one
#: kept out of them (ratio up to 1 / (1 - 0.55) = 2.2), above 1 for one bound in red cells
#: (about 0.5-0.9 for such tracers). Measured: 0.98-1.19 in the phantom presets and the demo,
#: 1.31 (1.06-1.81) in the real [11C]PBR28 recording of tests/data. The limits lie a factor 3
#: or more outside that, and a unit off by 1000 (Bq/mL vs kBq/mL) or 27 (kBq/mL vs nCi/mL)
#: in one of the two columns moves a ratio of 0.3-2.5 outside them.
PLASMA_BLOOD_RATIO = (0.1, 10.0)


def read_blood_table(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read one BIDS blood recording, converted to minutes and kBq/mL.

    Parameters
    ----------
    path : str or path-like
        ``*_blood.tsv``; its JSON sidecar gives the units of each column (beside it, or
        shared at the session, subject or dataset level by BIDS's inheritance principle,
        e.g. ``recording-manual_blood.json``; merged from the root down).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``time`` (min) and those present of ``whole_blood``, ``plasma`` (kBq/mL) and
        ``parent_fraction`` (0..1); ``n/a`` entries are NaN.
    meta : dict
        The sidecar (merged over the applicable sidecars), with ``sidecar_files`` added: the
        JSON files it came from, dataset root first.

    Raises
    ------
    InputFunctionError
        File missing, no ``time`` column or no blood column.
    MetadataError
        Sidecar missing, two sidecars at one folder level, or an activity column without
        ``Units``.
    UnitsError
        Plasma and whole blood differ by more than a factor 10 (median ratio at the samples
        with both; :data:`PLASMA_BLOOD_RATIO`): one column's ``Units`` is wrong.
    DataError
        The TSV cannot be parsed, or a value is neither a number nor ``n/a`` (e.g. a decimal
        comma ``1,25``; the message names the column and line).
    """
    path = Path(path)
    if not path.exists():
        raise InputFunctionError(f"blood file not found: {path}")
    meta, files = read_metadata(path, check=_check_units)
    if not files:
        raise MetadataError(
            f"{path}: missing blood JSON sidecar; expected {sidecar_places(path)}, with the "
            "units of each column"
        )
    sc = describe_sources(files)
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", "NaN", "nan", ""])
    except Exception as exc:
        raise DataError(f"{path}: cannot read TSV ({exc})") from exc
    if "time" not in df.columns:
        raise InputFunctionError(
            f"{path}: first column must be 'time' (seconds); found {list(df.columns)[:5]}"
        )
    out = pd.DataFrame({"time": _numeric(df, "time", path) * _col_time_factor(meta, sc)})
    found = False
    for key, col in _BLOOD_COLUMNS.items():
        if col in df.columns:
            vals = _numeric(df, col, path)
            unit = _col_unit(meta, col, sc)
            if key == "parent_fraction":
                vals = _parent_fraction(vals, unit, sc, path)
            else:
                if unit is None:
                    raise MetadataError(
                        f"{sc}: no Units for column '{col}'; add \"{col}\": {{\"Units\": "
                        "\"kBq/mL\"}"
                    )
                vals = vals * activity_factor(unit)
            out[key] = vals
            found = True
    if not found:
        raise InputFunctionError(
            f"{path}: no blood columns; expected one of {list(_BLOOD_COLUMNS.values())}"
        )
    _check_plasma_blood_ratio(out, meta, sc, path)
    meta["units"] = {col: _col_unit(meta, col, sc) for col in _BLOOD_COLUMNS.values()
                     if col in df.columns and col != "metabolite_parent_fraction"}
    meta["sidecar_files"] = [str(f) for f in files]
    return out, meta


def _parent_fraction(vals: pd.Series, unit: str | None, sc: Path | str,
                     path: Path) -> pd.Series:
    """``metabolite_parent_fraction`` as a fraction (0..1): percent divided by 100; a unit
    that is neither a fraction nor percent raises :class:`UnitsError`, percent with every
    value at most 1 (fractions labelled ``%``, which would make the input 100 times too low)
    :class:`InputFunctionError`."""
    col = _BLOOD_COLUMNS["parent_fraction"]
    u = "" if unit is None else unit.strip().lower()
    if u in PERCENT_UNITS:
        finite = vals[np.isfinite(vals)]
        if finite.size and float(finite.max()) <= 1.0:
            raise InputFunctionError(
                f"{path}: {col} has Units '%' but every value is at most 1 (largest "
                f"{float(finite.max()):.3g}); are these fractions? A parent fraction in % is "
                f"near 100 at injection; fix 'Units' of {col} in {sc} (\"unitless\" for "
                "fractions) or multiply the values by 100"
            )
        return vals / 100.0
    if u not in FRACTION_UNITS:
        raise UnitsError(
            f"{sc}: {col} has Units {unit!r}, but a parent fraction is a fraction of the "
            f"plasma activity: use \"unitless\" (values 0..1) or \"%\" (0..100) for {col}"
        )
    return vals


def _check_plasma_blood_ratio(table: pd.DataFrame, meta: Mapping[str, Any], sc: Path | str,
                              path: Path) -> None:
    """Refuse plasma and whole blood whose median ratio at the shared sample times lies
    outside :data:`PLASMA_BLOOD_RATIO`: one column's ``Units`` is then wrong (e.g. plasma in
    kBq/mL labelled Bq/mL beside whole blood in kBq/mL, which would make every plasma-input
    volume of distribution 1000 times too high). Only samples where both are positive count."""
    if "plasma" not in table or "whole_blood" not in table:
        return
    p, b = table["plasma"].to_numpy(float), table["whole_blood"].to_numpy(float)
    both = np.isfinite(p) & np.isfinite(b) & (p > 0) & (b > 0)
    if not both.any():
        return
    ratio = float(np.median(p[both] / b[both]))
    lo, hi = PLASMA_BLOOD_RATIO
    if lo <= ratio <= hi:
        return
    off = max(ratio, 1.0 / ratio)
    pu = _col_unit(meta, _BLOOD_COLUMNS["plasma"], sc)
    bu = _col_unit(meta, _BLOOD_COLUMNS["whole_blood"], sc)
    raise UnitsError(
        f"{path}: plasma_radioactivity (Units {pu!r}) is {ratio:.3g} times "
        f"whole_blood_radioactivity (Units {bu!r}) (median over {int(both.sum())} samples with "
        f"both), outside the physiological {lo:g}-{hi:g} (about 0.5-2 for PET tracers); the "
        f"Units of one column are probably wrong (off by a factor of about {off:.3g}): "
        f"fix 'Units' of plasma_radioactivity or whole_blood_radioactivity in {sc}"
    )


def _numeric(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    """A column as floats; ``n/a`` (already NaN) stays NaN, anything else that is not a number
    (a decimal comma ``1,25``, a unit ``12 kBq``) raises :class:`DataError` naming the line."""
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = np.flatnonzero(vals.isna().to_numpy() & raw.notna().to_numpy())
    if bad.size:
        i = int(bad[0])
        text = str(raw.iloc[i])
        hint = (" (a decimal comma: write 1.25, not 1,25)" if "," in text else "")
        raise DataError(
            f"{path}: column '{col}', line {i + 2} holds {text!r}, not a number{hint}; every "
            f"value must be a plain number with a decimal point, or n/a "
            f"({bad.size} such value(s) in this column)"
        )
    return vals


def _col_unit(meta: Mapping[str, Any], col: str, sc: Path | str = "blood sidecar") -> str | None:
    entry = meta.get(col)
    if isinstance(entry, dict):
        unit = entry.get("Units")
        if unit is None:
            return None
        if not isinstance(unit, str):
            raise MetadataError(
                f"{sc}: field '{col}' -> 'Units' is {unit!r}, but BIDS requires a string; "
                f"write text in quotes, e.g. \"{col}\": {{\"Units\": \"kBq/mL\"}}"
            )
        return unit
    return None


def _check_units(meta: Mapping[str, Any], source: Path) -> None:
    """Check the ``Units`` of every column entry of one blood sidecar is text (the message
    names the file it came from)."""
    for col in ("time", *_BLOOD_COLUMNS.values()):
        _col_unit(meta, col, source)


def _col_time_factor(meta: Mapping[str, Any], sc: Path | str = "blood sidecar") -> float:
    unit = _col_unit(meta, "time", sc) or "s"
    return time_factor(unit)


def _sibling(path: Path, recording: str) -> Path | None:
    name = path.name
    for rec in ("manual", "autosampler"):
        tag = f"recording-{rec}"
        if tag in name:
            cand = path.with_name(name.replace(tag, f"recording-{recording}"))
            return cand if cand.exists() else None
    return None


def load_blood(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
               merge: bool = False) -> InputFunction:
    """Load a BIDS blood recording as an input function.

    Parameters
    ----------
    path : str, path-like or sequence of them
        ``*_recording-manual_blood.tsv`` and/or ``*_recording-autosampler_blood.tsv``; the
        ``.json`` beside each, or shared higher up (BIDS inheritance, e.g. a root
        ``recording-manual_blood.json``), gives column units (``time`` in s).
    merge : bool
        With one path, also read the other recording beside it and merge them: autosampler
        whole blood while it runs, then manual samples; plasma from the autosampler when
        measured, otherwise autosampler whole blood times the manual plasma/blood ratio
        (interpolated, held constant outside the samples); parent fraction from the manual
        samples (1 at t = 0 when not sampled there).

    Returns
    -------
    InputFunction
        Times in minutes, concentrations in kBq/mL; the metabolite-corrected (parent)
        plasma when a parent fraction was measured.

    Raises
    ------
    InputFunctionError
        Missing file, no usable blood values, or recordings that cannot be merged.
    MetadataError
        Missing sidecar or column units, or two sidecars at one folder level.
    UnitsError
        Plasma and whole blood of one recording differ by more than a factor 10 (a wrong
        ``Units``).

    Notes
    -----
    ``n/a`` entries are skipped per column. Without ``metabolite_parent_fraction`` the input
    is the total plasma and a warning says so.
    """
    if path is None or (not isinstance(path, str | os.PathLike) and not path):
        raise InputFunctionError(
            "load_blood: no blood recording given (None); pass the path of a BIDS "
            "*_recording-<label>_blood.tsv (e.g. scan.blood['manual'] of sv2a.bids.find_scans,"
            " which is absent when discovery found no blood recording for the scan)"
        )
    if isinstance(path, str | os.PathLike):
        paths = [Path(path)]
    else:
        paths = [Path(p) for p in path]
    if merge and len(paths) == 1:
        for rec in ("manual", "autosampler"):
            sib = _sibling(paths[0], rec)
            if sib is not None and sib != paths[0]:
                paths.append(sib)
    read = [(*read_blood_table(p), p) for p in paths]
    tables = [(t, p) for t, _, p in read]
    metas = {str(p): m for _, m, p in read}
    if len(tables) == 1:
        df, src = tables[0]
        inp = _input_from_table(df, str(src), metas[str(src)])
    else:
        auto = [(t, p) for t, p in tables if "autosampler" in p.name]
        manual = [(t, p) for t, p in tables if "autosampler" not in p.name]
        if len(auto) != 1 or len(manual) != 1:
            raise InputFunctionError(
                "merging needs one manual and one autosampler recording, got "
                f"{[str(p) for _, p in tables]}"
            )
        inp = _merge(auto[0][0], manual[0][0], " + ".join(str(p) for _, p in tables),
                     metas[str(manual[0][1])])
    inp.meta["units"] = {k: v for m in metas.values() for k, v in m.get("units", {}).items()}
    check_sampling(inp)
    return inp


def _valid(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Samples of one column with their times, sorted by time (BIDS does not require the
    rows of a recording to be in time order; every interpolation below needs them sorted)."""
    if col not in df:
        return np.array([]), np.array([])
    m = df[col].notna() & df["time"].notna()
    t = df.loc[m, "time"].to_numpy(float)
    v = df.loc[m, col].to_numpy(float)
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _input_from_table(df: pd.DataFrame, source: str,
                      meta_in: Mapping[str, Any] | None = None) -> InputFunction:
    tp, cp = _valid(df, "plasma")
    tb, cb = _valid(df, "whole_blood")
    if tp.size == 0 and tb.size == 0:
        raise InputFunctionError(f"{source}: neither plasma nor whole blood values")
    tf, pf = _check_parent_column(df, source, meta_in or {})
    if tp.size == 0:
        what = ("plasma_radioactivity has no values (every entry n/a)" if "plasma" in df
                else "no plasma column")
        warnings.warn(f"{source}: {what}; whole blood is used as the input",
                      Sv2aWarning, stacklevel=3)
        tp, cp = tb, cb
    meta: dict[str, Any] = {"source": source}
    if tf.size:
        pf_at = _parent_interp(tf, pf, tp)
        meta["parent_fraction_samples"] = {"time": tf.tolist(), "value": pf.tolist()}
        return InputFunction(time=tp, plasma=cp, parent_fraction=pf_at,
                             whole_blood=cb if tb.size else None,
                             whole_blood_time=tb if tb.size else None, meta=meta, source=source)
    warnings.warn(f"{source}: no metabolite_parent_fraction; the input is total plasma "
                  "(not metabolite corrected)", Sv2aWarning, stacklevel=3)
    return InputFunction(time=tp, plasma=cp, whole_blood=cb if tb.size else None,
                         whole_blood_time=tb if tb.size else None, meta=meta, source=source)


def _check_parent_column(df: pd.DataFrame, source: str,
                         meta: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The parent-fraction samples; a ``metabolite_parent_fraction`` column without any value
    raises :class:`InputFunctionError` unless the sidecar says ``MetaboliteAvail: false``
    (then the input is total plasma, with the warning of a missing column)."""
    tf, pf = _valid(df, "parent_fraction")
    if tf.size or "parent_fraction" not in df or meta.get("MetaboliteAvail") is False:
        return tf, pf
    avail = (" although the sidecar says MetaboliteAvail: true"
             if meta.get("MetaboliteAvail") is True else "")
    raise InputFunctionError(
        f"{source}: the metabolite_parent_fraction column is empty (every entry n/a)"
        f"{avail}; the input cannot be metabolite corrected: fill in the measured fractions, "
        "or remove the column and set MetaboliteAvail to false to fit total plasma"
    )


def _parent_interp(tf: np.ndarray, pf: np.ndarray, t: np.ndarray) -> np.ndarray:
    if tf[0] > 0:
        tf, pf = np.concatenate([[0.0], tf]), np.concatenate([[1.0], pf])
    return np.interp(t, tf, pf)


def _merge(auto: pd.DataFrame, manual: pd.DataFrame, source: str,
           manual_meta: Mapping[str, Any] | None = None) -> InputFunction:
    ta, ba = _valid(auto, "whole_blood")
    if ta.size == 0:
        raise InputFunctionError(f"{source}: the autosampler recording has no whole blood")
    tm_b, bm = _valid(manual, "whole_blood")
    tm_p, pm = _valid(manual, "plasma")
    tf, pf = _check_parent_column(manual, source, manual_meta or {})
    t_end_auto = ta.max()
    late_b = tm_b > t_end_auto
    tb = np.concatenate([ta, tm_b[late_b]])
    cb = np.concatenate([ba, bm[late_b]])
    tpa, pa = _valid(auto, "plasma")
    if tpa.size:
        late_p = tm_p > tpa.max()
        tp = np.concatenate([tpa, tm_p[late_p]])
        cp = np.concatenate([pa, pm[late_p]])
    else:
        # samples with both, whole blood above 0 (a 0 at injection would give 0/0)
        both = np.intersect1d(tm_b[bm > 0], tm_p)
        if both.size == 0:
            raise InputFunctionError(
                f"{source}: cannot derive plasma for the autosampler: no manual sample has both "
                "whole blood (above 0) and plasma"
            )
        ratio = (pm[np.isin(tm_p, both)] / bm[np.isin(tm_b, both)])
        pa = ba * np.interp(ta, both, ratio)
        late_p = tm_p > t_end_auto
        tp = np.concatenate([ta, tm_p[late_p]])
        cp = np.concatenate([pa, pm[late_p]])
    meta: dict[str, Any] = {"source": source, "merged": True}
    if tf.size:
        meta["parent_fraction_samples"] = {"time": tf.tolist(), "value": pf.tolist()}
        return InputFunction(time=tp, plasma=cp, parent_fraction=_parent_interp(tf, pf, tp),
                             whole_blood=cb, whole_blood_time=tb, meta=meta, source=source)
    warnings.warn(f"{source}: no metabolite_parent_fraction; the input is total plasma",
                  Sv2aWarning, stacklevel=3)
    return InputFunction(time=tp, plasma=cp, whole_blood=cb, whole_blood_time=tb, meta=meta,
                         source=source)
