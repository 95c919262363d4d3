-- Delete one thread.
--
-- KEYS: head, log, position index [, index by update time, index by expiry, index by ID: standalone only].
-- ARGV: [1] now, [2] thread ID.
-- Returns {1 if it was live else 0, its updated_at or nothing if it had no head}.
-- A head of the wrong key type (garbage) counts as live, with no updated_at.
-- No literals or substitutions: this file is exactly what runs.
local ok, stored = pcall(redis.call, 'HMGET', KEYS[1], 'u', 'e')
if not ok then
  stored = {false, false}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if #KEYS == 6 then
  redis.call('ZREM', KEYS[4], ARGV[2])
  redis.call('ZREM', KEYS[5], ARGV[2])
  redis.call('ZREM', KEYS[6], ARGV[2])
end
if not ok then
  return {1}
end
if not stored[1] then
  return {0}
end
-- An expiry that is not a number (garbage) counts as live, as a head of the wrong type does.
local expires = stored[2] and tonumber(stored[2])
if expires and expires <= tonumber(ARGV[1]) then
  return {0, stored[1]}
end
return {1, stored[1]}
