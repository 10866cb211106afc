"""The Lua scripts behind farm.records: each state change is one atomic step in Redis.

Keys are named as in farm/records.py. Scripts that reach keys they compute (a
dependent's record, the state sets) get the key prefix as an argument; the farm uses
one Redis, not a cluster, so that is allowed.
"""

from __future__ import annotations

# KEYS: builds zset, state set of QUEUED, outbox zset, then each new build's record,
#       then each dependents set, one per dependency in the order of the builds
# ARGV: now, QUEUED, dependents TTL, then for each build: id, request JSON, how many
#       dependencies it names
# All or nothing: every id is checked before anything is written, so a batch with an
# id already in use (or named twice) writes nothing and returns that build's position
# (1-based); 0 when every build was recorded. A new build enters the outbox (due now):
# its message is yet to be published.
CREATE_MANY = """
local count = (#ARGV - 3) / 3
local seen = {}
for i = 1, count do
  local key = KEYS[3 + i]
  if seen[key] or redis.call('EXISTS', key) == 1 then return i end
  seen[key] = true
end
local now, queued, ttl = ARGV[1], ARGV[2], ARGV[3]
local dependents = 3 + count
for i = 1, count do
  local id = ARGV[1 + 3 * i]
  redis.call('HSET', KEYS[3 + i], 'state', queued, 'request', ARGV[2 + 3 * i],
    'created_at', now, 'started_at', '', 'finished_at', '', 'attempts', '0', 'worker', '',
    'outcome', '', 'reason', '', 'heartbeat_at', '', 'retried_as', '')
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('SADD', KEYS[2], id)
  redis.call('ZADD', KEYS[3], now, id)
  for _ = 1, tonumber(ARGV[3 + 3 * i]) do
    dependents = dependents + 1
    redis.call('SADD', KEYS[dependents], id)
    redis.call('EXPIRE', KEYS[dependents], ttl)
  end
end
return 0
"""

# KEYS: build, working zset, log, logbytes, cancel, outbox zset
# ARGV: id, to, now, worker, reason, outcome JSON, working?, terminal?, ttl, key prefix,
#       holder, stale_before, due, expected states...
# holder: when the build is WORKING, only the worker holding it may move it.
# stale_before: when the build is WORKING, only if its heartbeat is older than this.
# due: when a message for it should be published (back to QUEUED), or for the QUEUED
#      dependents of a build that ends; the outbox keeps them until it has been.
TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return false end
local allowed = false
for i = 14, #ARGV do
  if ARGV[i] == current then allowed = true end
end
if not allowed then return false end
if current == 'WORKING' then
  if ARGV[11] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[11] then return false end
  if ARGV[12] ~= '' then
    local beat = tonumber(redis.call('HGET', KEYS[1], 'heartbeat_at') or '') or 0
    if beat >= tonumber(ARGV[12]) then return false end
  end
end
local id, to, now, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[10]
redis.call('SREM', prefix .. 'state:' .. current, id)
redis.call('SADD', prefix .. 'state:' .. to, id)
redis.call('HSET', KEYS[1], 'state', to)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'worker', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'outcome', ARGV[6]) end
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'started_at', now, 'heartbeat_at', now, 'finished_at', '')
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('ZADD', KEYS[2], now, id)
else
  redis.call('ZREM', KEYS[2], id)
end
if to == 'QUEUED' then
  redis.call('ZADD', KEYS[6], ARGV[13], id)
else
  redis.call('ZREM', KEYS[6], id)
end
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'finished_at', now)
  local ttl = tonumber(ARGV[9])
  for i = 1, 5 do
    if i ~= 2 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
  for _, dep in ipairs(redis.call('SMEMBERS', prefix .. 'dependents:' .. id)) do
    if redis.call('HGET', prefix .. 'build:' .. dep, 'state') == 'QUEUED' then
      redis.call('ZADD', KEYS[6], ARGV[13], dep)
    end
  end
else
  redis.call('PERSIST', KEYS[1])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: build, working zset.  ARGV: id, worker, now, WORKING
HEARTBEAT = """
local fields = redis.call('HMGET', KEYS[1], 'state', 'worker')
if fields[1] ~= ARGV[4] or fields[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[3])
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
return 1
"""

# KEYS: log, logbytes.  ARGV: chunk, max bytes, max chunks, marker
APPEND_LOG = """
local size = tonumber(redis.call('GET', KEYS[2]) or '0')
if size < 0 then return 0 end
local count = redis.call('LLEN', KEYS[1])
if size + #ARGV[1] > tonumber(ARGV[2]) or count + 1 >= tonumber(ARGV[3]) then
  redis.call('RPUSH', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[2], '-1', 'KEEPTTL')
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], #ARGV[1])
return 1
"""

# KEYS: old build, its batch (any key when it has none).  ARGV: old id, new id, prefix
# The old record points at its retry, and the batch lists the retry in its place, so
# the batch's counts and `farm wait` follow the build that may still succeed. A live
# earlier retry keeps the link: its id is returned and nothing changes.
RETRIED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local earlier = redis.call('HGET', KEYS[1], 'retried_as')
if earlier and earlier ~= '' and redis.call('EXISTS', ARGV[3] .. 'build:' .. earlier) == 1 then
  return earlier
end
redis.call('HSET', KEYS[1], 'retried_as', ARGV[2])
local raw = redis.call('GET', KEYS[2])
if raw then
  local batch = cjson.decode(raw)
  local changed = false
  for i, id in ipairs(batch['build_ids']) do
    if id == ARGV[1] then
      batch['build_ids'][i] = ARGV[2]
      changed = true
    end
  end
  if changed then redis.call('SET', KEYS[2], cjson.encode(batch), 'KEEPTTL') end
end
return ''
"""

# KEYS: outbox.  ARGV: settled-up-to time, ids...
# Settles the entries a publisher has sent: only those due no later than when it
# began sending, so a newer entry (the build was queued again meanwhile) stays.
SETTLE = """
local settled = 0
for i = 2, #ARGV do
  local due = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if due and tonumber(due) <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    settled = settled + 1
  end
end
return settled
"""

# KEYS: outbox.  ARGV: id, overdue-before time, lease time
# A reaper takes an overdue entry by moving it to the lease time: other reapers skip
# it, and if this one dies before settling it, it is overdue again a grace later.
LEASE = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 1
"""
