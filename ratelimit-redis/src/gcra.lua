-- One rate-limit check over every counter of one request, atomically.
-- The same algorithm as ratelimit_core::store::evaluate (held equal by a
-- differential test): charge all conforming counters, or none.
--
-- KEYS[i]        the counters
-- ARGV[1]        "1" to charge, "0" to only look, "2" to charge and reserve
-- ARGV[2]        s, the arguments per counter: 2, 4 or 7
-- then per counter i, from b = s(i-1) + 2:
-- ARGV[b+1]      the increment: cost x emission interval (us)
-- ARGV[b+2]      the tolerance: burst x emission interval (us), negated for
--                a shadow counter (never blocks)
-- ARGV[b+3]      (s >= 4) the emission interval (us)
-- ARGV[b+4]      (s >= 4) units to reserve beyond the cost, granted as far
--                as they conform, and only when the counter then runs at
--                least half its tolerance ahead (ratelimit_core::gcra::extra_units)
-- ARGV[b+5]      (s = 7) the rule's revision, three digits
-- ARGV[b+6]      (s = 7) the previous quota's emission interval (us), 0 if none
-- ARGV[b+7]      (s = 7) the cap: the furthest ahead a counter is read (us)
-- ARGV[sn+3]     the time in microseconds; absent: the server's TIME
--
-- A counter holds its TAT's digits followed by three digits of the rule
-- revision it was charged under (ratelimit_core::gcra::Lineage). With
-- s < 7 the revision is 000, there is no previous quota and the cap is the
-- tolerance. A counter of the previous revision has its lead converted to
-- the current interval, ceil(lead x interval / previous), in doubles as Rust
-- computes it (ratelimit_core::gcra::convert_lead); one of an older revision
-- is read as it is. Every lead is capped at the cap; a capped counter is
-- written back as read, with the current revision, even when the check is
-- denied (and nothing else is written on a denial).
--
-- Returns how far each counter's TAT is ahead of the time before the check,
-- as read (0 for an absent or rested key): a number for one counter, a list
-- for several. GCRA needs only these differences, so Rust evaluates the
-- reply at time 0. Every value stays below 2^53, so Lua's doubles hold
-- them exactly.
--
-- Written for the server's CPU time, measured per call (tools/script-cost):
-- no table for one counter, few calls, the smallest reply.

local n = #KEYS
local mode = ARGV[1]
local s = tonumber(ARGV[2])
local now = ARGV[s * n + 3]
if now then
  now = tonumber(now)
else
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end

local aheads = n > 1 and {} or nil
local rewrite = n > 1 and {} or nil
local only, only_rewrite
local admit = true
local b = 2
for i = 1, n do
  local tolerance = tonumber(ARGV[b + 2])
  local shadow = tolerance < 0
  if shadow then
    tolerance = -tolerance
  end
  local ahead = 0
  local capped = false
  local value = redis.call('GET', KEYS[i])
  if value then
    local tat = tonumber(string.sub(value, 1, -4)) or 0
    if tat > now then
      ahead = tat - now
      local cap = tolerance
      local revision = '000'
      if s == 7 then
        revision = ARGV[b + 5]
        cap = tonumber(ARGV[b + 7])
      end
      local stored = string.sub(value, -3)
      if stored ~= revision then
        local previous = s == 7 and tonumber(ARGV[b + 6]) or 0
        if previous > 0 and tonumber(stored) == (tonumber(revision) + 999) % 1000 then
          local interval = tonumber(ARGV[b + 3])
          if interval ~= previous then
            ahead = math.ceil(ahead * interval / previous)
          end
        end
      end
      if ahead > cap then
        ahead = cap
        capped = true
      end
    end
  end
  if aheads then
    aheads[i] = ahead
    rewrite[i] = capped
  else
    only = ahead
    only_rewrite = capped
  end
  if ahead + ARGV[b + 1] > tolerance and not shadow then
    admit = false
  end
  b = b + s
end

if mode ~= '0' then
  b = 2
  for i = 1, n do
    local tolerance = tonumber(ARGV[b + 2])
    local shadow = tolerance < 0
    if shadow then
      tolerance = -tolerance
    end
    local ahead, write
    if aheads then
      ahead, write = aheads[i], rewrite[i]
    else
      ahead, write = only, only_rewrite
    end
    local charged = ahead + ARGV[b + 1]
    if admit and charged <= tolerance then
      write = true
      ahead = charged
      if mode == '2' and not shadow and charged * 2 >= tolerance then
        local want = tonumber(ARGV[b + 4])
        if want > 0 then
          local interval = tonumber(ARGV[b + 3])
          local free = tolerance - charged
          local fit = (free - free % interval) / interval
          if fit > want then
            fit = want
          end
          ahead = charged + fit * interval
        end
      end
    end
    if write then
      -- Expires exactly when the key becomes equivalent to an absent one:
      -- PX = ceil(ahead / 1000), in integer arithmetic.
      local ms = ahead + 999
      local revision = s == 7 and ARGV[b + 5] or '000'
      redis.call('SET', KEYS[i], string.format('%.0f', now + ahead) .. revision,
        'PX', (ms - ms % 1000) / 1000)
    end
    b = b + s
  end
end
return aheads or only
