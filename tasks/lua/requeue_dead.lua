-- Puts dead letters back into their priority stream; the client has already given each a fresh
-- start (attempt 1, no memory of having had no handler) in its packed envelope.
-- KEYS[1] the dead-letter stream, KEYS[2..5] the streams p0..p3
-- ARGV triples: dead-letter entry id, priority digit (0..3), packed envelope (the `task` field)
-- Returns the number requeued. A task goes back only if this call removed its dead letter, so
-- two operators requeueing the same entry at once add it to its stream once.
local moved = 0
for i = 1, #ARGV - 2, 3 do
  local p = tonumber(ARGV[i + 1])
  if p and p >= 0 and p <= 3 and p == math.floor(p) and redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2 + p], '*', 'task', ARGV[i + 2])
    moved = moved + 1
  end
end
return moved
