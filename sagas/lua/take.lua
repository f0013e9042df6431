-- An orchestrator takes a running saga: a new epoch, which every later journal append must carry,
-- so that the orchestrator that held it before (dead, or paused past its lease) can write
-- nothing. Returns what the orchestrator needs to resume it, in the same round trip.
-- KEYS[1] the snapshot hash, KEYS[2] the journal stream
-- ARGV[1] the orchestrator (consumer) name
-- Returns {epoch, status, snapshot (HGETALL), journal (XRANGE - +)} for a running saga;
-- {0, status} for a finished one, {0, ''} for an unknown (or expired) one.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, ''} end
if status ~= 'running' then return {0, status} end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return {epoch, status, redis.call('HGETALL', KEYS[1]), redis.call('XRANGE', KEYS[2], '-', '+')}
