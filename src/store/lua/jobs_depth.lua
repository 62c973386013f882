-- jobs_depth(kind) -> {queued or claimed, dead}
local kind = ARGV[1]
return {redis.call('ZCARD', k('ob', kind)) + redis.call('ZCARD', k('obclaim', kind)), redis.call('ZCARD', k('obdead', kind))}
