-- Hand entries of a fleet queue to one consumer (this instance), in this order: retries that
-- are due, abandoned entries, new ones. Abandoned: pending under a consumer that is gone (not
-- in the live list: its instance's heartbeat expired or it was restarted as a new consumer)
-- and idle for the grace, or pending under any consumer longer than the visibility timeout.
-- With a fleet pace, one token per entry is taken from a GCRA bucket (burst 0, Redis's clock),
-- and only when an entry is handed out.
--
-- KEYS  1 stream, 2 due (zset: retry id -> due ms), 3 pace (theoretical arrival time, us)
-- ARGV  1 group, 2 consumer, 3 how many, 4 visibility ms, 5 pace interval us (0: no pace),
--       6 look for abandoned entries (1/0), 7 the parking consumer of retries,
--       8 grace ms for a gone consumer's entries, 9 live list given (1/0), 10.. live consumers
-- Returns {0, 0, then per entry: id, lead, age-from ms, attempts made}
--         {1, wait ms}: no pace token yet.
-- Attempts come from the group's delivery counter: XREADGROUP sets it to 1, every XCLAIM that
-- hands an entry out adds one, parking a retry (JUSTID) adds none; so attempts made = count - 1,
-- a delivery cut short by a crash included.

local stream, due, pace = KEYS[1], KEYS[2], KEYS[3]
local group, me = ARGV[1], ARGV[2]
local want = tonumber(ARGV[3])
local vis = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])
local takeover = ARGV[6] == '1'
local parked = ARGV[7]
local grace = tonumber(ARGV[8])
local live = nil
if ARGV[9] == '1' then
  live = {}
  for i = 10, #ARGV do live[ARGV[i]] = true end
end

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)

local tat = 0
if interval > 0 then
  tat = tonumber(redis.call('GET', pace) or '0') or 0
  if tat > now_us then return {1, math.ceil((tat - now_us) / 1000)} end
  want = 1
end

-- A Redis restarted without its data lost the group too: make it again (an error when it exists).
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')

local out = {0, 0}
local got = 0
local function push(id, fields, attempts)
  local d, f = '', '0'
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then d = fields[i + 1] elseif fields[i] == 'f' then f = fields[i + 1] end
  end
  out[#out + 1] = id
  out[#out + 1] = d
  out[#out + 1] = f
  out[#out + 1] = attempts
  got = got + 1
end
local function claimed(reply)
  return type(reply[1]) == 'table' and type(reply[1][2]) == 'table'
end

if got < want then
  local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now_ms, 'LIMIT', 0, want - got)
  for _, id in ipairs(ids) do
    redis.call('ZREM', due, id)
    local c = redis.call('XCLAIM', stream, group, me, 0, id)
    if claimed(c) then
      local p = redis.call('XPENDING', stream, group, id, id, 1)
      local n = 1
      if p[1] then n = tonumber(p[1][4]) end
      push(id, c[1][2], n - 1)
    end
  end
end

if got < want and takeover then
  local consumers = redis.call('XINFO', 'CONSUMERS', stream, group)
  for _, c in ipairs(consumers) do
    local name, pending, idle = nil, 0, 0
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1]
      elseif c[i] == 'pending' then pending = c[i + 1]
      elseif c[i] == 'idle' then idle = c[i + 1] end
    end
    -- A consumer gone with nothing pending (every restart is a new consumer), or idle for a
    -- day with nothing pending: forget it, so consumers do not pile up.
    local gone = live and not live[name] and idle > grace
    if name and name ~= me and name ~= parked and pending == 0 and (gone or idle > 86400000) then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    end
    if name and name ~= parked and pending > 0 and got < want then
      local min_idle = vis
      if live and name ~= me and not live[name] and grace < vis then min_idle = grace end
      local ps = redis.call('XPENDING', stream, group, 'IDLE', min_idle, '-', '+', want - got, name)
      for _, p in ipairs(ps) do
        local e = redis.call('XCLAIM', stream, group, me, min_idle, p[1])
        if claimed(e) then push(p[1], e[1][2], tonumber(p[4])) end
      end
    end
  end
end

if got < want then
  local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', want - got, 'STREAMS', stream, '>')
  if r and r[1] then
    for _, e in ipairs(r[1][2]) do push(e[1], e[2], 0) end
  end
end

if got > 0 and interval > 0 then
  local base = tat
  if base < now_us then base = now_us end
  local next_at = base + interval * got
  redis.call('SET', pace, string.format('%.0f', next_at), 'PX', math.ceil((next_at - now_us) / 1000) + 1000)
end
return out
