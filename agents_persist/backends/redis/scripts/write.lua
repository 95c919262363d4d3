-- One save, atomically (see agents_persist.planning.PlannedWrite).
--
-- KEYS: head, log, a fresh staging key, the log's position index
--       [, index by update time, index by expiry, index by ID: standalone only].
-- ARGV: [1] expected version or '', [2] append position or '' (rewrite),
--       [3] base digest, [4] message count, [5] digest, [6] head blob,
--       [7] updated_at, [8] expires_at or '', [9] expiry in ms or '',
--       [10] thread ID, [11] number of staged log entries or '',
--       [12] expected generation or '', [13] generation for a new thread,
--       [14] '1' to keep the stored head blob of a live thread or '',
--       [15] '' or '+' followed by the idempotency key,
--       [16] the save's token (16 hex digits, fresh for every save),
--       [17] the end of each new message, counted in bytes from the start of
--       the first new one (4-byte big-endian unsigned integers, concatenated),
--       [18] the first position of each new log entry, counted from the
--       first new message (the same encoding),
--       [19...] the new log entries, each one or more encoded messages
--       concatenated (none when staged).
-- Returns {status, version, generation}: status 1 (applied; the new version),
-- 0 (version or generation conflict; the current version), 2 (the stored
-- prefix is not the expected one), 3 (the staging list is not what was sent),
-- 4 (the idempotency key was applied before; the version it produced, nothing
-- written), 5 (the stored applied keys do not parse; nothing written), 6
-- (this very save, by its token, was applied before: a command re-sent by
-- the client after a late reply; the version it produced, nothing written)
-- or 7 (the stored head or log is not what this library writes: wrong key
-- type or fields that do not parse; nothing written). A forced rewrite
-- (no expected version, no append position) replaces such garbage instead.
-- The generation is the thread's, as a decimal string (63 bits: never a Lua
-- number, which would round it).
--
-- The log is a list of entries, each the concatenation of one or more
-- encoded messages (an append pushes one entry); head field k counts them
-- (absent: one entry per message, the layout before entries were packed).
-- When an append makes more than MAX_ENTRIES, the log is compacted into
-- entries of about CHUNK_BYTES (or a sixteenth of the log, if larger), so
-- that loads stay cheap and compaction is rare (amortised O(1) per save).
-- Head fields besides v n d h u e k: g, the generation (absent: 0, a thread
-- stored before generations existed); a, the applied idempotency keys,
-- newest last, at most MAX_APPLIED_KEYS: each entry is
-- "<version>:<byte length of key>:<key>", concatenated without separators;
-- t, the tokens of the last MAX_TOKENS saves, each "<token>:<version>;"
-- (tokens are hex, so a plain search for "<token>:" finds only whole entries).
-- Position index, for partial reads (scripts/slice.lua): the key KEYS[4]
-- holds the end of every message in bytes from the start of the log (4-byte
-- big-endian, one per message); head field s holds "<version>;" and the
-- first position of every log entry (4-byte big-endian, one per entry). The
-- index is valid only while s names the head's version and both have the
-- right length: a save that cannot keep it (an append onto a log indexed by
-- no one, as threads of older releases are) removes it, and the next rewrite
-- builds it anew.
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
local MAX_ENTRIES = 64
local CHUNK_BYTES = 1048576
local FIRST_ENTRY = 19
local head, log, stage, positions = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local staged = ARGV[11] ~= ''
local rewrite = ARGV[2] == ''
local forced = rewrite and ARGV[1] == ''
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

-- A counter field as a number, or nil unless it is 1 to 15 decimal digits.
local function counter(raw)
  if raw and #raw <= 15 and string.match(raw, '^%d+$') then
    return tonumber(raw)
  end
  return nil
end

local function finish(status, version, generation)
  if staged then
    redis.call('DEL', stage)
  end
  return {status, version, generation}
end

