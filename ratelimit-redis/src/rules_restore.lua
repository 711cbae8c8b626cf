-- Replaces every shared rule, the version and the epoch at once, only if
-- the store still holds what the caller read: fills an empty store with
-- seed rules, and puts back rules the store lost.
--
-- KEYS[1]  the hash of rules: id -> record
-- KEYS[2]  the version counter
-- KEYS[3]  the epoch
-- ARGV[1]  the version read ('0' when absent)
-- ARGV[2]  the epoch read ('0' when absent)
-- ARGV[3]  the version to write
-- ARGV[4]  the epoch to write
-- ARGV[5]  the channel to announce the new version on
-- ARGV[6], ARGV[7], ...  id, record pairs
--
-- Returns 'ok', or 'conflict' when the store no longer holds what was read
-- (nothing changed).

local version = redis.call('GET', KEYS[2]) or '0'
local epoch = redis.call('GET', KEYS[3]) or '0'
if version ~= ARGV[1] or epoch ~= ARGV[2] then
  return 'conflict'
end
redis.call('DEL', KEYS[1])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[3])
return 'ok'
