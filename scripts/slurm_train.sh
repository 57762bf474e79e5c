#!/usr/bin/env bash
# Train on a Slurm cluster, from the project's root: `sbatch scripts/slurm_train.sh <train.py flags>`.
# srun starts one torchrun per node, and torchrun one training process per GPU. Shortly before
# the time limit Slurm sends SIGUSR1: the training saves (mid-epoch, resumable exactly) and
# stops, and this script puts the job back in the queue; its next start resumes the same run
# directory, until the run has done all its epochs. Guide: docs/slurm.md.
#
# Edit the header for your cluster (add --partition / --account if it needs them). Options
# given to sbatch on its command line win over these lines.
#SBATCH --job-name=train
#SBATCH --nodes=1
# One torchrun per node; it starts the per-GPU processes itself.
#SBATCH --ntasks-per-node=1
# GPUs per node: also the number of training processes per node. On nodes without GPUs
# Slurm refuses this line ("Invalid generic resource"): there, submit with --gpus-per-node=0
# (one training process per node; NPROC_PER_NODE for more) and see docs/slurm.md.
#SBATCH --gpus-per-node=4
# CPU cores per node, for the data loader workers (--num_workers). A job asking for more cores
# than a node has pends for ever: lower it on the sbatch command line (--cpus-per-task=8).
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
# The warning: SIGUSR1, 120 s before the time limit (Slurm may send it up to a minute early).
# Without "B:", Slurm sends it to every process of the job's steps, i.e. straight to each
# training process, which saves and exits with 138; the batch shell (this script) is left
# alone and requeues once srun returns. With "B:" it would go to this shell alone, which would
# have to pass it on through srun, and that also reaches every process of the step: one more
# hop for the same result. The torchrun agents get it too and ignore it, and a warning that
# comes before train.py can catch it is kept in a file for it (scripts/slurm_step.sh).
# 120 s must cover the step in progress plus writing last.pth; raise it for large models.
#SBATCH --signal=USR1@120
# Allow `scontrol requeue` (and a requeue by Slurm after a node failure).
#SBATCH --requeue
# A requeued start adds to the log instead of emptying it. Slurm does not create the log's
# folder: checkpoints/ is in the repository.
#SBATCH --open-mode=append
#SBATCH --output=checkpoints/slurm-%j.out
set -euo pipefail

fail() {  # bad input: one message, exit code 2
    echo "slurm_train.sh: $*" >&2
    exit 2
}

[[ -n ${SLURM_JOB_ID:-} ]] || fail "not inside a Slurm job. From the project's root: sbatch scripts/slurm_train.sh <train.py flags>"
# sbatch runs a copy of this script, from its own spool folder, in the folder it was submitted from.
cd "${SLURM_SUBMIT_DIR:-.}"
[[ -f train.py ]] || fail "$PWD holds no train.py: submit from the project's root (cd <project>; sbatch scripts/slurm_train.sh ...)."
source scripts/find_python.sh
export PYTHONUNBUFFERED=1  # log lines reach the job's log, and note_run_dir below, as they are printed

