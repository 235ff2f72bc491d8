-- archive_trim.lua: trim a partition's log below what an archive run has committed,
-- and record in the same step where the archive lives and how far the log was
-- trimmed, so a reader that misses an entry in the log always learns where it went.
--
-- KEYS[1]  the partition's log                       keys.log(p)
-- KEYS[2]  the partition's archive record (a hash)   keys.archived(p)
-- ARGV[1]  trim below this position, "ms-seq" (XTRIM MINID)
-- ARGV[2]  the archive directory (an absolute path)
-- ARGV[3]  the host the archive run ran on
--
-- The record's fields: dir, host, before (the log holds nothing below it: every
-- entry below was archived), at (epoch ms, the server's clock).
-- Guarantees: ``before`` never moves back (a later run with a lower bound keeps the
-- higher one), so a repeated call (a retried reply) changes nothing more.
-- Returns the number of entries removed from the log.

local function parse_position(position)
  local ms, seq = string.match(position, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function is_after(a, b)
  local a_ms, a_seq = parse_position(a)
  local b_ms, b_seq = parse_position(b)
  return a_ms > b_ms or (a_ms == b_ms and a_seq > b_seq)
end

local before = ARGV[1]
local recorded = redis.call('HGET', KEYS[2], 'before')
if recorded and not is_after(before, recorded) then
  before = recorded
end
redis.call('HSET', KEYS[2], 'dir', ARGV[2], 'host', ARGV[3], 'before', before, 'at', now_ms())
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
