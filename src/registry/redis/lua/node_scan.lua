-- The instances held by node ARGV[2] among the user keys KEYS (then the group's `NS:due`, declared so that a
-- slot being moved refuses the whole call): listed (ARGV[5] = 'list'), or marked disconnected as of now (its
-- node stopped heartbeating). ARGV: ns, node, now_ms, grace_ms, mode.
-- Returns {app, user, id, value, s}….
local ns, node, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local prefix = ns .. ':u:'
local out = {}
for k = 1, #KEYS - 1 do
  local key = KEYS[k]
  local member = string.sub(key, #prefix + 1)
  local colon = string.find(member, ':', 1, true)
  local app, user = string.sub(member, 1, colon - 1), string.sub(member, colon + 1)
  -- A key of another kind under the prefix (written by something else) is passed over, not an error that
  -- would stop the whole scan.
  local all = redis.pcall('HGETALL', key)
  if type(all) ~= 'table' or all.err then
    all = {}
  end
  local s, _, _, r = user_fields(all)
  local last, first_due = num(s or '0'), nil
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'i:' then
      local f = parse(all[i + 1])
      if f[5] == node then
        local id = string.sub(all[i], 3)
        if ARGV[5] == 'list' then
          out[#out + 1] = {app, user, id, all[i + 1], 0}
        else
          f[5], f[6], f[7] = '', '', hex(now)
          local nv = format(f)
          last = next_seq(last, now)
          redis.call('HSET', key, all[i], nv, 's', hex(last))
          local d = due(f, tonumber(ARGV[4]))
          if not first_due or d < first_due then
            first_due = d
          end
          out[#out + 1] = {app, user, id, nv, last}
        end
      end
    end
  end
  if first_due then
    local nr = due_by(ns, member, first_due, r)
    if nr then
      redis.call('HSET', key, 'r', nr)
    end
  end
end
return out
