"""C kernels for the CPU, compiled on first use with the system C compiler and loaded with ctypes.

Why: eager PyTorch has no fused op for some of our CPU hot spots, and each op it chains costs a
pass over memory. Blur-pool is a padded copy plus a depthwise convolution in PyTorch (timm's and
kornia's too); one pass in C beats the fastest of them (BENCHMARKS.md, "Blur-pool"), and so do
the robustness benchmark's noise draws, shot-noise Poisson look-up and frost blend in C
(BENCHMARKS.md, "Corruptions: batched torch vs per-image NumPy reference"). The exact pull's
smoothed maps (``pull_maps.c``) have no PyTorch op at all.
``torch.compile`` fuses such code as well, but costs seconds per input shape.
The kernels (``csrc/``) are plain C99 without PyTorch headers, so they build in under a second
with any C compiler and do not depend on torch's C++ ABI. Like the CPU kernels of
torch.compile's inductor, they are built on the user's machine, here once per source version,
cached under ``$TIMM_PUSHPULL_CACHE`` (default ``~/.cache/timm_pushpull``).

The ctypes signature of a kernel comes from its C definition (:func:`prototypes`), so the two
cannot drift apart.

Where no C compiler is found (``$CC``, ``cc``, ``gcc``, ``clang``) or the build fails (with a
warning), the PyTorch code paths run instead. ``TIMM_PUSHPULL_NATIVE=0`` or
``with native_kernels(False):`` turns the kernels off.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

SOURCE_DIR = Path(__file__).parent / "csrc"
CFLAGS = ("-O3", "-std=c99", "-fPIC", "-shared")
# OpenMP where the compiler has it (gcc does; Apple's clang does not, and the kernels then run on one
# thread). In a PyTorch process the kernels share torch's OpenMP runtime: torch ships libgomp.so.1
# and has loaded it, so the loader resolves the kernels' libgomp.so.1 to that copy.
OPENMP_FLAGS = ("-fopenmp",)
LIBS = ("-lm",)
ENV_SWITCH = "TIMM_PUSHPULL_NATIVE"
ENV_CACHE = "TIMM_PUSHPULL_CACHE"
# Which vector code the kernels carry (csrc/vector_clones.h): "auto", a clone for each level and
# the generic code, the CPU picking one when the library loads; a level, its clone and the generic
# code; "generic", the generic code alone. For running each level's code on one machine (the
# tests), and for a CPU where a level's code is slower than the one below.
ENV_ARCH = "TIMM_PUSHPULL_NATIVE_ARCH"
ARCH_LEVELS = ("x86-64-v4", "x86-64-v3")

_logger = logging.getLogger(__name__)
_lock = threading.Lock()
_libraries: dict[str, ctypes.CDLL | None] = {}
_enabled = os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def native_enabled() -> bool:
    """Whether the C kernels may be used (they still need a C compiler to be built)."""
    return _enabled


@contextlib.contextmanager
def native_kernels(enabled: bool) -> Iterator[None]:
    """Turn the C kernels on or off inside the block (process-wide, like ``torch.backends`` flags)."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


@contextlib.contextmanager
def library_override(name: str, library: ctypes.CDLL) -> Iterator[None]:
    """Run the kernels of ``csrc/<name>.c`` from ``library`` inside the block: another build with
    the same signatures, for timing two versions in one process (``scripts/ab_native.py``).
    Process-wide, like :func:`native_kernels`."""
    previous = load(name)
    _libraries[name] = library
    try:
        yield
    finally:
        _libraries[name] = previous


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "timm_pushpull" / "native"


