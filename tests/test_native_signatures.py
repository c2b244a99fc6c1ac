"""The ctypes signatures of the C kernels come from their C definitions: checked against the C
compiler's own reading of every kernel (gcc's -aux-info), and against a signature given by hand."""

import ctypes
import re
import shutil
import subprocess

import pytest

from timm_pushpull import native

# the compiler's spelling of each C type, as ctypes passes it
COMPILER_TYPES = {
    "void": None,
    "int": ctypes.c_int,
    "long int": ctypes.c_long,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
}
LIBRARIES = sorted(path.stem for path in native.SOURCE_DIR.glob("*.c"))


def compiler_prototypes(name: str, tmp_path) -> dict:
    """``{symbol: (restype, argtypes)}`` of the functions csrc/<name>.c exports, from gcc."""
    aux = tmp_path / f"{name}.aux"
    subprocess.run(
        ["gcc", "-std=c99", "-fopenmp", "-aux-info", str(aux), "-c",
         str(native.SOURCE_DIR / f"{name}.c"), "-o", str(tmp_path / f"{name}.o")],
        check=True, capture_output=True,
    )  # fmt: skip
    found = {}
    for line in aux.read_text().splitlines():
        match = re.match(r"/\* (\S+):\d+:NF \*/ extern (.+?) (\w+) \((.*?)\);", line)
        if not match or not match[1].startswith(str(native.SOURCE_DIR)):
            continue
        params = [p.strip() for p in match[4].split(",") if p.strip() != "void"]  # f (void)
        argtypes = [
            ctypes.c_void_p if "*" in p else COMPILER_TYPES[" ".join(p.split()[:-1])]
            for p in params
        ]
        found[match[3]] = (COMPILER_TYPES[match[2]], argtypes)
    return found


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc's -aux-info")
@pytest.mark.parametrize("name", LIBRARIES)
def test_signatures_equal_the_compilers_reading(name, tmp_path):
    expected = compiler_prototypes(name, tmp_path)
    assert expected, f"gcc found no exported function in csrc/{name}.c"
    assert native.prototypes(name) == expected


@pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler")
def test_a_signature_given_by_hand_must_match(monkeypatch):
    monkeypatch.setattr(native, "_libraries", {})  # a fresh library: no signature set yet
    wrong = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    with pytest.raises(TypeError, match="does not match its definition in csrc/pull_maps.c"):
        native.function("pull_maps", "pull_mixed_float", wrong, ctypes.c_int)
    kernel = native.function("pull_maps", "pull_mixed_double")
    assert kernel.restype is ctypes.c_int and len(kernel.argtypes) == 31
