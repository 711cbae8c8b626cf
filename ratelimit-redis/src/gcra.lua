-- One rate-limit check over every counter of one request, atomically.
-- The same algorithm as ratelimit_core::store::evaluate (held equal by a
-- differential test): charge all conforming counters, or none.
--
-- KEYS[i]        the counters
-- ARGV[1]        the mode: what to do, and s, the arguments per counter:
--                "0" look, "1" charge (s = 2); "2" charge and reserve
--                (s = 4); "5" look, "6" charge, "7" charge and reserve (s = 7)
-- then per counter i, from b = s(i-1) + 1:
-- ARGV[b+1]      the increment: cost x emission interval (us)
-- ARGV[b+2]      the tolerance: burst x emission interval (us), negated for
--                a shadow counter (never blocks)
-- ARGV[b+3]      (s >= 4) the emission interval (us)
-- ARGV[b+4]      (s >= 4) units to reserve beyond the cost, granted as far
--                as they conform, and only when the counter then runs at
--                least half its tolerance ahead (ratelimit_core::gcra::extra_units)
-- ARGV[b+5]      (s = 7) the rule's revision (0 to 999)
-- ARGV[b+6]      (s = 7) the previous quota's emission interval (us), 0 if none
-- ARGV[b+7]      (s = 7) the cap: the furthest ahead a counter is read (us)
-- ARGV[sn+2]     the time in microseconds; absent: the server's TIME
--
-- A counter holds its TAT, as an integer, when charged under revision 0 of
-- its rule (ratelimit_core::gcra::Lineage), the rule as first set; under
-- another revision r, '-' then the TAT's digits then r in three digits (a
-- negative integer, so Redis still stores it as one). With s < 7 the
-- revision is 0, there is no previous quota and the cap is the tolerance.
-- A counter of the previous revision has its lead converted to the current
-- interval, ceil(lead x interval / previous), in doubles as Rust
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
-- no table for one counter, no string work for a rule that never changed,
-- the smallest reply.

local n = #KEYS
local mode = ARGV[1]
local s = 2
if mode == '2' then
  s = 4
elseif mode > '4' then
  s = 7
end
local charge = mode ~= '0' and mode ~= '5'
local reserve = mode == '2' or mode == '7'
local now = ARGV[s * n + 2]
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
local b = 1
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
    local tat = tonumber(value) or 0
    local stored = 0
    if tat < 0 then
      -- Charged under a revision other than 0: '-', the TAT, the revision.
      tat = tonumber(string.sub(value, 2, -4)) or 0
      stored = tonumber(string.sub(value, -3)) or -1
    end
    if tat > now then
      ahead = tat - now
      local cap = tolerance
      local revision = 0
      if s == 7 then
        revision = tonumber(ARGV[b + 5])
        cap = tonumber(ARGV[b + 7])
      end
      if stored ~= revision then
        local previous = s == 7 and tonumber(ARGV[b + 6]) or 0
        if previous > 0 and stored == (revision + 999) % 1000 then
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

if charge then
  b = 1
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
      if reserve and not shadow and charged * 2 >= tolerance then
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
      local px = (ms - ms % 1000) / 1000
      local revision = s == 7 and tonumber(ARGV[b + 5]) or 0
      if revision == 0 then
        redis.call('SET', KEYS[i], now + ahead, 'PX', px)
      else
        redis.call('SET', KEYS[i], string.format('-%.0f%03d', now + ahead, revision), 'PX', px)
      end
    end
    b = b + s
  end
end
return aheads or only
