-- Asks a running saga to stop: its orchestrator sees the flag with its next journal append (or
-- when it takes the saga), lets the running step end, and compensates what completed.
-- KEYS[1] the snapshot hash
-- Returns 1 when the saga was running (the flag is set), 0 otherwise (unknown or finished).
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 1
