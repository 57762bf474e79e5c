# Sourced by the experiment scripts: the Python to run. $PYTHON if you set it (conda, a
# system Python), else the project's .venv/ (made by demo.sh or test.sh), else python3.
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
