-- Removes every instance of a user, remembering why. KEYS: the user's key. ARGV: ns, now_ms, kick record (`reason,until;`), the
-- time the key must live until for the records (ms), kick records kept per user at most. Returns
-- {s, {id, value, …}}. (Entries in `NS:due` are left to the reaper.)
local key = KEYS[1]
local all = redis.call('HGETALL', key)
local s0, krec, kn, _, e = user_fields(all)
local last = num(s0 or '0')
local out, del, set, records = {}, {}, {}, {}
for i = 1, #all, 2 do
  local field = all[i]
  if string.sub(field, 1, 2) == 'i:' then
    local id = string.sub(field, 3)
    local f = parse(all[i + 1])
    del[#del + 1] = field
    del[#del + 1] = 'a:' .. id
    records[#records + 1] = {num(f[3]), id .. ',' .. ARGV[3]}
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
local s = next_seq(last, tonumber(ARGV[2]))
set[#set + 1] = 's'
set[#set + 1] = hex(s)
if #records > 0 then
  local k, n = remember_kicks(krec, kn, records, tonumber(ARGV[5]))
  set[#set + 1] = 'k'
  set[#set + 1] = k
  set[#set + 1] = 'n'
  set[#set + 1] = n
end
redis.call('HSET', key, unpack(set))
-- The key (made here for its change number if the user had none) outlives the records.
extend(key, tonumber(ARGV[4]), e, #all > 0)
return {s, out}
