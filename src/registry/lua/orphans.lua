-- Marks disconnected, in batches, the instances a node that stopped heartbeating held; forgets the node once
-- none is left. ARGV: ns, node, now_ms, grace_ms, batch. Returns {app, user, id, value, s}….
local ns, node, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local set = ns .. ':n:' .. node
local out = {}
for _, m in ipairs(redis.call('SPOP', set, ARGV[5])) do
  local app, id, user = split_member(m)
  local key = ns .. ':u:' .. app .. ':' .. user
  local v = redis.call('HGET', key, 'i:' .. id)
  if v then
    local f = parse(v)
    if f[5] == node then
      f[5], f[6], f[7] = '', '', ARGV[3]
      local nv = format(f)
      redis.call('HSET', key, 'i:' .. id, nv)
      redis.call('ZADD', ns .. ':reap', due(f, tonumber(ARGV[4])), m)
      out[#out + 1] = {app, user, id, nv, next_seq(key, now)}
    end
  end
end
if redis.call('SCARD', set) == 0 then
  redis.call('ZREM', ns .. ':nodes', node)
end
return out
