-- Gives back what a check charged in this slot when another slot of the
-- same check (on Redis Cluster) denied it.
--
-- KEYS[i]    the counters the check charged
-- ARGV[1]    the time in microseconds, or "" for the server's TIME
-- ARGV[i+1]  the increment counter i was charged (us)
--
-- A counter holds its TAT's digits followed by three digits of its rule
-- revision (see gcra.lua); the revision is kept.

local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
else
  now = tonumber(ARGV[1])
end

for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  local tat = value and tonumber(string.sub(value, 1, -4))
  if tat then
    local back = tat - tonumber(ARGV[i + 1])
    if back > now then
      redis.call('SET', KEYS[i], string.format('%.0f', back) .. string.sub(value, -3),
        'PX', math.ceil((back - now) / 1000))
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return #KEYS
