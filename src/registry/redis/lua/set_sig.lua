-- Sets an instance's UserSig expiry (renew_sig). KEYS: the user's key, its group's `NS:due`. ARGV: ns, id, sig_expires_at (hexadecimal), member
-- (APP:USER), grace_ms, keep key until (ms). Returns 0 if the instance is gone.
local ns, key = ARGV[1], KEYS[1]
local got = redis.call('HMGET', key, 'i:' .. ARGV[2], 'r', 'e')
if not got[1] then
  return 0
end
local f = parse(got[1])
f[4] = ARGV[3]
local set = {'i:' .. ARGV[2], format(f)}
-- A disconnected instance is due by its new expiry (if that is first).
if f[5] == '' then
  local r = due_by(ns, ARGV[4], due(f, tonumber(ARGV[5])), got[2])
  if r then
    set[3], set[4] = 'r', r
  end
end
redis.call('HSET', key, unpack(set))
extend(key, tonumber(ARGV[6]), got[3], true)
return 1
