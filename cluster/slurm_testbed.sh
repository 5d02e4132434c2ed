#!/usr/bin/env bash
# A SLURM cluster of N nodes on this one machine, for tests and for trying `hieratok launch` before a
# real cluster: munged + MariaDB + slurmdbd (so sacct, and hence submitit, report real job states)
# + slurmctld + one slurmd a node, with Debian's packages. Idempotent: run it again and it only starts
# what is not running, and restarts the SLURM daemons only when the configuration it writes changed.
#
#   sudo cluster/slurm_testbed.sh [start] [--nodes N]
#                         install what is missing, configure N nodes (default 1), start, wait for them
#   sudo cluster/slurm_testbed.sh status
#                         one line a daemon (running, with its pids, or stopped), then whether every
#                         node accepts jobs; exit 0 when they do
#   sudo cluster/slurm_testbed.sh stop
#                         cancel the jobs left, then stop every daemon it started: slurmd, slurmctld,
#                         slurmdbd, MariaDB, munged; remove its /etc/hosts line; exit 0 when none of
#                         the daemons is left running
#
# The nodes are testbed1..testbedN, each its own `slurmd -N testbedI` on its own port, with its own
# spool, pid and log file (%n in slurm.conf). /etc/hosts maps their names to 127.0.0.1, so that a
# job's node list resolves the way a real cluster's does (MASTER_ADDR is its first name). Every node
# advertises the whole machine (slurmd -C), so N nodes oversubscribe its cores N times.
#
# munged and MariaDB may serve other things on a machine: `start` uses them when they already run,
# and `stop` stops them only when `start` started them (it notes those in $RUN_DIR/testbed-started,
# on /run, so the note goes with a reboot). The SLURM daemons run on the configuration this script
# writes, so `stop` always stops them.
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
STARTED=$RUN_DIR/testbed-started  # the daemons `start` started (they were not running), one a line
DAEMONS=(munged mariadb slurmdbd slurmctld slurmd)  # in start order; `stop` goes the other way
NODE_PREFIX=testbed
SLURMD_BASE_PORT=17000  # node I's slurmd listens on SLURMD_BASE_PORT + I
HOSTS_MARK="# hieratok slurm testbed"  # the /etc/hosts line this script writes ends with it
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
    note_started munged
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 munge_works || die "munged did not start (see /var/log/munge/munged.log)"
}

mariadb_works() { mysqladmin --protocol=socket ping; }

start_mariadb() {
    if ! mariadb_works >/dev/null 2>&1; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        log "starting mariadb"
        note_started mariadb
        # its own session: a signal a test sends to its process group never reaches the database
        (setsid mysqld_safe --user=mysql >/dev/null 2>&1 &)
        wait_for 60 mariadb_works || die "mariadb did not start (see /var/log/mysql/error.log)"
    fi
    # root reaches MariaDB through its unix socket; slurmdbd gets its own account
    mysql --protocol=socket -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

# The hardware of a node line as slurmd detects it (CPUs, sockets, cores, memory), so that a node
# never drains for advertising more than it has.
node_hardware() {
    local line
    line=$(slurmd -C | head -n 1)
    [[ $line == NodeName=* ]] || die "slurmd -C did not describe this machine: $line"
    echo "${line#NodeName=* }"
}

node_names() {  # testbed1 ... testbedN of the configuration written, one a line
    local line
    line=$(grep -m1 "^# nodes: " "$SLURM_CONF" 2>/dev/null) || return 0
    seq -f "$NODE_PREFIX%g" 1 "${line#\# nodes: }"
}

node_lines() {  # $1 nodes
    local hardware i
    hardware=$(node_hardware)
    for ((i = 1; i <= $1; i++)); do
        echo "NodeName=$NODE_PREFIX$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_BASE_PORT + i)) $hardware State=UNKNOWN"
    done
}

# One /etc/hosts line naming the nodes, as a cluster's DNS would; edited in place, since a
# container's /etc/hosts is often a mount that cannot be replaced.
write_hosts_line() {  # node names...
    local kept
    kept=$(grep -v -- "$HOSTS_MARK\$" /etc/hosts || true)
    if [ $# -eq 0 ]; then
        printf '%s\n' "$kept" >/etc/hosts
    else
        printf '%s\n%s\n' "$kept" "127.0.0.1 $* $HOSTS_MARK" >/etc/hosts
    fi
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

write_configs() {  # $1 nodes; exit status 0 when slurm.conf or slurmdbd.conf changed
    local nodes=$1 host changed=1
    host=$(hostname -s)
    mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
    write_if_changed "$SLURM_CONF" 644 <<EOF && changed=0
# Written by cluster/slurm_testbed.sh: a test cluster of $nodes node(s) on $host.
# nodes: $nodes
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
# One slurmd a node on this machine: %n is the node's name.
SlurmdSpoolDir=$SPOOL_DIR/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
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
$(node_lines "$nodes")
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

# The process names of a daemon: MariaDB is its server and the mysqld_safe that restarts it,
# slurmctld has a helper that leaves with it.
daemon_names() {
    case $1 in
        mariadb) echo mariadbd mysqld mysqld_safe ;;
        slurmctld) echo slurmctld slurmscriptd ;;
        *) echo "$1" ;;
    esac
}

# The names to send SIGTERM to; the others leave by themselves (mysqld_safe ignores SIGTERM and
# exits when the server shuts down cleanly).
daemon_term_names() {
    case $1 in
        mariadb) echo mariadbd mysqld ;;
        slurmctld) echo slurmctld ;;
        *) echo "$1" ;;
    esac
}

