"""User-facing errors.

Every problem a user can cause (bad flag, unknown name, malformed file) raises
:class:`InputError` with a one-line message that names the field and the allowed
range. The CLI prints the message and exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Invalid user input; ``str(err)`` is a complete one-line explanation."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean: a, b?)"`` for close matches of ``name``, or ``""``."""
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    # Substring hits catch "70b" -> "meta-llama/Llama-2-70b-hf", which difflib misses.
    if len(hits) < n:
        for low in lowered:
            if name.lower() in low and low not in hits:
                hits.append(low)
            if len(hits) >= n:
                break
    if not hits:
        return ""
    return " (did you mean: " + ", ".join(lowered[h] for h in hits) + "?)"
