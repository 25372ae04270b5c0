-- Marks an instance disconnected if it is still attached to the connection. ARGV: ns, key, id, node, conn,
-- now_ms, grace_ms, member. Returns {0} or {1, value, s}.
local ns, key = ARGV[1], ARGV[2]
local v, f, last = lookup(key, ARGV[3])
if not v then
  return {0}
end
if f[5] ~= ARGV[4] or f[6] ~= ARGV[5] then
  return {0}
end
local now = tonumber(ARGV[6])
f[5], f[6], f[7] = '', '', hex(now)
local nv = format(f)
local s = next_seq(last, now)
redis.call('HSET', key, 'i:' .. ARGV[3], nv, 's', hex(s))
redis.call('ZADD', ns .. ':reap', due(f, tonumber(ARGV[7])), ARGV[8])
return {1, nv, s}
