-- shrink(now) -> {site, number, ...}
-- Gives shared numbers free for shrink_after back to the inventory, into cooldown (rules.rs: PoolState::shrink).
local now = advance(tonumber(ARGV[1]))
local out = {}
for _, s in ipairs(redis.call('SMEMBERS', k('sites'))) do
  local r = rules_of(s)
  -- Only the shared free numbers unused that long: nothing else is read.
  for _, n in ipairs(redis.call('ZRANGEBYSCORE', k('sfree', s), '-inf', fmt(now - r.shrink))) do
    local st = num_get(n)
    if st.target == 'shared' then
      unindex_number(n, st)
      st.site = ''
      st.cool = st.idle + r.shrink + r.cool
      index_number(n, st)
      num_save(n, st)
      out[#out + 1] = s
      out[#out + 1] = n
    end
  end
end
return out
