-- A straightforward GCRA check over every key of a request, all or nothing:
-- the yardstick the project's own script (ratelimit-redis/src/gcra.lua) is
-- measured against. GET each key, read TIME, test, SET ... PX each charged
-- key; return whether admitted, the retry time and the remaining count.
--
-- KEYS[i]    the counters
-- ARGV[2i-1] counter i's emission interval (us)
-- ARGV[2i]   counter i's tolerance (us)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local new_tats = {}
local allowed = true
local retry_after = 0
local remaining = math.huge
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  tat = math.max(tat, now)
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at > now then
    allowed = false
    retry_after = math.max(retry_after, allow_at - now)
  else
    remaining = math.min(remaining, math.floor((now - allow_at) / interval))
  end
  new_tats[i] = new_tat
end
if not allowed then
  return {0, math.ceil(retry_after / 1000), 0}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]),
    'PX', math.ceil((new_tats[i] - now) / 1000))
end
return {1, 0, remaining}
