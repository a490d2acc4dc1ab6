"""Small helpers below the models: no ORM."""

import json
import re


def slugify(name, length=40):
    """A DNS-label-safe name: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return slug[:length].rstrip("-") or False


MAX_JSON_DEPTH = 32


class NulCharacter(ValueError):
    """A string with a NUL (\\u0000), which PostgreSQL stores in neither
    text nor jsonb: refused where it comes in, naming where it was."""

    def __init__(self, path):
        self.path = path or "(the body)"
        super().__init__(f"{self.path}: a NUL character (\\u0000) is not stored")


def _number(text):
    """A JSON number with a fraction or exponent: an int when it is one
    (JSON has one number type, and JSON Schema calls 3.0 an integer), else
    a float."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def parse_json(raw, max_depth=MAX_JSON_DEPTH):
    """``json.loads``, refusing (``ValueError``) what is nested deeper than
    ``max_depth``: a document deep enough to exhaust Python's recursion
    (10,000 brackets) would otherwise crash whoever parses, stores or
    serializes it, and a string with a NUL, which PostgreSQL refuses."""
    try:
        value = json.loads(raw, parse_float=_number)
    except RecursionError as error:
        raise ValueError(f"nested deeper than {max_depth} levels") from error
    if isinstance(value, str) and "\x00" in value:
        raise NulCharacter("")
    stack = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            if any("\x00" in key for key in item):
                raise NulCharacter(path)
            children = [
                (f"{path}.{key}".lstrip("."), child) for key, child in item.items()
            ]
        elif isinstance(item, list):
            children = [(f"{path}[{n}]", child) for n, child in enumerate(item)]
        else:
            children = ()
        for where, child in children:
            if isinstance(child, str) and "\x00" in child:
                raise NulCharacter(where)
            if isinstance(child, dict | list):
                if depth + 1 > max_depth:
                    raise ValueError(f"nested deeper than {max_depth} levels")
                stack.append((child, depth + 1, where))
    return value


_ABSOLUTE_PATH = re.compile(r"(?<![\w/.:])/(?:[^\s'\"/:,;()]+/)+([^\s'\"/:,;()]*)")


def scrub_paths(text):
    """``text`` with every absolute path cut to its last component: what a
    message tells a user never shows where the server keeps its files
    (``Load model from /srv/data/.../m.onnx failed`` -> ``... m.onnx ...``)."""
    if not text:
        return text
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "/", text)
