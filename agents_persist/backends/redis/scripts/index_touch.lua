-- Cluster only, after a successful save: record it in the indexes unless a
-- newer save already did (the ID index entry is set either way).
--
-- KEYS: index by update time, index by expiry, index by ID.
-- ARGV: [1] thread ID, [2] updated_at, [3] expires_at or ''.
-- Returns 1 if the entries were set, 0 if a newer save's were kept.
-- No literals or substitutions: this file is exactly what runs.
redis.call('ZADD', KEYS[3], 0, ARGV[1])
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current and tonumber(current) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
