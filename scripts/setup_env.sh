# Sourced by demo.sh and test.sh: makes sure a Python with the requirements exists and sets
# $PYTHON to it (scripts/find_python.sh). Set PYTHON yourself to use an environment you manage
# (conda, system).
#   usage: source scripts/setup_env.sh <requirements file>
# The virtualenv .venv/ is created once and reinstalled only when the requirements change.
# Each step says what it installs and about how big it is; pip's own lines follow (and, when
# the output is no terminal, where pip shows no progress bar, a line every 30 s).
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes torch and torchvision from that
# index first (the CPU build, about 200 MB instead of the CUDA build's 5-6 GB).
requirements="$1"

setup_pip() {  # .venv's pip install "$@"; pip's exit code
    local beat="" code=0
    if [ ! -t 1 ]; then  # no progress bar without a terminal: say now and then that pip still works
        (start=$SECONDS; while sleep 30 >/dev/null 2>&1 && kill -0 $$ 2>/dev/null; do
            echo "setup: pip is still working ($((SECONDS - start)) s) ..."; done) &
        beat=$!
    fi
    .venv/bin/python -m pip install --disable-pip-version-check "$@" || code=$?
    if [ -n "$beat" ]; then kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null; fi
    return "$code"
}

index_problem() {  # why $1 cannot be reached from here (nothing if it can)
    python3 - "$1" <<'EOF' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=20).close()
except urllib.error.HTTPError:
    pass  # it answers: the server is there
except Exception as error:  # refused, no such host, timed out, a bad address
    print(getattr(error, "reason", None) or error)
EOF
}

torch_installed() {
    compgen -G ".venv/lib/python*/site-packages/torch/__init__.py" >/dev/null
}

if [ -z "${PYTHON:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "setup: creating the virtualenv .venv/ with $(python3 --version 2>&1) (once)"
        if ! python3 -m venv .venv; then
            echo "setup: error: python3 -m venv .venv failed (on Debian or Ubuntu: apt install python3-venv);" \
                 "or set PYTHON to a Python that has the requirements." >&2
            return 2
        fi
    fi
    stamp=".venv/.installed-$( (cat requirements*.txt; echo "${TORCH_INDEX_URL:-}") | cksum | cut -d' ' -f1)-$(basename "$requirements")"
    if [ ! -f "$stamp" ]; then
        torch_wanted=$(grep -E '^(torch|torchvision)\b' requirements.txt | cut -d'#' -f1 | xargs)
        if [ -n "${TORCH_INDEX_URL:-}" ]; then  # the same version ranges as requirements.txt
            echo "setup: installing $torch_wanted from TORCH_INDEX_URL=$TORCH_INDEX_URL" \
                 "(its CPU build is about 200 MB; a CUDA build 5-6 GB) ..."
            if ! setup_pip --index-url "$TORCH_INDEX_URL" $torch_wanted; then
                problem=$(index_problem "$TORCH_INDEX_URL")
                if [ -n "$problem" ]; then
                    echo "setup: error: TORCH_INDEX_URL=$TORCH_INDEX_URL cannot be reached from here ($problem)," \
                         "so torch cannot be installed from it (that is what pip's 'no matching distribution'" \
                         "or 'ResolutionImpossible' above means). Check the address and the network, or unset" \
                         "TORCH_INDEX_URL to install pip's default torch." >&2
                else
                    echo "setup: error: TORCH_INDEX_URL=$TORCH_INDEX_URL answers, but pip found no $torch_wanted" \
                         "there for $(.venv/bin/python --version 2>&1) (pip's messages are above). Check the" \
                         "address, e.g. https://download.pytorch.org/whl/cpu, or unset TORCH_INDEX_URL." >&2
                fi
                return 2
            fi
        fi
        packages=$(grep -vE '^[[:space:]]*(#|-r|$)' "$requirements" | sed -E 's/[[:space:]]*[<>=!~;#].*//' | xargs)
        if [ "$requirements" != requirements.txt ]; then packages="$packages and requirements.txt's"; fi
        if [ -z "${TORCH_INDEX_URL:-}" ] && ! torch_installed; then
            size="torch and torchvision are pip's default build: on Linux the CUDA one, 5-6 GB with its NVIDIA"
            size="$size libraries, several minutes; TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes"
            size="$size the 200 MB CPU build"
        else
            size="torch is there already; the rest is about 50 MB"
        fi
        echo "setup: installing $requirements: $packages ($size) ..."
        if ! setup_pip -r "$requirements"; then
            echo "setup: error: pip could not install $requirements (its messages are above); run the command" \
                 "again to retry." >&2
            return 1
        fi
        touch "$stamp"
        echo "setup: .venv/ is ready"
    fi
fi
source scripts/find_python.sh
export PYTHON
