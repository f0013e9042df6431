-- An orchestrator takes a saga: a new epoch, which every later journal append must carry, so
-- that the orchestrator that held it before (dead, or paused past its lease) can write nothing.
-- KEYS[1] the snapshot hash
-- ARGV[1] the orchestrator (consumer) name
-- Returns {epoch, status}, or {0, ''} when the saga does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return {epoch, redis.call('HGET', KEYS[1], 'status')}
