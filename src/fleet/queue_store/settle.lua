-- What one delivery attempt decided for an entry: ack (delivered), retry (parked until due) or
-- bury (to the dead-letter stream). Acked and buried entries are XDELed at once, so the stream
-- holds only what is waiting or in delivery and never grows without bound.
--
-- KEYS  1 stream, 2 due, 3 dead, 4 bytes counter
-- ARGV  1 op (ack | retry | bury), 2 group, 3 id, 4 consumer, 5 parking consumer,
--       6 due ms, 7 attempts, 8 last error, 9 now ms
-- Returns 1 done, 0 not this consumer's any more (another instance took it over and settles it).

local stream, due, dead, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, group, id, me, parked = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function remove(e)
  redis.call('XACK', stream, group, id)
  redis.call('ZREM', due, id)
  if redis.call('XDEL', stream, id) == 1 and e then
    redis.call('DECRBY', bytes, string.len(field(e[2], 'd') or ''))
  end
end

local p = redis.call('XPENDING', stream, group, id, id, 1)
local owner = nil
if p[1] then owner = p[1][2] end

if op == 'ack' then
  -- Delivered is delivered, whoever holds the entry now.
  remove(redis.call('XRANGE', stream, id, id)[1])
  return 1
end
if owner ~= me then return 0 end

if op == 'retry' then
  redis.call('XCLAIM', stream, group, parked, 0, id, 'JUSTID')
  redis.call('ZADD', due, ARGV[6], id)
  return 1
end

-- bury: the dead letter keeps the lead and is still counted in bytes (max_bytes bounds both).
local e = redis.call('XRANGE', stream, id, id)[1]
if e then
  local d = field(e[2], 'd') or ''
  redis.call('XADD', dead, '*', 'd', d, 'a', field(e[2], 'a') or '0', 'n', ARGV[7], 'l', ARGV[8], 't', ARGV[9])
  redis.call('XACK', stream, group, id)
  redis.call('ZREM', due, id)
  redis.call('XDEL', stream, id)
else
  redis.call('XACK', stream, group, id)
  redis.call('ZREM', due, id)
end
return 1
