-- Removes the disconnected instances that are due, of users whose time in `NS:due` has come (and of entries an
-- earlier version left in `NS:reap`, APP:ID:USER per instance). KEYS: `NS:due`. ARGV: ns, now_ms, grace_ms, at
-- most this many users. Returns {users looked at, {app, user, id, value, expired (1/0), s}…} (s only counts for
-- expired ones).
local ns, now, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local index = KEYS[1]
local users = redis.call('ZRANGEBYSCORE', index, '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])
if #users > 0 then
  redis.call('ZREM', index, unpack(users))
end
local legacy = redis.call('ZRANGEBYSCORE', ns .. ':reap', '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])
if #legacy > 0 then
  redis.call('ZREM', ns .. ':reap', unpack(legacy))
  for _, m in ipairs(legacy) do
    local app, _, user = split_member(m)
    users[#users + 1] = app .. ':' .. user
  end
end
local out = {}
for _, m in ipairs(users) do
  local colon = string.find(m, ':', 1, true)
  local app, user = string.sub(m, 1, colon - 1), string.sub(m, colon + 1)
  local key = ns .. ':u:' .. m
  local all = redis.call('HGETALL', key)
  local changed = user_fields(all)
  local last, del, next_due, expired_any = num(changed or '0'), {}, nil, false
  for i = 1, #all, 2 do
    local field = all[i]
    if string.sub(field, 1, 2) == 'i:' then
      local f = parse(all[i + 1])
      if f[5] == '' then
        local expired = math.floor(now / 1000) > num(f[4])
        if expired or now >= num(f[7]) + grace then
          del[#del + 1] = field
          del[#del + 1] = 'a:' .. string.sub(field, 3)
          local s = 0
          if expired then
            last = next_seq(last, now)
            s = last
            expired_any = true
          end
          out[#out + 1] = {app, user, string.sub(field, 3), all[i + 1], expired and 1 or 0, s}
        else
          local d = due(f, grace)
          if not next_due or d < next_due then
            next_due = d
          end
        end
      end
    end
  end
  if #all > 0 then
    -- The user comes again when its next disconnected instance is due; with none, `r` goes.
    local set = {}
    if next_due then
      redis.call('ZADD', index, next_due, m)
      set[#set + 1] = 'r'
      set[#set + 1] = hex(next_due)
    else
      del[#del + 1] = 'r'
    end
    if expired_any then
      set[#set + 1] = 's'
      set[#set + 1] = hex(last)
    end
    if #del > 0 then
      redis.call('HDEL', key, unpack(del))
    end
    if #set > 0 then
      redis.call('HSET', key, unpack(set))
    end
  end
end
return {#users, out}
