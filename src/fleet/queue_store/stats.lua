-- What /-/queues and the gauges show, in one round trip and without moving a lead's body:
-- entries waiting or in delivery, bytes counted at accept, dead letters, and when the entry at
-- the head of the stream was accepted (-1: empty).
--
-- KEYS  1 stream, 2 bytes counter, 3 dead

local depth = redis.call('XLEN', KEYS[1])
local bytes = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local dead = redis.call('XLEN', KEYS[3])
local oldest = -1
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if head then
  for i = 1, #head[2], 2 do
    if head[2][i] == 'a' then oldest = tonumber(head[2][i + 1]) or -1 end
  end
end
return {depth, bytes, dead, oldest}
