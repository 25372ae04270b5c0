-- Removes disconnected instances that are due. ARGV: ns, now_ms, grace_ms, at most this many.
-- Returns {app, user, id, value, expired (1/0), s}… (s only counts for expired ones).
local ns, now, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local reap = ns .. ':reap'
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', reap, '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])) do
  redis.call('ZREM', reap, m)
  local app, id, user = split_member(m)
  local key = ns .. ':u:' .. app .. ':' .. user
  local v, f, last = lookup(key, id)
  if v then
    if f[5] == '' then
      local expired = math.floor(now / 1000) > num(f[4])
      if expired or now >= num(f[7]) + grace then
        redis.call('HDEL', key, 'i:' .. id)
        local s = 0
        if expired then
          s = next_seq(last, now)
          redis.call('HSET', key, 's', hex(s))
        end
        out[#out + 1] = {app, user, id, v, expired and 1 or 0, s}
      else
        redis.call('ZADD', reap, due(f, grace), m)
      end
    end
  end
end
return out
