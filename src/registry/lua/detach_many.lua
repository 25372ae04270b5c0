-- Marks instances disconnected, each if it is still attached to its connection (the connections a node saw
-- end meanwhile, in one call). ARGV: ns, now (hexadecimal), now × 1024 (hexadecimal), now + grace (ms), then
-- key, id, node, conn, member for each. Returns the reply of `detach` for each, in order.

-- Marks instance `id` of the user at `key` disconnected if it is still attached to connection `conn` of `node`.
-- `now` and `floor` (the time in ms, × 1024) in hexadecimal, `due` (now + grace, ms) in decimal. Returns {0} or
-- {1, value, s} (s in hexadecimal).
local function detach(ns, key, id, node, conn, now, floor, due_by, member)
  local got = redis.call('HMGET', key, 'i:' .. id, 's')
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
  redis.call('HSET', key, 'i:' .. id, nv, 's', s)
  -- Due at the end of the grace, or when the UserSig expires if that is first (formatted only then).
  local sig_end = (num(sig) + 1) * 1000
  if sig_end < tonumber(due_by) then
    due_by = sig_end
  end
  redis.call('ZADD', ns .. ':reap', due_by, member)
  return {1, nv, s}
end

local ns, now, floor, due_by = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV, 5 do
  out[#out + 1] = detach(ns, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], now, floor, due_by, ARGV[i + 4])
end
return out
