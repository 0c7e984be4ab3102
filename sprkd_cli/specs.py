"""Parse registry names with options: `mlp:width=256,depth=3`, `synthetic:n=500,classes=3`."""

from .errors import UserError

SEED_LIMIT = 2**63  # seeds are stored as 64-bit signed integers
SEEDS_CAP = 100  # seeds one --seeds may name, unless `sprkd --no-caps`
SEEDS_HARD_CAP = 1_000_000  # and even then


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split `name:key=value,key=value` into the name and its raw option strings."""
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad option '{item}' in '{spec}': write name:key=value,key=value")
        if key.strip() in options:
            raise UserError(f"option {key.strip()} is given twice in '{spec}'; give it once")
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
    """`0-4` -> [0..4]; `0,2,7` and `0-2,9` work too. Order kept, duplicates dropped. Seeds from 0 to
    2^63-1, at most SEEDS_CAP of them (SEEDS_HARD_CAP with `sprkd --no-caps`)."""
    from .options import caps_lifted

    cap = SEEDS_HARD_CAP if caps_lifted() else SEEDS_CAP
    too_many = UserError(f"--seeds '{text}' names more than {cap:,} seeds"
                         + ("" if caps_lifted() else " (sprkd --no-caps lifts this cap)"))
    out_of_range = UserError(f"bad --seeds '{text}': give seeds from 0 to 2^63-1, e.g. 0-4")
    seeds: dict[int, None] = {}
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
            if b < a:
                raise ValueError
            if a < 0 or b >= SEED_LIMIT:
                raise out_of_range
            if b - a + 1 > cap:  # before a range of 10^20 seeds is built
                raise too_many
            seeds.update(dict.fromkeys(range(a, b + 1)))
            if len(seeds) > cap:
                raise too_many
    except ValueError:
        raise UserError(f"bad --seeds '{text}': use a range like 0-4, a list like 0,2,7, or both") from None
    if not seeds:
        raise out_of_range
    return list(seeds)


def parse_list(text: str) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
