-- Shared by every script. `NS` is the prefix of the user's group: the namespace on one Redis, `NS:{T}` on a
-- cluster (every key a script touches is in that group's slot). A user is one hash, `NS:u:APP:USER`: `s` is
-- the user's change number, `i:ID` an instance stored as
--   platform|login_ms|order|sig_expires_at|node|conn|disconnected_ms|ip|device
-- (numbers in hexadecimal to stay short: a hash of short values is stored compactly; node and conn empty while
-- disconnected, disconnected_ms empty while connected; device last, as it may hold `|`), and `k` the kicks
-- remembered, as `ID,reason,until_ms[,by];` records in the order they were made (one field, so reading a user
-- often kicked stays short; `by`, the platform of the login that made a policy kick, is absent from kicks by the
-- server and from records of earlier versions), and `n` how many (so adding one counts nothing). A user with
-- disconnected instances is in `NS:due` as APP:USER, scored by when its first is due, and `r` is that score (so
-- a disconnection that is due later writes no index); entries are removed lazily: the reaper looks at the user
-- when its score comes and finds what is due then. `e` is when the key expires (so only a change that needs the
-- key to live longer writes an expiry). `pb` and `pw`, after an instance Redis lost was put back: the change
-- number that put-back wrote and what the record said before it (see admit.lua). `a:ID`, once instance ID was
-- attached again (a resume, a put-back): the change that attached it to its connection (until then its login's,
-- its order; see attach.lua), removed with the instance (one an earlier version left behind goes at the user's
-- next login). Numbers kept in fields are hexadecimal.
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

-- Appends `records` (`ID,reason,until[,by];` each) to the kick records `k` (nil for none), of which there are `n`
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

-- The user's own fields in `all` (its HGETALL, as field, value, …): s, k, n, r, e, each nil if absent.
local function user_fields(all)
  local s, k, n, r, e
  for i = 1, #all, 2 do
    local field = all[i]
    if field == 's' then
      s = all[i + 1]
    elseif field == 'k' then
      k = all[i + 1]
    elseif field == 'n' then
      n = all[i + 1]
    elseif field == 'r' then
      r = all[i + 1]
    elseif field == 'e' then
      e = all[i + 1]
    end
  end
  return s, k, n, r, e
end

-- Makes sure the reaper looks at the user by `due` (ms): adds the user (`member`, APP:USER) to `NS:due` unless
-- its field `r` (nil for none) is already as early. Returns the new `r` to store, or nil if it stays.
local function due_by(ns, member, due, r)
  if r and num(r) <= due then
    return nil
  end
  redis.call('ZADD', ns .. ':due', due, member)
  return hex(due)
end

-- A user key lives at least until `keep` (ms): if its field `e` (nil for unknown) says it expires earlier, it is
-- given a minute more than that, so the changes of the next minute write no expiry. `existed` tells whether the
-- key was there before this change: a new key gets its first expiry; an old one's is only ever extended, so it
-- still covers what an older version asked. Call after the key is written.
local function extend(key, keep, e, existed)
  if e and num(e) >= keep then
    return
  end
  local t = keep + 60000
  if existed then
    redis.call('PEXPIREAT', key, t, 'GT')
  else
    redis.call('PEXPIREAT', key, t)
  end
  redis.call('HSET', key, 'e', hex(t))
end
