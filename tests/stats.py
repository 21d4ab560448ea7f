"""Tail probabilities for the distribution tests (no scipy in the pinned environment)."""

import math


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df), integer df: the closed forms of the regularised upper
    incomplete gamma function Q(df/2, x/2) (even df: a finite sum; odd df: erfc plus a sum)."""
    h = x / 2.0
    if df % 2 == 0:
        term = total = 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return math.exp(-h) * total
    term, total = math.sqrt(h) * math.exp(-h) / math.gamma(1.5), 0.0
    for i in range(1, (df + 1) // 2):
        total += term
        term *= h / (i + 0.5)
    return math.erfc(math.sqrt(h)) + total
