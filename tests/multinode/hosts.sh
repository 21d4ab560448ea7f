#!/usr/bin/env bash
# Two "hosts" on one machine for rehearsing multi-node runs: network namespaces joined by a veth
# pair, each with its own address, host name, /run and node-local directory, and an sshd of its own.
#
#   tests/multinode/hosts.sh up STATE         creates the hosts; STATE (a new directory) holds
#                                             their keys, configs, logs and the host file
#   tests/multinode/hosts.sh exec STATE NODE CMD...
#                                             runs CMD on node1 or node2 (its network, host name
#                                             and mounts), with the rehearsal's ssh first in PATH
#   tests/multinode/hosts.sh down STATE       kills every process in the hosts' namespaces,
#                                             deletes the namespaces (and so the veth pair), STATE
#
# Root only (ip netns). node<i> is 10.213.0.<i>/24 on interface mnet0 (MULTINODE_SUBNET and
# MULTINODE_IFACE change them); 10.213.0.3 has no host behind it. Both hosts see the machine's
# file system (a cluster with a shared file system), except /run and STATE/local, which are a
# tmpfs of their own on each host (node-local storage). Each sshd uses only files in STATE: its
# config, a host key, and STATE/authorized_keys, the public half of STATE/id_ed25519 made for this
# rehearsal; STATE/bin/ssh is the client with STATE/ssh_config (that key, STATE/known_hosts). Nothing
# in /etc/ssh, ~/.ssh or the machine's own sshd is used or changed. STATE/hostfile lists
# "<address> slots=<MULTINODE_SLOTS, default 1>" per host, the format of mpirun and horovodrun.
# `up` tears down what it made when it fails; callers trap `down` (see rehearse.sh).
set -euo pipefail

SUBNET=${MULTINODE_SUBNET:-10.213.0}
IFACE=${MULTINODE_IFACE:-mnet0}
SLOTS=${MULTINODE_SLOTS:-1}
NODES=(node1 node2)

die() { echo "hosts.sh: $*" >&2; exit 2; }

node_pid() {  # STATE NODE: the pid of the node's sshd, whose namespaces make the node
  cat "$1/$2/sshd.pid" 2>/dev/null || die "$2 is not up in $1"
}

