-- Shared by every script. An instance is stored in its user's hash (`NS:u:APP:USER`) under `i:ID` as
--   platform|login_ms|order|sig_expires_at|node|conn|disconnected_ms|ip|device
-- (node and conn empty while disconnected, disconnected_ms empty while connected, device last: it may hold `|`).
-- `s` is the user's change number; `k:ID` is a kick remembered as reason|until_ms. An instance's member in the
-- node sets (`NS:n:NODE`, connected ones) and the reaper's index (`NS:reap`, disconnected ones, scored by when
-- they are due) is APP:ID:USER.
local function parse(v)
  local f, pos = {}, 1
  for i = 1, 8 do
    local e = string.find(v, '|', pos, true)
    f[i] = string.sub(v, pos, e - 1)
    pos = e + 1
  end
  f[9] = string.sub(v, pos)
  return f
end

local function format(f)
  return table.concat(f, '|', 1, 9)
end

-- The user's next change number: above the last, and at least the time in ms × 1024.
local function next_seq(key, now)
  local last = tonumber(redis.call('HGET', key, 's') or '0')
  local s = math.max(last + 1, now * 1024)
  redis.call('HSET', key, 's', string.format('%.0f', s))
  return s
end

-- When a disconnected instance is due: the end of its grace, or its UserSig's expiry, whichever is first.
local function due(f, grace)
  return math.min(tonumber(f[7]) + grace, (tonumber(f[4]) + 1) * 1000)
end

local function unindex(ns, f, member)
  if f[5] ~= '' then
    redis.call('SREM', ns .. ':n:' .. f[5], member)
  else
    redis.call('ZREM', ns .. ':reap', member)
  end
end

local function keep_until(key, at)
  redis.call('PEXPIREAT', key, at, 'NX')
  redis.call('PEXPIREAT', key, at, 'GT')
end

local function split_member(m)
  local a = string.find(m, ':', 1, true)
  local b = string.find(m, ':', a + 1, true)
  return string.sub(m, 1, a - 1), string.sub(m, a + 1, b - 1), string.sub(m, b + 1)
end
