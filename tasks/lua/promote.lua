-- Moves due tasks from the delayed set back to their priority stream, atomically.
-- KEYS[1] the delayed zset, KEYS[2..5] the streams p0..p3, KEYS[6] the dead-letter stream
-- ARGV[1] now (ms), ARGV[2] at most this many
-- Returns {moved, next due time in ms or -1 when the set is empty}
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local ok, task = pcall(cjson.decode, member)
  local p = ok and type(task) == 'table' and tonumber(task.p)
  if p and p >= 0 and p <= 3 and p == math.floor(p) and type(task.f) == 'table' and #task.f % 2 == 0 then
    redis.call('XADD', KEYS[2 + p], '*', unpack(task.f))
  else
    redis.call('XADD', KEYS[6], '*', 'dead.reason', 'undecodable', 'dead.error', 'delayed entry is not a task envelope',
               'dead.raw', member, 'dead.at', ARGV[1])
  end
  redis.call('ZREM', KEYS[1], member)
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next_due[2] or '-1'}
