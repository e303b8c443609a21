"""The voxel adapter reads masked TACs from any memory layout without copying the image."""

import numpy as np
import pytest

from sv2a.parametric.inputs import mask_rows, rows_of


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_mask_rows_equals_boolean_indexing(layout):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((7, 5, 4, 12)).astype(np.float32)
    img = {"C": base, "F": np.asfortranarray(base), "strided": base[:, :, :, ::2]}[layout]
    m = rng.random(img.shape[:3]) < 0.4
    # expected by numpy's own boolean indexing (C order of the mask); a pure copy: exact
    expected = img[m]
    got = mask_rows(img, m)
    assert got.dtype == img.dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(rows_of(img, m, img.shape[3], False),
                                  expected.astype(np.float64))
