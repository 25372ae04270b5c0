-- Removes every instance of a user, remembering why. ARGV: ns, key, app, user, now_ms, kick record.
-- Returns {s, {id, value, …}}.
local ns, key = ARGV[1], ARGV[2]
local all = redis.call('HGETALL', key)
local out, del, set, last = {}, {}, {}, 0
for i = 1, #all, 2 do
  if all[i] == 's' then
    last = num(all[i + 1])
  elseif string.sub(all[i], 1, 2) == 'i:' then
    local id = string.sub(all[i], 3)
    if parse(all[i + 1])[5] == '' then
      redis.call('ZREM', ns .. ':reap', ARGV[3] .. ':' .. id .. ':' .. ARGV[4])
    end
    del[#del + 1] = all[i]
    set[#set + 1] = 'k:' .. id
    set[#set + 1] = ARGV[6]
    out[#out + 1] = id
    out[#out + 1] = all[i + 1]
  end
end
if #del > 0 then
  redis.call('HDEL', key, unpack(del))
end
local s = next_seq(last, tonumber(ARGV[5]))
set[#set + 1] = 's'
set[#set + 1] = hex(s)
redis.call('HSET', key, unpack(set))
return {s, out}
