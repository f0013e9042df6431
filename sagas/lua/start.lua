-- Creates a saga once: its snapshot and the first journal entry, atomically. Starting the same
-- saga id again changes nothing.
-- KEYS[1] the snapshot hash, KEYS[2] the journal stream
-- ARGV[1] name, ARGV[2] version, ARGV[3] correlation id, ARGV[4] input (JSON), ARGV[5] now (ms)
-- Returns 1 when created, 0 when the saga already existed.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'version', ARGV[2], 'status', 'running', 'correlation_id', ARGV[3],
           'input', ARGV[4], 'epoch', 0, 'created_ms', ARGV[5], 'updated_ms', ARGV[5])
redis.call('XADD', KEYS[2], '*', 'e', 'started', 'c', ARGV[3], 't', ARGV[5], 'n', ARGV[1], 'v', ARGV[2])
return 1
