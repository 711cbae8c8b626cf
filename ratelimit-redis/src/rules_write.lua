-- One change to the shared rules, versioned and announced atomically.
--
-- KEYS[1]  the hash of rules: id -> record
-- KEYS[2]  the version counter
-- ARGV[1]  'insert' | 'upsert' | 'replace' | 'remove' | 'touch' (no rule
--          changes: only a new version, announced)
-- ARGV[2]  the rule id
-- ARGV[3]  the new record (insert, upsert, replace)
-- ARGV[4]  the expected current record (replace)
-- ARGV[5]  the channel to announce the new version on
--
-- Returns {status, version, previous record or ''}; status is 'ok',
-- 'exists', 'missing' or 'conflict' (nothing changed unless 'ok').

local op = ARGV[1]
local previous = false
if op ~= 'touch' then
  previous = redis.call('HGET', KEYS[1], ARGV[2])
end
if op == 'insert' and previous then
  return {'exists', 0, previous}
end
if (op == 'replace' or op == 'remove') and not previous then
  return {'missing', 0, ''}
end
if op == 'replace' and previous ~= ARGV[4] then
  return {'conflict', 0, previous}
end
if op == 'remove' then
  redis.call('HDEL', KEYS[1], ARGV[2])
elseif op ~= 'touch' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[5], version)
return {'ok', version, previous or ''}
