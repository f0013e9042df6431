-- How many new entries each priority stream holds for the group (its lag), so that the worker
-- can read exactly its free slots, higher streams first, with plain XREADGROUPs: reading through
-- Lua would convert every entry to Lua values and back, which costs Redis more than the read.
-- KEYS[1..n] the priority streams in fetch order
-- ARGV[1] group
-- Returns one number per stream: its lag, or -1 when Redis cannot tell (entries deleted after
-- the group's last delivered one) or the group does not exist.
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = -1
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', key)
  if ok then
    for _, g in ipairs(groups) do
      local name, lag = nil, nil
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'lag' then lag = g[j + 1] end
      end
      if name == ARGV[1] then
        if type(lag) == 'number' then out[i] = lag end
        break
      end
    end
  end
end
return out
