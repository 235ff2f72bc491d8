-- A run's lifecycle, one atomic step per call: start an attempt, finish it, ask it to
-- cancel, move due retries back to the queue, queue a finished run again, or create a
-- run of a workflow without a schedule. The prelude (lua/prelude.lua) comes first.
--
-- KEYS[1]  cs:{p}:run:<run id> (hash: sid, kind, workflow_id, trigger, nominal, input,
--          status, attempt, token, entry, deliveries, cancel, traceparent, next: the
--          run of the next time of its backfill or catch-up, which waits for this one)
-- KEYS[2]  cs:{p}:queue (stream; consumer group ARGV[6])
-- KEYS[3]  cs:{p}:log               KEYS[4]  cs:{p}:log:chain (the chain's head)
-- KEYS[5]  cs:{p}:events:<kind>:<sid> (the aggregate's event index)
-- KEYS[6]  cs:{p}:running:<sid>     KEYS[7]  cs:{p}:buffer:<sid>
-- KEYS[8]  cs:{p}:retries (zset: run id -> due ms)   KEYS[9]  cs:{p}:dead (zset)
-- KEYS[10] cs:{p}:op:<token> (this call's operation record)
-- KEYS[11] cs:{p}:idem:run:<key> (create with an Idempotency-Key; otherwise unused)
-- Keys not known in advance, built from ARGV[5] (they share the partition's hash tag):
-- the hash of a held run that a finish or cancel releases (and of the waiting times of
-- a backfill or catch-up passed over on the way), and the hashes of the due retries
-- that requeue moves.
--
-- ARGV[1]  action   ARGV[2] run id   ARGV[3] meta (JSON)   ARGV[4] now ms
-- ARGV[5]  prefix of run hashes (cs:{p}:run:)   ARGV[6] consumer group
-- ARGV[7]  event versions (JSON object: type -> version)   ARGV[8] op record TTL ms
--   start:   ARGV[9] entry id  ARGV[10] consumer  ARGV[11] max deliveries  ARGV[12] now (RFC 3339)
--   finish:  ARGV[9] entry id ('' for none)  ARGV[10] attempt token ('*': any)
--            ARGV[11] outcome: succeeded | retry | failed | timedout | cancelled | deadlettered
--            ARGV[12] attempt data (JSON, '' for none)  ARGV[13] final data (JSON)
--            ARGV[14] retry due ms (outcome retry)
--   cancel:  ARGV[9] 'cancel' | 'terminate'   ARGV[10] who asked
--   requeue: ARGV[9] at most this many due retries
--   revive:  ARGV[9] who asked
--   create:  ARGV[9] workflow id  ARGV[10] trigger (JSON)  ARGV[11] input (JSON)
--            ARGV[12] request fingerprint ('' without an Idempotency-Key)
--
-- Guarantees: an attempt's result is accepted only with the token its start handed
-- out, so a worker whose run was reclaimed cannot complete it (STALE); the result,
-- the ack of the queue entry, and the release of the schedule's next held run (or of
-- the next time of the run's backfill or catch-up) happen together; a finished run changes only by revive. Every action that changes
-- the run records its reply under the call's operation token (KEYS[10]): a call the
-- client repeats (a lost reply, a timeout) gets the first reply and appends nothing.

local action = ARGV[1]
local run_id = ARGV[2]
local meta = ARGV[3]
local group = ARGV[6]
local versions = cjson.decode(ARGV[7])
local op_ttl = ARGV[8]
local TERMINAL = {succeeded = true, failed = true, timedout = true, cancelled = true,
  deadlettered = true}
local REVIVABLE = {deadlettered = true, failed = true, timedout = true}

local function append(event_type, sid, data)
  chain_append(KEYS[3], KEYS[4], KEYS[5], event_type, tostring(versions[event_type]), sid,
    data, meta)
end

local function enqueue(id, sid, kind)
  redis.call('XADD', KEYS[2], '*', 'run_id', id, 'sid', sid, 'kind', kind or 'schedule')
end

-- the next time of a backfill or catch-up that waits for the run of hash `key` (see
-- fire.lua), passing over times cancelled while they waited; the link is used once
local function follower(key)
  local id = redis.call('HGET', key, 'next')
  if not id then return nil end
  redis.call('HDEL', key, 'next')
  for _ = 1, 10000 do
    local found = redis.call('HMGET', ARGV[5] .. id, 'status', 'next')
    if found[1] == 'buffered' then return id end
    if found[1] ~= 'cancelled' or not found[2] then return nil end
    id = found[2]
  end
  return nil
end

-- a waiting run's buffer entry, as fire.lua writes one, from its hash
local function held_entry(id)
  local f = redis.call('HMGET', ARGV[5] .. id, 'nominal', 'trigger', 'input', 'workflow_id')
  return cjson.encode({run_id = id, nominal = f[1], trigger = f[2], input = f[3],
    workflow_id = f[4]})
end

local function start_held(sid, held)
  local run = cjson.decode(held)
  redis.call('HSET', ARGV[5] .. run.run_id, 'status', 'queued')
  append('RunQueued', sid, run_queued_json(run.run_id, sid, run.workflow_id, run.trigger,
    run.nominal, run.input))
  enqueue(run.run_id, sid)
  redis.call('SADD', KEYS[6], run.run_id)
  return run.run_id
end

-- a run of the schedule closed: free its slot; the next time of its backfill or catch-up
-- is queued now, unless fires held by the overlap policy wait in the buffer: it waits
-- behind them. Once no run holds the slot, the oldest held run starts.
local function release(sid)
  redis.call('SREM', KEYS[6], run_id)
  local next_id = follower(KEYS[1])
  if next_id then
    if redis.call('LLEN', KEYS[7]) == 0 then return start_held(sid, held_entry(next_id)) end
    redis.call('RPUSH', KEYS[7], held_entry(next_id))
  end
  if redis.call('SCARD', KEYS[6]) > 0 then return '' end
  local held = redis.call('LPOP', KEYS[7])
  if not held then return '' end
  return start_held(sid, held)
end

local function requeue()
  local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', ARGV[4], 'LIMIT', 0,
    tonumber(ARGV[9]))
  for _, id in ipairs(due) do
    local key = ARGV[5] .. id
    local found = redis.call('HMGET', key, 'sid', 'status', 'kind')
    if found[1] and found[2] == 'retrying' then
      redis.call('HSET', key, 'status', 'queued', 'deliveries', 0)
      enqueue(id, found[1], found[3])
    end
    redis.call('ZREM', KEYS[8], id)
  end
  return {'OK', #due}
end

local function create()
  local workflow_id, fingerprint = ARGV[9], ARGV[12]
  if fingerprint ~= '' then
    local fp = redis.call('HGET', KEYS[11], 'fp')
    if fp then
      if fp ~= fingerprint then return {'REUSED'} end
      return {'DUP', redis.call('HGET', KEYS[11], 'run_id')}
    end
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTS'} end
  if fingerprint ~= '' then
    redis.call('HSET', KEYS[11], 'fp', fingerprint, 'run_id', run_id)
    redis.call('PEXPIRE', KEYS[11], 86400000)
  end
  redis.call('HSET', KEYS[1], 'sid', workflow_id, 'kind', 'workflow', 'workflow_id',
    workflow_id, 'trigger', ARGV[10], 'nominal', '', 'input', ARGV[11], 'status', 'queued',
    'attempt', 0, 'deliveries', 0, 'traceparent', cjson.decode(meta).traceparent or '')
  append('RunQueued', workflow_id, run_queued_json(run_id, false, workflow_id, ARGV[10], '',
    ARGV[11]))
  redis.call('SADD', KEYS[6], run_id)
  enqueue(run_id, workflow_id, 'workflow')
  return {'OK', run_id}
end

-- the full reply to a start, from the run's hash (a replayed start rebuilds it too)
local function started(attempt, token)
  local fields = redis.call('HMGET', KEYS[1], 'workflow_id', 'trigger', 'nominal', 'input',
    'traceparent')
  return {'OK', attempt, token, fields[1] or '', fields[2] or '{}', fields[3] or '',
    fields[4] or 'null', fields[5] or ''}
end

local function start(status, sid)
  local entry = ARGV[9]
  if TERMINAL[status] or status == 'retrying' then
    redis.call('XACK', KEYS[2], group, entry)
    return {'DONE', status}
  end
  if redis.call('HGET', KEYS[1], 'cancel') then
    redis.call('HSET', KEYS[1], 'status', 'cancelled')
    append('RunCancelled', sid, cjson.encode({run_id = run_id, reason = 'cancelled before start'}))
    redis.call('XACK', KEYS[2], group, entry)
    release(sid)
    return {'CANCELLED'}
  end
  local deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
  if deliveries > tonumber(ARGV[11]) then
    redis.call('HSET', KEYS[1], 'status', 'deadlettered')
    redis.call('HDEL', KEYS[1], 'token')
    append('RunDeadLettered', sid, cjson.encode({run_id = run_id,
      reason = 'delivered ' .. (deliveries - 1) .. ' times without a result',
      deliveries = deliveries - 1}))
    redis.call('ZADD', KEYS[9], ARGV[4], run_id)
    redis.call('XACK', KEYS[2], group, entry)
    release(sid)
    return {'DEAD'}
  end
  local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
  local token = entry .. '/' .. attempt
  redis.call('HSET', KEYS[1], 'status', 'running', 'token', token, 'entry', entry)
  append('RunStarted', sid, cjson.encode({run_id = run_id, attempt = attempt,
    worker = ARGV[10], started_at = ARGV[12]}))
  return {'OK', attempt, token}
end

local FINAL_EVENT = {succeeded = 'RunSucceeded', failed = 'RunFailed', timedout = 'RunTimedOut',
  cancelled = 'RunCancelled', deadlettered = 'RunDeadLettered'}

local function finish(status, sid, token)
  if ARGV[10] ~= '*' and token ~= ARGV[10] then return {'STALE'} end
  if TERMINAL[status] then return {'DONE', status} end
  local outcome = ARGV[11]
  if ARGV[12] ~= '' then append('RunAttemptFailed', sid, ARGV[12]) end
  if ARGV[9] ~= '' then redis.call('XACK', KEYS[2], group, ARGV[9]) end
  redis.call('HDEL', KEYS[1], 'token')
  if outcome == 'retry' then
    redis.call('HSET', KEYS[1], 'status', 'retrying')
    redis.call('ZADD', KEYS[8], ARGV[14], run_id)
    return {'OK', ''}
  end
  append(FINAL_EVENT[outcome], sid, ARGV[13])
  redis.call('HSET', KEYS[1], 'status', outcome)
  redis.call('ZREM', KEYS[8], run_id)
  if outcome == 'deadlettered' then redis.call('ZADD', KEYS[9], ARGV[4], run_id) end
  return {'OK', release(sid)}
end

local function cancel(status, sid)
  local mode = ARGV[9]
  if TERMINAL[status] then return {'DONE', status} end
  if status == 'running' then
    local asked = redis.call('HGET', KEYS[1], 'cancel')
    if asked == mode or asked == 'terminate' then return {'REQUESTED'} end
    redis.call('HSET', KEYS[1], 'cancel', mode)
    append('RunCancelRequested', sid, cjson.encode({run_id = run_id, requested_by = ARGV[10],
      terminate = mode == 'terminate'}))
    return {'REQUESTED'}
  end
  -- queued, buffered or waiting for a retry: it ends here. A held run leaves the buffer
  -- to the next time of its backfill or catch-up, if one waits for it (one that waits
  -- behind another run is passed over when that run ends)
  if status == 'buffered' then
    for i, held in ipairs(redis.call('LRANGE', KEYS[7], 0, 10000)) do
      if cjson.decode(held).run_id == run_id then
        local next_id = follower(KEYS[1])
        if next_id then
          redis.call('LSET', KEYS[7], i - 1, held_entry(next_id))
        else
          redis.call('LREM', KEYS[7], 1, held)
        end
        break
      end
    end
  end
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancel', mode)
  redis.call('ZREM', KEYS[8], run_id)
  append('RunCancelled', sid, cjson.encode({run_id = run_id,
    reason = 'cancelled by ' .. ARGV[10]}))
  if status == 'buffered' then return {'CANCELLED', ''} end
  return {'CANCELLED', release(sid)}
end

local function revive(status, sid)
  if not REVIVABLE[status] then return {'NOT_DEAD', status} end
  redis.call('HSET', KEYS[1], 'status', 'queued', 'deliveries', 0)
  redis.call('HDEL', KEYS[1], 'cancel', 'token')
  redis.call('ZREM', KEYS[9], run_id)
  redis.call('SADD', KEYS[6], run_id)
  append('RunRequeued', sid, cjson.encode({run_id = run_id, requested_by = ARGV[9]}))
  enqueue(run_id, sid, redis.call('HGET', KEYS[1], 'kind'))
  return {'OK'}
end

local function dispatch()
  if action == 'requeue' then return requeue() end
  if action == 'create' then return create() end
  local run = redis.call('HMGET', KEYS[1], 'status', 'sid', 'token')
  local status, sid = run[1], run[2]
  if not status then
    if action == 'start' then redis.call('XACK', KEYS[2], group, ARGV[9]) end
    return {'GONE'}
  end
  if action == 'start' then return start(status, sid) end
  if action == 'finish' then return finish(status, sid, run[3]) end
  if action == 'cancel' then return cancel(status, sid) end
  if action == 'revive' then return revive(status, sid) end
  return redis.error_reply('unknown run action ' .. tostring(action))
end

-- requeue appends nothing and moves only what is still due: a repeat is harmless
if action == 'requeue' then return requeue() end

local first = op_replay(KEYS[10])
if first then
  if action == 'start' and first[1] == 'OK' then return started(first[2], first[3]) end
  return first
end
local reply = dispatch()
if type(reply) == 'table' and reply.err == nil then op_record(KEYS[10], op_ttl, reply) end
if action == 'start' and reply[1] == 'OK' then return started(reply[2], reply[3]) end
return reply
