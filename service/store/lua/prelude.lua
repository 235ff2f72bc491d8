-- The prelude: functions every cronstream script shares. It is joined in front of a
-- script's body when the script is loaded (service/store/scripts.py), so these are
-- plain local functions of each script. Keys are always passed in by the caller.

-- Milliseconds since the epoch, by the Redis server's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append one event to a partition's log, extending its hash chain (see
-- service/store/chain.py), and note the entry in the aggregate's event index
-- (index_key false: no index). Returns the new entry id.
local function chain_append(log_key, chain_key, index_key, event_type, version, sid, data, meta)
  local prev = redis.call('GET', chain_key) or ''
  local hash = redis.sha1hex(prev .. '\31' .. event_type .. '\31' .. version .. '\31' .. sid ..
    '\31' .. data .. '\31' .. meta)
  local id = redis.call('XADD', log_key, '*', 'type', event_type, 'v', version, 'sid', sid,
    'data', data, 'meta', meta, 'prev', prev, 'hash', hash)
  redis.call('SET', chain_key, hash)
  if index_key then redis.call('RPUSH', index_key, id) end
  return id
end

-- chain_append for a script that appends many events in a row: it passes the chain's
-- head (prev), keeps the new one (the hash returned with the entry id) and writes it
-- once at its end, rather than reading and writing it for each event; it then notes the
-- entry in the aggregate's event index itself. Same entry and hash as chain_append.
local function chain_append_after(prev, log_key, event_type, version, sid, data, meta)
  local hash = redis.sha1hex(prev .. '\31' .. event_type .. '\31' .. version .. '\31' .. sid ..
    '\31' .. data .. '\31' .. meta)
  local id = redis.call('XADD', log_key, '*', 'type', event_type, 'v', version, 'sid', sid,
    'data', data, 'meta', meta, 'prev', prev, 'hash', hash)
  return id, hash
end

-- Operation records make a script safe to retry. The caller makes one token per
-- logical call and keeps it across the client's retries; the first execution records
-- its reply under the token, and a repeat gets that reply back and changes nothing.
-- The record outlives any retry of the client (OP_TTL_MS in service/store/scripts.py).
local function op_replay(op_key)
  local seen = redis.call('GET', op_key)
  if seen then return cjson.decode(seen) end
  return nil
end

local function op_record(op_key, ttl_ms, reply)
  redis.call('SET', op_key, cjson.encode(reply), 'PX', ttl_ms)
  return reply
end

-- The data of a RunQueued event. The trigger and input are JSON already (the
-- caller's bytes are kept as they are); the other values are encoded here.
-- nominal: RFC 3339 or '' (none); sid: a schedule id or false (a workflow's run).
local function run_queued_json(run_id, sid, workflow_id, trigger_json, nominal, input_json)
  local sid_json = sid and cjson.encode(sid) or 'null'
  local nominal_json = (nominal == '') and 'null' or cjson.encode(nominal)
  return '{"run_id":' .. cjson.encode(run_id) .. ',"schedule_id":' .. sid_json ..
    ',"workflow_id":' .. cjson.encode(workflow_id) .. ',"trigger":' .. trigger_json ..
    ',"nominal_time":' .. nominal_json .. ',"input":' .. input_json .. '}'
end

-- ---------------------------------------------------------------------------------
