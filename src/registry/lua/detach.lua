-- Marks an instance disconnected if it is still attached to the connection. ARGV: ns, key, id, node, conn,
-- now (hexadecimal), now × 1024 (hexadecimal), now + grace (ms), member. Returns {0} or {1, value, s}.
return detach(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