nodes=${SLURM_NNODES:-1}
# Training processes per node: NPROC_PER_NODE if set, else the GPUs Slurm gave this node.
nproc=${NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
# The rendezvous: on the first node of the job, at a port taken from the job id, so that two
# jobs sharing a node do not collide (RDZV_PORT to choose another).
hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_node=${hosts%%$'\n'*}  # the first line (not `| head -n1`: with pipefail, scontrol could die of SIGPIPE)
port=${RDZV_PORT:-$((20000 + SLURM_JOB_ID % 10000))}

# What `scontrol requeue` puts back: in a job array this task alone (the array's own id would
# requeue every task of it, finished ones too).
job=$SLURM_JOB_ID
if [[ -n ${SLURM_ARRAY_JOB_ID:-} && -n ${SLURM_ARRAY_TASK_ID:-} ]]; then
    job=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
fi

# The run directory survives requeues in this file, written as soon as train.py names the folder.
state=checkpoints/slurm-$SLURM_JOB_ID.run_dir
run_dir=""
[[ -f $state ]] && run_dir=$(<"$state")
start="job $job, start $((${SLURM_RESTART_COUNT:-0} + 1))"
run_status() {  # run directory $1's status ("finished", "interrupted", ...), or nothing
    if [[ -f $1/status.json ]]; then
        "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("status", ""))' "$1/status.json"
    fi
}
if [[ -n $run_dir && $(run_status "$run_dir") == finished ]]; then
    # Requeued (scontrol requeue, preemption) after the run finished but before the job ended.
    echo "slurm_train.sh: $start: $run_dir has finished already; nothing to do."
    exit 0
fi
if [[ -n $run_dir && -f $run_dir/last.pth ]]; then
    echo "slurm_train.sh: $start: resuming $run_dir"
    flags=(--resume "$run_dir")  # its args.json holds the flags it was started with
else
    flags=("$@")
    given=""  # the folder of --resume <folder>, if the job was submitted with one
    for ((i = 1; i <= $#; i++)); do
        if [[ ${!i} == --resume ]]; then next=$((i + 1)); given=${!next:-}; fi
        if [[ ${!i} == --resume=* ]]; then given=${!i#--resume=}; fi
    done
    if [[ -n $given ]]; then
        echo "slurm_train.sh: $start: resuming $given (--resume)"
    else
        echo "slurm_train.sh: $start: a new run"
    fi
fi

# Check the flags once, here, before any process starts: a mistake is one message and exit
# code 2, not one error per process and torchrun's exit code 1. WORLD_SIZE as torchrun will
# set it: --resume needs the number of processes the run had.
WORLD_SIZE=$((nodes * nproc)) "$PYTHON" -c \
    'import sys; from options import parse_train_args; parse_train_args(sys.argv[1:])' "${flags[@]}" || exit $?

note_run_dir() {
    # Pass the training's output on, and write the folder train.py names in its line
    # "Run directory: <path>" into $state (replaced whole, so a reader never sees half).
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '%s\n' "$line"
        if [[ $line == *"Run directory: "* ]]; then
            printf '%s\n' "${line#*Run directory: }" > "$state.tmp"
            mv "$state.tmp" "$state"
        fi
    done
}

status_json() {  # run directory $1's status.json as it is now, or nothing
    if [[ -n $1 && -f $1/status.json ]]; then cat "$1/status.json"; fi
}

before=$(status_json "$run_dir")
# Slurm's warning, when it comes before train.py can catch it, lands in this file (slurm_step.sh),
# which train.py reads at every step. A start begins without one.
export TRAIN_STOP_FILE=$PWD/checkpoints/slurm-$SLURM_JOB_ID.warned
rm -f "$TRAIN_STOP_FILE"
echo "slurm_train.sh: $nodes node(s) x $nproc process(es), rendezvous at $head_node:$port"
code=0
# Slurm's warning reaches every process of the step: scripts/slurm_step.sh records it, and
# starts torchrun with it ignored (the training processes inherit that until train.py sets
# its handler). utils.torchrun is torchrun, ending with the training's exit code and one line
# instead of a traceback. --kill-on-bad-exit=0 --wait=0: after a stop, the other nodes'
# torchruns end while rank 0 may still be writing last.pth; srun must not kill it then,
# whatever the cluster's defaults. srun does not pass the job's --cpus-per-task on in every
# Slurm version.
srun --ntasks="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=0 --wait=0 \
    ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} \
    bash scripts/slurm_step.sh \
    "$PYTHON" -m utils.torchrun --nnodes="$nodes" --nproc_per_node="$nproc" \
    --rdzv_backend=c10d --rdzv_endpoint="$head_node:$port" --rdzv_id="$SLURM_JOB_ID" \
    train.py "${flags[@]}" | note_run_dir || code=$?
rm -f "$TRAIN_STOP_FILE"

if ((code == 0)); then
    echo "slurm_train.sh: the run finished."
    exit 0
fi
# Stopped by a signal, train.py marks the run "interrupted" (after saving), and its exit code
# is 138 (utils.torchrun passes it on). The run's status decides, and only a status written by this
# start counts: a requeued start that failed before writing anything leaves the previous
# "interrupted" in place, and requeueing on it would loop.
[[ -f $state ]] && run_dir=$(<"$state")
after=$(status_json "$run_dir")
if [[ -n $after && $after != "$before" ]] &&
    [[ $("$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$after") == interrupted ]]; then
    echo "slurm_train.sh: $run_dir saved and stopped on a signal; requeueing job $job to resume it" \
        "(it waits a few minutes in the queue: docs/slurm.md)."
    # The last step: Slurm ends this start of the job at once.
    if scontrol requeue "$job"; then exit 0; fi
    echo "slurm_train.sh: the requeue failed; continue by hand: sbatch scripts/slurm_train.sh --resume $run_dir" >&2
    exit "$code"
fi
echo "slurm_train.sh: training failed (exit code $code); not requeued." >&2
exit "$code"
