-- Removes every instance of a user, remembering why. ARGV: ns, key, app, user, now_ms, kick record.
-- Returns {s, {id, value, id, value, ...}}.
local ns, key = ARGV[1], ARGV[2]
local all = redis.call('HGETALL', key)
local out = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'i:' then
    local id = string.sub(all[i], 3)
    unindex(ns, parse(all[i + 1]), ARGV[3] .. ':' .. id .. ':' .. ARGV[4])
    redis.call('HDEL', key, all[i])
    redis.call('HSET', key, 'k:' .. id, ARGV[6])
    out[#out + 1] = id
    out[#out + 1] = all[i + 1]
  end
end
return {next_seq(key, tonumber(ARGV[5])), out}
