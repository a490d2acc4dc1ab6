"""Small helpers below the models: no ORM."""

import re


def slugify(name, length=40):
    """A DNS-label-safe name: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug[:length].rstrip("-") or False
