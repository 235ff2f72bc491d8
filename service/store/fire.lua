-- Fire one schedule (or a batch of the ticker's: see the end): check the fence, the
-- schedule and its high-water mark (the ticker), or the call's operation record (a
-- trigger or a backfill), then append each fire's outcome and the runs it starts,
-- atomically. What fires is decided in service/domain/fire: this script applies the
-- plan it is given, and the overlap rule it is given against the runs Redis holds now.
--
-- KEYS[1]  cs:{p}:lease                   KEYS[7]  cs:{p}:log:chain (the chain's head)
-- KEYS[2]  cs:{p}:epoch                   KEYS[8]  cs:{p}:queue (run queue stream)
-- KEYS[3]  cs:{p}:state:schedule:<sid>    KEYS[9]  cs:{p}:running:<sid> (set of run ids)
-- KEYS[4]  cs:{p}:hwm                     KEYS[10] cs:{p}:buffer:<sid> (list of held runs)
-- KEYS[5]  cs:{p}:due                     KEYS[11] cs:{p}:events:schedule:<sid>
-- KEYS[6]  cs:{p}:log
-- every mode but 'schedule' (the ticker's fires are made safe by the high-water mark):
-- KEYS[12] cs:{p}:op:<token>: this call's first reply, answered to its retries
-- KEYS[13] backfill: cs:{p}:backfilled:<sid>, the nominal times a backfill gave a run;
--          a trigger with an Idempotency-Key: cs:{p}:idem:fire:<key>
-- KEYS[14] a backfill's later chunk (h.after): cs:{p}:run:<after>, the last run of the
--          chunk before
-- then, from KEYS[h.runs_from]: cs:{p}:run:<run id> of each fire, in order (none for a
-- workflow of target 'none': its runs succeed at once and have no hash).
-- Not passed, since their ids are read here (from KEYS[9]): the run hashes of the running
-- runs a held fire asks to cancel, built from h.run_prefix (the partition's slot).
--
-- ARGV[1]  a JSON object: mode ('schedule', 'manual', 'api', 'backfill'); sid,
--          workflow_id, target (the workflow's target type); while_running ('fire',
--          'skip', 'hold'), bound, cancel ('', 'cancel', 'terminate'): the overlap rule;
--          input, meta (JSON); fire_time (RFC 3339); runs_from; run_prefix; traced (true:
--          each fire carries a traceparent); then
--          mode 'schedule': owner, epoch (the lease); version, hwm, new_hwm (the expected
--          schedule version and high-water mark, and the new mark); next_due ('' when
--          the spec has no more times); missed (the FiresMissed event's data as JSON, ''
--          for none); max_actions ('' for none);
--          other modes: source; idempotency_key (true: a trigger with a key, KEYS[13]),
--          fingerprint, dedupe_ttl; op_ttl; after (a backfill's chunk: the run id of
--          the chunk before's last run, '' for none)
-- ARGV[2..] per fire: nominal ms, nominal (RFC 3339), run id, fire id, and when h.traced,
--          the traceparent of its fire span: stored with the run and in its events' meta
--
-- Returns {'OK', fired, skipped, dropped, completed, tail} | {'FENCED'} | {'INACTIVE'}
--       | {'STALE', version, mark} | {'DUP', run id} | {'GONE'} | {'REUSED'}
-- (tail: the last run of the request's sequence, which a next chunk follows; '' for none)
--
-- The times of one request (a backfill's chunk, a tick's catch-up) never block each
-- other (service/domain/fire/overlap.py: decide_sequence): the first is decided by the
-- overlap rule against the runs running before the request; unless the rule lets runs
-- overlap, each later time then follows the one before it: its run is held (status
-- 'buffered', in no list) and named in the previous run's hash field 'next', and
-- runs.lua queues it when that run ends. When the first is skipped or dropped, so are
-- the others.
--
-- Guarantees: a holder that lost its lease appends nothing (FENCED); a fire decided on
-- an older version of the schedule appends nothing (STALE); a nominal time at or below
-- the high-water mark never fires again, so a repeated ticker call appends nothing; a
-- repeated trigger or backfill call (the same operation token) answers its first reply
-- and appends nothing; a backfilled nominal time that got a run never fires twice (one
-- skipped or dropped is taken again by a later backfill); the due index moves in the
-- same step.

-- `versions` (event type -> schema version) is set in front of the prelude at load, from
-- the event models (service/store/fires.py: fire_source).

-- The chain's head as this call's appends left it (nil until the first): written to
-- KEYS[7] once, at the end of the call (see the end of the file).
local head = nil

-- The entry ids a request appended, for its schedule's event index (index_key): pushed in
-- one call when the request ends (or when it failed halfway, with the chain's head), not
-- one call per event; in calls of at most INDEX_PUSH ids, within unpack's stack.
local INDEX_PUSH = 1000
local index_key, indexed = nil, {}

local function flush_index()
  local ids = indexed
  indexed = {}
  if #ids > 0 then redis.call('RPUSH', index_key, unpack(ids)) end
end

-- One request: KEYS and ARGV as above, or as built by the batch below; h its decoded
-- header. fenced: the batch checked the lease already, once for all its requests.
local function fire_one(KEYS, ARGV, h, fenced)
  local mode = h.mode
  local sid = h.sid
  local scheduled = mode == 'schedule'
  local keyed = (mode == 'manual' or mode == 'api') and h.idempotency_key

  local function answer(reply)
    if scheduled then return reply end
    return op_record(KEYS[12], h.op_ttl, reply)
  end

  if scheduled then
    if not fenced and (redis.call('GET', KEYS[1]) ~= h.owner
        or redis.call('GET', KEYS[2]) ~= h.epoch) then
      return {'FENCED'}
    end
  else
    local first = op_replay(KEYS[12])
    if first then return first end
  end

  local state = redis.call('HMGET', KEYS[3], 'version', 'status')
  local status = state[2]
  if not status or status == 'deleted' then
    if scheduled then redis.call('ZREM', KEYS[5], sid) end
    return answer({'GONE'})
  end

  if scheduled then
    if status ~= 'active' then
      redis.call('ZREM', KEYS[5], sid)
      return {'INACTIVE'}
    end
    local mark = redis.call('HGET', KEYS[4], sid) or '0'
    if state[1] ~= h.version or mark ~= h.hwm then
      return {'STALE', state[1] or '0', mark}
    end
  elseif keyed then
    local fp = redis.call('HGET', KEYS[13], 'fp')
    if fp then
      if fp ~= h.fingerprint then return answer({'REUSED'}) end
      return answer({'DUP', redis.call('HGET', KEYS[13], 'run_id')})
    end
  end

  local base_meta = h.meta
  local meta = base_meta

  -- the fire's trace context joins the meta of the events it appends
  local function with_trace(tp)
    if tp == '' then return base_meta end
    if base_meta == '{}' then return '{"traceparent":' .. cjson.encode(tp) .. '}' end
    return string.sub(base_meta, 1, -2) .. ',"traceparent":' .. cjson.encode(tp) .. '}'
  end

  local function append(event_type, data)
    if head == nil then head = redis.call('GET', KEYS[7]) or '' end
    local id
    id, head = chain_append_after(head, KEYS[6], event_type, versions[event_type], sid, data,
      meta)
    index_key = KEYS[11]
    indexed[#indexed + 1] = id
    if #indexed >= INDEX_PUSH then flush_index() end
  end

  local trigger_type = scheduled and 'schedule' or mode
  local trigger = cjson.encode({type = trigger_type, source = h.source or '', label = ''})
  local input = h.input

  local function queue(run_key, run_id, nominal, traceparent)
    append('RunQueued', run_queued_json(run_id, sid, h.workflow_id, trigger, nominal, input))
    if h.target == 'none' then
      -- the fire event is the whole action: the run succeeds at once
      append('RunSucceeded', '{"run_id":' .. cjson.encode(run_id) .. ',"attempt":0}')
      return
    end
    redis.call('HSET', run_key, 'sid', sid, 'workflow_id', h.workflow_id, 'trigger', trigger,
      'nominal', nominal, 'input', input, 'status', 'queued', 'attempt', 0, 'deliveries', 0,
      'traceparent', traceparent)
    redis.call('XADD', KEYS[8], '*', 'run_id', run_id, 'sid', sid)
    redis.call('SADD', KEYS[9], run_id)
  end

  -- a run that waits: in the buffer (held by the overlap rule) or behind the run before it
  local function buffered(run_key, run_id, nominal, traceparent)
    redis.call('HSET', run_key, 'sid', sid, 'workflow_id', h.workflow_id, 'trigger', trigger,
      'nominal', nominal, 'input', input, 'status', 'buffered', 'attempt', 0, 'deliveries', 0,
      'traceparent', traceparent)
  end

  local function hold(run_key, run_id, nominal, traceparent, running)
    buffered(run_key, run_id, nominal, traceparent)
    if h.cancel ~= '' then
      for _, other in ipairs(running) do
        redis.call('HSET', h.run_prefix .. other, 'cancel', h.cancel)
        append('RunCancelRequested', cjson.encode({run_id = other, requested_by = run_id,
          terminate = h.cancel == 'terminate'}))
      end
    end
    redis.call('RPUSH', KEYS[10], cjson.encode({run_id = run_id, nominal = nominal,
      trigger = trigger, input = input, workflow_id = h.workflow_id}))
  end

  local function fired(fire_id, nominal, run_id, held, after)
    append('ScheduleFired', cjson.encode({fire_id = fire_id, nominal_time = nominal,
      fire_time = h.fire_time, epoch = tonumber(h.epoch) or 0, trigger = trigger_type,
      run_id = run_id, held = held, after = after}))
  end

  local ALIVE = {queued = true, running = true, retrying = true, buffered = true}

  -- the overlap rule for the request's times (service/domain/fire/overlap.py:
  -- decide_sequence): the first's outcome, and what the later ones do
  local function sequence(running)
    if h.while_running == 'fire' then return 'fire', 'fire' end
    if h.after and h.after ~= '' and ALIVE[redis.call('HGET', KEYS[14], 'status')] then
      return 'follow', 'follow'
    end
    if #running == 0 then return 'fire', 'follow' end
    if h.while_running == 'skip' then return 'skip', 'skip' end
    if redis.call('LLEN', KEYS[10]) >= tonumber(h.bound) then return 'drop', 'drop' end
    return 'hold', 'follow'
  end

  local running = {}
  local first, later = 'fire', 'fire'
  if #ARGV > 1 then
    if h.while_running ~= 'fire' then running = redis.call('SMEMBERS', KEYS[9]) end
    first, later = sequence(running)
  end
  -- the run the next time follows: the chunk before's last run, then each run made here
  local prev_id, prev_key = '', nil
  if first == 'follow' then prev_id, prev_key = h.after, KEYS[14] end

  -- one time's outcome; true when it got a run
  local function decide_one(outcome, run_key, run_id, nominal, fire_id, traceparent)
    if outcome == 'skip' then
      append('FireSkipped', cjson.encode({fire_id = fire_id, nominal_time = nominal,
        reason = 'overlap', running = running}))
      return false
    elseif outcome == 'drop' then
      append('FireDropped', cjson.encode({fire_id = fire_id, nominal_time = nominal,
        reason = 'buffer_full'}))
      return false
    elseif outcome == 'fire' then
      fired(fire_id, nominal, run_id, false)
      queue(run_key, run_id, nominal, traceparent)
    elseif outcome == 'hold' then
      fired(fire_id, nominal, run_id, true)
      hold(run_key, run_id, nominal, traceparent, running)
    else -- follow
      fired(fire_id, nominal, run_id, true, prev_id)
      buffered(run_key, run_id, nominal, traceparent)
      redis.call('HSET', prev_key, 'next', run_id)
    end
    prev_id, prev_key = run_id, run_key
    return true
  end

  local fired_count, skipped, dropped, decided = 0, 0, 0, 0
  local stride = h.traced and 5 or 4
  for i = 0, (#ARGV - 1) / stride - 1 do
    local at = 2 + i * stride
    local nominal_ms = ARGV[at]
    if mode ~= 'backfill' or redis.call('SISMEMBER', KEYS[13], nominal_ms) == 0 then
      local traceparent = h.traced and ARGV[at + 4] or ''
      meta = with_trace(traceparent)
      local outcome = decided == 0 and first or later
      decided = decided + 1
      if decide_one(outcome, KEYS[h.runs_from + i], ARGV[at + 2], ARGV[at + 1], ARGV[at + 3],
          traceparent) then
        fired_count = fired_count + 1
        if mode == 'backfill' then redis.call('SADD', KEYS[13], nominal_ms) end
      elseif outcome == 'skip' then
        skipped = skipped + 1
      else
        dropped = dropped + 1
      end
    end
  end

  meta = base_meta
  local completed = 0
  if scheduled then
    if h.missed ~= '' then append('FiresMissed', h.missed) end
    redis.call('HSET', KEYS[4], sid, h.new_hwm)
    local actions = redis.call('HINCRBY', KEYS[3], 'actions', fired_count)
    if h.max_actions ~= '' and actions >= tonumber(h.max_actions) then
      completed = 1
      -- the status field overrides the snapshot's (see EventStore.load)
      redis.call('HSET', KEYS[3], 'status', 'completed')
      redis.call('HINCRBY', KEYS[3], 'version', 1)
      append('ScheduleCompleted', cjson.encode({action_count = actions}))
      redis.call('ZREM', KEYS[5], sid)
    elseif h.next_due == '' then
      redis.call('ZREM', KEYS[5], sid)
    else
      redis.call('ZADD', KEYS[5], h.next_due, sid)
    end
  elseif keyed then
    redis.call('HSET', KEYS[13], 'fp', h.fingerprint, 'run_id', ARGV[4])
    redis.call('PEXPIRE', KEYS[13], h.dedupe_ttl)
  end
  if later ~= 'follow' then prev_id = '' end
  return answer({'OK', fired_count, skipped, dropped, completed, prev_id})
end

-- A batch of the ticker's requests on one partition, in one call: the lease is checked
-- once, first (the call is atomic, so no request of it can be decided under a lease
-- lost midway), then each request as a call of its own would be, in order.
--
-- KEYS[1]  cs:{p}:lease   KEYS[2]  cs:{p}:epoch   KEYS[3]  cs:{p}:hwm   KEYS[4]  cs:{p}:due
-- KEYS[5]  cs:{p}:log     KEYS[6]  cs:{p}:log:chain                     KEYS[7]  cs:{p}:queue
-- ARGV[1]  'batch'; ARGV[2], [3] the lease's owner and epoch; ARGV[4..8] the key prefixes
--          of the schedules' state hashes, running sets, buffers, event indexes and of
--          the run hashes (cs:{p}:state:schedule:, cs:{p}:running:, cs:{p}:buffer:,
--          cs:{p}:events:schedule:, cs:{p}:run:)
-- then one argument per request: a JSON array of what a single call's ARGV would hold,
-- its header decoded (one argument and one decoding per request, not five a fire).
-- Not passed: each request's own keys (KEYS[3], [9] to [11] and the run hashes of a
-- single call), built here from the prefixes: they share the partition's hash tag.
--
-- Returns {'FENCED'} | {'BATCH', the reply of each request, in order}

local function fire_batch()
  if redis.call('GET', KEYS[1]) ~= ARGV[2] or redis.call('GET', KEYS[2]) ~= ARGV[3] then
    return {'FENCED'}
  end
  local replies = {'BATCH'}
  for at = 9, #ARGV do
    local args = cjson.decode(ARGV[at])
    local h = args[1]
    if h.mode ~= 'schedule' then return redis.error_reply('ERR a batch holds ticker requests only') end
    local sid = h.sid
    local k = {KEYS[1], KEYS[2], ARGV[4] .. sid, KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7],
      ARGV[5] .. sid, ARGV[6] .. sid, ARGV[7] .. sid}
    if h.target ~= 'none' then
      local stride = h.traced and 5 or 4
      for i = 0, (#args - 1) / stride - 1 do k[h.runs_from + i] = ARGV[8] .. args[4 + i * stride] end
    end
    replies[#replies + 1] = fire_one(k, args, h, true)
    flush_index()
  end
  return replies
end

-- The chain's head is written once, after the requests, and also when one failed
-- halfway (its appends stay, as Redis keeps a failed script's writes, and so are noted
-- in its event index when that can still be done): the chain then still ends at the
-- last entry, and the error is raised again.
local batch = ARGV[1] == 'batch'
local ok, reply = pcall(function()
  if batch then return fire_batch() end
  local one = fire_one(KEYS, ARGV, cjson.decode(ARGV[1]), false)
  flush_index()
  return one
end)
if not ok then pcall(flush_index) end
if head ~= nil then redis.call('SET', batch and KEYS[6] or KEYS[7], head) end
if not ok then error(reply) end
return reply