# Pids of the live processes (not zombies: a container's init may never reap them) named $@, on one
# line. From /proc, whatever the pid files say: a daemon whose pid file is gone still runs.
pids_named() {
    local stat line comm state name pids=()
    for stat in /proc/[0-9]*/stat; do
        { read -r line <"$stat"; } 2>/dev/null || continue  # the process has just gone
        comm=${line#*(} && comm=${comm%)*}
        state=${line##*) } && state=${state%% *}
        [ "$state" != Z ] || continue
        for name in "$@"; do
            [ "$comm" = "$name" ] && pids+=("${line%% *}") && break
        done
    done
    echo "${pids[*]}"
}

# Pids of the live slurmd that serves the node $1 (started as `slurmd -N $1`).
node_slurmd_pids() {
    local cmdline pids=() pid
    for pid in $(pids_named slurmd); do
        cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        [[ " $cmdline " == *" -N $1 "* ]] && pids+=("$pid")
    done
    echo "${pids[*]}"
}

# shellcheck disable=SC2046  # word splitting of the names is intended
daemon_pids() { pids_named $(daemon_names "$1"); }
daemon_gone() { [ -z "$(daemon_pids "$1")" ]; }

note_started() {
    mkdir -p "$RUN_DIR"
    grep -qsx "$1" "$STARTED" || echo "$1" >>"$STARTED"
}

# The daemon is the testbed's to stop: a SLURM daemon, or one that `start` started.
ours() {
    case $1 in slurm*) return 0 ;; esac
    grep -qsx "$1" "$STARTED"
}

# SIGTERM, then wait until every process of the daemon is gone; SIGKILL what is left after a minute.
stop_daemon() {
    local pids
    pids=$(daemon_pids "$1")
    if [ -n "$pids" ]; then
        log "stopping $1 (pid $pids)"
        # shellcheck disable=SC2046,SC2086
        kill $(pids_named $(daemon_term_names "$1")) 2>/dev/null || true
        if ! wait_for 60 daemon_gone "$1"; then
            log "$1 did not stop in 60 s (pid $(daemon_pids "$1")): killing it"
            # shellcheck disable=SC2046
            kill -9 $(daemon_pids "$1") 2>/dev/null || true
            wait_for 10 daemon_gone "$1" || return 1
        fi
    fi
    if [ -f "$STARTED" ]; then
        sed -i "/^$1\$/d" "$STARTED"
    fi
    return 0
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
        stop_daemon slurmd && stop_daemon slurmctld && stop_daemon slurmdbd || die "could not stop SLURM's daemons"
    fi
    if daemon_gone slurmdbd; then
        log "starting slurmdbd"
        slurmdbd
        wait_for 60 dbd_works || die "slurmdbd did not start (see $LOG_DIR/slurmdbd.log)"
    fi
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if daemon_gone slurmctld; then
        log "starting slurmctld"
        slurmctld
        wait_for 60 scontrol ping || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
        forget_old_jobs
    fi
    local node
    for node in $(node_names); do
        if [ -z "$(node_slurmd_pids "$node")" ]; then
            log "starting slurmd of node $node"
            mkdir -p "$SPOOL_DIR/$node"
            slurmd -N "$node"
        fi
    done
    # associations, so accounting knows the users who submit
    sacctmgr -n -P list account format=account | grep -qx testbed || sacctmgr -i add account testbed cluster="$CLUSTER" >/dev/null
    local user
    for user in root ${SUDO_USER:-}; do
        sacctmgr -n -P list user format=user | grep -qx "$user" || sacctmgr -i add user "$user" account=testbed >/dev/null
    done
}

node_states() { timeout 10 sinfo -h -N -o "%N %T" | sort -u | paste -sd' '; }  # "testbed1 idle testbed2 mixed"
nodes_idle() {  # every configured node takes jobs
    local node state
    for node in $(node_names); do
        state=$(timeout 10 sinfo -h -N -n "$node" -o %T | head -n 1)
        case $state in idle|mixed|allocated|completing) ;; *) return 1 ;; esac
    done
}

