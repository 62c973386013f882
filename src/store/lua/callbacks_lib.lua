-- Prepended to the callback scripts (after lib.lua).
-- Reads `n links, {call key}...` from ARGV at `i`: links each call key to callback `id` for
-- `keep` ms. Returns the index after what it read.
local function link_all(i, id, keep)
  local links
  links, i = list_at(i)
  for _, key in ipairs(links) do redis.call('SET', k('cblink', key), id, 'PX', keep) end
  return i
end
