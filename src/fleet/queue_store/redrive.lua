-- Dead letters back into the queue, oldest first, a batch per call (the caller loops) so Redis
-- is never blocked long. Each gets a new entry: attempts and age start afresh.
--
-- KEYS  1 dead, 2 stream
-- ARGV  1 now ms, 2 batch size
-- Returns how many were moved.

local es = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
for _, e in ipairs(es) do
  local d, a = '', '0'
  for i = 1, #e[2], 2 do
    if e[2][i] == 'd' then d = e[2][i + 1] elseif e[2][i] == 'a' then a = e[2][i + 1] end
  end
  redis.call('XADD', KEYS[2], '*', 'd', d, 'a', a, 'f', ARGV[1])
  redis.call('XDEL', KEYS[1], e[1])
end
return #es
