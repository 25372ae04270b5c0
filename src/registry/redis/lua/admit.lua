-- Admits a login under the policy (PROTOCOL §5; the same rules as `policy::admit`, checked against it by the
-- tests) in one step. KEYS: the user's key, its group's `NS:due`. ARGV: ns, now × 1024 (hexadecimal), kick records kept per user at
-- most, app, user, new id, new platform, new device ('' for none), value head (platform|login_ms|), value tail
-- (|sig…device), due time if not connected (''), the new platform's limit, the class of each platform (7
-- characters), the time the key must outlive for this login (ms), its kicks remembered until (hexadecimal), and
-- `known`: '' for a login; for an instance put back after Redis lost it (a failover), the change number
-- (hexadecimal) of the connection's last write to it, and then it is only put back if the user has not changed
-- since, it is not there, and it kicks nobody.
-- Returns {s, {id, reason, value, …}} with the instances it kicked (s in hexadecimal); {'', {}} if not put back.

local I, A = string.byte('i'), string.byte('a')

-- The class of platform `p` (a digit) among `classes`.
local function class(classes, p)
  local i = tonumber(p) + 1
  return string.sub(classes, i, i)
end

local function admit(ns, floor, max_kicks, key, app, user, id, plat, dev, head, tail, due_at, limit, classes,
                     keep_until, until_hex, known)
  local all = redis.call('HGETALL', key)
  -- The user's instances as {id, value, platform, order, node, device}: only the fields the rules read.
  local last, krec, kn, r, e = user_fields(all)
  local putback = known ~= nil and known ~= ''
  -- What the user's record said when Redis lost what followed: its change number then, or, if only put-backs
  -- changed it since (`pb` is the number the last put-back wrote, `pw` what the record said before it), what it
  -- said before them, so each connection of the user gets its instance back, not only the first.
  local watermark = last
  local pb, pw
  if putback then
    for i = 1, #all, 2 do
      if all[i] == 'pb' then
        pb = all[i + 1]
      elseif all[i] == 'pw' then
        pw = all[i + 1]
      elseif all[i] == 'i:' .. id then
        return {'', {}}
      end
    end
    if pb and last == pb then
      watermark = pw
    end
    if watermark and watermark ~= '' and num(watermark) >= num(known) then
      return {'', {}}
    end
  end
  local mine, marks = {}, {}
  for i = 1, #all, 2 do
    local field = all[i]
    local b = string.byte(field, 1)
    if b == I then
      local v = all[i + 1]
      local p, order, node, device = string.match(v, '^([^|]*)|[^|]*|([^|]*)|[^|]*|([^|]*)|[^|]*|[^|]*|[^|]*|(.*)$')
      mine[#mine + 1] = {string.sub(field, 3), v, p, order, node, device}
    elseif b == A then
      marks[string.sub(field, 3)] = field
    end
  end
  -- An attachment number whose instance is gone (removed by a version before them): it goes now.
  local del = {}
  if next(marks) then
    for _, m in ipairs(mine) do
      marks[m[1]] = nil
    end
    for _, field in pairs(marks) do
      del[#del + 1] = field
    end
  end
  local out, gone = {}, {}
  -- 1. The same device on the same platform is replaced (reason 1: same_device).
  if dev ~= '' then
    for _, m in ipairs(mine) do
      if m[3] == plat and m[6] == dev then
        gone[m[1]] = '1'
        out[#out + 1] = m
      end
    end
  end
  -- 2. Other platforms of the same class leave (reason 0: multi_terminal).
  local c = class(classes, plat)
  for _, m in ipairs(mine) do
    if m[3] ~= plat and not gone[m[1]] and class(classes, m[3]) == c then
      gone[m[1]] = '0'
      out[#out + 1] = m
    end
  end
  -- 3. The oldest on this platform leave until the new login fits the limit.
  local same = {}
  for _, m in ipairs(mine) do
    if m[3] == plat and not gone[m[1]] then
      same[#same + 1] = m
    end
  end
  local over = #same - (tonumber(limit) - 1)
  if over > 0 then
    if #same > 1 then
      table.sort(same, function(a, b) return num(a[4]) < num(b[4]) end)
    end
    for i = 1, over do
      gone[same[i][1]] = '0'
      out[#out + 1] = same[i]
    end
  end

  if putback and #out > 0 then
    return {'', {}}
  end
  local s = next_hex(last, floor)
  local set = {'i:' .. id, head .. s .. tail, 's', s}
  if putback then
    set[#set + 1], set[#set + 2] = 'pb', s
    set[#set + 1], set[#set + 2] = 'pw', watermark or ''
    -- Under the number of the attachment Redis lost, which the connection keeps (see attach.lua).
    set[#set + 1], set[#set + 2] = 'a:' .. id, known
  end
  local kicked = {}
  if #out > 0 then
    -- Kick records are made oldest login first (as in the memory registry), so trimming drops the same ones.
    if #out > 1 then
      table.sort(out, function(a, b) return num(a[4]) < num(b[4]) end)
    end
    local records = {}
    for _, m in ipairs(out) do
      local reason = gone[m[1]]
      del[#del + 1] = 'i:' .. m[1]
      del[#del + 1] = 'a:' .. m[1]
      -- With the new login's platform last, so a resume can tell a kick by the same platform from one by
      -- another (a reader that predates it reads the first three fields only).
      records[#records + 1] = m[1] .. ',' .. reason .. ',' .. until_hex .. ',' .. plat .. ';'
      kicked[#kicked + 1] = m[1]
      kicked[#kicked + 1] = reason
      kicked[#kicked + 1] = m[2]
    end
    local k, n = remember_kicks(krec, kn, records, max_kicks)
    set[5], set[6], set[7], set[8] = 'k', k, 'n', n
  end
  if #del > 0 then
    redis.call('HDEL', key, unpack(del))
  end
  -- An instance admitted disconnected is due at the end of its grace (a kicked one's entry is left to the reaper).
  if due_at ~= '' then
    local nr = due_by(ns, app .. ':' .. user, tonumber(due_at), r)
    if nr then
      set[#set + 1] = 'r'
      set[#set + 1] = nr
    end
  end
  redis.call('HSET', key, unpack(set))
  -- The key outlives every UserSig it holds, the kick records, and a grace after either: the node passes that
  -- time for this login.
  extend(key, tonumber(keep_until), e, #all > 0)
  return {s, kicked}
end

return admit(ARGV[1], ARGV[2], tonumber(ARGV[3]), KEYS[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9],
  ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16] or '')
