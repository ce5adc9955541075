"""Dataset references: ``source:dataset`` with optional ``?key=value&key=value`` parameters.

Examples: ``matminer2018:dielectric_constant``, ``emt:alloys?n=500&seed=0``,
``jarvis:dft_3d?file=/data/dft_3d.json``, ``folder:/data/my_crystals``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

from tlsearch.errors import BadReferenceError


@dataclass(frozen=True)
class DatasetRef:
    source: str
    name: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "DatasetRef":
        if not isinstance(text, str) or ":" not in text:
            raise BadReferenceError(
                f"dataset reference {text!r} must look like 'source:dataset[?key=value&...]', "
                "e.g. 'matminer2018:dielectric_constant' or 'emt:alloys?n=500&seed=0' "
                "(see `tlsearch data list`)"
            )
        source, rest = text.split(":", 1)
        name, _, query = rest.partition("?")
        source, name = source.strip(), name.strip()
        if not source or not name:
            raise BadReferenceError(f"dataset reference {text!r}: source and dataset must both be non-empty")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise BadReferenceError(
                f"dataset reference {text!r}: parameters must be 'key=value' pairs joined by '&'"
            ) from None
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise BadReferenceError(f"dataset reference {text!r}: a parameter is given twice")
        return cls(source, name, tuple(sorted(pairs)))

    @property
    def param_dict(self) -> dict[str, str]:
        return dict(self.params)

    def __str__(self) -> str:
        query = urlencode(self.params, quote_via=quote, safe="/") if self.params else ""
        return f"{self.source}:{self.name}" + (f"?{query}" if query else "")
