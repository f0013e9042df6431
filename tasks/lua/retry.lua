-- Moves failed tasks from their stream to the delayed set, atomically: one call settles every
-- retry a worker has for one stream in a round trip.
-- KEYS[1] the stream, KEYS[2] the delayed zset
-- ARGV[1] group, then per task three: entry id, due time (ms), member
-- Returns one number per task: 1 moved, or 0 when the entry was no longer pending for the group
-- (another worker took it over and settled it): then nothing is changed for it.
local moved, acked = {}, {}
for i = 2, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    acked[#acked + 1] = ARGV[i]
    moved[#moved + 1] = 1
  else
    moved[#moved + 1] = 0
  end
end
-- unpack() in slices: Lua's stack holds a few thousand values at most.
for first = 1, #acked, 1000 do
  redis.call('XDEL', KEYS[1], unpack(acked, first, math.min(first + 999, #acked)))
end
return moved
