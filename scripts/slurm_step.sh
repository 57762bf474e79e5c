#!/usr/bin/env bash
# The job step of scripts/slurm_train.sh on one node (srun starts it): `slurm_step.sh <command>`.
# Slurm's warning (SIGUSR1) reaches every process of the step. This shell records it in the
# file $TRAIN_STOP_FILE, which train.py reads at every step: a warning that arrives while
# torchrun starts, or train.py imports and builds its data and model, before it can catch the
# signal itself, still makes the run save and stop (Slurm sends the warning once). <command>
# (torchrun) runs with SIGUSR1 ignored: by default it would kill the agent, and an agent that
# handled it would pass it on, so each training process would get it twice ("stop at once,
# unsaved"); train.py sets its own handler when it starts. The shell outlives SIGTERM: the
# step ends when it does, and the training may still be saving.
[[ -n ${TRAIN_STOP_FILE:-} ]] || { echo "slurm_step.sh: TRAIN_STOP_FILE is not set" >&2; exit 2; }
trap ': > "$TRAIN_STOP_FILE"' USR1
trap ':' TERM INT
(trap '' USR1; exec "$@") &
child=$!
while true; do
    code=0
    wait "$child" || code=$?
    kill -0 "$child" 2> /dev/null || break  # ended (not just a trap waking `wait` up)
done
exit "$code"
