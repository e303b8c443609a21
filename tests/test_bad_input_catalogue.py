"""The bad-input catalogue: every corrupted input through the API, ``validate`` and ``run``.

One valid phantom scan is copied once per case into one corrupted BIDS dataset (subject
``sub-c01`` ... of ``tests/_catalogue.py``, plus the untouched ``sub-ref``), so the whole
catalogue costs one ``validate_dataset`` and one ``run_participant``. Each case asserts, at
each level, the exact :mod:`sv2a.errors` class and the words of the message, or that a
legal input gives the result of the valid copy. Dataset-level files, configuration errors and
hostile names in the HTML reports get a few small datasets of their own.

A level where today's code falls short of the catalogue is marked ``xfail(strict=True)`` with
the reason (see the case table); it flips to a failure when the code is fixed.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _catalogue import (
    API_STAGES,
    CASES,
    CONFIG_CASES,
    DATASET_CASES,
    MODEL_OPTIONS,
    MODELS,
    PARTICIPANT,
    REFERENCE,
    VALID,
    Files,
    add_subject,
    api_step,
    build_catalogue,
    make_template,
    participant_row,
    subject_re,
    write_dataset_files,
)

from sv2a.errors import ConfigError, Sv2aError

LEVELS = ("api", "validate", "run")


# --------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("catalogue")


@pytest.fixture(scope="module")
def template(work) -> Files:
    return make_template(work)


@pytest.fixture(scope="module")
def dataset(work, template) -> Path:
    root = work / "bids"
    build_catalogue(template, root, CASES)
    return root


def _config() -> Any:
    from sv2a.pipeline import PipelineConfig

    return PipelineConfig(models=list(MODELS), reference=REFERENCE, figures=False,
                          model_options=MODEL_OPTIONS, skip_invalid=True).validate()


def _validate(root: Path) -> list[Any]:
    """``validate_dataset`` for the catalogue's run settings (where it takes them)."""
    from sv2a.validate import validate_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "config" in inspect.signature(validate_dataset).parameters:
            return validate_dataset(root, config=_config())
        return validate_dataset(root)


def _run(root: Path, out: Path) -> SimpleNamespace:
    """``run_participant`` with the catalogue's settings: the summary, ``failures.tsv`` and
    the warnings of the run."""
    from sv2a.pipeline import run_participant

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_participant(root, out, _config(), quiet=True)
    path = out / "logs" / "failures.tsv"
    failures = (pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
                if path.exists() else pd.DataFrame(columns=["participant_id", "error_type",
                                                            "message"]))
    return SimpleNamespace(summary=summary, failures=failures, out=out,
                           warnings=[str(w.message) for w in caught])


@pytest.fixture(scope="module")
def validated(dataset) -> list[Any]:
    return _validate(dataset)


@pytest.fixture(scope="module")
def ran(dataset, work) -> SimpleNamespace:
    return _run(dataset, work / "out")


