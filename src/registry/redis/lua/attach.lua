-- Attaches an instance to a connection unless its UserSig has expired, or, for a node checking its connection
-- (`known` set), it is on another connection that attached it after this connection did. KEYS: the user's key.
-- ARGV: ns, id, node, conn, now_s, now_ms, known (node and conn in hexadecimal; `known`: '' for a resume, else
-- the number, hexadecimal, of the change that attached the instance to the connection: its login, resume or
-- put-back). An instance's attachment number is `a:ID`, or its login's (its order) if it was never attached
-- since. Returns {0} gone, {1, value} expired, {2, value, previous node, previous conn, s, attachment}
-- (numbers), or {3, value, node, conn} left on another connection. (A disconnected instance's entry in `NS:due`
-- is left to the reaper, which finds it connected.)
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
local known = ARGV[7] or ''
-- Already attached to this connection, and its node checks it: nothing changes, unless Redis lost the number
-- of its last attachment (a failover), which is restored, so a lost attachment elsewhere in between stays older.
-- (A resume on the connection it is on attaches it anew, below: the client's latest resume is the latest
-- attachment.)
if f[5] == ARGV[3] and f[6] == ARGV[4] and f[7] == '' and known ~= '' then
  if num(attached) < num(known) then
    redis.call('HSET', key, 'a:' .. id, known)
    attached = known
  end
  return {2, v, f[5], f[6], last, num(attached)}
end
local prev_node, prev_conn = f[5], f[6]
local s = next_seq(last, tonumber(ARGV[6]))
local set = {'i:' .. id, '', 's', hex(s), 'a:' .. id, hex(s)}
if known ~= '' then
  -- Another connection attached it later (its client resumed there; the push that would have told this one was
  -- lost): it stays there.
  if prev_node ~= '' and num(attached) >= num(known) then
    return {3, v, prev_node, prev_conn}
  end
  -- Otherwise the check restores this connection's attachment (Redis lost it, or marked the instance
  -- disconnected): under its own number, so a later attachment that was lost too still counts as later, and
  -- marked as a put-back, so the user's other lost instances are still put back (see admit.lua).
  local watermark = got[2] or ''
  if got[3] and got[3] == got[2] then
    watermark = got[4] or ''
  end
  set[6] = known
  set[#set + 1], set[#set + 2] = 'pb', hex(s)
  set[#set + 1], set[#set + 2] = 'pw', watermark
end
f[5], f[6], f[7] = ARGV[3], ARGV[4], ''
set[2] = format(f)
redis.call('HSET', key, unpack(set))
return {2, set[2], prev_node, prev_conn, s, num(set[6])}
