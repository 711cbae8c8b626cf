-- One rate-limit check over every counter of one request, atomically.
-- The same algorithm as ratelimit_core::store::evaluate (held equal by a
-- differential test): charge all conforming counters, or none.
--
-- KEYS[i]      the counters
-- ARGV[1]      "1" to charge, "0" to only look
-- ARGV[2]      the time in microseconds, or "" for the server's TIME
-- ARGV[3i]     counter i's increment: cost x emission interval (us)
-- ARGV[3i+1]   counter i's tolerance: burst x emission interval (us)
-- ARGV[3i+2]   "1" if counter i is a shadow rule (never blocks)
--
-- Returns {now, tat_1, ..., tat_n}: the time used and each counter's TAT
-- before the check (0 for an absent key). A TAT more than one tolerance
-- ahead is capped, and written back capped, as ratelimit_core::gcra does. Every value stays below 2^53, so
-- Lua's doubles hold them exactly.

local now
if ARGV[2] == '' then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
else
  now = tonumber(ARGV[2])
end

local out = {now}
local charged = {}
local capped = {}
local admit = true
for i = 1, #KEYS do
  local a = 3 * i
  local tat = tonumber(redis.call('GET', KEYS[i])) or 0
  out[i + 1] = tat
  local tolerance = tonumber(ARGV[a + 1])
  -- Never more than one tolerance ahead (a lowered quota, or a clock that
  -- stepped back): such a key counts as fully used, from now.
  if tat > now + tolerance then
    tat = now + tolerance
    capped[i] = tat
  end
  local new_tat = (tat > now and tat or now) + tonumber(ARGV[a])
  if new_tat - tolerance <= now then
    charged[i] = new_tat
  elseif ARGV[a + 2] ~= '1' then
    admit = false
  end
end

if ARGV[1] == '1' then
  for i = 1, #KEYS do
    local new_tat = (admit and charged[i]) or capped[i]
    if new_tat then
      -- The key expires exactly when it becomes equivalent to an absent one.
      -- Written as a plain integer, whatever way the server renders numbers.
      redis.call('SET', KEYS[i], string.format('%.0f', new_tat),
        'PX', math.ceil((new_tat - now) / 1000))
    end
  end
end
return out
