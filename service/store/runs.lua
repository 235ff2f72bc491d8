-- A run's lifecycle, one atomic step per call: start an attempt, finish it, ask it to
-- cancel, move due retries back to the queue, or queue a dead-lettered run again.
--
-- KEYS[1]  cs:{p}:run:<run id> (hash: sid, workflow_id, trigger, nominal, input,
--          status, attempt, token, entry, deliveries, cancel)
-- KEYS[2]  cs:{p}:queue (stream; consumer group ARGV[6] for start/finish)
-- KEYS[3]  cs:{p}:log               KEYS[4]  cs:{p}:events:<kind>:<sid>
-- KEYS[5]  cs:{p}:running:<sid>     KEYS[6]  cs:{p}:buffer:<sid>
-- KEYS[7]  cs:{p}:retries (zset: run id -> due ms)   KEYS[8]  cs:{p}:dead (zset)
-- ARGV[1]  action   ARGV[2] run id   ARGV[3] meta (JSON)   ARGV[4] now ms
-- ARGV[5]  prefix of run hashes (cs:{p}:run:), for runs this step starts
-- ARGV[6]  consumer group
--   start:   ARGV[7] entry id  ARGV[8] consumer  ARGV[9] max deliveries  ARGV[10] now (RFC 3339)
--   finish:  ARGV[7] entry id ('' for none)  ARGV[8] attempt token ('*': any)
--            ARGV[9] outcome: succeeded | retry | failed | timedout | cancelled | deadlettered
--            ARGV[10] attempt data (JSON, '' for none)  ARGV[11] final data (JSON)
--            ARGV[12] retry due ms (outcome retry)
--   cancel:  ARGV[7] 'cancel' | 'terminate'   ARGV[8] who asked
--   requeue: ARGV[7] at most this many due retries
--   revive:  ARGV[7] who asked
--   create:  ARGV[7] workflow id  ARGV[8] trigger  ARGV[9] input  ARGV[10] idempotency
--            hash key ('' for none)  ARGV[11] request fingerprint
--
-- Guarantees: an attempt's result is accepted only with the token its start handed
-- out, so a worker whose run was reclaimed cannot complete it (STALE); the result,
-- the ack of the queue entry, and the release of the schedule's next held run
-- happen together; a finished run never changes again.

local action = ARGV[1]
local run_id = ARGV[2]
local meta = ARGV[3]
local group = ARGV[6]
local TERMINAL = {succeeded = true, failed = true, timedout = true, cancelled = true,
  deadlettered = true}

local function append(event_type, sid, data)
  -- the hash chain (see service/store/chain.py)
  local prev = redis.call('GET', KEYS[3] .. ':chain') or ''
  local hash = redis.sha1hex(prev .. '\31' .. event_type .. '\31' .. '1' .. '\31' .. sid ..
    '\31' .. data .. '\31' .. meta)
  local id = redis.call('XADD', KEYS[3], '*', 'type', event_type, 'v', '1', 'sid', sid,
    'data', data, 'meta', meta, 'prev', prev, 'hash', hash)
  redis.call('SET', KEYS[3] .. ':chain', hash)
  redis.call('RPUSH', KEYS[4], id)
end

local function enqueue(id, sid, kind)
  redis.call('XADD', KEYS[2], '*', 'run_id', id, 'sid', sid, 'kind', kind or 'schedule')
end

-- a run of the schedule closed: free its slot, start the run held back, if any
local function release(sid)
  redis.call('SREM', KEYS[5], run_id)
  if redis.call('SCARD', KEYS[5]) > 0 then return '' end
  local held = redis.call('LPOP', KEYS[6])
  if not held then return '' end
  local run = cjson.decode(held)
  local key = ARGV[5] .. run.run_id
  redis.call('HSET', key, 'status', 'queued')
  append('RunQueued', sid, '{"run_id":' .. cjson.encode(run.run_id) .. ',"schedule_id":' ..
    cjson.encode(sid) .. ',"workflow_id":' .. cjson.encode(run.workflow_id) .. ',"trigger":' ..
    run.trigger .. ',"nominal_time":' .. cjson.encode(run.nominal) .. ',"input":' ..
    run.input .. '}')
  enqueue(run.run_id, sid)
  redis.call('SADD', KEYS[5], run.run_id)
  return run.run_id
