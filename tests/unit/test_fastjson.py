"""budu.kernel.fastjson writes the same text as json, compact or indented, without importing it."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from budu.kernel import fastjson

FIXED = [
    {}, [], "", 0, -1.5, 1e300, None, True, False, "é\n\"\\\x01\u2028😀",
    {"ociVersion": "1.0.2", "id": "c1", "status": "running", "pid": 42, "bundle": "/b",
     "annotations": {"k": "v", "list": [1, [2, [3, {}]], {"x": None}]}},
    {1: "int key", 2.5: "float key", True: "bool key", None: "null key"},
]


def generated(seed: int, n: int) -> list[object]:
    rng = random.Random(seed)
    scalars = [0, -7, 3.25, 1e-9, "a", "é", "\u2028", "", None, True, False]

    def value(depth: int) -> object:
        r = rng.random()
        if depth > 3 or r < 0.3:
            return rng.choice(scalars)
        if r < 0.65:
            return {rng.choice(["a", "b", "é", "", "key"]): value(depth + 1) for _ in range(rng.randint(0, 4))}
        return [value(depth + 1) for _ in range(rng.randint(0, 4))]

    return [value(0) for _ in range(n)]


@pytest.mark.parametrize("indent", [None, 2, 4])
def test_same_text_as_json(indent):
    for doc in FIXED + generated(7, 400):
        want = json.dumps(doc, indent=indent, separators=None if indent else (",", ":"))
        assert fastjson.dumps(doc, indent=indent) == want, doc
        if indent is None:
            assert fastjson.loads(want) == json.loads(want)


def test_bad_key_is_refused_like_json():
    with pytest.raises(TypeError):
        fastjson.dumps({("a",): 1}, indent=2)


def test_indented_output_imports_neither_json_nor_re():
    code = ("import sys; from budu.kernel import fastjson; fastjson.dumps({'a': [1, {'b': None}]}, indent=2);"
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
