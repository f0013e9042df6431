-- Appends one journal entry and updates the snapshot with it, atomically, if the caller still
-- holds the saga (fencing): a stale epoch changes nothing.
-- KEYS[1] the snapshot hash, KEYS[2] the journal stream
-- ARGV[1] epoch, ARGV[2] n: the entry's field count (pairs x 2), ARGV[3 .. 2+n] the entry's
-- fields, then snapshot field/value pairs; the last argument is a TTL in ms for both keys
-- (0: none; set when the saga finishes).
-- Returns {entry id, whether a cancel was asked for (client::cancel)}, or false when the epoch
-- is stale.
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return false end
local n = tonumber(ARGV[2])
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3, 2 + n))
if #ARGV - 1 > 2 + n then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3 + n, #ARGV - 1))
end
local ttl = tonumber(ARGV[#ARGV])
if ttl > 0 then
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
end
return {id, redis.call('HGET', KEYS[1], 'cancel') == '1' and 1 or 0}
