"""List the kinetic models: kind, scales (regional fits, voxelwise maps), parameters, options.

``sv2a models [--scale region|voxel] [--kind plasma|reference|static]`` prints what the model
registry holds, so the names given to ``--model`` and ``--voxelwise-model`` (and the keys of
``model_options``/``voxelwise_options``) can be looked up without reading the code.
"""

from __future__ import annotations

import argparse
import dataclasses

__all__ = ["add_arguments", "main", "model_table", "EXAMPLES"]

EXAMPLES = """examples:
  sv2a models                  # every model
  sv2a models --scale voxel    # the models that give voxelwise maps (--voxelwise-model)
  sv2a models --kind plasma    # the models that need arterial blood
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``sv2a models`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``models`` sub-command parser.

    Returns
    -------
    None
    """
    parser.add_argument("--scale", choices=["region", "voxel"],
                        help="only models that run at this scale (voxel: parametric maps)")
    parser.add_argument("--kind", choices=["plasma", "reference", "static"],
                        help="only models of this kind (plasma: need arterial blood; "
                        "reference: need a reference region)")


def model_table(kind: str | None = None, scale: str | None = None) -> str:
    """The registered models as text: one line per model, then its options.

    Parameters
    ----------
    kind : {"plasma", "reference", "static"}, optional
        Only models of this kind.
    scale : {"region", "voxel"}, optional
        Only models that run at this scale.

    Returns
    -------
    str
        Columns ``model``, ``kind``, ``scales``, ``parameters``; an indented ``options:`` line
        under each model.
    """
    from ..models import registry

    names = registry.available(kind=kind, scale=scale)  # type: ignore[arg-type]
    rows = [("model", "kind", "scales", "parameters")]
    opts = []
    for name in names:
        cls = registry.get(name)
        scales = " ".join(s for s in ("region", "voxel") if s in cls.scales)
        rows.append((name, cls.kind, scales, " ".join(cls.parameters)))
        opts.append(", ".join(f.name for f in dataclasses.fields(cls.Options)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(rows[0][:3], width, strict=True))
             + "  " + rows[0][3]]
    for row, o in zip(rows[1:], opts, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], width, strict=True))
                     + "  " + row[3])
        if o:
            lines.append(" " * (width[0] + 2) + f"options: {o}")
    if not names:
        lines.append("(no model matches)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Print the model table of ``sv2a models``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (:func:`add_arguments`).

    Returns
    -------
    int
        0.
    """
    print(model_table(kind=args.kind, scale=args.scale))
    return 0