end

local run = redis.call('HMGET', KEYS[1], 'status', 'sid', 'token', 'attempt')
local status, sid = run[1], run[2]

if action == 'requeue' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', ARGV[4], 'LIMIT', 0,
    tonumber(ARGV[7]))
  for _, id in ipairs(due) do
    local key = ARGV[5] .. id
    local found = redis.call('HMGET', key, 'sid', 'status', 'kind')
    if found[1] and found[2] == 'retrying' then
      redis.call('HSET', key, 'status', 'queued', 'deliveries', 0)
      enqueue(id, found[1], found[3])
    end
    redis.call('ZREM', KEYS[7], id)
  end
  return {'OK', #due}
end

if not status then
  if action == 'create' then
    -- ARGV[7] workflow id  ARGV[8] trigger (JSON)  ARGV[9] input (JSON)
    -- ARGV[10] idempotency key ('' for none; a hash in this slot)  ARGV[11] fingerprint
    if ARGV[10] ~= '' then
      local fp = redis.call('HGET', ARGV[10], 'fp')
      if fp then
        if fp ~= ARGV[11] then return {'REUSED'} end
        return {'DUP', redis.call('HGET', ARGV[10], 'run_id')}
      end
      redis.call('HSET', ARGV[10], 'fp', ARGV[11], 'run_id', run_id)
      redis.call('PEXPIRE', ARGV[10], 86400000)
    end
    redis.call('HSET', KEYS[1], 'sid', ARGV[7], 'kind', 'workflow', 'workflow_id', ARGV[7],
      'trigger', ARGV[8], 'nominal', '', 'input', ARGV[9], 'status', 'queued', 'attempt', 0,
      'deliveries', 0, 'traceparent', cjson.decode(meta).traceparent or '')
    append('RunQueued', ARGV[7], '{"run_id":' .. cjson.encode(run_id) ..
      ',"schedule_id":null,"workflow_id":' .. cjson.encode(ARGV[7]) .. ',"trigger":' ..
      ARGV[8] .. ',"nominal_time":null,"input":' .. ARGV[9] .. '}')
    redis.call('SADD', KEYS[5], run_id)
    enqueue(run_id, ARGV[7], 'workflow')
    return {'OK', run_id}
  end
  if action == 'start' then redis.call('XACK', KEYS[2], group, ARGV[7]) end
  return {'GONE'}
end

if action == 'start' then
  local entry = ARGV[7]
  if TERMINAL[status] or status == 'retrying' then
    redis.call('XACK', KEYS[2], group, entry)
    return {'DONE', status}
  end
  local cancel = redis.call('HGET', KEYS[1], 'cancel')
  if cancel then
    redis.call('HSET', KEYS[1], 'status', 'cancelled')
    append('RunCancelled', sid, cjson.encode({run_id = run_id, reason = 'cancelled before start'}))
    redis.call('XACK', KEYS[2], group, entry)
    release(sid)
    return {'CANCELLED'}
  end
  local deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
  if deliveries > tonumber(ARGV[9]) then
    redis.call('HSET', KEYS[1], 'status', 'deadlettered')
    redis.call('HDEL', KEYS[1], 'token')
    append('RunDeadLettered', sid, cjson.encode({run_id = run_id,
      reason = 'delivered ' .. (deliveries - 1) .. ' times without a result',
      deliveries = deliveries - 1}))
    redis.call('ZADD', KEYS[8], ARGV[4], run_id)
    redis.call('XACK', KEYS[2], group, entry)
    release(sid)
    return {'DEAD'}
  end
  local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
  local token = entry .. '/' .. attempt
  redis.call('HSET', KEYS[1], 'status', 'running', 'token', token, 'entry', entry)
  append('RunStarted', sid, cjson.encode({run_id = run_id, attempt = attempt,
    worker = ARGV[8], started_at = ARGV[10]}))
  local fields = redis.call('HMGET', KEYS[1], 'workflow_id', 'trigger', 'nominal', 'input',
    'traceparent')
  return {'OK', attempt, token, fields[1] or '', fields[2] or '{}', fields[3] or '',
    fields[4] or 'null', fields[5] or ''}
end

if action == 'finish' then
  if ARGV[8] ~= '*' and run[3] ~= ARGV[8] then
    return {'STALE'}
  end
  if TERMINAL[status] then
    return {'DONE', status}
  end
  local outcome = ARGV[9]
  if ARGV[10] ~= '' then append('RunAttemptFailed', sid, ARGV[10]) end
  if ARGV[7] ~= '' then redis.call('XACK', KEYS[2], group, ARGV[7]) end
  redis.call('HDEL', KEYS[1], 'token')
  if outcome == 'retry' then
    redis.call('HSET', KEYS[1], 'status', 'retrying')
    redis.call('ZADD', KEYS[7], ARGV[12], run_id)
    return {'OK', ''}
  end
  local event = ({succeeded = 'RunSucceeded', failed = 'RunFailed', timedout = 'RunTimedOut',
    cancelled = 'RunCancelled', deadlettered = 'RunDeadLettered'})[outcome]
  append(event, sid, ARGV[11])
  redis.call('HSET', KEYS[1], 'status', outcome)
  redis.call('ZREM', KEYS[7], run_id)
  if outcome == 'deadlettered' then redis.call('ZADD', KEYS[8], ARGV[4], run_id) end
  return {'OK', release(sid)}
end

if action == 'cancel' then
  if TERMINAL[status] then return {'DONE', status} end
  if status == 'running' then
    redis.call('HSET', KEYS[1], 'cancel', ARGV[7])
    append('RunCancelRequested', sid, cjson.encode({run_id = run_id, requested_by = ARGV[8],
      terminate = ARGV[7] == 'terminate'}))
    return {'REQUESTED'}
  end
  -- queued, buffered or waiting for a retry: it ends here
  if status == 'buffered' then
    for _, held in ipairs(redis.call('LRANGE', KEYS[6], 0, 10000)) do
      if cjson.decode(held).run_id == run_id then
        redis.call('LREM', KEYS[6], 1, held)
        break
      end
    end
  end
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancel', ARGV[7])
  redis.call('ZREM', KEYS[7], run_id)
  append('RunCancelled', sid, cjson.encode({run_id = run_id,
    reason = 'cancelled by ' .. ARGV[8]}))
  if status == 'buffered' then return {'CANCELLED', ''} end
  return {'CANCELLED', release(sid)}
end

if action == 'create' then
  -- a run of a workflow with no schedule (POST /v1/workflows/{id}/runs); KEYS[1] is new
  return {'EXISTS'}
end

if action == 'revive' then
  if status ~= 'deadlettered' and status ~= 'failed' and status ~= 'timedout' then
    return {'NOT_DEAD', status}
  end
  redis.call('HSET', KEYS[1], 'status', 'queued', 'deliveries', 0)
  redis.call('HDEL', KEYS[1], 'cancel', 'token')
  redis.call('ZREM', KEYS[8], run_id)
  redis.call('SADD', KEYS[5], run_id)
  append('RunRequeued', sid, cjson.encode({run_id = run_id, requested_by = ARGV[7]}))
  enqueue(run_id, sid, redis.call('HGET', KEYS[1], 'kind'))
  return {'OK'}
end

return redis.error_reply('unknown run action ' .. tostring(action))
