#!/bin/bash
# A single-node SLURM cluster on this machine, for trying medlight's SLURM paths (study arrays with dependencies,
# time-limit signals, requeue) without a real cluster. Run as root; safe to run again (it only starts what is
# not running). Needs Debian's packages: apt-get install -y slurm-wlm munge
#
#   sudo scripts/slurm/local-cluster.sh          # set up and start; prints sinfo
#   sudo scripts/slurm/local-cluster.sh stop     # stop slurmctld, slurmd and munged
#
# The cluster's addresses are loopback only (the controller and the node are 127.0.0.1); one partition `local`
# with this machine's CPUs (at most CPUS, default 2) and no GPUs. State lives in /var/spool/slurm-local.
set -euo pipefail

CPUS=${CPUS:-2}
HOST=$(hostname -s)
CONF=/etc/slurm/slurm.conf
SPOOL=/var/spool/slurm-local

if [[ $EUID -ne 0 ]]; then
  echo "local-cluster.sh: run as root" >&2
  exit 1
fi
for tool in slurmctld slurmd munged sinfo; do
  command -v "$tool" >/dev/null || { echo "local-cluster.sh: $tool missing: apt-get install -y slurm-wlm munge" >&2; exit 1; }
done

if [[ ${1:-} == stop ]]; then
  for pidfile in /run/slurmctld.pid /run/slurmd.pid /run/munge/munged.pid; do
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  exit 0
fi

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# -- munge: the key that authenticates every SLURM message --------------------------------------------------
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
running /run/munge/munged.pid || su -s /bin/sh munge -c "munged --pid-file=/run/munge/munged.pid"

# -- slurm.conf for this host ----------------------------------------------------------------------------------
cpus=$(( $(nproc) < CPUS ? $(nproc) : CPUS ))
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
mkdir -p "$SPOOL/ctld" "$SPOOL/d" /var/log/slurm
chown -R slurm:slurm "$SPOOL/ctld" /var/log/slurm
cat > "$CONF.new" <<CONF
# Written by scripts/slurm/local-cluster.sh: a single-node cluster on loopback.
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=120
SlurmctldTimeout=60
# the requeue test needs jobs to start again soon and the killed step to end quickly
KillWait=10
MinJobAge=300
JobRequeue=1
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
if ! cmp -s "$CONF.new" "$CONF" 2>/dev/null; then
  mv "$CONF.new" "$CONF"
  changed=1
else
  rm "$CONF.new"
  changed=0
fi

# -- daemons -----------------------------------------------------------------------------------------------
if running /run/slurmctld.pid; then
  [[ $changed == 1 ]] && scontrol reconfigure
else
  slurmctld
fi
running /run/slurmd.pid || slurmd

for _ in $(seq 30); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sinfo
    exit 0
  fi
  sleep 1
done
echo "local-cluster.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