up() {
  local state=$1 i node ns dir prefix
  [[ "$(id -u)" == 0 ]] || die "needs root (ip netns)"
  [[ -x /usr/sbin/sshd ]] || die "no /usr/sbin/sshd: install openssh-server (./setup_env.sh does as root)"
  mkdir -m 0700 "$state" || die "$state exists: give a new directory"
  state=$(cd "$state" && pwd)
  prefix="ssdmn$$"
  # shellcheck disable=SC2064  # $state is expanded now: the trap runs outside this function
  trap "down $(printf %q "$state")" EXIT  # until it is up
  mkdir -m 0755 "$state/local" "$state/bin"
  ssh-keygen -q -t ed25519 -N '' -C ssd-multinode-rehearsal -f "$state/id_ed25519"
  cp "$state/id_ed25519.pub" "$state/authorized_keys"
  cat > "$state/ssh_config" <<CFG
Host *
  User $(id -un)
  IdentityFile $state/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $state/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
  LogLevel ERROR
CFG
  printf '#!/bin/sh\nexec /usr/bin/ssh -F %q "$@"\n' "$state/ssh_config" > "$state/bin/ssh"
  chmod 0755 "$state/bin/ssh"
  : > "$state/known_hosts"
  : > "$state/hostfile"
  printf '127.0.0.1 localhost\n::1 localhost\n' > "$state/hosts"
  for i in 1 2; do
    node=${NODES[i-1]} ns="$prefix-$node" dir="$state/$node"
    mkdir -m 0700 "$dir"
    echo "$ns" >> "$state/namespaces"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ssh-keygen -q -t ed25519 -N '' -C "$node" -f "$dir/ssh_host_ed25519_key"
    echo "$SUBNET.$i $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >> "$state/known_hosts"
    echo "$SUBNET.$i slots=$SLOTS" >> "$state/hostfile"
    echo "$SUBNET.$i $node" >> "$state/hosts"
    cat > "$dir/sshd_config" <<CFG
ListenAddress $SUBNET.$i
Port 22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $state/authorized_keys
AllowUsers $(id -un)
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
PrintLastLog no
MaxStartups 64
MaxSessions 64
CFG
  done
  ip link add "$IFACE" netns "$prefix-node1" type veth peer name "$IFACE" netns "$prefix-node2"
  for i in 1 2; do
    node=${NODES[i-1]} ns="$prefix-$node" dir="$state/$node"
    ip -n "$ns" addr add "$SUBNET.$i/24" dev "$IFACE"
    ip -n "$ns" link set "$IFACE" up
    # The node: its own UTS namespace (host name) and, from `ip netns exec`, mount namespace with
    # a private /run (sshd's privilege separation directory /run/sshd), a node-local STATE/local,
    # and an /etc/hosts naming both nodes (Gloo binds to the address of the host name).
    # shellcheck disable=SC2016
    setsid ip netns exec "$ns" unshare --uts -- sh -c '
      mount -t tmpfs -o mode=0755,size=64m ssd-multinode-run /run && mkdir -m 0755 /run/sshd &&
      mount -t tmpfs -o mode=0755 ssd-multinode-local "$1" && mount --bind "$2" /etc/hosts &&
      hostname "$3" && exec /usr/sbin/sshd -D -f "$4" -E "$5"' \
      sh "$state/local" "$state/hosts" "$node" "$dir/sshd_config" "$dir/sshd.log" \
      < /dev/null > "$dir/sshd.out" 2>&1 &
  done
  # Ready when node1 reaches both sshds by ssh (at most 20 s).
  for node in "${NODES[@]}"; do
    for _ in $(seq 100); do
      [[ -s "$state/$node/sshd.pid" ]] && break
      sleep 0.2
    done
  done
  for i in 1 2; do
    local name=""
    for _ in $(seq 50); do
      name=$(exec_on "$state" node1 ssh "$SUBNET.$i" hostname 2>/dev/null) && break
      sleep 0.2
    done
    [[ "$name" == "${NODES[i-1]}" ]] \
      || die "ssh from node1 to $SUBNET.$i failed (got '$name'); see $state/${NODES[i-1]}/sshd.log"
    echo "hosts.sh: ${NODES[i-1]} is $SUBNET.$i (namespace $prefix-${NODES[i-1]}, interface $IFACE)"
  done
  trap - EXIT
  echo "hosts.sh: host file $state/hostfile"
}

exec_on() {  # STATE NODE CMD...: CMD in the node's network, UTS and mount namespaces
  local state=$1 node=$2 pid
  shift 2
  pid=$(node_pid "$state" "$node")
  PATH="$state/bin:$PATH" nsenter --target "$pid" --net --uts --mount --wd="$PWD" -- "$@"
}

down() {
  local state=$1 ns pids namespaces=()
  [[ -f "$state/namespaces" ]] && mapfile -t namespaces < "$state/namespaces"
  for signal in TERM KILL; do
    for ns in "${namespaces[@]}"; do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086
        kill "-$signal" $pids 2>/dev/null || true
      fi
    done
    for _ in $(seq 50); do  # up to 5 s for the processes to end
      pids=""
      for ns in "${namespaces[@]}"; do pids+=$(ip netns pids "$ns" 2>/dev/null || true); done
      [[ -z "$pids" ]] && break
      sleep 0.1
    done
  done
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$state"
}

case "${1:-}" in
  up) [[ $# == 2 ]] || die "usage: hosts.sh up STATE"; up "$2" ;;
  down) [[ $# == 2 ]] || die "usage: hosts.sh down STATE"; down "$2" ;;
  exec) [[ $# -ge 4 ]] || die "usage: hosts.sh exec STATE NODE CMD..."; exec_on "$2" "$3" "${@:4}" ;;
  *) die "usage: hosts.sh up|down|exec STATE ..." ;;
esac
