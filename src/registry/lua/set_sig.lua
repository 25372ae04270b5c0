-- Sets an instance's UserSig expiry (renew_sig). ARGV: ns, key, id, sig_expires_at (hexadecimal), member,
-- grace_ms, keep key until (ms). Returns 0 if the instance is gone.
local ns, key = ARGV[1], ARGV[2]
local v = redis.call('HGET', key, 'i:' .. ARGV[3])
if not v then
  return 0
end
local f = parse(v)
f[4] = ARGV[4]
redis.call('HSET', key, 'i:' .. ARGV[3], format(f))
if f[5] == '' then
  redis.call('ZADD', ns .. ':reap', due(f, tonumber(ARGV[6])), ARGV[5])
end
redis.call('PEXPIREAT', key, ARGV[7], 'GT')
return 1