local ok, stored = pcall(redis.call, 'HMGET', head, 'v', 'n', 'd', 'e', 'g', 'a', 't', 'k', 's')
local garbage = not ok
local live = false
local version, count, digest, generation, raw_applied, tokens, entries = 0, 0, string.rep('\0', 16), ARGV[13], '', '', 0
if ok and stored[1] then
  local expires = false
  if stored[4] then
    expires = tonumber(stored[4])
    if expires and (expires ~= expires or expires == math.huge or expires == -math.huge) then
      expires = nil
    end
  end
  version, count = counter(stored[1]), counter(stored[2])
  if stored[8] then
    entries = counter(stored[8])
  else
    entries = count
  end
  generation = stored[5] or '0'
  if not (version and count and entries and expires ~= nil and #generation <= 19
      and string.match(generation, '^%d+$') and stored[3] and #stored[3] == 16) then
    garbage = true
  elseif not (expires and expires <= now) then
    live = true
    digest, raw_applied, tokens = stored[3], stored[6] or '', stored[7] or ''
  end
end
if garbage then
  if not forced then
    return finish(7, 0, '0')
  end
  version, count, digest, generation, live, entries = 0, 0, string.rep('\0', 16), ARGV[13], false, 0
  redis.call('DEL', head)
end
if not live then
  version, count, entries = 0, 0, 0
end
local token = ARGV[16]
local seen = string.find(tokens, token .. ':', 1, true)
if seen then
  return finish(6, tonumber(string.match(tokens, '^(%d+);', seen + #token + 1)), generation)
end
local keys, versions = {}, {}
if key then
  keys, versions = parse_applied(raw_applied)
  if not keys then
    return finish(5, version, generation)
  end
  for i = 1, #keys do
    if keys[i] == key then
      return finish(4, tonumber(versions[i]), generation)
    end
  end
end
if ARGV[1] ~= '' and (tonumber(ARGV[1]) ~= version or (version > 0 and ARGV[12] ~= '' and ARGV[12] ~= generation)) then
  return finish(0, version, generation)
end
if not rewrite then
  local ok_len, length = pcall(redis.call, 'LLEN', log)
  if not ok_len then
    return finish(7, 0, '0')
  end
  if tonumber(ARGV[2]) ~= count or ARGV[3] ~= digest or length ~= entries then
    return finish(2, version, generation)
  end
end
if staged and redis.call('LLEN', stage) ~= tonumber(ARGV[11]) then
  return finish(3, version, generation)
end
-- Whether the stored position index describes the live log (see above), and its entry starts.
local indexed = count == 0
local old_starts = ''
if live and count > 0 and stored[9] then
  local stamp, starts = string.match(stored[9], '^(%d+);()')
  local ok_pos, pos_bytes = pcall(redis.call, 'STRLEN', positions)
  indexed = stamp ~= nil and tonumber(stamp) == version and #stored[9] - starts + 1 == 4 * entries
    and ok_pos and pos_bytes == 4 * count
  if indexed then
    old_starts = string.sub(stored[9], starts)
  end
end
-- The first write to the log is one that Redis refuses when out of memory
-- (RPUSH, never DEL first), so that a refused save changes nothing: a
-- rewrite or a compaction builds the new log aside and renames it into place.
local pushed = #ARGV - FIRST_ENTRY + 1
-- Packed 4-byte integers, each plus ``base``.
local function shifted(packed, base)
  if base == 0 then
    return packed
  end
  local out = {}
  for i = 1, #packed, 4 do
    out[#out + 1] = struct.pack('>I4', struct.unpack('>I4', packed, i) + base)
  end
  return table.concat(out)
end
-- What the position index becomes: nil (removed), or the entry starts (head field s) and
-- the message ends to add (with SET if the log was rewritten or was empty, else APPEND).
local index_starts = nil
local function push(target, list, first, last)
  for i = first, last, 1000 do
    redis.call('RPUSH', target, unpack(list, i, math.min(i + 999, last)))
  end
end
if rewrite and staged then
  redis.call('RENAME', stage, log)
  entries = tonumber(ARGV[11])
elseif rewrite then
  if pushed > 0 then
    push(stage, ARGV, FIRST_ENTRY, #ARGV)
    redis.call('RENAME', stage, log)
  else
    redis.call('DEL', log)
  end
  entries = pushed
elseif entries + pushed > MAX_ENTRIES then
  local all = redis.call('LRANGE', log, 0, -1)
  for i = FIRST_ENTRY, #ARGV do
    all[#all + 1] = ARGV[i]
  end
  local total = 0
  for i = 1, #all do
    total = total + #all[i]
  end
  local limit = math.max(CHUNK_BYTES, math.floor(total / 16))
  local chunks, group, size = {}, {}, 0
  local firsts = {}
  if indexed then
    local new_starts = old_starts .. shifted(ARGV[18], count)
    for i = 1, #all do
      firsts[i] = string.sub(new_starts, 4 * i - 3, 4 * i)
    end
  end
  local chunk_starts = {firsts[1]}
  for i = 1, #all do
    if size > 0 and size + #all[i] > limit then
      chunks[#chunks + 1] = table.concat(group)
      chunk_starts[#chunk_starts + 1] = firsts[i]
      group, size = {}, 0
    end
    group[#group + 1] = all[i]
    size = size + #all[i]
  end
  chunks[#chunks + 1] = table.concat(group)
  push(stage, chunks, 1, #chunks)
  redis.call('RENAME', stage, log)
  entries = #chunks
  if indexed then
    index_starts = table.concat(chunk_starts)
  end
elseif pushed > 0 then
  push(log, ARGV, FIRST_ENTRY, #ARGV)
  entries = entries + pushed
end
if not live then
  -- A missing or expired thread starts afresh: no fields of an older incarnation stay.
  redis.call('DEL', head)
end
if rewrite then
  index_starts = nil
  if #ARGV[17] == 4 * tonumber(ARGV[4]) and #ARGV[18] == 4 * entries then
    index_starts = ARGV[18]
  end
elseif indexed and index_starts == nil then
  index_starts = old_starts .. shifted(ARGV[18], count)
end
if index_starts == nil then
  redis.call('DEL', positions)
  redis.call('HDEL', head, 's')
elseif rewrite or count == 0 then
  if #ARGV[17] > 0 then
    redis.call('SET', positions, ARGV[17])
  else
    redis.call('DEL', positions)
  end
elseif #ARGV[17] > 0 then
  local base = struct.unpack('>I4', redis.call('GETRANGE', positions, -4, -1))
  redis.call('APPEND', positions, shifted(ARGV[17], base))
end
local n_tokens = select(2, string.gsub(tokens, ';', ';'))
if n_tokens >= MAX_TOKENS then
  tokens = string.sub(tokens, string.find(tokens, ';', 1, true) + 1)
end
local fields = {'v', version + 1, 'n', ARGV[4], 'd', ARGV[5], 'u', ARGV[7], 'k', entries,
  't', tokens .. token .. ':' .. (version + 1) .. ';'}
if not live then
  fields[#fields + 1], fields[#fields + 2] = 'g', generation
end
if not (live and ARGV[14] ~= '') then
  fields[#fields + 1], fields[#fields + 2] = 'h', ARGV[6]
end
if index_starts then
  fields[#fields + 1], fields[#fields + 2] = 's', (version + 1) .. ';' .. index_starts
end
if key then
  local kept = {}
  for i = math.max(1, #keys - MAX_APPLIED_KEYS + 2), #keys do
    kept[#kept + 1] = versions[i] .. ':' .. #keys[i] .. ':' .. keys[i]
  end
  kept[#kept + 1] = (version + 1) .. ':' .. #key .. ':' .. key
  fields[#fields + 1], fields[#fields + 2] = 'a', table.concat(kept)
end
if forced and not key and raw_applied ~= '' and not parse_applied(raw_applied) then
  -- A forced save repairs whatever is there: applied keys that do not parse are dropped.
  redis.call('HDEL', head, 'a')
end
local had_expiry = live and stored[4]
if ARGV[8] ~= '' then
  fields[#fields + 1], fields[#fields + 2] = 'e', ARGV[8]
end
redis.call('HSET', head, unpack(fields))
if ARGV[8] ~= '' then
  redis.call('PEXPIREAT', head, ARGV[9])
  redis.call('PEXPIREAT', log, ARGV[9])
  redis.call('PEXPIREAT', positions, ARGV[9])
else
  if had_expiry then
    redis.call('HDEL', head, 'e')
    redis.call('PERSIST', head)
  end
  if had_expiry or staged then
    redis.call('PERSIST', log)  -- a renamed staging list keeps its TTL otherwise
  end
  if had_expiry then
    redis.call('PERSIST', positions)
  end
end
if #KEYS == 7 then
  redis.call('ZADD', KEYS[5], ARGV[7], ARGV[10])
  if not live then
    redis.call('ZADD', KEYS[7], 0, ARGV[10])
  end
  if ARGV[8] ~= '' then
    redis.call('ZADD', KEYS[6], ARGV[8], ARGV[10])
  elseif had_expiry then
    redis.call('ZREM', KEYS[6], ARGV[10])
  end
  do
    local gone = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', ARGV[7], 'LIMIT', 0, CLEANUP_PER_SAVE)
    if #gone > 0 then
      redis.call('ZREM', KEYS[5], unpack(gone))
      redis.call('ZREM', KEYS[6], unpack(gone))
      redis.call('ZREM', KEYS[7], unpack(gone))
    end
  end
end
return {1, version + 1, generation}
