# Sourced by demo.sh and test.sh: makes sure a Python with the requirements exists and sets
# $PYTHON to it. Set PYTHON yourself to use an environment you manage (conda, system).
#   usage: source scripts/setup_env.sh <requirements file>
# The virtualenv .venv/ is created once and reinstalled only when the requirements change.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes torch and torchvision from that
# index first (the CPU build, about 200 MB instead of the CUDA build's several GB).
requirements="$1"
if [ -z "${PYTHON:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "Creating the virtualenv .venv/ (once; installing torch takes a few minutes)"
        python3 -m venv .venv
    fi
    stamp=".venv/.installed-$( (cat requirements*.txt; echo "${TORCH_INDEX_URL:-}") | cksum | cut -d' ' -f1)-$(basename "$requirements")"
    if [ ! -f "$stamp" ]; then
        if [ -n "${TORCH_INDEX_URL:-}" ]; then  # the same version ranges as requirements.txt
            .venv/bin/python -m pip install --quiet --disable-pip-version-check --index-url "$TORCH_INDEX_URL" \
                $(grep -E '^(torch|torchvision)\b' requirements.txt | cut -d'#' -f1)
        fi
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
        touch "$stamp"
    fi
    PYTHON=.venv/bin/python
fi
export PYTHON
