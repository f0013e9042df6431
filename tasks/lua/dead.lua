-- Moves a task to the dead-letter stream, atomically.
-- KEYS[1] the stream the task came from, KEYS[2] the dead-letter stream
-- ARGV[1] group, ARGV[2] entry id, ARGV[3..] the dead-letter entry's fields
-- Returns 1, or 0 when the entry is no longer pending for the group (nothing is changed).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
return 1