def _api_chain(root: Path, label: str, until: int | None = None) -> dict[str, Any]:
    """The API steps of one subject up to (not including) step index ``until``, warnings
    ignored."""
    st = {"root": root, "label": label, "participant": participant_row(root, label)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stage in API_STAGES[:until]:
            api_step(stage, st)
    return st


@pytest.fixture(scope="module")
def api_valid(dataset) -> dict[str, Any]:
    return _api_chain(dataset, VALID)


def _pattern(says: str, label: str) -> str:
    return says.replace("{label}", label)


def _params(level: str) -> list[Any]:
    out = []
    for label, case in CASES.items():
        marks = ([pytest.mark.xfail(strict=True, reason=case.xfail[level])]
                 if level in case.xfail else [])
        out.append(pytest.param(label, marks=marks, id=f"{label}-{case.area}"))
    return out


# --------------------------------------------------------------------------- the table
def test_catalogue_covers_every_area():
    areas = {c.area for c in CASES.values()}
    assert areas == {"timing", "units", "image", "sidecar", "blood", "atlas", "layout"}
    total = len(CASES) + len(DATASET_CASES) + len(CONFIG_CASES) + 2  # + the two reports
    assert total >= 60
    for label, case in CASES.items():
        assert re.fullmatch(r"c\d{2,3}", label) and case.stage in API_STAGES
        for level in LEVELS:
            exp = case.at(level)
            assert exp in ("ok", "warn") or exp.endswith("Error"), (label, level, exp)
            assert exp in ("ok", "warn") or case.says, label  # every error names its cause
        assert set(case.xfail) <= set(LEVELS)


def test_valid_copy_is_clean(dataset, api_valid, validated, ran):
    """The uncorrupted copy passes every level, so each case's failure is its corruption's."""
    assert float(api_valid["srtm"]["BPND"].sel(region="frontal_cortex")) > 0.5
    assert float(api_valid["logan"]["VT"].sel(region="frontal_cortex")) > 5
    mine = [p for p in validated if re.search(subject_re(VALID), p.file)]
    assert mine == []
    done = _done(ran, VALID)
    assert done is not None and not done.get("failures") and done["notes"] == []
    assert _failure_rows(ran, VALID).empty


# --------------------------------------------------------------------------- API
@pytest.mark.parametrize("label", _params("api"))
def test_api(dataset, api_valid, label):
    case = CASES[label]
    exp, says = case.at("api"), _pattern(case.says, label)
    if exp == "ok":
        st = _api_chain(dataset, label)
        if case.same_result:
            for model in ("srtm", "logan"):
                _assert_same_fit(st[model], api_valid[model], case.result_rtol)
        return
    i = API_STAGES.index(case.stage)
    st = _api_chain(dataset, label, i)  # the steps before the stage must pass
    if exp == "warn":
        with pytest.warns(UserWarning) as rec:
            for stage in API_STAGES[i:]:  # and the rest of the chain still works
                api_step(stage, st)
                if st.get("scan", True) is None:
                    break  # discovery left the scan out, with the warning
        assert any(re.search(says, str(w.message)) for w in rec), (
            case.what, [str(w.message) for w in rec])
        return
    with warnings.catch_warnings(), pytest.raises(Sv2aError) as exc:
        warnings.simplefilter("ignore")
        api_step(case.stage, st)
    assert type(exc.value).__name__ == exp, f"{case.what}: {exc.value!r}"
    assert re.search(says, str(exc.value)), f"{case.what}: {exc.value}"


def _assert_same_fit(a: Any, b: Any, rtol: float) -> None:
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for name in a.data_vars:
        va, vb = np.asarray(a[name].values), np.asarray(b[name].values)
        if va.dtype.kind in "fiub":
            np.testing.assert_allclose(va.astype(float), vb.astype(float), rtol=rtol,
                                       atol=1e-12, equal_nan=True, err_msg=name)


# --------------------------------------------------------------------------- validate
def _problems_of(validated: list[Any], label: str) -> list[Any]:
    return [p for p in validated if re.search(subject_re(label), p.file)]


@pytest.mark.parametrize("label", _params("validate"))
def test_validate(validated, label):
    case = CASES[label]
    exp, says = case.at("validate"), _pattern(case.says, label)
    mine = _problems_of(validated, label)
    errors = [p for p in mine if p.severity == "error"]
    shown = (case.what, [str(p) for p in mine])
    if exp in ("ok", "warn"):
        assert errors == [], shown
        if exp == "warn":
            assert any(p.severity == "warning" and re.search(says, p.message)
                       for p in mine), shown
        return
    # an error of this subject's files, naming the class sv2a raises for it and the cause
    assert any(re.search(rf"\b{exp}\b", p.message) and re.search(says, p.message)
               for p in errors), shown


# --------------------------------------------------------------------------- run
def _done(ran: SimpleNamespace, label: str) -> dict[str, Any] | None:
    return next((r for r in ran.summary.done if r["subject"] == label), None)


def _failure_rows(ran: SimpleNamespace, label: str) -> pd.DataFrame:
    f = ran.failures
    return f[f["participant_id"].str.match(subject_re(label))]


def _kinpar(ran: SimpleNamespace, label: str) -> dict[str, pd.DataFrame]:
    done = _done(ran, label)
    assert done is not None
    return {re.search(r"model-([A-Za-z0-9]+)", p).group(1): pd.read_csv(ran.out / p, sep="\t")
            for p in done["outputs"] if p.endswith("_kinpar.tsv")}


@pytest.mark.parametrize("label", _params("run"))
def test_run(ran, label):
    case = CASES[label]
    exp, says = case.at("run"), _pattern(case.says, label)
    rows = _failure_rows(ran, label)
    if exp in ("ok", "warn"):
        warned = rows[rows["scan_status"] == "warning"]
        assert rows[rows["scan_status"] != "warning"].empty, (case.what,
                                                             rows.to_dict("records"))
        done = _done(ran, label)
        assert done is not None and not done.get("failures"), case.what
        if exp == "warn":  # the warning reaches the notes (summary, report) and failures.tsv
            assert any(re.search(says, n) for n in done["notes"]), (case.what, done["notes"])
            assert any(re.search(says, m) for m in warned["message"]), (
                case.what, rows.to_dict("records"))
        if case.same_result:
            got, want = _kinpar(ran, label), _kinpar(ran, VALID)
            assert sorted(got) == sorted(want) == ["LOGAN", "SRTM"]
            for model, table in got.items():
                pd.testing.assert_frame_equal(table, want[model], rtol=case.result_rtol)
        return
    rows = rows[rows["scan_status"] != "warning"]  # warnings may come with the error
    assert not rows.empty, f"{case.what}: sub-{label} is not in failures.tsv"
    assert set(rows["error_type"]) == {exp}, (case.what, rows.to_dict("records"))
    assert any(re.search(says, m) for m in rows["message"]), (case.what, list(rows["message"]))


# --------------------------------------------------------------------------- dataset level
@pytest.fixture(scope="module")
def dataset_runs(work, template) -> dict[str, SimpleNamespace]:
    """Per dataset case: its dataset, the API outcome, validate's problems and the run."""
    out = {}
    for key, case in DATASET_CASES.items():
        root = work / f"ds-{key}"
        add_subject(template, root, "d")
        write_dataset_files(root, {"d": dict(PARTICIPANT)})
        case.corrupt(root)
        res = SimpleNamespace(root=root, problems=_validate(root), api=None, run=None)
        try:
            from sv2a.bids import find_scans, read_participants

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert len(find_scans(root)) == 1
                read_participants(root)
                participant_row(root, "d")
        except Exception as exc:  # noqa: BLE001 - the class is what is checked
            res.api = exc
        try:
            res.run = _run(root, work / f"ds-{key}-out")
        except Exception as exc:  # noqa: BLE001
            res.run = exc
        out[key] = res
    return out


def _dataset_params() -> list[Any]:
    out = []
    for key, case in DATASET_CASES.items():
        for level in LEVELS:
            marks = ([pytest.mark.xfail(strict=True, reason=case.xfail[level])]
                     if level in case.xfail else [])
            out.append(pytest.param(key, level, marks=marks, id=f"{key}-{level}"))
    return out


@pytest.mark.parametrize("key,level", _dataset_params())
def test_dataset_level(dataset_runs, key, level):
    case, res = DATASET_CASES[key], dataset_runs[key]
    exp = case.at(level)
    if level == "validate":
        errors = [p for p in res.problems if p.severity == "error"]
        if exp in ("ok", "warn"):
            assert errors == [], [str(p) for p in errors]
            if exp == "warn":
                assert any(re.search(case.says, p.message) for p in res.problems)
        else:
            assert any(re.search(rf"\b{exp}\b", p.message) and re.search(case.says, p.message)
                       for p in errors), [str(p) for p in res.problems]
        return
    got = res.api if level == "api" else res.run
    if exp == "ok":
        assert not isinstance(got, BaseException), got
        if level == "run":
            assert [r["subject"] for r in got.summary.done] == ["d"] and got.summary.ok
        return
    assert isinstance(got, Sv2aError) and type(got).__name__ == exp, repr(got)
    assert re.search(case.says, str(got)), str(got)


# --------------------------------------------------------------------------- configuration
def _config_params() -> list[Any]:
    out = []
    for key, case in CONFIG_CASES.items():
        for level in LEVELS:
            marks = ([pytest.mark.xfail(strict=True, reason=case.xfail[level])]
                     if level in case.xfail else [])
            out.append(pytest.param(key, level, marks=marks, id=f"{key}-{level}"))
    return out


@pytest.mark.parametrize("key,level", _config_params())
def test_config(work, template, key, level, tmp_path):
    """A bad setting is one ConfigError naming it, from the API, ``sv2a validate`` and
    ``sv2a run`` alike, before anything is read or written."""
    from sv2a.cli import build_parser
    from sv2a.pipeline import resolve_config

    case = CONFIG_CASES[key]
    file = None
    if case.file is not None:
        file = tmp_path / "sv2a.json"
        file.write_text(case.file)
    bids = template.root
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as exc:
        if level == "api":
            resolve_config(case.cli or None, file)
        else:
            argv = [level, str(bids), *([str(out), "participant"] if level == "run" else []),
                    *case.flags, *(["--config", str(file)] if file else [])]
            args = build_parser(commands=[level]).parse_args(argv)
            args._module.main(args)
    assert type(exc.value) is ConfigError
    assert re.search(case.says, str(exc.value)), str(exc.value)
    assert not out.exists()  # refused before anything was written


# --------------------------------------------------------------------------- reports
SCRIPT = '"><script>alert(1)</script>'
MOUSE = '" onmouseover="alert(1)'
# the same in participants.tsv cells (a cell that starts with a quote is a quoted TSV field)
ARMS = ("A<script>alert(1)</script>", 'B" onmouseover="alert(1)')


@pytest.fixture(scope="module")
def hostile_run(work, template) -> SimpleNamespace:
    """Hostile strings in every place a dataset lets them in, through ``sv2a run`` with
    figures (subject reports) and the group level (group report): the dataset folder's name,
    arm names in ``participants.tsv``, and sidecar values that end in error messages
    (``failures.tsv`` -> the subject report)."""
    import json

    from sv2a.pipeline import PipelineConfig, run_group, run_participant

    root = work / f'hostile{MOUSE.replace("/", "")}' / "bids"
    rows = {}
    for i, arm in enumerate((ARMS[0], ARMS[0], ARMS[1], ARMS[1])):
        for ses in ("bl", "fu"):
            add_subject(template, root, f"r{i + 1}", ses)
        rows[f"r{i + 1}"] = {**PARTICIPANT, "arm": arm}
    bad = add_subject(template, root, "r5", "bl")
    meta = json.loads(bad.pet_json.read_text())
    meta["Units"] = SCRIPT
    bad.pet_json.write_text(json.dumps(meta))
    bad2 = add_subject(template, root, "r5", "fu")
    meta = json.loads(bad2.pet_json.read_text())
    meta["TracerRadionuclide"] = MOUSE
    bad2.pet_json.write_text(json.dumps(meta))
    rows["r5"] = {**PARTICIPANT, "arm": ARMS[1]}
    write_dataset_files(root, rows)
    out = work / "hostile-out"
    cfg = PipelineConfig(models=["srtm"], reference=REFERENCE, figures=True,
                         group_model="srtm", baseline_session="bl").validate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = run_participant(root, out, cfg, quiet=True)
        group = run_group(root, out, cfg, quiet=True)
    return SimpleNamespace(out=out, summary=summary, group=group)


def test_report_subject_escapes_hostile_names(hostile_run):
    from test_safety import _assert_safe

    out = hostile_run.out
    assert {r["subject"] for r in hostile_run.summary.failed} == {"r5"}
    html = out / "sub-r5.html"
    text = html.read_text(encoding="utf-8")
    _assert_safe(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the failure is shown, as text
    assert "onmouseover=&quot;alert(1)" in text
    for page in sorted(out.glob("sub-*.html")):
        _assert_safe(page.read_text(encoding="utf-8"))


def test_report_group_escapes_hostile_names(hostile_run):
    from test_safety import _assert_safe

    pages = sorted(hostile_run.out.rglob("*group*.html"))
    assert pages, sorted(p.name for p in hostile_run.out.rglob("*.html"))
    text = "".join(p.read_text(encoding="utf-8") for p in pages)
    for page in pages:
        _assert_safe(page.read_text(encoding="utf-8"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "onmouseover=&quot;alert(1)" in text
