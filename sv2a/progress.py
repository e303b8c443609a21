"""Progress output that fits where it goes.

On a terminal a progress bar (tqdm) redraws one line in place. In a log file or under a batch
system (stderr not a terminal, or ``SLURM_JOB_ID`` / ``PBS_JOBID`` / ``LSB_JOBID`` set) a bar
would fill the log with carriage returns and cursor codes, so :class:`Progress` writes one
plain line per finished item instead::

    sv2a participant: 5/12 scans done (1 failed), 00:42 elapsed

* :func:`use_bars` decides between the two;
* :class:`Progress` counts finished items and writes the bar or the lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

__all__ = ["use_bars", "Progress", "format_elapsed"]

BATCH_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "SGE_TASK_ID")


def use_bars(stream: IO[str] | None = None) -> bool:
    """Whether progress bars suit the output stream.

    Parameters
    ----------
    stream : text stream, optional
        Where the progress goes (default ``sys.stderr``).

    Returns
    -------
    bool
        True when ``stream`` is a terminal and no batch-system job variable
        (``SLURM_JOB_ID``, ``PBS_JOBID``, ``LSB_JOBID``, ``SGE_TASK_ID``) is set; False for
        files, pipes and batch jobs, which get plain lines.

    Examples
    --------
    >>> import io
    >>> use_bars(io.StringIO())
    False
    """
    stream = sys.stderr if stream is None else stream
    if any(os.environ.get(v) for v in BATCH_VARIABLES):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def format_elapsed(seconds: float) -> str:
    """Elapsed time as ``MM:SS`` (or ``H:MM:SS`` from one hour).

    Parameters
    ----------
    seconds : float
        Elapsed time (s).

    Returns
    -------
    str
        The time, e.g. ``'00:42'``, ``'1:02:03'``.

    Examples
    --------
    >>> format_elapsed(42.4), format_elapsed(3723)
    ('00:42', '1:02:03')
    """
    s = int(max(seconds, 0.0))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Count finished items; show a bar on a terminal, plain lines elsewhere.

    Parameters
    ----------
    total : int
        Number of items.
    label : str
        What runs, at the start of every line (``'sv2a participant'``).
    unit : str
        Plural noun of the items (``'scans'``).
    verb : str
        What happened to a finished item (``'done'``, ``'checked'``).
    failed_word : str
        What the count of failed items is called (``'failed'``, ``'with errors'``).
    enabled : bool
        False writes nothing (quiet runs).
    bars : bool, optional
        Force the bar (True) or plain lines (False); default :func:`use_bars` of ``stream``.
    stream : text stream, optional
        Output (default ``sys.stderr``).

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with Progress(2, label="sv2a validate", unit="scans", verb="checked",
    ...               failed_word="with errors", stream=out) as p:
    ...     p.update()
    ...     p.update(failed=True)
    >>> print(out.getvalue().replace("00:00", "MM:SS"), end="")
    sv2a validate: 2 scans to check
    sv2a validate: 1/2 scans checked, MM:SS elapsed
    sv2a validate: 2/2 scans checked (1 with errors), MM:SS elapsed
    """

    def __init__(self, total: int, *, label: str, unit: str = "scans", verb: str = "done",
                 failed_word: str = "failed", enabled: bool = True, bars: bool | None = None,
                 stream: IO[str] | None = None) -> None:
        self.total = int(total)
        self.label = label
        self.unit = unit
        self.verb = verb
        self.failed_word = failed_word
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled) and self.total > 0
        self.bars = use_bars(self.stream) if bars is None else bool(bars)
        self.n = 0
        self.failed = 0
        self._t0 = time.perf_counter()
        self._bar: Any = None

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Announce the size of the job (plain lines) or open the bar (terminal).

        Returns
        -------
        None
        """
        self._t0 = time.perf_counter()
        if not self.enabled:
            return
        if self.bars:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.label.removeprefix("sv2a "),
                             unit=self.unit.rstrip("s") or "item", leave=False,
                             dynamic_ncols=True, file=self.stream)
        else:
            verb = "check" if self.verb == "checked" else "process"
            self._write(f"{self.label}: {self.total} {self.unit} to {verb}")

    def update(self, *, failed: bool = False, note: str = "") -> None:
        """Record one finished item.

        Parameters
        ----------
        failed : bool
            The item failed (counted and shown in brackets).
        note : str
            Shown beside the bar (terminal only), e.g. the scan's name.

        Returns
        -------
        None
        """
        self.n += 1
        self.failed += bool(failed)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            if note:
                self._bar.set_postfix_str(note, refresh=False)
        else:
            self._write(self.line())

    def line(self) -> str:
        """The plain progress line.

        Returns
        -------
        str
            ``'<label>: n/total <unit> <verb> (k failed), MM:SS elapsed'``.
        """
        fail = f" ({self.failed} {self.failed_word})" if self.failed else ""
        return (f"{self.label}: {self.n}/{self.total} {self.unit} {self.verb}{fail}, "
                f"{format_elapsed(time.perf_counter() - self._t0)} elapsed")

    def close(self) -> None:
        """Close the bar (if any).

        Returns
        -------
        None
        """
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed stream must not sink a run
            pass
