#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and for trying `hieratok launch` before a
# real cluster: munged + MariaDB + slurmdbd (so sacct, and hence submitit, report real job states)
# + slurmctld + slurmd, with Debian's packages. Idempotent: run it again and it only starts what
# is not running, and restarts the SLURM daemons only when the configuration it writes changed.
#
#   sudo cluster/slurm_testbed.sh [start]   install what is missing, configure, start, wait for the node
#   sudo cluster/slurm_testbed.sh status    exit 0 when the node accepts jobs
#   sudo cluster/slurm_testbed.sh stop      stop slurmd, slurmctld and slurmdbd (munged and MariaDB stay up)
#
# Environment: SLURM_CONF (default /etc/slurm/slurm.conf; slurmdbd.conf goes beside it).
set -euo pipefail

SLURM_CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
CONF_DIR=$(dirname "$SLURM_CONF")
DBD_CONF="$CONF_DIR/slurmdbd.conf"
CLUSTER=hieratok
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
DB_PASS=hieratok-testbed
export SLURM_CONF

log() { echo "slurm_testbed: $*"; }
die() { echo "slurm_testbed: error: $*" >&2; exit 1; }

# Wait up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1; shift
    for _ in $(seq "$((seconds * 2))"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge slurmdbd mariadb-server >/dev/null
}

munge_works() { munge -n | unmunge; }

start_munge() {
    munge_works >/dev/null 2>&1 && return 0
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    rm -f /run/munge/munge.socket.2.lock  # left behind by a killed munged
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 munge_works || die "munged did not start (see /var/log/munge/munged.log)"
}

mariadb_works() { mysqladmin --protocol=socket ping; }

start_mariadb() {
    if ! mariadb_works >/dev/null 2>&1; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        log "starting mariadb"
        (mysqld_safe --user=mysql >/dev/null 2>&1 &)
        wait_for 60 mariadb_works || die "mariadb did not start (see /var/log/mysql/error.log)"
    fi
    # root reaches MariaDB through its unix socket; slurmdbd gets its own account
    mysql --protocol=socket -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

# The node line as slurmd detects it (CPUs, sockets, cores, memory), so the node never drains
# for advertising more than it has.
node_line() {
    local line
    line=$(slurmd -C | head -n 1)
    [[ $line == NodeName=* ]] || die "slurmd -C did not describe this node: $line"
    echo "$line"
}

write_if_changed() {  # path mode: writes stdin to path; exit status 0 when the file changed
    local path=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        return 1
    fi
    install -m "$mode" "$tmp" "$path"
    rm -f "$tmp"
    return 0
}

write_configs() {  # exit status 0 when slurm.conf or slurmdbd.conf changed
    local host changed=1
    host=$(hostname -s)
    mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
    write_if_changed "$SLURM_CONF" 644 <<EOF && changed=0
# Written by cluster/slurm_testbed.sh: a one-node test cluster on $host.
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120): keep tests quick.
AuthInfo=cred_expire=5
# No cgroups in containers: track processes by parentage, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
# Look at pending jobs every 2 s (defaults: 60 s, backfill 30 s), so a requeued job restarts soon.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# Jobs may be requeued (submitit requeues itself on timeout or preemption), and a preempted job
# gets its --signal (USR2, submitit's default) at preemption time, not only before its time limit.
JobRequeue=1
SlurmctldParameters=preempt_send_user_signal
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# Seconds between SIGTERM and SIGKILL: room for a checkpoint.
KillWait=30
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
$(node_line) State=UNKNOWN
# "debug" is the default; a job in "urgent" preempts (requeues) jobs in "debug".
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 OverSubscribe=NO
PartitionName=urgent Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=10 OverSubscribe=NO
EOF
    write_if_changed "$DBD_CONF" 600 <<EOF && changed=0
# Written by cluster/slurm_testbed.sh: accounting in the local MariaDB, so sacct reports job states.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    return $changed
}

# The daemon named $2 runs with the pid in file $1: not a zombie, not another process that got the pid.
pid_alive() {
    local pid
    [ -f "$1" ] && pid=$(cat "$1") && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm")" = "$2" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat"
}

stop_daemon() {  # name pidfile
    pid_alive "$2" "$1" || return 0
    local pid
    pid=$(cat "$2")
    log "stopping $1"
    kill "$pid"
    wait_for 30 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
    rm -f "$2"
}

# Client commands wait a long while for a daemon that is down: bound each check.
dbd_works() { timeout 10 sacctmgr -n list cluster; }

# Jobs saved by a slurmctld that was stopped or killed (a test cut short, a machine handed over)
# would be requeued and run again: a test cluster starts empty.
forget_old_jobs() {
    local jobs
    jobs=$(squeue -h -o %i | sort -u | tr '\n' ' ')
    [ -n "${jobs// }" ] || return 0
    log "cancelling job(s) left from before the restart: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs
}

start_slurm() {
    local restart=$1
    if [ "$restart" = yes ]; then
        stop_daemon slurmd "$RUN_DIR/slurmd.pid"
        stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
        stop_daemon slurmdbd "$RUN_DIR/slurmdbd.pid"
    fi
    if ! pid_alive "$RUN_DIR/slurmdbd.pid" slurmdbd; then
        log "starting slurmdbd"
        slurmdbd
        wait_for 60 dbd_works || die "slurmdbd did not start (see $LOG_DIR/slurmdbd.log)"
    fi
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if ! pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
        log "starting slurmctld"
        slurmctld
        wait_for 60 scontrol ping || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
        forget_old_jobs
    fi
    if ! pid_alive "$RUN_DIR/slurmd.pid" slurmd; then
        log "starting slurmd"
        slurmd
    fi
    # associations, so accounting knows the users who submit
    sacctmgr -n -P list account format=account | grep -qx testbed || sacctmgr -i add account testbed cluster="$CLUSTER" >/dev/null
    local user
    for user in root ${SUDO_USER:-}; do
        sacctmgr -n -P list user format=user | grep -qx "$user" || sacctmgr -i add user "$user" account=testbed >/dev/null
    done
}

node_state() { timeout 10 sinfo -h -N -o %T | head -n 1; }
node_idle() { case $(node_state) in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac; }

wait_for_node() {
    if ! wait_for 30 node_idle; then
        # a node left down or drained by an earlier run of the daemons
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        wait_for 30 node_idle || die "node is '$(node_state)', not idle (see $LOG_DIR/slurmd.log)"
    fi
    log "ready: node $(hostname -s) is $(node_state), $(sinfo -h -o %c) CPUs; sacct works"
}

cmd_start() {
    [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts system daemons)"
    install_packages
    start_munge
    start_mariadb
    local restart=no
    write_configs && restart=yes
    start_slurm "$restart"
    wait_for_node
}

cmd_status() {
    timeout 10 scontrol ping >/dev/null 2>&1 || { echo "slurmctld: down"; exit 1; }
    timeout 10 sacct -n -X -S now >/dev/null 2>&1 || { echo "slurmdbd: down (sacct fails)"; exit 1; }
    node_idle || { echo "node: $(node_state)"; exit 1; }
    echo "up: node $(hostname -s) is $(node_state)"
}

cmd_stop() {
    stop_daemon slurmd "$RUN_DIR/slurmd.pid"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
    stop_daemon slurmdbd "$RUN_DIR/slurmdbd.pid"
}

case "${1:-start}" in
    start) cmd_start ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    *) die "unknown command '$1'; use start, status or stop" ;;
esac
