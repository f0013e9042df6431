-- Moves due tasks from the delayed set back to their priority stream, atomically.
-- KEYS[1] the delayed zset, KEYS[2..5] the streams p0..p3, KEYS[6] the dead-letter stream
-- ARGV[1] now (ms), ARGV[2] at most this many
-- Returns {moved, next due time in ms or -1 when the set is empty}
-- A member is the priority digit and the packed envelope, moved as the entry's one `task` field
-- without decoding it (the worker dead-letters what it cannot decode). A member written before
-- the packed format, {"p": priority, "f": [fields...]}, is still decoded and moved as its fields.
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local first = string.byte(member, 1)
  if first and first >= 48 and first <= 51 then  -- '0'..'3'
    redis.call('XADD', KEYS[2 + first - 48], '*', 'task', string.sub(member, 2))
  else
    local p, task = nil, nil
    if first == 123 then  -- '{'
      local ok, decoded = pcall(cjson.decode, member)
      task = ok and type(decoded) == 'table' and decoded or nil
      p = task and tonumber(task.p)
    end
    if p and p >= 0 and p <= 3 and p == math.floor(p) and type(task.f) == 'table' and #task.f > 0 and
       #task.f % 2 == 0 then
      redis.call('XADD', KEYS[2 + p], '*', unpack(task.f))
    else
      redis.call('XADD', KEYS[6], '*', 'dead.reason', 'undecodable', 'dead.error', 'delayed entry is not a task envelope',
                 'dead.raw', member, 'dead.at', ARGV[1])
    end
  end
end
-- The due members are the set's lowest ranks, in order: one removal for all of them.
if #due > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #due - 1) end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next_due[2] or '-1'}
