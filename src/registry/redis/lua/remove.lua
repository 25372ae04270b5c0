-- Removes an instance (logout, expiry, an admin's kick). KEYS: the user's key. ARGV: ns, id, required sig_expires_at ('' for
-- any, hexadecimal), now_ms, kick record to keep (`reason,until;`, '' for none), kick records kept per user at
-- most, and a connection (node, conn, hexadecimal; absent or '' for any): the instance is only removed if it is
-- not attached to another connection. Returns {0} or {1, value, s}. (A disconnected instance's entry in `NS:due`
-- is left to the reaper.)
local key = KEYS[1]
local v, f, last = lookup(key, ARGV[2])
if not v then
  return {0}
end
if ARGV[3] ~= '' and f[4] ~= ARGV[3] then
  return {0}
end
if (ARGV[7] or '') ~= '' and f[5] ~= '' and (f[5] ~= ARGV[7] or f[6] ~= ARGV[8]) then
  return {0}
end
redis.call('HDEL', key, 'i:' .. ARGV[2], 'a:' .. ARGV[2])
local s = next_seq(last, tonumber(ARGV[4]))
if ARGV[5] ~= '' then
  local got = redis.call('HMGET', key, 'k', 'n')
  local k, n = remember_kicks(got[1], got[2], {ARGV[2] .. ',' .. ARGV[5]}, tonumber(ARGV[6]))
  redis.call('HSET', key, 's', hex(s), 'k', k, 'n', n)
else
  redis.call('HSET', key, 's', hex(s))
end
return {1, v, s}
