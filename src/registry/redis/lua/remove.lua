-- Removes an instance (logout, expiry, an admin's kick). ARGV: ns, key, id, required sig_expires_at ('' for
-- any, hexadecimal), now_ms, kick record to keep (`reason,until;`, '' for none), kick records kept per user at
-- most. Returns {0} or {1, value, s}. (A disconnected instance's entry in `NS:due` is left to the reaper.)
local key = ARGV[2]
local v, f, last = lookup(key, ARGV[3])
if not v then
  return {0}
end
if ARGV[4] ~= '' and f[4] ~= ARGV[4] then
  return {0}
end
redis.call('HDEL', key, 'i:' .. ARGV[3])
local s = next_seq(last, tonumber(ARGV[5]))
if ARGV[6] ~= '' then
  local got = redis.call('HMGET', key, 'k', 'n')
  local k, n = remember_kicks(got[1], got[2], {ARGV[3] .. ',' .. ARGV[6]}, tonumber(ARGV[7]))
  redis.call('HSET', key, 's', hex(s), 'k', k, 'n', n)
else
  redis.call('HSET', key, 's', hex(s))
end
return {1, v, s}
