#!/usr/bin/env bash
# The registry's admission and detach scripts in a loop inside Redis, without the network or the node: N logins
# of USERS users in turn, each kicking the user's previous (disconnected) instance, then detaching, as
# `imlogin-bench logins` does through a node. Prints the time per login (admit + detach); take the least of
# several runs, the machine's noise only adds.
#
#   scripts/redis-script-loop.sh [N=20000] [USERS=2000] [REDIS_URL=redis://127.0.0.1:6379]
#
# It runs the Lua functions of src/registry/redis/lua/ (the prelude, `admit` of admit.lua, `detach` of
# detach_many.lua) under keys `imlogin-loop:*`, which it removes afterwards.
set -euo pipefail
n=${1:-20000}
users=${2:-2000}
url=${3:-redis://127.0.0.1:6379}
lua=$(dirname "$0")/../src/registry/redis/lua
script="$(cat "$lua/prelude.lua")
$(sed '/^return admit(/,$d' "$lua/admit.lua")
$(sed '/^local now, floor, due = ARGV/,$d' "$lua/detach_many.lua")
local t0 = 1764500000000
for i = 1, $n do
  local now = t0 + i
  local id = string.format('%024x', i)
  local u = 'u' .. (i % $users)
  local key = 'imlogin-loop:u:1:' .. u
  admit('imlogin-loop', hex(now * 1024), 16, key, '1', u, id, '0', '', '0|' .. hex(now) .. '|',
    '|6a5b4c3d|1|' .. hex(i) .. '||127.0.0.1|', '', '1', '0111111', '99999999999999', hex(now + 60000), '')
  detach('imlogin-loop', key, id, '1', hex(i), hex(now), hex(now * 1024), now + 30000,
    '1:' .. u)
end
return 0"
# The loop's keys are known: delete them by name (no KEYS scan of a Redis that may hold much else).
cleanup() {
  redis-cli -u "$url" EVAL "redis.call('DEL', 'imlogin-loop:due')
for u = 0, $users - 1 do redis.call('DEL', 'imlogin-loop:u:1:u' .. u) end" 0 >/dev/null
}
trap cleanup EXIT
# redis-cli exits 0 on an error reply too: the loop's answer (0) tells it ran.
run() {
  local out
  out=$(redis-cli -u "$url" EVAL "$script" 0)
  if [ "$out" != 0 ]; then
    echo "the loop failed: $out" >&2
    exit 1
  fi
}
# The first pass fills every user's state (an instance to kick, kick records); the second is measured.
run
start=$(date +%s%N)
run
end=$(date +%s%N)
echo "$(( (end - start) / n )) ns per login (admit + detach; $n logins over $users users)"
