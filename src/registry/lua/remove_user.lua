-- Removes every instance of a user, remembering why. ARGV: ns, key, app, user, now_ms, kick record
-- (`reason,until;`), the time a key it makes must live until (ms), kick records kept per user at most.
-- Returns {s, {id, value, …}}.
local ns, key = ARGV[1], ARGV[2]
local all = redis.call('HGETALL', key)
local out, del, set, records, last, krec, kn = {}, {}, {}, {}, 0, nil, nil
for i = 1, #all, 2 do
  if all[i] == 's' then
    last = num(all[i + 1])
  elseif all[i] == 'k' then
    krec = all[i + 1]
  elseif all[i] == 'n' then
    kn = all[i + 1]
  elseif string.sub(all[i], 1, 2) == 'i:' then
    local id = string.sub(all[i], 3)
    local f = parse(all[i + 1])
    if f[5] == '' then
      redis.call('ZREM', ns .. ':reap', ARGV[3] .. ':' .. id .. ':' .. ARGV[4])
    end
    del[#del + 1] = all[i]
    records[#records + 1] = {num(f[3]), id .. ',' .. ARGV[6]}
    out[#out + 1] = id
    out[#out + 1] = all[i + 1]
  end
end
-- Kick records are made oldest login first (as in the memory registry), so trimming drops the same ones.
table.sort(records, function(a, b) return a[1] < b[1] end)
for i, r in ipairs(records) do
  records[i] = r[2]
end
if #del > 0 then
  redis.call('HDEL', key, unpack(del))
end
local s = next_seq(last, tonumber(ARGV[5]))
set[#set + 1] = 's'
set[#set + 1] = hex(s)
if #records > 0 then
  local k, n = remember_kicks(krec, kn, records, tonumber(ARGV[8]))
  set[#set + 1] = 'k'
  set[#set + 1] = k
  set[#set + 1] = 'n'
  set[#set + 1] = n
end
redis.call('HSET', key, unpack(set))
-- A user with no key gets one here (its change number): it expires too (admission only ever extends it).
if #all == 0 then
  redis.call('PEXPIREAT', key, ARGV[7])
end
return {s, out}
