-- Removes an instance (logout, expiry, an admin's kick). ARGV: ns, key, id, required sig_expires_at ('' for
-- any), now_ms, member, kick record to keep ('' for none). Returns {0} or {1, value, s}.
local ns, key = ARGV[1], ARGV[2]
local v = redis.call('HGET', key, 'i:' .. ARGV[3])
if not v then
  return {0}
end
local f = parse(v)
if ARGV[4] ~= '' and f[4] ~= ARGV[4] then
  return {0}
end
redis.call('HDEL', key, 'i:' .. ARGV[3])
unindex(ns, f, ARGV[6])
if ARGV[7] ~= '' then
  redis.call('HSET', key, 'k:' .. ARGV[3], ARGV[7])
end
return {1, v, next_seq(key, tonumber(ARGV[5]))}
