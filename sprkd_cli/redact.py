"""A store URL's secrets kept out of everything sprkd prints: the URL masked, and messages (a database
driver's among them) scrubbed of every form of its password. Standard library only: error lines use it."""

from __future__ import annotations

import re

# A query parameter that holds a secret (libpq's password=, sslpassword=; a token=, secret=)
_SECRET_PARAM = re.compile(r"(?i)([?&][^=&#]*(?:passw|secret|token)[^=&#]*=)([^&#]*)")
_USERINFO_PASSWORD = re.compile(r"^([^/]*//[^:/@]*:)(.*)@", flags=re.DOTALL)


def display_url(url: str) -> str:
    """`url` as it may be printed or logged: everything between `user:` and the last `@` masked (so a
    password holding an unencoded `@` or `/`, which SQLAlchemy would split in the wrong place, is masked
    whole, and a string that does not parse as a URL is masked too), and the value of every query
    parameter that holds a secret (`?password=...`)."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", url))


def url_secrets(url: str) -> list[str]:
    """The secrets in `url` in every form a driver or a parser may quote them: each password (userinfo,
    query parameters) as written, percent-decoded and percent-encoded, and each piece of it between
    the characters a URL parser splits at (`@`, `/`, `:`, ...) of three characters or more; longest
    first."""
    from urllib.parse import quote, unquote

    found = [m.group(2) for m in _USERINFO_PASSWORD.finditer(url)] + [m.group(2) for m in _SECRET_PARAM.finditer(url)]
    forms: set[str] = set()
    for secret in found:
        for form in (secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")):
            forms.add(form)
            forms.update(piece for piece in re.split(r"[@/:?#&=%\s]", form) if len(piece) >= 3)
    forms.discard("")
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """`text` (a message, perhaps a driver's) with every secret of the store's `url` replaced by ***."""
    if not url:
        return text
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text
