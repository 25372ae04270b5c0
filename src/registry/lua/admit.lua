-- Admits a login under the policy (PROTOCOL §5; the same rules as `policy::admit`, checked against it by the
-- tests) in one step. ARGV: ns, key, app, user, now × 1024 (hexadecimal), kicks remembered until (hexadecimal),
-- new id, new platform, new device ('' for none), value head (platform|login_ms|), value tail (|sig…device),
-- due time if not connected (''), the new platform's limit, the class of each platform (7 characters), the time
-- the key must outlive for this login (ms), kick records kept per user at most.
-- Returns {s, {id, reason, value, …}} with the instances it kicked (s in hexadecimal).
local ns, key, app, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local plat, dev, classes = ARGV[8], ARGV[9], ARGV[14]
local function class(p)
  local i = tonumber(p) + 1
  return string.sub(classes, i, i)
end
local all = redis.call('HGETALL', key)
local I = string.byte('i')
local last, mine, krec = nil, {}, nil
for i = 1, #all, 2 do
  local field = all[i]
  if string.byte(field, 1) == I then
    local v = all[i + 1]
    mine[#mine + 1] = {string.sub(field, 3), parse(v), v}
  elseif field == 's' then
    last = all[i + 1]
  elseif field == 'k' then
    krec = all[i + 1]
  end
end
local out, gone = {}, {}
local function kick(m, reason)
  gone[m[1]] = true
  out[#out + 1] = m[1]
  out[#out + 1] = reason
  out[#out + 1] = m[3]
end
-- 1. The same device on the same platform is replaced (reason 1: same_device).
if dev ~= '' then
  for _, m in ipairs(mine) do
    if m[2][1] == plat and m[2][9] == dev then
      kick(m, '1')
    end
  end
end
-- 2. Other platforms of the same class leave (reason 0: multi_terminal).
local c = class(plat)
for _, m in ipairs(mine) do
  if m[2][1] ~= plat and class(m[2][1]) == c and not gone[m[1]] then
    kick(m, '0')
  end
end
-- 3. The oldest on this platform leave until the new login fits the limit.
local same = {}
for _, m in ipairs(mine) do
  if m[2][1] == plat and not gone[m[1]] then
    same[#same + 1] = m
  end
end
table.sort(same, function(a, b) return num(a[2][3]) < num(b[2][3]) end)
for i = 1, #same - (tonumber(ARGV[13]) - 1) do
  kick(same[i], '0')
end

local s = next_hex(last, ARGV[5])
local set = {'i:' .. ARGV[7], ARGV[10] .. s .. ARGV[11], 's', s}
local del = {}
local until_hex = ARGV[6]
for _, m in ipairs(mine) do
  if gone[m[1]] then
    del[#del + 1] = 'i:' .. m[1]
    if m[2][5] == '' then
      redis.call('ZREM', ns .. ':reap', app .. ':' .. m[1] .. ':' .. user)
    end
  end
end
if #out > 0 then
  local records = {}
  for i = 1, #out, 3 do
    records[#records + 1] = out[i] .. ',' .. out[i + 1] .. ',' .. until_hex .. ';'
  end
  set[#set + 1] = 'k'
  set[#set + 1] = remember_kicks(krec, records, tonumber(ARGV[16]))
end
if #del > 0 then
  redis.call('HDEL', key, unpack(del))
end
redis.call('HSET', key, unpack(set))
if ARGV[12] ~= '' then
  redis.call('ZADD', ns .. ':reap', ARGV[12], app .. ':' .. ARGV[7] .. ':' .. user)
end
-- The key outlives every UserSig it holds, the kick records, and a grace after either: the node passes that
-- time for this login, and an existing key's expiry is only ever extended (GT), so it still covers the others.
if #all > 0 then
  redis.call('PEXPIREAT', key, ARGV[15], 'GT')
else
  redis.call('PEXPIREAT', key, ARGV[15])
end
return {s, out}
