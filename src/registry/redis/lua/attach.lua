-- Attaches an instance to a connection unless its UserSig has expired, or, if `if_free` is '1', it is on another
-- connection. KEYS: the user's key. ARGV: ns, id, node, conn, now_s, now_ms, if_free (node and conn in
-- hexadecimal). Returns {0} gone, {1, value} expired, {2, value, previous node, previous conn, s}, or
-- {3, value, node, conn} left on another connection. (A disconnected instance's entry in `NS:due` is left to the
-- reaper, which finds it connected.)
local key = KEYS[1]
local v, f, last = lookup(key, ARGV[2])
if not v then
  return {0}
end
if tonumber(ARGV[5]) > num(f[4]) then
  return {1, v}
end
-- Already attached to this connection (a node checking its connections): nothing changes, nothing is written.
if f[5] == ARGV[3] and f[6] == ARGV[4] and f[7] == '' then
  return {2, v, f[5], f[6], last}
end
local prev_node, prev_conn = f[5], f[6]
if ARGV[7] == '1' and prev_node ~= '' then
  return {3, v, prev_node, prev_conn}
end
f[5], f[6], f[7] = ARGV[3], ARGV[4], ''
local nv = format(f)
local s = next_seq(last, tonumber(ARGV[6]))
redis.call('HSET', key, 'i:' .. ARGV[2], nv, 's', hex(s))
return {2, nv, prev_node, prev_conn, s}
