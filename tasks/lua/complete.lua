-- Completes tasks: acknowledges their entries and removes them from the stream, atomically.
-- Entries below what the stream's groups still need (the oldest pending entry; everything
-- delivered when none is pending) go with one XTRIM MINID, which drops whole listpack nodes
-- (measured: 0.07 us per entry, against 0.9 for XDEL, which seeks each id). Only the entries
-- completed behind an older one still pending (a slow handler, a retry) need XDEL.
-- KEYS[1] the stream
-- ARGV[1] group, ARGV[2..] entry ids in ascending order (an id out of order is at worst left to
-- the next trim: it is acknowledged all the same)
-- Returns the number of entries acknowledged.
local stream, group = KEYS[1], ARGV[1]
local acked = 0
for first = 2, #ARGV, 500 do
  acked = acked + redis.call('XACK', stream, group, unpack(ARGV, first, math.min(first + 499, #ARGV)))
end

-- An entry id as two numbers, or nil when a part does not fit a double exactly.
local function parse(id)
  local ms, seq = string.match(id or '', '^(%d+)-(%d+)$')
  if not ms or #ms > 15 or #seq > 15 then return nil end
  return tonumber(ms), tonumber(seq)
end
local function below(ms, seq, bound_ms, bound_seq)
  return ms < bound_ms or (ms == bound_ms and seq < bound_seq)
end

-- The trim bound: the lowest, over every group, of its oldest pending entry or, with nothing
-- pending, the id just after its last delivered one.
local bound_ms, bound_seq
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
if ok then
  for _, g in ipairs(groups) do
    local name, pending, last
    for j = 1, #g, 2 do
      if g[j] == 'name' then name = g[j + 1]
      elseif g[j] == 'pending' then pending = g[j + 1]
      elseif g[j] == 'last-delivered-id' then last = g[j + 1] end
    end
    local ms, seq
    if type(pending) == 'number' and pending > 0 then
      ms, seq = parse(redis.call('XPENDING', stream, name)[2])
    else
      ms, seq = parse(last)
      if seq then seq = seq + 1 end
    end
    if not ms then
      ok = false
      break
    end
    if not bound_ms or below(ms, seq, bound_ms, bound_seq) then bound_ms, bound_seq = ms, seq end
  end
end

-- The ids come in ascending order: the first one not below the bound is found by bisection,
-- and it and the ones after it are deleted one by one.
local first_kept = 2
if ok and bound_ms then
  redis.call('XTRIM', stream, 'MINID', string.format('%.0f-%.0f', bound_ms, bound_seq))
  local lo, hi = 2, #ARGV + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local ms, seq = parse(ARGV[mid])
    if ms and below(ms, seq, bound_ms, bound_seq) then lo = mid + 1 else hi = mid end
  end
  first_kept = lo
end
for first = first_kept, #ARGV, 500 do
  redis.call('XDEL', stream, unpack(ARGV, first, math.min(first + 499, #ARGV)))
end
return acked
