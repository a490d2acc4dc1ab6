"""Small helpers below the models: no ORM."""

import json
import re


def slugify(name, length=40):
    """A DNS-label-safe name: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug[:length].rstrip("-") or False


MAX_JSON_DEPTH = 32


def parse_json(raw, max_depth=MAX_JSON_DEPTH):
    """``json.loads``, refusing (``ValueError``) what is nested deeper than
    ``max_depth``: a document deep enough to exhaust Python's recursion
    (10,000 brackets) would otherwise crash whoever parses, stores or
    serializes it."""
    try:
        value = json.loads(raw)
    except RecursionError as error:
        raise ValueError(f"nested deeper than {max_depth} levels") from error
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values()
            if isinstance(item, dict)
            else item
            if isinstance(item, list)
            else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > max_depth:
                    raise ValueError(f"nested deeper than {max_depth} levels")
                stack.append((child, depth + 1))
    return value


_ABSOLUTE_PATH = re.compile(r"(?<![\w/.:])/(?:[^\s'\"/:,;()]+/)+([^\s'\"/:,;()]*)")


def scrub_paths(text):
    """``text`` with every absolute path cut to its last component: what a
    message tells a user never shows where the server keeps its files
    (``Load model from /srv/data/.../m.onnx failed`` -> ``... m.onnx ...``)."""
    if not text:
        return text
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "/", text)
