-- Shared by every script. A user is one hash, `NS:u:APP:USER`: `s` is the user's change number, `i:ID` an
-- instance stored as
--   platform|login_ms|order|sig_expires_at|node|conn|disconnected_ms|ip|device
-- (numbers in hexadecimal to stay short: a hash of short values is stored compactly; node and conn empty while
-- disconnected, disconnected_ms empty while connected; device last, as it may hold `|`), and `k` the kicks
-- remembered, as `ID,reason,until_ms;` records in the order they were made (one field, so reading a user often
-- kicked stays short), and `n` how many (so adding one counts nothing). Disconnected instances are in
-- `NS:reap` as APP:ID:USER, scored by when due.
local function hex(n)
  return string.format('%x', n)
end

local function num(s)
  return tonumber(s, 16)
end

local function parse(v)
  return {string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')}
end

local function format(f)
  return table.concat(f, '|', 1, 9)
end

-- An instance of the user at `key`: its stored value, its fields, and the user's change number; nil if none.
local function lookup(key, id)
  local got = redis.call('HMGET', key, 'i:' .. id, 's')
  if not got[1] then
    return nil
  end
  return got[1], parse(got[1]), num(got[2] or '0')
end

-- The user's next change number after `last`: above it, and at least the time in ms × 1024.
local function next_seq(last, now)
  return math.max(last + 1, now * 1024)
end

-- The same in hexadecimal, from `last` (hexadecimal, or nil for none) and `floor`, the time in ms × 1024 that the
-- node passes formatted: most changes then format no number (Lua's `string.format` is a large part of a
-- script's cost).
local function next_hex(last, floor)
  if last and num(last) >= num(floor) then
    return hex(num(last) + 1)
  end
  return floor
end

-- When a disconnected instance is due: the end of its grace, or its UserSig's expiry, whichever is first.
local function due(f, grace)
  return math.min(num(f[7]) + grace, (num(f[4]) + 1) * 1000)
end

-- Appends `records` (`ID,reason,until;` each) to the kick records `k` (nil for none), of which there are `n`
-- (the user's field `n`; nil if not kept yet, as by a version before it: then they are counted). Past `max`
-- records, the oldest go, down to half of `max`, as in the memory registry; until then an old record is
-- harmless: a record is only believed before its time. Returns the records and their number.
local function remember_kicks(k, n, records, max)
  k = k or ''
  n = tonumber(n) or select(2, string.gsub(k, ';', ''))
  for _, r in ipairs(records) do
    if n >= max then
      local drop = n + 1 - math.floor(max / 2)
      local at = 0
      for _ = 1, drop do
        at = string.find(k, ';', at + 1, true)
      end
      k = string.sub(k, at + 1)
      n = n - drop
    end
    k = k .. r
    n = n + 1
  end
  return k, n
end

local function split_member(m)
  local a = string.find(m, ':', 1, true)
  local b = string.find(m, ':', a + 1, true)
  return string.sub(m, 1, a - 1), string.sub(m, a + 1, b - 1), string.sub(m, b + 1)
end
