"""Seeds derived from a run's seed, one per use, so that uses never share a random stream."""

SEED_STRIDE = 1_000_003  # a prime: the parts (< stride) of different seeds never meet


def derive_seed(seed: int, part: int) -> int:
    """The seed of `part` (a step, an epoch, a probe batch) of the stream `seed`: seed·1,000,003 + part."""
    return seed * SEED_STRIDE + part
