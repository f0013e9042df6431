-- Moves failed tasks from their stream to the delayed set, atomically: one call settles every
-- retry a worker has for one stream in a round trip.
-- KEYS[1] the stream, KEYS[2] the delayed zset
-- ARGV[1] group, then per task three: entry id, due time (ms), member (priority digit + the
-- next attempt's packed envelope)
-- Returns one number per task: 1 moved, or 0 when the entry was no longer pending for the group
-- (another worker took it over and settled it): then nothing is changed for it.
local moved, acked, scored = {}, {}, {}
for i = 2, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    acked[#acked + 1] = ARGV[i]
    scored[#scored + 1] = ARGV[i + 1]
    scored[#scored + 1] = ARGV[i + 2]
    moved[#moved + 1] = 1
  else
    moved[#moved + 1] = 0
  end
end
-- One ZADD and one XDEL per slice of entries rather than per entry (each redis.call costs), in
-- slices because Lua's stack holds a few thousand values at most.
for first = 1, #acked, 500 do
  local last = math.min(first + 499, #acked)
  redis.call('ZADD', KEYS[2], unpack(scored, 2 * first - 1, 2 * last))
  redis.call('XDEL', KEYS[1], unpack(acked, first, last))
end
return moved
