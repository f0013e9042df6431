-- Resumes a saga parked as compensation_failed: the compensation that failed is tried again
-- under its policy ('retry'), or marked skipped ('skip'); the journal records which.
-- KEYS[1] the snapshot hash, KEYS[2] the journal stream
-- ARGV[1] 'retry' or 'skip', ARGV[2] now (unix ms)
-- Returns 1 when the saga is to run again (the caller adds its run entry; also when a resume
-- was recorded but no orchestrator has taken it yet, so that a lost run entry is added again),
-- 0 otherwise.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'running' and redis.call('HGET', KEYS[1], 'owner') == '' then return 1 end
if status ~= 'compensation_failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', '', 'updated_ms', ARGV[2])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('XADD', KEYS[2], '*', 'e', 'resumed', 'c', redis.call('HGET', KEYS[1], 'correlation_id'), 't', ARGV[2],
           'v', ARGV[1])
return 1
