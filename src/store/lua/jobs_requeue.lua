-- jobs_requeue(kind, record id, now, pending state) -> 1 re-queued, 0 not a dead letter
-- A dead letter goes back to the queue, due now, pending, with its attempts forgotten.
local kind, id = ARGV[1], ARGV[2]
local job = job_of(kind, id)
if redis.call('ZREM', k('obdead', kind), job) == 0 then return 0 end
redis.call('HDEL', k('obtries'), job)
job_plan(kind, id, ARGV[4], ARGV[3])
return 1