wait_for_nodes() {
    if ! wait_for 30 nodes_idle; then
        # a node left down or drained by an earlier run of the daemons, or by a test that took it down
        scontrol update nodename="$(node_names | paste -sd,)" state=resume >/dev/null 2>&1 || true
        wait_for 30 nodes_idle || die "not every node is idle: $(node_states) (see $LOG_DIR/slurmd-NODE.log)"
    fi
    log "ready: node(s) $(node_states) with $(sinfo -h -N -o %c | head -n 1) CPUs each; sacct works"
}

cmd_start() {  # $1 nodes
    [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts system daemons)"
    mkdir -p "$RUN_DIR"
    install_packages
    start_munge
    start_mariadb
    local restart=no
    write_configs "$1" && restart=yes
    # shellcheck disable=SC2046
    write_hosts_line $(node_names)
    start_slurm "$restart"
    wait_for_nodes
}

# One line a daemon: running (its pids) or stopped.
report_daemons() {
    local daemon pids
    for daemon in "${DAEMONS[@]}"; do
        pids=$(daemon_pids "$daemon")
        if [ -z "$pids" ]; then
            echo "$daemon: stopped"
        elif ours "$daemon"; then
            echo "$daemon: running (pid $pids)"
        else
            echo "$daemon: running (pid $pids), not started by this script: stop leaves it running"
        fi
    done
    pids=$(pids_named slurmstepd)
    [ -z "$pids" ] || echo "job steps: running (slurmstepd pid $pids)"
}

cmd_status() {
    report_daemons
    timeout 10 scontrol ping >/dev/null 2>&1 || { echo "not ready: slurmctld does not answer"; exit 1; }
    timeout 10 sacct -n -X -S now >/dev/null 2>&1 || { echo "not ready: sacct fails (slurmdbd)"; exit 1; }
    nodes_idle || { echo "not ready: node(s) $(node_states)"; exit 1; }
    echo "up: node(s) $(node_states)"
}

no_jobs_left() {
    [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && [ -z "$(pids_named slurmstepd)" ]
}

# Jobs still queued or running would run on without their daemons, and be cancelled by the next
# start anyway: cancel them now, while slurmctld can, and let their steps end (KillWait is 30 s).
cancel_jobs() {
    command -v squeue >/dev/null && timeout 10 scontrol ping >/dev/null 2>&1 || return 0
    local jobs
    jobs=$(timeout 10 squeue -h -o %i | sort -u | tr '\n' ' ')
    [ -n "${jobs// }" ] || return 0
    log "cancelling job(s) still in the queue: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs || true
    wait_for 90 no_jobs_left || log "job(s) still there after 90 s: $(timeout 10 squeue -h -o %i | tr '\n' ' ')"
}

cmd_stop() {
    [ "$(id -u)" -eq 0 ] || die "run as root (it stops system daemons)"
    cancel_jobs
    local daemon i failed=()
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        daemon=${DAEMONS[i]}
        if ! ours "$daemon"; then
            daemon_gone "$daemon" || log "leaving $daemon running: this script did not start it"
            continue
        fi
        stop_daemon "$daemon" || failed+=("$daemon")
    done
    write_hosts_line
    report_daemons
    [ ${#failed[@]} -eq 0 ] || die "still running after SIGKILL: ${failed[*]}"
}

nodes_arg() {  # the N of `start --nodes N` (default 1)
    [ $# -eq 0 ] && { echo 1; return; }
    [ "$1" = --nodes ] && [ $# -eq 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || die "start takes --nodes N (N >= 1), got: $*"
    echo "$2"
}

case "${1:-start}" in
    start) nodes=$(nodes_arg "${@:2}") || exit 1; cmd_start "$nodes" ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    *) die "unknown command '$1'; use start, status or stop" ;;
esac
