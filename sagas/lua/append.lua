-- Appends journal entries and updates the snapshot with them, atomically, if the caller still
-- holds the saga (fencing): a stale epoch changes nothing.
-- KEYS[1] the snapshot hash, KEYS[2] the journal stream
-- ARGV[1] epoch, ARGV[2] e: the number of entries; then per entry its field count n (pairs x 2)
-- and its n fields; then snapshot field/value pairs; the last argument is a TTL in ms for both
-- keys (0: none; set when the saga finishes).
-- Returns {last entry id, whether a cancel was asked for (client::cancel)}, or false when the
-- epoch is stale.
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return false end
local at, id = 3, nil
for _ = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[at])
  id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, at + 1, at + n))
  at = at + 1 + n
end
if #ARGV - 1 >= at then
  redis.call('HSET', KEYS[1], unpack(ARGV, at, #ARGV - 1))
end
local ttl = tonumber(ARGV[#ARGV])
if ttl > 0 then
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
end
return {id, redis.call('HGET', KEYS[1], 'cancel') == '1' and 1 or 0}
