-- Admits a login decided against the user's state read at change number ARGV[3]; refuses (0) if the user changed
-- since. ARGV: ns, key, expected s, now_ms, kicks remembered until (ms), new id, value head (up to login_ms|),
-- value tail (from |sig_expires_at), new member, new node ('' if not connected), its due time if not connected,
-- keep key until (ms), number of kicks, then per kick: id, reason, node, member; then kick records to forget.
local ns, key = ARGV[1], ARGV[2]
if (redis.call('HGET', key, 's') or '0') ~= ARGV[3] then
  return {0}
end
local now = tonumber(ARGV[4])
local order = redis.call('INCR', ns .. ':order')
redis.call('HSET', key, 'i:' .. ARGV[6], ARGV[7] .. order .. ARGV[8])
if ARGV[10] ~= '' then
  redis.call('SADD', ns .. ':n:' .. ARGV[10], ARGV[9])
else
  redis.call('ZADD', ns .. ':reap', ARGV[11], ARGV[9])
end
local i = 14
for _ = 1, tonumber(ARGV[13]) do
  local id, reason, node, member = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  redis.call('HDEL', key, 'i:' .. id)
  redis.call('HSET', key, 'k:' .. id, reason .. '|' .. ARGV[5])
  if node ~= '' then
    redis.call('SREM', ns .. ':n:' .. node, member)
  else
    redis.call('ZREM', ns .. ':reap', member)
  end
end
while i <= #ARGV do
  redis.call('HDEL', key, 'k:' .. ARGV[i])
  i = i + 1
end
local s = next_seq(key, now)
keep_until(key, ARGV[12])
return {1, s, order}
