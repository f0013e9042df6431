-- Puts dead letters back into their priority stream with a fresh attempt count.
-- KEYS[1] the dead-letter stream, KEYS[2..5] the streams p0..p3
-- ARGV[1] a dead-letter entry id, or "" for all; ARGV[2] at most this many (for "")
-- Returns the number requeued. Entries that are not task envelopes stay where they are. A requeued
-- task starts afresh: attempt 1, and no memory of having had no handler.
local entries
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
end
local moved = 0
for _, e in ipairs(entries) do
  local fields, p, has_name = {}, nil, false
  for i = 1, #e[2], 2 do
    local k, v = e[2][i], e[2][i + 1]
    if k == 'priority' then p = tonumber(v) end
    if k == 'name' then has_name = true end
    if k == 'attempt' then v = '1' end
    if string.sub(k, 1, 5) ~= 'dead.' and k ~= 'unknown_since_ms' then
      table.insert(fields, k)
      table.insert(fields, v)
    end
  end
  if p and p >= 0 and p <= 3 and has_name then
    redis.call('XADD', KEYS[2 + p], '*', unpack(fields))
    redis.call('XDEL', KEYS[1], e[1])
    moved = moved + 1
  end
end
return moved
