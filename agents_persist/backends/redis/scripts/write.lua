-- One save, atomically (see agents_persist.planning.PlannedWrite).
--
-- KEYS: head, log, a fresh staging key (an append names the log itself, unused)
--       [, index by update time, index by expiry, index by ID: standalone only].
-- ARGV: [1] expected version or '', [2] append position or '' (rewrite),
--       [3] base digest, [4] message count, [5] digest, [6] head blob,
--       [7] updated_at, [8] expires_at or '', [9] expiry in ms or '',
--       [10] thread ID, [11] number of staged messages or '',
--       [12] expected generation or '', [13] generation for a new thread,
--       [14] '1' to keep the stored head blob of a live thread or '',
--       [15] '' or '+' followed by the idempotency key,
--       [16] the save's token (16 hex digits, fresh for every save),
--       [17...] the new encoded messages (none when staged).
-- Returns {status, version, generation}: status 1 (applied; the new version),
-- 0 (version or generation conflict; the current version), 2 (the stored
-- prefix is not the expected one), 3 (the staging list is not what was sent),
-- 4 (the idempotency key was applied before; the version it produced, nothing
-- written), 5 (the stored applied keys do not parse; nothing written) or 6
-- (this very save, by its token, was applied before: a command re-sent by
-- the client after a late reply; the version it produced, nothing written).
-- The generation is the thread's, as a decimal string (63 bits: never a Lua
-- number, which would round it).
--
-- Head fields besides v n d h u e: g, the generation (absent: 0, a thread
-- stored before generations existed), and a, the applied idempotency keys,
-- newest last, at most MAX_APPLIED_KEYS: each entry is
-- "<version>:<byte length of key>:<key>", concatenated without separators;
-- t, the tokens of the last MAX_TOKENS saves, each "<token>:<version>;"
-- (tokens are hex, so a plain search for "<token>:" finds only whole entries).
-- The checks run in the order of agents_persist.planning.precondition:
-- duplicate, version and generation, prefix.
--
-- Literals: 16 is agents_persist.codec.DIGEST_SIZE (the empty digest is 16
-- zero bytes); MAX_APPLIED_KEYS (32) is agents_persist.planning.MAX_APPLIED_KEYS;
-- CLEANUP_PER_SAVE (16) is how many index entries of expired threads a
-- standalone save removes on the way.
local CLEANUP_PER_SAVE = 16
local MAX_APPLIED_KEYS = 32
local MAX_TOKENS = 8
local FIRST_MESSAGE = 17
local head, log, stage = KEYS[1], KEYS[2], KEYS[3]
local staged = ARGV[11] ~= ''
local now = tonumber(ARGV[7])
local key = nil
if ARGV[15] ~= '' then
  key = string.sub(ARGV[15], 2)
end

-- The applied keys field as two lists, or nil if it does not parse.
local function parse_applied(raw)
  local keys, versions, pos = {}, {}, 1
  while pos <= #raw do
    local v, n, start = string.match(raw, '^(%d+):(%d+):()', pos)
    if not v then
      return nil
    end
    local finish = start + tonumber(n) - 1
    if finish > #raw then
      return nil
    end
    keys[#keys + 1] = string.sub(raw, start, finish)
    versions[#versions + 1] = v
    pos = finish + 1
  end
  return keys, versions
end

local stored = redis.call('HMGET', head, 'v', 'n', 'd', 'e', 'g', 'a', 't')
local live = stored[1] and not (stored[4] and tonumber(stored[4]) <= now)
local version, count, digest, generation, raw_applied, tokens = 0, 0, string.rep('\0', 16), ARGV[13], '', ''
if live then
  version, count, digest = tonumber(stored[1]), tonumber(stored[2]), stored[3]
  generation, raw_applied, tokens = stored[5] or '0', stored[6] or '', stored[7] or ''
end
local token = ARGV[16]
local seen = string.find(tokens, token .. ':', 1, true)
if seen then
  if staged then
    redis.call('DEL', stage)
  end
  local produced = string.match(tokens, '^(%d+);', seen + #token + 1)
  return {6, tonumber(produced), generation}
end
local status = 1
local keys, versions = {}, {}
if key then
  keys, versions = parse_applied(raw_applied)
  if not keys then
    status = 5
  else
    for i = 1, #keys do
      if keys[i] == key then
        status, version = 4, tonumber(versions[i])
      end
    end
  end
end
if status ~= 1 then
  -- decided above
elseif ARGV[1] ~= '' and (tonumber(ARGV[1]) ~= version or (version > 0 and ARGV[12] ~= '' and ARGV[12] ~= generation)) then
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
  return {status, version, generation}
end
if not staged and #ARGV >= FIRST_MESSAGE then
  -- A rewrite builds its new log aside: the first write is then one that
  -- Redis refuses when out of memory, before anything changed.
  local target = log
  if ARGV[2] == '' then
    target, staged = stage, true
  end
  for i = FIRST_MESSAGE, #ARGV, 1000 do
    redis.call('RPUSH', target, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
if staged then
  redis.call('RENAME', stage, log)
elseif ARGV[2] == '' then
  redis.call('DEL', log)
end
if not live then
  -- A missing or expired thread starts afresh: no fields of an older incarnation stay.
  redis.call('DEL', head)
  redis.call('HSET', head, 'g', generation)
end
if key then
  local entries = {}
  for i = math.max(1, #keys - MAX_APPLIED_KEYS + 2), #keys do
    entries[#entries + 1] = versions[i] .. ':' .. #keys[i] .. ':' .. keys[i]
  end
  entries[#entries + 1] = (version + 1) .. ':' .. #key .. ':' .. key
  redis.call('HSET', head, 'a', table.concat(entries))
end
local _, entries = string.gsub(tokens, ';', ';')
if entries >= MAX_TOKENS then
  tokens = string.sub(tokens, string.find(tokens, ';', 1, true) + 1)
end
redis.call('HSET', head, 'v', version + 1, 'n', ARGV[4], 'd', ARGV[5], 'u', ARGV[7], 't', tokens .. token .. ':' .. (version + 1) .. ';')
if not (live and ARGV[14] ~= '') then
  redis.call('HSET', head, 'h', ARGV[6])
end
if ARGV[8] ~= '' then
  redis.call('HSET', head, 'e', ARGV[8])
  redis.call('PEXPIREAT', head, ARGV[9])
  redis.call('PEXPIREAT', log, ARGV[9])
else
  redis.call('HDEL', head, 'e')
  redis.call('PERSIST', head)
  redis.call('PERSIST', log)
end
if #KEYS == 6 then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[10])
  redis.call('ZADD', KEYS[6], 0, ARGV[10])
  if ARGV[8] ~= '' then
    redis.call('ZADD', KEYS[5], ARGV[8], ARGV[10])
  else
    redis.call('ZREM', KEYS[5], ARGV[10])
  end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[7], 'LIMIT', 0, CLEANUP_PER_SAVE)
  if #gone > 0 then
    redis.call('ZREM', KEYS[4], unpack(gone))
    redis.call('ZREM', KEYS[5], unpack(gone))
    redis.call('ZREM', KEYS[6], unpack(gone))
  end
end
return {1, version + 1, generation}
