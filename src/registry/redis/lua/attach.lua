-- Attaches an instance to a connection unless its UserSig has expired, or, for a node checking its connection
-- (`known` set), it is on another connection that attached it after this connection did. KEYS: the user's key.
-- ARGV: ns, id, node, conn, now_s, now_ms, known (node and conn in hexadecimal; `known`: '' for a resume, else
-- the instance's attachment number, hexadecimal, as the connection knows it). An instance's attachment number
-- is the change that last attached it, `a:ID`, or its login's (its order) if it was never attached since.
-- Returns {0} gone, {1, value} expired, {2, value, previous node, previous conn, s, attachment} (numbers), or
-- {3, value, node, conn} left on another connection. (A disconnected instance's entry in `NS:due` is left to the
-- reaper, which finds it connected.)
local key, id = KEYS[1], ARGV[2]
local got = redis.call('HMGET', key, 'i:' .. id, 's', 'pb', 'pw', 'a:' .. id)
local v = got[1]
if not v then
  return {0}
end
local f, last = parse(v), num(got[2] or '0')
local attached = got[5] or f[3]
if tonumber(ARGV[5]) > num(f[4]) then
  return {1, v}
end
-- Already attached to this connection (a node checking its connections): nothing changes, nothing is written.
if f[5] == ARGV[3] and f[6] == ARGV[4] and f[7] == '' then
  return {2, v, f[5], f[6], last, num(attached)}
end
local prev_node, prev_conn = f[5], f[6]
local known = ARGV[7] or ''
local set = {}
if known ~= '' and prev_node ~= '' then
  -- The other connection attached it later (its client resumed there; the push that would have told this one
  -- was lost): it stays. Attached earlier: Redis lost this connection's attachment (a failover), which is put
  -- back, marked as a put-back for the user's other instances (see admit.lua).
  if num(attached) >= num(known) then
    return {3, v, prev_node, prev_conn}
  end
  local watermark = got[2] or ''
  if got[3] and got[3] == got[2] then
    watermark = got[4]
  end
  set = {'pw', watermark}
end
f[5], f[6], f[7] = ARGV[3], ARGV[4], ''
local nv = format(f)
local s = next_seq(last, tonumber(ARGV[6]))
if #set > 0 then
  set[3], set[4] = 'pb', hex(s)
end
redis.call('HSET', key, 'i:' .. id, nv, 's', hex(s), 'a:' .. id, hex(s), unpack(set))
return {2, nv, prev_node, prev_conn, s, s}
