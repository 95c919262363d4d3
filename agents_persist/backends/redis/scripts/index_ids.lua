-- A page of the index by ID, with each entry's update-time score, read in one
-- atomic step (before the heads are read, so a repair can tell a save since).
--
-- KEYS: index by update time, index by ID.
-- ARGV: [1] lowest member (ZRANGEBYLEX syntax), [2] highest member, [3] count.
-- Returns {entries by update time, entries by ID, {members}, {their
-- update-time scores, or '' where there is none}}; the two sizes tell whether
-- threads written before the index by ID existed still lack an entry.
-- No literals or substitutions: this file is exactly what runs.
local members = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local scores = {}
for i = 1, #members do
  scores[i] = redis.call('ZSCORE', KEYS[1], members[i]) or ''
end
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), members, scores}
