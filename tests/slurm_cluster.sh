#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests/test_slurm_real.py (Debian's
# slurm-wlm and munge: `apt-get install -y slurm-wlm munge`, as root).
#   bash tests/slurm_cluster.sh start <folder>   config, munge key, logs and spool in <folder>;
#                                                prints the SLURM_CONF to export, once sinfo answers
#   bash tests/slurm_cluster.sh stop <folder>    ends the daemons it started (by their pid files)
# Everything lives in <folder> (its own ports, munge socket and state), so that it touches no
# cluster the machine already has, and two of them can run side by side.
set -euo pipefail

fail() { echo "slurm_cluster.sh: $*" >&2; exit 2; }

action=${1:-}
folder=${2:-}
[[ ( $action == start || $action == stop ) && -n $folder ]] || fail "usage: bash tests/slurm_cluster.sh start|stop <folder>"
folder=$(realpath -m "$folder")

stop() {
    local name pid
    for name in slurmd slurmctld munged; do
        if [[ -f $folder/$name.pid ]]; then
            pid=$(<"$folder/$name.pid")
            kill "$pid" 2>/dev/null || true
        fi
    done
}

if [[ $action == stop ]]; then
    stop
    exit 0
fi

for program in munged slurmctld slurmd sinfo sbatch; do
    command -v "$program" > /dev/null || fail "$program not found: apt-get install -y slurm-wlm munge"
done
((EUID == 0)) || fail "the daemons need root (slurmd starts jobs as their user)"

mkdir -p "$folder"/{state,spool,munge}
free_port() { "${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }

# munge: its own key and socket (a running munged elsewhere keeps its own).
key=$folder/munge/munge.key
[[ -f $key ]] || dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
chmod 600 "$key"
munged --force --key-file="$key" --socket="$folder/munge/socket" --pid-file="$folder/munged.pid" \
    --log-file="$folder/munge/munged.log" --seed-file="$folder/munge/seed"

# The node as slurmd sees it (CPUs, sockets, cores, memory): a node Slurm calls invalid never takes jobs.
node=$(slurmd -C | head -n 1)
host=$(hostname -s)
cat > "$folder/slurm.conf" << EOF
ClusterName=test$$
SlurmctldHost=$host
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again this many seconds (+1) after it ended (default 120).
AuthInfo=socket=$folder/munge/socket,cred_expire=10
StateSaveLocation=$folder/state
SlurmdSpoolDir=$folder/spool
SlurmctldPidFile=$folder/slurmctld.pid
SlurmdPidFile=$folder/slurmd.pid
SlurmctldLogFile=$folder/slurmctld.log
SlurmdLogFile=$folder/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=10
MinJobAge=600
$node
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$folder/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"

# Ready when the node is idle: poll sinfo (a condition), for up to a minute.
deadline=$((SECONDS + 60))
until [[ $(sinfo -h -n "$host" -o %t 2> /dev/null) == idle ]]; do
    if ((SECONDS > deadline)); then
        stop
        fail "the node is not idle after 60 s; see $folder/slurmctld.log and $folder/slurmd.log"
    fi
    sleep 0.2  # a polling interval
done
echo "$SLURM_CONF"
