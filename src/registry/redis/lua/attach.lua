-- Attaches an instance to a connection unless its UserSig has expired, or, for a node checking its connection
-- (`known` set), it is on another connection that attached it after this connection's last write. KEYS: the
-- user's key. ARGV: ns, id, node, conn, now_s, now_ms, known (node and conn in hexadecimal; `known`: '' for a
-- resume, else the change number, hexadecimal, of the connection's last write to the user). Returns {0} gone,
-- {1, value} expired, {2, value, previous node, previous conn, s}, or {3, value, node, conn} left on another
-- connection. (A disconnected instance's entry in `NS:due` is left to the reaper, which finds it connected.)
local key = KEYS[1]
local got = redis.call('HMGET', key, 'i:' .. ARGV[2], 's', 'pb', 'pw')
local v = got[1]
if not v then
  return {0}
end
local f, last = parse(v), num(got[2] or '0')
if tonumber(ARGV[5]) > num(f[4]) then
  return {1, v}
end
-- Already attached to this connection (a node checking its connections): nothing changes, nothing is written.
if f[5] == ARGV[3] and f[6] == ARGV[4] and f[7] == '' then
  return {2, v, f[5], f[6], last}
end
local prev_node, prev_conn = f[5], f[6]
local known = ARGV[7] or ''
if known ~= '' and prev_node ~= '' then
  -- The other connection is newer unless the record is older than this connection's last write (Redis lost what
  -- followed it: a failover), put-backs since aside (see admit.lua); when that cannot be told, it stays.
  local watermark = got[2]
  if got[3] and got[3] == got[2] then
    watermark = got[4]
  end
  if not watermark or watermark == '' or num(watermark) >= num(known) then
    return {3, v, prev_node, prev_conn}
  end
end
f[5], f[6], f[7] = ARGV[3], ARGV[4], ''
local nv = format(f)
local s = next_seq(last, tonumber(ARGV[6]))
redis.call('HSET', key, 'i:' .. ARGV[2], nv, 's', hex(s))
return {2, nv, prev_node, prev_conn, s}
