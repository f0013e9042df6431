-- Moves failed tasks from their stream to the delayed set, atomically: one call settles every
-- retry a worker has for one stream in a round trip.
-- KEYS[1] the stream, KEYS[2] the delayed zset
-- ARGV[1] group, ARGV[2] the calling consumer, then per task three: entry id, due time (ms),
-- member (priority digit + the next attempt's packed envelope)
-- Returns one number per task: 1 moved, or 0 when the entry was no longer pending for the group
-- (another worker took it over and settled it): then nothing is changed for it.
-- Which entries are still pending (for any consumer) is asked once per slice: XCLAIM to the caller
-- with no idle time and JUSTID answers exactly those, without counting a delivery. Every
-- redis.call costs, so each slice takes four calls whatever its size; slices of 500 because Lua's
-- stack holds a few thousand values at most.
local n = (#ARGV - 2) / 3
local moved = {}
for first = 1, n, 500 do
  local last = math.min(first + 499, n)
  local claim = {KEYS[1], ARGV[1], ARGV[2], 0}
  for t = first, last do claim[#claim + 1] = ARGV[3 * t] end
  claim[#claim + 1] = 'JUSTID'
  local pending = {}
  for _, id in ipairs(redis.call('XCLAIM', unpack(claim))) do pending[id] = true end
  local ids, scored = {}, {}
  for t = first, last do
    local id = ARGV[3 * t]
    if pending[id] then
      pending[id] = nil  -- an id given twice moves once
      ids[#ids + 1] = id
      scored[#scored + 1] = ARGV[3 * t + 1]
      scored[#scored + 1] = ARGV[3 * t + 2]
      moved[t] = 1
    else
      moved[t] = 0
    end
  end
  if #ids > 0 then
    redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
    redis.call('ZADD', KEYS[2], unpack(scored))
    redis.call('XDEL', KEYS[1], unpack(ids))
  end
end
return moved
