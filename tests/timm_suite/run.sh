#!/usr/bin/env bash
# timm's own model tests on our models: tests/test_models.py from the sdist of the installed timm
# (downloaded once per timm version into the cache), filtered by tests/timm_suite/plugin.py.
#   bash tests/timm_suite/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(python3 -c "import importlib.metadata as m; print(m.version('timm'))")
cache="${XDG_CACHE_HOME:-$HOME/.cache}/timm_pushpull/timm-tests/$version"
if [ ! -f "$cache/test_models.py" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download -q --no-deps --no-binary :all: "timm==$version" -d "$tmp"
    tar -xzf "$tmp/timm-$version.tar.gz" -C "$tmp" "timm-$version/tests/test_models.py"
    mkdir -p "$cache"
    # the file alone: without timm's tests/__init__.py it is imported as a top-level module
    mv "$tmp/timm-$version/tests/test_models.py" "$cache/test_models.py"
fi
# the plugin is imported as tests.timm_suite.plugin, by pytest-xdist's workers too
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pytest -p tests.timm_suite.plugin -p no:cacheprovider --rootdir "$cache" -c /dev/null \
    "$cache/test_models.py" "$@"
