-- Reads up to ARGV[3] new entries for this consumer from the priority streams in the order
-- given, so that a higher stream is drained before a lower one is touched (one round trip).
-- KEYS[1..n] the priority streams in fetch order
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] how many
-- Returns {{stream, {{id, {field, value, ...}}, ...}}, ...}
local want = tonumber(ARGV[3])
local out = {}
for _, key in ipairs(KEYS) do
  if want <= 0 then break end
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', key, '>')
  if r and r[1] and #r[1][2] > 0 then
    table.insert(out, r[1])
    want = want - #r[1][2]
  end
end
return out
