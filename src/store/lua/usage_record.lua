-- usage_record(site, day, leased, exhausted total) -> 1
-- A sample of a site's pool for its local day: the highest number of leased numbers seen that
-- day, and the store's exhausted counter at the day's first and latest sample.
local key, day = k('usage', ARGV[1]), ARGV[2]
local peak = tonumber(redis.call('HGET', key, day .. ':peak') or '-1')
if tonumber(ARGV[3]) > peak then redis.call('HSET', key, day .. ':peak', ARGV[3]) end
redis.call('HSETNX', key, day .. ':first', ARGV[4])
redis.call('HSET', key, day .. ':last', ARGV[4])
return 1
