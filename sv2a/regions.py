"""Region-name normalisation shared by atlases, TACs and models.

Region names are compared in one spelling: lowercase snake_case with camelCase split
(``'Left-Hippocampus'`` -> ``'left_hippocampus'``, ``'CentrumSemiovale'`` ->
``'centrum_semiovale'``). This module has no sv2a imports, so every module can use it.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["region_name", "name_list"]


def region_name(name: object) -> str:
    """Normalise a region label to lowercase snake_case.

    Accented letters lose their accents (Unicode NFKD, combining marks dropped:
    ``córtex`` -> ``cortex``), runs of characters other than ASCII letters and digits become
    one underscore, leading and trailing underscores are dropped, and a lowercase letter or
    digit followed by a capitalised word is split (camelCase -> camel_case).

    Parameters
    ----------
    name : object
        Region label as written in a label table or given by the user (converted with
        ``str``).

    Returns
    -------
    str
        The normalised name.

    Examples
    --------
    >>> region_name("Left-Hippocampus")
    'left_hippocampus'
    >>> region_name("CentrumSemiovale")
    'centrum_semiovale'
    >>> region_name("córtex_frontal")
    'cortex_frontal'
    """
    decomposed = unicodedata.normalize("NFKD", str(name).strip())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    s = re.sub(r"[^0-9a-zA-Z]+", "_", plain).strip("_")
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", s)  # camelCase -> camel_case
    return s.lower()


def name_list(names: list[str], limit: int = 10) -> str:
    """Region names for a message: all of a short list, else the first ``limit`` and a count
    (a FreeSurfer table can name hundreds of regions a scan does not have).

    Parameters
    ----------
    names : list of str
        The names.
    limit : int
        How many to show.

    Returns
    -------
    str
        ``"['a', 'b']"`` or ``"312 regions: ['a', ..., 'j'] and 302 more"``.

    Examples
    --------
    >>> name_list(["a", "b"])
    "['a', 'b']"
    >>> name_list([str(i) for i in range(12)], limit=2)
    "12 regions: ['0', '1'] and 10 more"
    """
    if len(names) <= limit:
        return str(list(names))
    return f"{len(names)} regions: {list(names[:limit])} and {len(names) - limit} more"
