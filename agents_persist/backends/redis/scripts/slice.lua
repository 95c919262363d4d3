-- A partial read: messages [start:stop] of one committed version, in one atomic step.
--
-- KEYS: head, log, position index.
-- ARGV: [1] start or '', [2] stop or '' (Python slice bounds: negative counts
--       from the end), resolved here against the head's message count n.
-- Returns {mode, fields, first, count, data...}; fields are the head's
-- v n d u e g a k (false where absent), as agents_persist.backends.redis.layout
-- parses them. mode:
--   0: data is one string, the bytes of messages first .. first + count - 1,
--      cut out of the log entries that hold them by the position index;
--   1: data are the log entries first .. first + count - 1, one message each
--      (no usable index, but a log of one entry per message);
--   2: data are all log entries (no usable index: the caller slices);
--   3: nothing read (no head, head fields that do not parse, an empty slice);
--   4: the head is not a hash; 5: the log is not a list.
-- The position index is described in write.lua; it is used only if head
-- field s names the head's version and both parts have the right length,
-- and each entry read must be as long as the index says, else the whole
-- log is returned (mode 2) for the caller to check.
local head, log, positions = KEYS[1], KEYS[2], KEYS[3]
local ok, f = pcall(redis.call, 'HMGET', head, 'v', 'n', 'd', 'u', 'e', 'g', 'a', 'k', 's')
if not ok then
  return {4, {}}
end
local s = f[9]
local fields = {f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]}

-- A counter field as a number, or nil unless it is 1 to 15 decimal digits (as write.lua reads them).
local function counter(raw)
  return raw and #raw <= 15 and string.match(raw, '^%d+$') and tonumber(raw) or nil
end

local version, n = counter(f[1]), counter(f[2])
local k = n
if f[8] then
  k = counter(f[8])
end
if not (version and n and k) then
  return {3, fields}
end
local function bound(raw, default)
  if raw == '' then
    return default
  end
  local b = tonumber(raw)
  if b < 0 then
    return math.max(b + n, 0)
  end
  return math.min(b, n)
end
local lo = bound(ARGV[1], 0)
local hi = math.max(lo, bound(ARGV[2], n))
if lo == hi then
  return {3, fields}
end

local function whole()
  local ok_log, all = pcall(redis.call, 'LRANGE', log, 0, -1)
  if not ok_log then
    return {5, fields}
  end
  return {2, fields, 0, n, unpack(all)}
end

local starts = nil
if s then
  local stamp, at = string.match(s, '^(%d+);()')
  if stamp and tonumber(stamp) == version and #s - at + 1 == 4 * k then
    starts = string.sub(s, at)
  end
end
local ok_pos, pos_bytes = pcall(redis.call, 'STRLEN', positions)
if not (starts and ok_pos and pos_bytes == 4 * n) then
  if k == n then
    -- Each entry holds at least one message, so k == n means one message per entry.
    local ok_log, some = pcall(redis.call, 'LRANGE', log, lo, hi - 1)
    if not ok_log then
      return {5, fields}
    end
    return {1, fields, lo, hi - lo, unpack(some)}
  end
  return whole()
end

-- The first position of entry e (0-based); the byte where message i (0-based) ends, and begins.
local function first_of(e)
  return struct.unpack('>I4', starts, 4 * e + 1)
end
local function ends(i)
  return struct.unpack('>I4', redis.call('GETRANGE', positions, 4 * i, 4 * i + 3))
end
local function begins(i)
  if i == 0 then
    return 0
  end
  return ends(i - 1)
end
-- The last entry whose first position is at most i.
local function entry_of(i)
  local low, high = 0, k - 1
  while low < high do
    local mid = math.floor((low + high + 1) / 2)
    if first_of(mid) <= i then
      low = mid
    else
      high = mid - 1
    end
  end
  return low
end

local from, to = begins(lo), ends(hi - 1)
local parts = {}
local e_first, e_last = entry_of(lo), entry_of(hi - 1)
local entry_begins = begins(first_of(e_first))
for e = e_first, e_last do
  local entry_ends
  if e + 1 < k then
    entry_ends = begins(first_of(e + 1))
  else
    entry_ends = ends(n - 1)
  end
  local ok_entry, entry = pcall(redis.call, 'LINDEX', log, e)
  if not ok_entry then
    return {5, fields}
  end
  if not entry or #entry ~= entry_ends - entry_begins then
    return whole()
  end
  parts[#parts + 1] = string.sub(entry, math.max(from, entry_begins) - entry_begins + 1,
    math.min(to, entry_ends) - entry_begins)
  entry_begins = entry_ends
end
return {0, fields, lo, hi - lo, table.concat(parts)}
