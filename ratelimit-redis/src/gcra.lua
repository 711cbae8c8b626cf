-- One rate-limit check over every counter of one request, atomically.
-- The same algorithm as ratelimit_core::store::evaluate (held equal by a
-- differential test): charge all conforming counters, or none.
--
-- KEYS[i]        the counters
-- ARGV[1]        "1" to charge, "0" to only look, "2" to charge and reserve
-- then per counter i, s = 2 arguments ("0", "1") or s = 4 ("2"):
-- ARGV[s(i-1)+2] counter i's increment: cost x emission interval (us)
-- ARGV[s(i-1)+3] counter i's tolerance: burst x emission interval (us),
--                negated for a shadow counter (never blocks)
-- ARGV[s(i-1)+4] ("2" only) the emission interval (us)
-- ARGV[s(i-1)+5] ("2" only) units to reserve beyond the cost, granted as
--                far as they conform, and only when the counter then runs at
--                least half its tolerance ahead (ratelimit_core::gcra::extra_units)
-- ARGV[sn+2]     the time in microseconds; absent: the server's TIME
--
-- Returns how far each counter's TAT was ahead of the time before the check
-- (0 for an absent or rested key): a number for one counter, a list for
-- several. GCRA needs only these differences, so Rust evaluates the reply at
-- time 0. A TAT more than one tolerance ahead is capped, and written back
-- capped, as ratelimit_core::gcra does. Every value stays below 2^53, so
-- Lua's doubles hold them exactly, and the server renders them as plain
-- integers (%.17g).
--
-- Written for the server's CPU time, measured per call (tools/script-cost):
-- no table for one counter, no string.format or math.* calls, two
-- arguments per counter, the smallest reply.

local n = #KEYS
local mode = ARGV[1]
local s = mode == '2' and 4 or 2
local now = ARGV[s * n + 2]
if now then
  now = tonumber(now)
else
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end

local aheads = n > 1 and {} or nil
local only
local admit = true
local b = 0
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i])) or 0
  local ahead = tat > now and tat - now or 0
  if aheads then
    aheads[i] = ahead
  else
    only = ahead
  end
  local tolerance = tonumber(ARGV[b + 3])
  local shadow = tolerance < 0
  if shadow then
    tolerance = -tolerance
  end
  -- Never more than one tolerance ahead (a lowered quota, or a clock that
  -- stepped back): such a key counts as fully used, from now.
  if ahead > tolerance then
    ahead = tolerance
  end
  if ahead + ARGV[b + 2] > tolerance and not shadow then
    admit = false
  end
  b = b + s
end

if mode ~= '0' then
  b = 0
  for i = 1, n do
    local tolerance = tonumber(ARGV[b + 3])
    local shadow = tolerance < 0
    if shadow then
      tolerance = -tolerance
    end
    local ahead = aheads and aheads[i] or only
    local capped = ahead > tolerance
    if capped then
      ahead = tolerance
    end
    local charged = ahead + ARGV[b + 2]
    if admit and charged <= tolerance then
      ahead = charged
      if s == 4 and not shadow and charged * 2 >= tolerance then
        local want = tonumber(ARGV[b + 5])
        if want > 0 then
          local interval = tonumber(ARGV[b + 4])
          local free = tolerance - charged
          local fit = (free - free % interval) / interval
          if fit > want then
            fit = want
          end
          ahead = charged + fit * interval
        end
      end
    elseif not capped then
      ahead = nil
    end
    if ahead then
      -- Expires exactly when the key becomes equivalent to an absent one:
      -- PX = ceil(ahead / 1000), in integer arithmetic.
      local ms = ahead + 999
      redis.call('SET', KEYS[i], now + ahead, 'PX', (ms - ms % 1000) / 1000)
    end
    b = b + s
  end
end
return aheads or only
