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
# GPUs per node: also the number of training processes per node.
#SBATCH --gpus-per-node=4
# CPU cores per node, for the data loader workers (--num_workers).
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
# The warning: SIGUSR1, 120 s before the time limit (Slurm may send it up to a minute early).
# Without "B:", Slurm sends it to every process of the job's steps, i.e. straight to each
# training process, which saves and exits with 138; the batch shell (this script) is left
# alone and requeues once srun returns. With "B:" it would go to this shell alone, which would
# have to pass it on through srun, and that also reaches every process of the step: one more
# hop for the same result. The torchrun agents get it too and ignore it (see `srun` below).
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

# The run directory survives requeues in this file, written as soon as train.py names the folder.
state=checkpoints/slurm-$SLURM_JOB_ID.run_dir
run_dir=""
[[ -f $state ]] && run_dir=$(<"$state")
if [[ -n $run_dir && -f $run_dir/last.pth ]]; then
    echo "slurm_train.sh: job $SLURM_JOB_ID, start $((${SLURM_RESTART_COUNT:-0} + 1)): resuming $run_dir"
    flags=(--resume "$run_dir")  # its args.json holds the flags it was started with
else
    echo "slurm_train.sh: job $SLURM_JOB_ID, start $((${SLURM_RESTART_COUNT:-0} + 1)): a new run"
    flags=("$@")
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
echo "slurm_train.sh: $nodes node(s) x $nproc process(es), rendezvous at $head_node:$port"
code=0
# Slurm's warning reaches every process of the step. The torchrun agent must ignore it: by
# default SIGUSR1 would kill the agent, and a torchrun that handles it would pass it on, so
# each training process would get it twice (the second means "stop at once, unsaved"). The
# ignored signal is inherited by the training processes until train.py sets its handler.
# --kill-on-bad-exit=0 --wait=0: after a stop, the other nodes' torchruns end (exit code 1)
# while rank 0 may still be writing last.pth; srun must not kill it then, whatever the
# cluster's defaults. srun does not pass the job's --cpus-per-task on in every Slurm version.
srun --ntasks="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=0 --wait=0 \
    ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} \
    bash -c 'trap "" USR1; exec "$@"' torchrun \
    "$PYTHON" -m torch.distributed.run --nnodes="$nodes" --nproc_per_node="$nproc" \
    --rdzv_backend=c10d --rdzv_endpoint="$head_node:$port" --rdzv_id="$SLURM_JOB_ID" \
    train.py "${flags[@]}" | note_run_dir || code=$?

if ((code == 0)); then
    echo "slurm_train.sh: the run finished."
    exit 0
fi
# Stopped by a signal, train.py marks the run "interrupted" (after saving). torchrun's exit
# code is 1 for any failure, so the run's status decides, and only a status written by this
# start counts: a requeued start that failed before writing anything leaves the previous
# "interrupted" in place, and requeueing on it would loop.
[[ -f $state ]] && run_dir=$(<"$state")
after=$(status_json "$run_dir")
if [[ -n $after && $after != "$before" ]] &&
    [[ $("$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$after") == interrupted ]]; then
    echo "slurm_train.sh: $run_dir saved and stopped on a signal; requeueing job $SLURM_JOB_ID to resume it."
    # The last step: Slurm ends this start of the job at once.
    if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
    echo "slurm_train.sh: the requeue failed; continue by hand: sbatch scripts/slurm_train.sh --resume $run_dir" >&2
    exit "$code"
fi
echo "slurm_train.sh: training failed (exit code $code); not requeued." >&2
exit "$code"
