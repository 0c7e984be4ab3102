"""Parse registry names with options: `mlp:width=256,depth=3`, `synthetic:n=500,classes=3`."""

from .errors import UserError

SEED_LIMIT = 2**63  # seeds are stored as 64-bit signed integers


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split `name:key=value,key=value` into the name and its raw option strings."""
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"bad option '{item}' in '{spec}': write name:key=value,key=value")
        options[key.strip()] = value.strip()
    return name.strip(), options


def typed_options(spec: str, options: dict[str, str], defaults: dict) -> dict:
    """Convert raw option strings to the types of `defaults`; unknown keys are an error."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(sorted(unknown))} in '{spec}'; "
            f"valid options: {', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    for key, raw in options.items():
        kind = type(defaults[key])
        try:
            out[key] = _boolean(raw) if kind is bool else kind(raw)
        except ValueError:
            raise UserError(f"option {key}={raw} in '{spec}' must be a {kind.__name__}") from None
    return out


def _boolean(raw: str) -> bool:
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if raw.lower() not in words:
        raise ValueError(raw)
    return words[raw.lower()]


def parse_seeds(text: str) -> list[int]:
    """`0-4` -> [0..4]; `0,2,7` and `0-2,9` work too. Order kept, duplicates dropped."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            if sep:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UserError(f"bad --seeds '{text}': use a range like 0-4, a list like 0,2,7, or both") from None
    if not seeds or any(not 0 <= s < SEED_LIMIT for s in seeds):
        raise UserError(f"bad --seeds '{text}': give seeds from 0 to 2^63-1, e.g. 0-4")
    return list(dict.fromkeys(seeds))


def parse_list(text: str) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
