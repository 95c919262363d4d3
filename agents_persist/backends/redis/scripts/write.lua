-- One save, atomically (see agents_persist.planning.PlannedWrite).
--
-- KEYS: head, log, a fresh staging key (an append names the log itself, unused)
--       [, index by update time, index by expiry: standalone only].
-- ARGV: [1] expected version or '', [2] append position or '' (rewrite),
--       [3] base digest, [4] message count, [5] digest, [6] head blob,
--       [7] updated_at, [8] expires_at or '', [9] expiry in ms or '',
--       [10] thread ID, [11] number of staged messages or '',
--       [12...] the new encoded messages (none when staged).
-- Returns {1, new version}, {0, current version} on a version conflict,
-- {2, current version} when the stored prefix is not the expected one, or
-- {3, current version} when the staging list is not what was sent.
--
-- Literals: 16 is agents_persist.codec.DIGEST_SIZE (the empty digest is 16
-- zero bytes); CLEANUP_PER_SAVE (16) is how many index entries of expired
-- threads a standalone save removes on the way.
local CLEANUP_PER_SAVE = 16
local head, log, stage = KEYS[1], KEYS[2], KEYS[3]
local staged = ARGV[11] ~= ''
local now = tonumber(ARGV[7])
local stored = redis.call('HMGET', head, 'v', 'n', 'd', 'e')
local version, count, digest = 0, 0, string.rep('\0', 16)
if stored[1] and not (stored[4] and tonumber(stored[4]) <= now) then
  version, count, digest = tonumber(stored[1]), tonumber(stored[2]), stored[3]
end
local status = 1
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= version then
  status = 0
elseif ARGV[2] ~= '' and (tonumber(ARGV[2]) ~= count or ARGV[3] ~= digest or redis.call('LLEN', log) ~= count) then
  status = 2
elseif staged and redis.call('LLEN', stage) ~= tonumber(ARGV[11]) then
  status = 3
end
if status ~= 1 then
  if staged then
    redis.call('DEL', stage)
  end
  return {status, version}
end
if not staged and #ARGV >= 12 then
  -- A rewrite builds its new log aside: the first write is then one that
  -- Redis refuses when out of memory, before anything changed.
  local target = log
  if ARGV[2] == '' then
    target, staged = stage, true
  end
  for i = 12, #ARGV, 1000 do
    redis.call('RPUSH', target, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
if staged then
  redis.call('RENAME', stage, log)
elseif ARGV[2] == '' then
  redis.call('DEL', log)
end
redis.call('HSET', head, 'v', version + 1, 'n', ARGV[4], 'd', ARGV[5], 'h', ARGV[6], 'u', ARGV[7])
if ARGV[8] ~= '' then
  redis.call('HSET', head, 'e', ARGV[8])
  redis.call('PEXPIREAT', head, ARGV[9])
  redis.call('PEXPIREAT', log, ARGV[9])
else
  redis.call('HDEL', head, 'e')
  redis.call('PERSIST', head)
  redis.call('PERSIST', log)
end
if #KEYS == 5 then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[10])
  if ARGV[8] ~= '' then
    redis.call('ZADD', KEYS[5], ARGV[8], ARGV[10])
  else
    redis.call('ZREM', KEYS[5], ARGV[10])
  end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[7], 'LIMIT', 0, CLEANUP_PER_SAVE)
  if #gone > 0 then
    redis.call('ZREM', KEYS[4], unpack(gone))
    redis.call('ZREM', KEYS[5], unpack(gone))
  end
end
return {1, version + 1}
