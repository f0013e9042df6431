-- Moves a failed task from its stream to the delayed set, atomically.
-- KEYS[1] the stream, KEYS[2] the delayed zset
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] due time (ms), ARGV[4] member (JSON envelope)
-- Returns 1, or 0 when the entry is no longer pending for the group (another worker took it
-- over and finished it): then nothing is changed.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
