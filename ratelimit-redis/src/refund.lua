-- Gives back what a check charged in this slot when another slot of the
-- same check (on Redis Cluster) denied it.
--
-- KEYS[i]    the counters the check charged
-- ARGV[1]    the time in microseconds, or "" for the server's TIME
-- ARGV[i+1]  the increment counter i was charged (us)
--
-- A counter is stored as gcra.lua stores it; its revision is kept.

local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
else
  now = tonumber(ARGV[1])
end

for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  local tat = value and tonumber(value)
  local revision = 0
  if tat and tat < 0 then
    tat = tonumber(string.sub(value, 2, -4))
    revision = tonumber(string.sub(value, -3)) or 0
  end
  if tat then
    local back = tat - tonumber(ARGV[i + 1])
    if back > now then
      local px = math.ceil((back - now) / 1000)
      if revision == 0 then
        redis.call('SET', KEYS[i], string.format('%.0f', back), 'PX', px)
      else
        redis.call('SET', KEYS[i], string.format('-%.0f%03d', back, revision), 'PX', px)
      end
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return #KEYS
