-- Keeps the lease of running tasks alive: resets their idle time without counting a delivery,
-- but only for entries this consumer still owns (a recoverer may have taken one over).
-- KEYS[1] the stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- Returns the ids renewed.
local renewed = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    table.insert(renewed, ARGV[i])
  end
end
return renewed
