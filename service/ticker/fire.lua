-- Fire one schedule: check the fence, the schedule and its high-water mark, then
-- append each fire's outcome and the runs it starts, atomically.
--
-- KEYS[1]  cs:{p}:lease             KEYS[7]  cs:{p}:queue (run queue stream)
-- KEYS[2]  cs:{p}:epoch             KEYS[8]  cs:{p}:running:<sid> (set of run ids)
-- KEYS[3]  cs:{p}:state:schedule:<sid>  KEYS[9]  cs:{p}:buffer:<sid> (list of held runs)
-- KEYS[4]  cs:{p}:hwm               KEYS[10] cs:{p}:events:schedule:<sid>
-- KEYS[5]  cs:{p}:due               KEYS[11] dedupe key: idempotency hash (manual) or
-- KEYS[6]  cs:{p}:log                        the set of backfilled nominal times (backfill)
--
-- ARGV[1]  a JSON object of strings: mode ('schedule' for the ticker, 'manual', 'api',
--          'backfill'); token, epoch (the lease, mode 'schedule'); version, hwm, new_hwm
--          (the expected schedule version and high-water mark, and the new mark);
--          next_due ('' when the spec has no more times); sid, workflow_id, target
--          (the workflow's target type); overlap, buffer_max; input, meta (JSON);
--          fire_time (RFC 3339); source; fingerprint, dedupe_ttl (manual triggers);
--          missed_count, missed_first, missed_last; max_actions ('' for none)
--          run_prefix: the prefix of run hashes (cs:{p}:run:), which share the slot
-- ARGV[2..] per fire: nominal ms, nominal (RFC 3339), run id, traceparent of its fire
--          span ('' when tracing is off): stored with the run and in its events' meta
--
-- Returns {'OK', fired, skipped, dropped, completed} | {'FENCED'} | {'INACTIVE'}
--       | {'STALE', version, mark} | {'DUP', run id} | {'GONE'} | {'REUSED'}
--
-- Guarantees: a holder that lost its lease appends nothing (FENCED); a fire
-- decided on an older version of the schedule appends nothing (STALE); a nominal
-- time at or below the high-water mark never fires again, so a retried call
-- appends nothing twice; the due index moves in the same step.

local h = cjson.decode(ARGV[1])
local mode = h.mode
local sid = h.sid
local base_meta = h.meta
local meta = base_meta

-- the fire's trace context joins the meta of the events it appends
local function with_trace(tp)
  if tp == '' then return base_meta end
  if base_meta == '{}' then return '{"traceparent":' .. cjson.encode(tp) .. '}' end
  return string.sub(base_meta, 1, -2) .. ',"traceparent":' .. cjson.encode(tp) .. '}'
end

if mode == 'schedule' then
  if redis.call('GET', KEYS[1]) ~= h.token or redis.call('GET', KEYS[2]) ~= h.epoch then
    return {'FENCED'}
  end
end

local state = redis.call('HMGET', KEYS[3], 'version', 'status', 'actions')
local status = state[2]
if not status or status == 'deleted' then
  if mode == 'schedule' then redis.call('ZREM', KEYS[5], sid) end
  return {'GONE'}
end

if mode == 'schedule' then
  if status ~= 'active' then
    redis.call('ZREM', KEYS[5], sid)
    return {'INACTIVE'}
  end
  local mark = redis.call('HGET', KEYS[4], sid) or '0'
  if state[1] ~= h.version or mark ~= h.hwm then
    return {'STALE', state[1] or '0', mark}
  end
elseif mode == 'manual' or mode == 'api' then
  local fp = redis.call('HGET', KEYS[11], 'fp')
  if fp then
    if fp ~= h.fingerprint then return {'REUSED'} end
    return {'DUP', redis.call('HGET', KEYS[11], 'run_id')}
  end
end

local function append(event_type, data)
  -- the hash chain (see service/store/chain.py)
  local prev = redis.call('GET', KEYS[6] .. ':chain') or ''
  local hash = redis.sha1hex(prev .. '\31' .. event_type .. '\31' .. '1' .. '\31' .. sid ..
    '\31' .. data .. '\31' .. meta)
  local id = redis.call('XADD', KEYS[6], '*', 'type', event_type, 'v', '1', 'sid', sid,
    'data', data, 'meta', meta, 'prev', prev, 'hash', hash)
  redis.call('SET', KEYS[6] .. ':chain', hash)
  redis.call('RPUSH', KEYS[10], id)
end

local trigger = cjson.encode({type = (mode == 'schedule') and 'schedule' or mode,
  source = h.source, label = ''})
local input = h.input

local function run_queued(run_id, nominal, meta_traceparent)
  local nominal_json = (nominal == '') and 'null' or cjson.encode(nominal)
  append('RunQueued', '{"run_id":' .. cjson.encode(run_id) .. ',"schedule_id":' ..
    cjson.encode(sid) .. ',"workflow_id":' .. cjson.encode(h.workflow_id) .. ',"trigger":' ..
    trigger .. ',"nominal_time":' .. nominal_json .. ',"input":' .. input .. '}')
  if h.target == 'none' then
    -- the fire event is the whole action: the run succeeds at once
    append('RunSucceeded', '{"run_id":' .. cjson.encode(run_id) .. ',"attempt":0}')
    return
  end
  redis.call('HSET', h.run_prefix .. run_id, 'sid', sid, 'workflow_id', h.workflow_id,
    'trigger', trigger, 'nominal', nominal, 'input', input, 'status', 'queued',
    'attempt', 0, 'deliveries', 0, 'traceparent', meta_traceparent)
  redis.call('XADD', KEYS[7], '*', 'run_id', run_id, 'sid', sid)
  redis.call('SADD', KEYS[8], run_id)
end

local function fired(fire_id, nominal, run_id, held)
  append('ScheduleFired', cjson.encode({fire_id = fire_id, nominal_time = nominal,
    fire_time = h.fire_time, epoch = tonumber(h.epoch) or 0,
    trigger = (mode == 'schedule') and 'schedule' or mode, run_id = run_id, held = held}))
end

local overlap = h.overlap
local fired_count, skipped, dropped = 0, 0, 0
local n = (#ARGV - 1) / 4
for i = 0, n - 1 do
  local nominal_ms = ARGV[2 + i * 4]
  local nominal = ARGV[3 + i * 4]
  local run_id = ARGV[4 + i * 4]
  local traceparent = ARGV[5 + i * 4]
  meta = with_trace(traceparent)
  local kind = (mode == 'manual' or mode == 'api') and (mode .. ':' .. run_id) or mode
  local fire_id = sid .. ':' .. nominal_ms .. ':' .. kind
  local fresh = true
  if mode == 'backfill' then
    fresh = redis.call('SADD', KEYS[11], nominal_ms) == 1
  end
  if fresh then
    local running = redis.call('SMEMBERS', KEYS[8])
    if #running == 0 or overlap == 'allow_all' or h.target == 'none' then
      fired(fire_id, nominal, run_id, false)
      run_queued(run_id, nominal, traceparent)
      fired_count = fired_count + 1
    elseif overlap == 'skip' then
      append('FireSkipped', cjson.encode({fire_id = fire_id, nominal_time = nominal,
        reason = 'overlap', running = running}))
      skipped = skipped + 1
    else
      local bound = tonumber(h.buffer_max)
      if overlap == 'buffer_one' then bound = 1 end
      if redis.call('LLEN', KEYS[9]) >= bound then
        append('FireDropped', cjson.encode({fire_id = fire_id, nominal_time = nominal,
          reason = 'buffer_full'}))
        dropped = dropped + 1
      else
        fired(fire_id, nominal, run_id, true)
        redis.call('HSET', h.run_prefix .. run_id, 'sid', sid, 'workflow_id', h.workflow_id,
          'trigger', trigger, 'nominal', nominal, 'input', input, 'status', 'buffered',
          'attempt', 0, 'deliveries', 0, 'traceparent', traceparent)
        if overlap == 'cancel_other' or overlap == 'terminate_other' then
          local mode = (overlap == 'terminate_other') and 'terminate' or 'cancel'
          for _, other in ipairs(running) do
            redis.call('HSET', h.run_prefix .. other, 'cancel', mode)
            append('RunCancelRequested', cjson.encode({run_id = other, requested_by = run_id,
              terminate = overlap == 'terminate_other'}))
          end
        end
        redis.call('RPUSH', KEYS[9], cjson.encode({run_id = run_id, nominal = nominal,
          trigger = trigger, input = input, workflow_id = h.workflow_id}))
        fired_count = fired_count + 1
      end
    end
  end
end

meta = base_meta
local completed = 0
if mode == 'schedule' then
  if tonumber(h.missed_count) > 0 then
    append('FiresMissed', cjson.encode({count = tonumber(h.missed_count), first = h.missed_first,
      last = h.missed_last, reason = 'catchup'}))
  end
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
elseif mode == 'manual' or mode == 'api' then
  redis.call('HSET', KEYS[11], 'fp', h.fingerprint, 'run_id', ARGV[4])
  redis.call('PEXPIRE', KEYS[11], h.dedupe_ttl)
end
return {'OK', fired_count, skipped, dropped, completed}
