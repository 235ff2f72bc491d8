-- Apply one batch of view changes and move the projection's checkpoint, atomically.
--
-- KEYS[1]      the projection checkpoint hash   cs:{p}:proj:<name>
-- KEYS[2]      the projection's hold            cs:{p}:hold:<name>
-- ARGV[1]      the checkpoint the batch was computed from ('' for none)
-- ARGV[2]      the checkpoint after the batch (last applied log position)
-- ARGV[3]      the writer: a token of the projector's run of consecutive batches
-- ARGV[4]      '1' when the batch continues that run (it was computed from the
--              records the run's previous batch wrote, not read afresh), else '0'
-- ARGV[5]      the prefix of the partition's view keys   cs:{p}:view:
-- ARGV[6]      the changes, framed (projections/batch.py ViewBatch.payload): repeated
--              op (1 byte), name (4-byte big-endian length, bytes), argument (same);
--              S value: SET prefix..name; D -: DEL prefix..name;
--              A members / R members: ZADD 0 / ZREM the members (each length-prefixed)
--
-- The view keys are built here from the prefix: they share the partition's hash tag
-- with KEYS[1], so the script stays on one cluster slot, and the call carries one
-- argument instead of two per change (a batch changes thousands).
--
-- Returns 1 when applied, 0 when the checkpoint moved meanwhile (another
-- projector applied these events, or a rebuild reset or switched the views; a
-- continuing batch also needs the writer unchanged, since a switch can leave the
-- same position over other views), -1 while a rebuild holds the projection (it
-- is rewriting the views in batches, see switch.lua and reset.lua): in every
-- case but 1 nothing is changed, so a batch applies once and never into a half switch.

if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local checkpoint = redis.call('HMGET', KEYS[1], 'position', 'writer')
if (checkpoint[1] or '') ~= ARGV[1] then
  return 0
end
if ARGV[4] == '1' and checkpoint[2] ~= ARGV[3] then
  return 0
end

local prefix, changes = ARGV[5], ARGV[6]
local unpack_framed = struct.unpack
local CHUNK = 1000

local function flush(op, key, members)
  if #members == 0 then
    return
  end
  if op == 'R' then
    redis.call('ZREM', key, unpack(members))
    return
  end
  local args = {}
  for i, member in ipairs(members) do
    args[2 * i - 1] = 0
    args[2 * i] = member
  end
  redis.call('ZADD', key, unpack(args))
end

-- ZADD/ZREM many members per call, in chunks that keep unpack within Lua's stack
local function members_call(op, key, framed)
  local members, at, n = {}, 1, #framed
  while at <= n do
    local member
    member, at = unpack_framed('>I4c0', framed, at)
    members[#members + 1] = member
    if #members >= CHUNK then
      flush(op, key, members)
      members = {}
    end
  end
  flush(op, key, members)
end

local at, n = 1, #changes
while at <= n do
  local op, name, arg
  op, name, arg, at = unpack_framed('>c1I4c0I4c0', changes, at)
  local key = prefix .. name
  if op == 'S' then
    redis.call('SET', key, arg)
  elseif op == 'D' then
    redis.call('DEL', key)
  elseif op == 'A' or op == 'R' then
    members_call(op, key, arg)
  end
end
redis.call('HSET', KEYS[1], 'position', ARGV[2], 'writer', ARGV[3])
return 1
