"""What ``tessera plugins`` prints: the registry's ``describe()`` as aligned text, one section per kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

_HEADER = ("name", "plugin", "module", "distribution")


def render(description: Mapping[str, Sequence[Mapping[str, str | None]]]) -> str:
    """One section per kind (``udf_languages`` as "udf languages"), each name with the plugin that provides it."""
    sections = []
    for kind, entries in description.items():
        lines = [f"{kind.replace('_', ' ')} ({len(entries)})"]
        rows = [tuple(e[k] or "-" for k in _HEADER) for e in entries]
        if rows:
            widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]
            for row in [_HEADER, *rows]:
                lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        else:
            lines.append("  (none registered)")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
