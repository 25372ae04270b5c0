-- Admits a login under the policy (PROTOCOL §5; the same rules as `policy::admit`, checked against it by the
-- tests) in one step. ARGV: ns, key, app, user, now_ms, kicks remembered until (ms), new id, new platform,
-- new device ('' for none), value head (platform|login_ms|), value tail (|sig…device), due time if not
-- connected (''), the new platform's limit, the class of each platform (7 characters), grace + slack (ms),
-- kick records kept per user at most.
-- Returns {s, {id, reason, value, …}} with the instances it kicked.
local ns, key, app, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(ARGV[5])
local plat, dev, classes = ARGV[8], ARGV[9], ARGV[14]
local function class(p)
  local i = tonumber(p) + 1
  return string.sub(classes, i, i)
end
local all = redis.call('HGETALL', key)
-- Fields are told apart by their first byte (no string is made for the kick records, most of the hash).
local I, K = string.byte('ik', 1, 2)
local last, mine, nkicks = 0, {}, 0
for i = 1, #all, 2 do
  local field = all[i]
  local tag = string.byte(field, 1)
  if tag == K then
    nkicks = nkicks + 1
  elseif tag == I then
    local v = all[i + 1]
    mine[#mine + 1] = {string.sub(field, 3), parse(v), v}
  elseif field == 's' then
    last = num(all[i + 1])
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
      kick(m, 1)
    end
  end
end
-- 2. Other platforms of the same class leave (reason 0: multi_terminal).
local c = class(plat)
for _, m in ipairs(mine) do
  if m[2][1] ~= plat and class(m[2][1]) == c and not gone[m[1]] then
    kick(m, 0)
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
  kick(same[i], 0)
end

local s = hex(next_seq(last, now))
local set = {'i:' .. ARGV[7], ARGV[10] .. s .. ARGV[11], 's', s}
local del = {}
local until36 = hex(tonumber(ARGV[6]))
local keep = 0
for _, m in ipairs(mine) do
  local member = app .. ':' .. m[1] .. ':' .. user
  if gone[m[1]] then
    del[#del + 1] = 'i:' .. m[1]
    if m[2][5] == '' then
      redis.call('ZREM', ns .. ':reap', member)
    end
  else
    keep = math.max(keep, num(m[2][4]) * 1000)
  end
end
for i = 1, #out, 3 do
  set[#set + 1] = 'k:' .. out[i]
  set[#set + 1] = out[i + 1] .. '|' .. until36
end
-- Past the bound, the kick records that end first go (those past their time among them; until then they
-- are harmless: a record is only believed before its time), down to half the bound: the records are read
-- and sorted once every few kicks rather than at every login of a user who is often kicked.
local max = tonumber(ARGV[16])
local excess = nkicks + #out / 3 - max
if excess > 0 then
  local kicks = {}
  for i = 1, #all, 2 do
    if string.byte(all[i], 1) == K then
      local v = all[i + 1]
      kicks[#kicks + 1] = {all[i], num(string.sub(v, string.find(v, '|', 1, true) + 1))}
    end
  end
  table.sort(kicks, function(a, b) return a[2] < b[2] end)
  for i = 1, math.min(excess + math.floor(max / 2), #kicks) do
    del[#del + 1] = kicks[i][1]
  end
end
if #del > 0 then
  redis.call('HDEL', key, unpack(del))
end
redis.call('HSET', key, unpack(set))
if ARGV[12] ~= '' then
  redis.call('ZADD', ns .. ':reap', ARGV[12], app .. ':' .. ARGV[7] .. ':' .. user)
end
-- The key outlives every UserSig it holds, the kick records, and a grace after either.
local sig = num(string.sub(ARGV[11], 2, string.find(ARGV[11], '|', 2, true) - 1))
keep = math.max(keep, sig * 1000, tonumber(ARGV[6])) + tonumber(ARGV[15])
redis.call('PEXPIREAT', key, keep)
return {num(s), out}
