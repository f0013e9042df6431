-- Hands tasks a stopping worker fetched but never started back to the queue at once, instead of
-- after the lease: each entry is re-added (same fields, end of its stream) and the old one
-- acknowledged and deleted, atomically.
-- KEYS[1] the stream; ARGV[1] group, ARGV[2..] entry ids
-- Returns the number released (entries no longer pending for the group are left alone).
local released = 0
for i = 2, #ARGV do
  local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if e[1] and redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))
    redis.call('XDEL', KEYS[1], ARGV[i])
    released = released + 1
  end
end
return released
