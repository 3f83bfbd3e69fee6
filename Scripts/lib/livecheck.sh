# Shared by the live checks (sourced): counting checks, stopping this script's own background jobs, and
# two network namespaces joined by a veth pair.

pass=0 fail=0
check() { # name, condition (a command)
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok: $name"; else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}

# Stops this script's background jobs by pid (never by name, so anyone else's calltap is left alone),
# giving each up to 5 s to exit.
stop_jobs() {
  local p _
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  for p in $(jobs -p); do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
}

# veth_pair NS_A NS_B DEV_A DEV_B IP_A IP_B: namespaces NS_A and NS_B (made anew) joined by DEV_A–DEV_B
# with IP_A/24 and IP_B/24, everything up. Returns 1 when namespaces cannot be made (not root).
veth_pair() {
  ip netns del "$1" 2>/dev/null; ip netns del "$2" 2>/dev/null
  { ip netns add "$1" && ip netns add "$2"; } 2>/dev/null || return 1
  ip link add "$3" type veth peer name "$4"
  ip link set "$3" netns "$1"; ip link set "$4" netns "$2"
  ip -n "$1" addr add "$5/24" dev "$3"; ip -n "$2" addr add "$6/24" dev "$4"
  ip -n "$1" link set lo up; ip -n "$2" link set lo up
  ip -n "$1" link set "$3" up; ip -n "$2" link set "$4" up
}

# Says why a live check cannot run: a failure under CI=true, a skip elsewhere.
cannot_run() { # what
  if [ "${CI:-}" = "true" ]; then echo "FAIL: $1: cannot create network namespaces" >&2; exit 1; fi
  echo "$1: skipped (network namespaces need root)"
}
