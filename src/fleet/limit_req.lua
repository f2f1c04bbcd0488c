-- nginx limit_req for all fleet limits of one request, atomically, on Redis's clock.
-- The same integer arithmetic and the same several-limits rule as src/limits/limiter.rs
-- (`decide`): each limit is looked up in order, only the last one charged by its lookup; the
-- first reject stops the walk and nothing is charged (a fresh key met before it keeps its new
-- empty entry, as in nginx); a dry-run reject passes uncharged; if all pass, the others are
-- charged (nginx's account phase) and each answer carries the excess it leaves.
--
-- KEYS[i]  the state of limit i for this request's key: "EXCESS LAST" (milli-requests, ms).
-- ARGV     per limit: rate_m, burst_m, dry_run (1 or 0).
-- Returns  {now, then per limit: code, excess, retry_after_ms, blocked_ms}
--          code 1 passed (charged), 2 rejected, 3 dry-run rejected, 4 not reached.
--          blocked_ms (rejects): how long from now the key stays rejected if nothing but time
--          changes it; 0 when the clock went backwards and no such promise can be made.
--
-- State expires (PXAT) when the local limiter would forget it: idle 60 s and fully drained.
-- Lua numbers are doubles: every value here stays below 2^53 (rate_m <= 1e10, and `ms` is
-- bounded by the expiry), so the arithmetic is exact.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local RECLAIM_IDLE_MS = 60000

local function fmt(x)
  return string.format('%.0f', x)
end

local function expire_at(excess, last, rate)
  local drain = math.ceil(excess * 1000 / rate)
  if drain < RECLAIM_IDLE_MS then drain = RECLAIM_IDLE_MS end
  return last + drain
end

local function store(key, excess, last, rate)
  redis.call('SET', key, fmt(excess) .. ' ' .. fmt(last), 'PXAT', fmt(expire_at(excess, last, rate)))
end

local code, exc, retry, blocked = {}, {}, {}, {}
-- Per limit that passed its lookup: the state read (nil = fresh key) and its elapsed time.
local seen, old_e, old_l, elapsed = {}, {}, {}, {}
local rejected = nil
-- Every limit answers "not reached" unless the walk gets to it (a nil would end the reply).
for i = 1, n do
  code[i], exc[i], retry[i], blocked[i] = 4, 0, 0, 0
end

for i = 1, n do
  local rate = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local dry = ARGV[3 * i] == '1'
  local v = redis.pcall('GET', KEYS[i])
  local e0, l0
  if type(v) == 'string' then
    local a, b = string.match(v, '^(%d+) (%d+)$')
    e0, l0 = tonumber(a), tonumber(b)
  end
  if e0 == nil then
    -- A fresh key (or one we cannot read: it is overwritten below).
    seen[i] = 'fresh'
  else
    local ms = now - l0
    if ms < -60000 then ms = 1 elseif ms < 0 then ms = 0 end
    local e = e0 + 1000 - math.floor(rate * ms / 1000)
    if e < 0 then e = 0 end
    if e > burst then
      local r = math.ceil((e - burst) * 1000 / rate)
      local b = 0
      if now >= l0 then
        -- First time t with floor(rate * (t - l0) / 1000) >= e0 + 1000 - burst.
        b = l0 + math.ceil((e0 + 1000 - burst) * 1000 / rate) - now
      end
      if dry then
        code[i], retry[i] = 3, r
      else
        code[i], exc[i], retry[i], blocked[i] = 2, e, r, b
        rejected = i
        break
      end
    else
      seen[i], old_e[i], old_l[i], elapsed[i] = 'found', e0, l0, ms
      exc[i] = e
    end
  end
end

if rejected then
  for i = 1, rejected - 1 do
    if seen[i] == 'fresh' then
      local rate = tonumber(ARGV[3 * i - 2])
      store(KEYS[i], 0, now, rate)
    end
  end
else
  for i = 1, n do
    if seen[i] then
      local rate = tonumber(ARGV[3 * i - 2])
      local e, last
      if seen[i] == 'fresh' then
        -- The last limit's lookup charges a fresh key nothing; an earlier one's entry
        -- {0, now} is then accounted: 0 + 1000 - 0.
        if i == n then e = 0 else e = 1000 end
        last = now
      else
        e = exc[i]
        last = old_l[i]
        if elapsed[i] ~= 0 then last = now end
      end
      store(KEYS[i], e, last, rate)
      code[i], exc[i] = 1, e
    end
  end
end

local out = {now}
for i = 1, n do
  out[#out + 1] = code[i]
  out[#out + 1] = exc[i]
  out[#out + 1] = retry[i]
  out[#out + 1] = blocked[i]
end
return out
