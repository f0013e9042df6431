-- Adopts the inboxes of orchestrators that went silent (killed, stalled past the lease, or
-- stopped): the replies waiting there move into the run stream, where any orchestrator picks
-- them up and resumes their sagas. Inbox, run stream and registry share a slot.
-- KEYS[1] the run stream, KEYS[2] the registry (sorted set: orchestrator, last heartbeat ms),
-- KEYS[3..] the inboxes of the silent orchestrators
-- ARGV[1] registry members silent since before this (ms) are forgotten
-- Returns the number of replies moved.
local moved = 0
for i = 3, #KEYS do
  for _, e in ipairs(redis.call('XRANGE', KEYS[i], '-', '+')) do
    redis.call('XADD', KEYS[1], '*', unpack(e[2]))
    moved = moved + 1
  end
  redis.call('DEL', KEYS[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
return moved
