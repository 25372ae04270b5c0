-- Marks instances disconnected, each if it is still attached to its connection (the connections a node saw
-- end meanwhile, in one call). ARGV: ns, now (hexadecimal), now × 1024 (hexadecimal), now + grace (ms), then
-- key, id, node, conn, member for each. Returns the reply of `detach` for each, in order.
local ns, now, floor, due_by = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV, 5 do
  out[#out + 1] = detach(ns, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], now, floor, due_by, ARGV[i + 4])
end
return out
