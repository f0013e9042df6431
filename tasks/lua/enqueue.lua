-- Enqueues one task atomically, honouring an idempotency key and a delay.
-- KEYS[1] the priority stream, KEYS[2] the queue's delayed zset, KEYS[3] the idempotency key
-- ARGV[1] "now" or "delay", ARGV[2] due time (ms, for delay), ARGV[3] idempotency TTL in ms
-- (0: no key), ARGV[4] task id, ARGV[5] delayed member (priority digit + packed envelope; for "delay"),
-- ARGV[6..] stream fields (for "now")
-- Returns {1, id} when enqueued, {0, id of the first task} when the key already existed.
if tonumber(ARGV[3]) > 0 then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
end
if ARGV[1] == 'delay' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
else
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
end
return {1, ARGV[4]}