def arch_flags() -> tuple[str, ...]:
    """The compiler's flags for ``$TIMM_PUSHPULL_NATIVE_ARCH`` (``auto``, the default where it is
    unset or empty; ``generic``; or one of :data:`ARCH_LEVELS`); ``ValueError`` naming the allowed
    values for any other."""
    value = os.environ.get(ENV_ARCH, "").strip().lower()
    if value in ("", "auto"):
        return ()
    if value == "generic":
        return ("-DTIMM_PUSHPULL_NO_CLONES",)
    if value in ARCH_LEVELS:
        lowest = ("-DTIMM_PUSHPULL_LOWEST_V4",) if value == "x86-64-v4" else ()
        return (f'-DTIMM_PUSHPULL_CLONES="arch={value}","default"', *lowest)
    raise ValueError(
        f"{ENV_ARCH} must be auto, generic or one of {', '.join(ARCH_LEVELS)}, got {value!r}"
    )


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _compile(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


def _build(name: str) -> Path | None:
    source = SOURCE_DIR / f"{name}.c"
    compiler = find_compiler()
    if compiler is None:
        _logger.info("no C compiler found: %s runs on the PyTorch code path", name)
        return None
    # the headers a kernel may include are part of its source
    sources = [source, *sorted(SOURCE_DIR.glob("*.h"))]
    flags = (*CFLAGS, *arch_flags())
    key = hashlib.sha256(
        b"".join(path.read_bytes() for path in sources)
        + repr((flags, OPENMP_FLAGS, LIBS, sys.platform, platform.machine())).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # build under a temporary name, then rename: processes starting together (DDP, data
        # loader workers) never load a half-written library
        fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            command = [compiler, *flags, str(source), "-o", partial, *LIBS]
            try:
                _compile([*command, *OPENMP_FLAGS])
            except subprocess.CalledProcessError:
                _compile(command)
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        warnings.warn(
            f"timm_pushpull: building the C kernel {name!r} failed, using the PyTorch code path "
            f"instead ({detail}); set {ENV_SWITCH}=0 to skip the attempt",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return target


def _open(path: Path | None) -> ctypes.CDLL | None:
    if path is None:
        return None
    try:
        return ctypes.CDLL(str(path))
    except OSError as err:
        warnings.warn(
            f"timm_pushpull: cannot load {path} ({err}), using the PyTorch code path instead; "
            f"delete the file to rebuild it",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def load(name: str) -> ctypes.CDLL | None:
    """``csrc/<name>.c`` compiled, built on first use; None if disabled or not buildable."""
    if not _enabled:
        return None
    if name not in _libraries:
        with _lock:
            if name not in _libraries:
                _libraries[name] = _open(_build(name))
    return _libraries[name]


# C types of the kernels' scalar arguments and results; every pointer is passed as an address
_C_TYPES = {
    "void": None,
    "int": ctypes.c_int,
    "long": ctypes.c_long,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "int64_t": ctypes.c_int64,
}
# an exported definition at the start of a line: `int name(...) {` or `int NAME(name)(...) {`
_DEFINITION = re.compile(
    r"^(?P<result>[a-z_0-9]+)\s+(?:NAME\((?P<templated>\w+)\)|(?P<plain>\w+))\s*\((?P<params>[^)]*)\)\s*\{",
    re.MULTILINE,
)
_TEMPLATE = re.compile(
    r'#define SCALAR (?P<scalar>\w+)\s*\n#define NAME\(f\) f##_(?P<suffix>\w+)\s*\n#include "(?P<header>[\w.]+)"'
)


def _argument_type(parameter: str, scalar: str | None):
    if "*" in parameter:
        return ctypes.c_void_p
    words = parameter.replace("const", " ").split()[:-1]  # drop the parameter's name
    name = " ".join(scalar if w == "SCALAR" else w for w in words)
    if name not in _C_TYPES or _C_TYPES[name] is None:
        raise ValueError(f"no ctypes type for the C parameter {parameter.strip()!r}")
    return _C_TYPES[name]


def _definitions(text: str, scalar: str | None = None, suffix: str | None = None) -> dict:
    found = {}
    for match in _DEFINITION.finditer(text):
        templated = match["templated"]
        if (templated is None) == (suffix is not None):  # templates export NAME(f) only
            continue
        name = f"{templated}_{suffix}" if templated else match["plain"]
        params = [p for p in match["params"].split(",") if p.strip() not in ("", "void")]
        result = scalar if match["result"] == "SCALAR" else match["result"]
        found[name] = (_C_TYPES[result], [_argument_type(p, scalar) for p in params])
    return found


@cache
def prototypes(name: str) -> dict[str, tuple[type | None, list]]:
    """``{symbol: (restype, argtypes)}`` of every function ``csrc/<name>.c`` exports, read from
    its definitions and those of the type templates it includes (``#define SCALAR``, ``#define
    NAME(f) f##_suffix``, ``#include``)."""
    source = (SOURCE_DIR / f"{name}.c").read_text()
    found = _definitions(source)
    for template in _TEMPLATE.finditer(source):
        header = (SOURCE_DIR / template["header"]).read_text()
        found.update(_definitions(header, template["scalar"], template["suffix"]))
    return found


def function(
    name: str, symbol: str, argtypes: list | None = None, restype: type | None = None
) -> Callable | None:
    """``symbol`` of ``load(name)`` with its ctypes signature set from its C definition
    (:func:`prototypes`); a signature given here must equal that one. None where ``load`` gives
    None."""
    library = load(name)
    if library is None:
        return None
    kernel = getattr(library, symbol)
    if kernel.argtypes is None:
        defined = prototypes(name)[symbol]
        if argtypes is not None and (restype, list(argtypes)) != (defined[0], defined[1]):
            raise TypeError(
                f"the ctypes signature given for {symbol} does not match its definition in "
                f"csrc/{name}.c: {defined}"
            )
        kernel.restype, kernel.argtypes = defined
    return kernel
