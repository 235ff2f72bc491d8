-- Read many aggregates' write models in one call (``EventStore.load_many``).
--
-- KEYS[1..n]  write-model hashes of one partition   cs:{p}:state:<kind>:<id>
--
-- Returns, per key in order, {state, version, status} (each nil where absent).
--
-- Guarantees: reads only; the models are read at one instant, between two writes.

local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], 'state', 'version', 'status')
end
return out
