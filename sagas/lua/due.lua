-- Wakes the sagas whose timer is due: a saga that left its orchestrator while it waits (a
-- durable sleep, or a remote step's reply past its deadline) gets a run entry, which any
-- orchestrator picks up. Timer and run stream share a slot, so the move is atomic.
-- KEYS[1] the timers (sorted set: saga id, due unix ms), KEYS[2] the run stream
-- ARGV[1] now (unix ms), ARGV[2] at most this many
-- Returns how many sagas were woken.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, saga in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'saga', saga, 'timer', '1')
  redis.call('ZREM', KEYS[1], saga)
end
return #due
