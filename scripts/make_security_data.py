"""Write the two data files of authz/data/ from two MIT-licensed PyPI packages.

    pip install --target /tmp/sd zxcvbn==4.5.0 confusable-homoglyphs==3.3.1
    PYTHONPATH=/tmp/sd python scripts/make_security_data.py

- authz/data/common-passwords.txt: the 10,000 most common passwords of the
  "passwords" frequency list shipped by zxcvbn (Dropbox's password strength
  estimator, Python port; MIT), itself drawn from Mark Burnett's public-domain
  10 million password corpus. Read by authz/passwords.py.
- authz/data/confusables.tsv: the characters Unicode's confusables data
  (UTS #39, as packaged by confusable_homoglyphs; MIT) lists as looking like an
  ASCII letter or digit, with that letter or digit. Read by authz/logins.py.

The service never runs this: the files are committed, so nothing is fetched at
run time. Re-run it only to refresh the data, and review the diff.
"""

from __future__ import annotations

import json
import string
import unicodedata
from importlib import resources
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "authz" / "data"
COMMON = 10_000
# The prototypes a look-alike may be mapped to, most wanted first: a character
# that resembles several (e.g. U+01C0 looks like l, I and 1) gets the first.
PROTOTYPES = string.ascii_lowercase + string.digits + string.ascii_uppercase


def common_passwords() -> str:
    from zxcvbn import frequency_lists  # noqa: PLC0415 - installed only to refresh the data

    words = frequency_lists.FREQUENCY_LISTS["passwords"][:COMMON]
    header = (
        "# The 10,000 most common passwords, most common first, one per line.\n"
        "# Source: the 'passwords' frequency list of zxcvbn 4.5.0 (MIT License,\n"
        "# Copyright (c) 2012-2016 Dan Wheeler and Dropbox, Inc.; Python port\n"
        "# Copyright (c) 2016 Daniel Wolf), drawn from Mark Burnett's public-domain\n"
        "# corpus of 10 million passwords. Written by scripts/make_security_data.py.\n"
    )
    return header + "".join(f"{w}\n" for w in words)


def confusables() -> str:
    table = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    )
    mapped: dict[str, str] = {}
    for prototype in PROTOTYPES:
        for entry in table.get(prototype, []):
            char = entry["c"]
            if len(char) != 1 or char.isascii() or char in mapped:
                continue
            mapped[char] = prototype.lower()
    header = (
        "# Characters that look like an ASCII letter or digit, and that letter or digit\n"
        "# (lower case): code point, tab, prototype. From Unicode's confusables data\n"
        "# (UTS #39) as packaged by confusable_homoglyphs 3.3.1 (MIT License,\n"
        "# Copyright (c) 2016-2018 Victor Felder, 2024 Elena Grandi).\n"
        "# Written by scripts/make_security_data.py.\n"
    )
    lines = [
        f"U+{ord(c):04X}\t{p}\t# {unicodedata.name(c, '?')}\n"
        for c, p in sorted(mapped.items(), key=lambda item: ord(item[0]))
    ]
    return header + "".join(lines)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "common-passwords.txt").write_text(common_passwords(), encoding="utf-8")
    (OUT / "confusables.tsv").write_text(confusables(), encoding="utf-8")


if __name__ == "__main__":
    main()
