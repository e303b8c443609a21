"""Frame weighting schemes and the delta-method transforms for graphical methods."""

from __future__ import annotations

import numpy as np
import pytest

from sv2a.errors import ModelError, ShapeMismatchError
from sv2a.frames import frames_from_counts
from sv2a.models._kinetics import integral_matrix
from sv2a.models.logan import logan_weights
from sv2a.weights import frame_weights


@pytest.fixture
def setup():
    fr = frames_from_counts([(6, 10), (3, 20), (6, 30), (5, 60), (5, 120), (14, 300)],
                            half_life=20.4)
    t = fr.mid
    tac = 20 * t * np.exp(-t / 3) + 5 * np.exp(-t / 60)
    return fr, tac


def test_uniform_and_duration(setup):
    fr, tac = setup
    assert np.all(frame_weights("uniform", tac, fr) == 1)
    w = frame_weights("duration", tac, fr)
    assert w.max() == 1 and np.allclose(w, fr.duration / fr.duration.max())
    # 2-D input -> one row per region
    w2 = frame_weights("duration", np.vstack([tac, 2 * tac]), fr)
    assert w2.shape == (2, fr.n) and np.allclose(w2[0], w2[1])


def test_variance_scheme_is_inverse_variance(setup):
    fr, tac = setup
    w = frame_weights("variance", tac, fr)
    lam = np.log(2) / 20.4
    var = 0.004 * tac * np.exp(lam * fr.mid) / fr.duration  # DOMAIN §2 noise model
    assert np.allclose(w, (1 / var) / (1 / var).max())


def test_kinfitr_scheme(setup):
    fr, tac = setup
    w = frame_weights("kinfitr", tac, fr, minweight=0.5)
    # independent computation: sqrt(duration x decay-uncorrected frame mean), max 1, floored
    lam = np.log(2) / 20.4
    unc = tac * np.exp(-lam * fr.start) * (-np.expm1(-lam * fr.duration)) / (lam * fr.duration)
    raw = np.sqrt(fr.duration * unc)
    raw = raw / raw.max()
    expect = 0.5 + (raw - raw.min()) / (1 - raw.min()) * 0.5
    assert np.allclose(w, expect)
    assert w.min() == pytest.approx(0.5) and w.max() == pytest.approx(1.0)


def test_array_weights_and_errors(setup):
    fr, tac = setup
    arr = np.linspace(1, 2, fr.n)
    assert np.allclose(frame_weights(arr, tac, fr), arr / 2)
    with pytest.raises(ShapeMismatchError, match="one weight per frame"):
        frame_weights(np.ones(3), tac, fr)
    with pytest.raises(ShapeMismatchError, match="frame index 4"):
        bad = arr.copy()
        bad[4] = -1
        frame_weights(bad, tac, fr)
    with pytest.raises(ModelError, match="unknown weights scheme"):
        frame_weights("poisson", tac, fr)
    nohl = frames_from_counts([(6, 10), (3, 20)])
    with pytest.raises(ModelError, match="half-life"):
        frame_weights("variance", np.ones(9), nohl)


def test_integral_matrix(setup):
    fr, tac = setup
    a = integral_matrix(fr.mid)
    ref = [np.trapezoid(np.r_[0, tac[: i + 1]], np.r_[0, fr.mid[: i + 1]]) for i in range(fr.n)]
    assert np.allclose(a @ tac, ref)
    b = integral_matrix(fr.mid, method="framecumsum", durations=fr.duration)
    ref2 = np.cumsum(tac * fr.duration) - tac * fr.duration / 2
    assert np.allclose(b @ tac, ref2)


def test_logan_weights_match_numerical_delta_method(setup):
    fr, tac = setup
    w = frame_weights("variance", tac, fr)
    a = integral_matrix(fr.mid)
    got = logan_weights(w, tac, a)

    def y(c):
        return (a @ c) / c

    eps = 1e-6
    jac = np.empty((fr.n, fr.n))
    for j in range(fr.n):
        d = np.zeros(fr.n)
        d[j] = eps * tac[j]
        jac[:, j] = (y(tac + d) - y(tac - d)) / (2 * d[j])
    var = (jac**2) @ (1 / w)
    # frame 0's ordinate (∫C/C on the first trapezoid) is noise-free: it gets weight 0
    assert got[0] == 0 and var[0] == pytest.approx(0, abs=1e-12)
    expect = (1 / var[1:]) / (1 / var[1:]).max()
    assert np.allclose(got[1:] / got[1:].max(), expect, rtol=1e-5)
