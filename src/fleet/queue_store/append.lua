-- Accept one lead into a fleet queue, atomically: the idempotency lookup, the max_bytes check,
-- the XADD, the byte count and the idempotency key are one step, so no crash or failover can
-- leave a key without its entry or an entry counted twice.
--
-- KEYS  1 stream, 2 bytes counter, 3 idempotency key (optional)
-- ARGV  1 encoded lead, 2 accepted-at ms, 3 max_bytes, 4 receipt, 5 idempotency TTL ms
-- Returns {0, receipt} stored, {1, first receipt} a duplicate, {2, ''} full.

if KEYS[3] then
  local first = redis.call('GET', KEYS[3])
  if first then return {1, first} end
end
local size = string.len(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if used + size > tonumber(ARGV[3]) then return {2, ''} end
redis.call('XADD', KEYS[1], '*', 'd', ARGV[1], 'a', ARGV[2], 'f', ARGV[2])
redis.call('INCRBY', KEYS[2], size)
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5]) end
return {0, ARGV[4]}
