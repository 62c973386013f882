-- digests_create(id, site, due, record JSON, jobs...) -> 1 written, 0 it existed already
-- Writes a site's digest for one period (P:digest:ID), its place in the site's index
-- (P:digests:S, by due time) and its jobs, unless it is there already: however many nodes
-- find it due, one writes it and its jobs go out once.
local id = ARGV[1]
if redis.call('EXISTS', k('digest', id)) == 1 then return 0 end
redis.call('HSET', k('digest', id), 'j', ARGV[4])
redis.call('ZADD', k('digests', ARGV[2]), ARGV[3], id)
job_plans(5, id, false)
return 1
