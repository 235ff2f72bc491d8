-- Close a run: record how it ended, and start the run its schedule held back.
--
-- KEYS[1]  cs:{p}:running:<sid>   KEYS[3]  cs:{p}:log     KEYS[5]  cs:{p}:events:schedule:<sid>
-- KEYS[2]  cs:{p}:buffer:<sid>    KEYS[4]  cs:{p}:queue
-- ARGV[1]  run id   ARGV[2] terminal event type (RunSucceeded, RunFailed, ...)
-- ARGV[3]  its data (JSON)   ARGV[4] meta (JSON)   ARGV[5] schedule id
--
-- Returns {'OK', started run id or ''} | {'NOT_RUNNING'}.
-- A run that is not in the running set (already closed, or never started) is
-- refused: a late or repeated completion appends nothing.

if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
  return {'NOT_RUNNING'}
end
local function append(event_type, data)
  local id = redis.call('XADD', KEYS[3], '*', 'type', event_type, 'v', '1', 'sid', ARGV[5],
    'data', data, 'meta', ARGV[4])
  redis.call('RPUSH', KEYS[5], id)
end
append(ARGV[2], ARGV[3])
local started = ''
if redis.call('SCARD', KEYS[1]) == 0 then
  local held = redis.call('LPOP', KEYS[2])
  if held then
    local run = cjson.decode(held)
    append('RunQueued', '{"run_id":' .. cjson.encode(run.run_id) .. ',"schedule_id":' ..
      cjson.encode(ARGV[5]) .. ',"workflow_id":' .. cjson.encode(run.workflow_id) ..
      ',"trigger":' .. run.trigger .. ',"nominal_time":' .. cjson.encode(run.nominal) ..
      ',"input":' .. run.input .. '}')
    redis.call('XADD', KEYS[4], '*', 'run_id', run.run_id, 'sid', ARGV[5],
      'workflow_id', run.workflow_id, 'trigger', run.trigger, 'nominal_time', run.nominal,
      'input', run.input, 'meta', ARGV[4])
    redis.call('SADD', KEYS[1], run.run_id)
    started = run.run_id
  end
end
return {'OK', started}
