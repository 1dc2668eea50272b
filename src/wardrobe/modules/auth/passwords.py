"""How strong a new password must be.

NIST SP 800-63B asks verifiers to refuse passwords that are common, expected or compromised rather
than to pile up composition rules. A list of common passwords of our own would be stale and short;
zxcvbn (the Dropbox estimator) already ranks candidates against ~30,000 common passwords, English
words, names and surnames, keyboard walks, dates, repeats, sequences and l33t substitutions, and
estimates the guesses an attacker needs. A password must score at least
``WARDROBE_PASSWORD_MIN_SCORE`` (3 by default: about 10^8 guesses, out of reach of online guessing
under our back-off). The product's own names count as dictionary words.
"""

from __future__ import annotations

from wardrobe.settings import get_settings

# NIST SP 800-63B: at least 8 characters, whatever the configuration (settings enforce the floor).
MIN_PASSWORD_LENGTH = 8
# Words a guesser tries first against this service.
_CONTEXT_WORDS = ["wardrobe", "yigui", "衣柜", "aiyigui", "closet"]
# zxcvbn refuses longer input (its matching is quadratic); the rest of a longer password only adds.
_ESTIMATED_PREFIX = 72


def check_strength(value: str) -> str:
    """``value`` if it is long and strong enough to be a password here, else ValueError (the
    message is shown to the client as the field's error)."""
    settings = get_settings()
    if len(value) < settings.password_min_length:
        raise ValueError(f"must be at least {settings.password_min_length} characters")
    if len(value) > settings.password_max_length:
        raise ValueError(f"must be at most {settings.password_max_length} characters")
    if not any(c.isalpha() for c in value) or not any(c.isdigit() for c in value):
        raise ValueError("must contain both letters and digits")
    # Imported on the first password set, not with the app: its word lists are ~11 MiB of every
    # API process's memory, for a check that only sign-ups and password changes make.
    from zxcvbn import zxcvbn

    estimate = zxcvbn(value[:_ESTIMATED_PREFIX], user_inputs=_CONTEXT_WORDS)
    if int(estimate["score"]) < settings.password_min_score:
        hint = str(estimate.get("feedback", {}).get("warning") or "").strip()
        raise ValueError(f"is too easy to guess{': ' + hint if hint else ''}")
    return value
