-- Repair index entries found stale, each only if its score is still the one
-- seen (so a concurrent save always wins).
--
-- KEYS: index by update time, index by expiry, index by ID.
-- ARGV: groups of four (op, thread ID, seen score or '' for none, new score or ''):
--   'r' removes all three entries if the update-time score is the seen one
--       ('': if there is no update-time entry),
--   's' sets that score,
--   'x' removes all three entries if the expiry score is the seen one,
--   'e' sets or ('') removes the expiry entry.
-- Returns {entries removed, entries changed in all}.
-- No literals or substitutions: this file is exactly what runs.
local removed, changed = 0, 0
for i = 1, #ARGV, 4 do
  local op, member, seen, new = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local key = KEYS[1]
  if op == 'x' or op == 'e' then key = KEYS[2] end
  local current = redis.call('ZSCORE', key, member)
  local same = (current == false and seen == nil) or (current and tonumber(current) == seen)
  if same then
    changed = changed + 1
    if op == 'r' or op == 'x' then
      redis.call('ZREM', KEYS[1], member)
      redis.call('ZREM', KEYS[2], member)
      redis.call('ZREM', KEYS[3], member)
      removed = removed + 1
    elseif new == '' then
      redis.call('ZREM', key, member)
    else
      redis.call('ZADD', key, new, member)
    end
  end
end
return {removed, changed}
