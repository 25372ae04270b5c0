-- Marks instances disconnected, each if it is still attached to its connection (the connections a node saw
-- end meanwhile, in one call). ARGV: now (hexadecimal), now × 1024 (hexadecimal), now + grace (ms), then for each
-- instance: its user key, its group's prefix `ns`, id, node, conn, member (APP:USER). KEYS: the user keys and
-- their group's `NS:due`, all in one slot; or, on a Redis Cluster, only the first, to route the call to its master (the script then
-- runs as `detach_across`, allowed keys of several slots of that master). Returns the reply of `detach` for each
-- instance, in order.

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

local now, floor, due = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- Every key is read before anything is written: a key whose slot is not on this node (it moved since the
-- caller looked) fails the call before it has changed anything, and the caller can try again elsewhere.
for i = 4, #ARGV, 6 do
  redis.call('EXISTS', ARGV[i], ARGV[i + 1] .. ':due')
end
local out = {}
for i = 4, #ARGV, 6 do
  out[#out + 1] = detach(ARGV[i + 1], ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now, floor, due, ARGV[i + 5])
end
return out
