-- Marks instances disconnected, each if it is still attached to its connection (the connections a node saw
-- end meanwhile, in one call). KEYS: each one's user key (all in the group `ns`). ARGV: ns, now (hexadecimal),
-- now × 1024 (hexadecimal), now + grace (ms), then id, node, conn, member (APP:USER) for each key. Returns the
-- reply of `detach` for each, in order.

-- Marks instance `id` of the user at `key` disconnected if it is still attached to connection `conn` of `node`.
-- `now` and `floor` (the time in ms, × 1024) in hexadecimal, `due` (now + grace, ms) in decimal. Returns {0} or
-- {1, value, s} (s in hexadecimal).
local function detach(ns, key, id, node, conn, now, floor, due, member)
  local got = redis.call('HMGET', key, 'i:' .. id, 's', 'r')
  local v = got[1]
  if not v then
    return {0}
  end
  -- The value around its node, connection and disconnection time (fields 5 to 7), and the UserSig's expiry.
  local head, sig, n, c, tail = string.match(v, '^([^|]*|[^|]*|[^|]*|([^|]*))|([^|]*)|([^|]*)|[^|]*|(.*)$')
  if n ~= node or c ~= conn then
    return {0}
  end
  local nv = head .. '|||' .. now .. '|' .. tail
  local s = next_hex(got[2], floor)
  -- Due at the end of the grace, or when the UserSig expires if that is first.
  local sig_end = (num(sig) + 1) * 1000
  if sig_end < due then
    due = sig_end
  end
  local r = due_by(ns, member, due, got[3])
  if r then
    redis.call('HSET', key, 'i:' .. id, nv, 's', s, 'r', r)
  else
    redis.call('HSET', key, 'i:' .. id, nv, 's', s)
  end
  return {1, nv, s}
end

local ns, now, floor, due = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
for j, key in ipairs(KEYS) do
  local i = 1 + 4 * j
  out[#out + 1] = detach(ns, key, ARGV[i], ARGV[i + 1], ARGV[i + 2], now, floor, due, ARGV[i + 3])
end
return out
