-- Attaches an instance to a connection unless its UserSig has expired. ARGV: ns, key, id, node, conn, now_s,
-- now_ms, member. Returns {0} gone, {1, value} expired, {2, value, previous node, previous conn, s}.
local ns, key = ARGV[1], ARGV[2]
local v = redis.call('HGET', key, 'i:' .. ARGV[3])
if not v then
  return {0}
end
local f = parse(v)
if tonumber(ARGV[6]) > tonumber(f[4]) then
  return {1, v}
end
local prev_node, prev_conn = f[5], f[6]
unindex(ns, f, ARGV[8])
f[5], f[6], f[7] = ARGV[4], ARGV[5], ''
local nv = format(f)
redis.call('HSET', key, 'i:' .. ARGV[3], nv)
redis.call('SADD', ns .. ':n:' .. ARGV[4], ARGV[8])
return {2, nv, prev_node, prev_conn, next_seq(key, tonumber(ARGV[7]))}
