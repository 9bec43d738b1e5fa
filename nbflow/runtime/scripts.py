"""Lua scripts: the run-state changes that must be atomic.

Every write to a run is fenced by its attempt. Each claim of a run starts a new
attempt whose token (``<attempt>/<worker>``) is kept in the run's metadata
(field ``fence``) while that attempt holds the run, and every script that writes
for an attempt first checks that token: an attempt that lost the run (its lease
ran out and the run was requeued, or another attempt claimed it) can never write
again. The lease key is only a liveness timer, renewed by the heartbeat under
the same check.

Every script but TAKE, and the standalone forms of SWEEP and REQUEUE, touches only
the keys of one run (one hash slot), so each works on Redis Cluster. Event
payloads are built in Python and passed in as JSON.

Pipelines send scripts with EVAL and their full text: the server caches the
compiled script either way, and EVALSHA in a redis-py pipeline costs an extra
SCRIPT EXISTS round trip on every execute (and NOSCRIPT handling after a restart).
TAKE, sent with every read of the work stream, is the exception: by its digest.
"""

from __future__ import annotations

# Take a run's lease, start a new attempt and log run.started: a run is never
# "running" without its run.started event. The event is built here because only
# the script knows the attempt number: `head` is its JSON without the closing
# brace, to which the workflow's name and the attempt are added.
# -> 1 claimed, 0 someone holds the lease, -1 the run is finished or unknown
_CLAIM_RUN = """
local function claim_run(lease, meta, log, worker, lease_ms, now_s, head)
  if redis.call('EXISTS', lease) == 1 then return 0 end
  local status = redis.call('HGET', meta, 'status')
  if status ~= 'queued' and status ~= 'running' then return -1 end
  local attempt = redis.call('HINCRBY', meta, 'attempts', 1)
  local token = attempt .. '/' .. worker
  redis.call('SET', lease, token, 'PX', lease_ms)
  redis.call('HSET', meta, 'status', 'running', 'worker', worker, 'fence', token)
  redis.call('HSETNX', meta, 'started_at', now_s)
  local workflow = redis.call('HGET', meta, 'workflow') or ''
  redis.call('XADD', log, '*', 'e',
    head .. ',"workflow":' .. cjson.encode(workflow) .. ',"attempt":' .. attempt .. '}')
  return 1
end
"""

# Claim one run, then return its metadata and recorded steps (Redis Cluster: the
# work message and the lease index live on other slots, so the worker acknowledges
# the message and indexes the lease with commands of its own).
# KEYS: lease, meta, steps, log  ARGV: worker, lease_ms, now_s, started_event_head
# -> {code, meta pairs, step pairs}
CLAIM = (
    _CLAIM_RUN
    + """
local code = claim_run(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if code ~= 1 then return {code, {}, {}} end
return {code, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""
)

# Standalone servers: claim the run of every work message this worker has been
# given and not yet acknowledged (its pending entries), in one step. Sent in the
# same pipeline right behind the worker's blocking XREADGROUP, it runs the moment
# that read is served, so a worker wakes up already holding its runs: reading
# and claiming cost one round trip. Each message is acknowledged and deleted
# whatever becomes of its run; a claimed run enters the lease index. The run's
# keys are built from templates (constants' key names with an empty run id), so
# they cannot be declared in KEYS, which is why Cluster uses CLAIM instead.
# run.started's timestamp is the server's clock, read when the claim happens.
# KEYS: work stream, lease index
# ARGV: group, worker, count, lease_ms, started_event_head (no ts),
#       then the templates of the lease, meta, steps and log keys
# -> one entry per message: {run_id, 1, meta pairs, step pairs} claimed,
#    {run_id, 0 | -1} not claimed, {message_id, -2} not a valid work message
TAKE = (
    _CLAIM_RUN
    + """
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
                         'STREAMS', KEYS[1], '0')
local entries = (reply and reply[1] and reply[1][2]) or {}
local out = {}
if #entries == 0 then return out end
local t = redis.call('TIME')
local now_s = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
local head = ARGV[5] .. ',"ts":' .. now_s
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  local run = nil
  if fields then
    for i = 1, #fields - 1, 2 do
      if fields[i] == 'run' then run = fields[i + 1] end
    end
  end
  if run and #run <= 64 and string.match(run, '^%w+$') then
    local key = {}
    for i = 1, 4 do key[i] = string.gsub(ARGV[5 + i], '{}', '{' .. run .. '}', 1) end
    local code = claim_run(key[1], key[2], key[4], ARGV[2], ARGV[4], now_s, head)
    if code == 1 then
      redis.call('ZADD', KEYS[2], deadline, run)
      out[#out + 1] = {run, 1, redis.call('HGETALL', key[2]), redis.call('HGETALL', key[3])}
    else
      out[#out + 1] = {run, code}
    end
  else
    out[#out + 1] = {id, -2}
  end
end
return out
"""
)

# Accept a run in one step: its metadata, its run.queued event, its place in the
# runs index and its work message. A run is either wholly accepted or not at all.
# A run whose shipped code the server no longer has (flushed, restarted without
# persistence, expired) is refused, for the client to ship it again; code in use
# has its expiry pushed back (never onto deployed code, which has none).
# (Standalone servers only: on Cluster these keys live on different slots, and
# the client writes them in this order instead.)
# KEYS: meta, log, runs index, work stream[, code]
# ARGV: run_id, created_at, queued_event_json, code_ttl_s, then metadata field/value pairs
# -> 1 accepted, 0 the code is missing, 2 a run with this id exists (a child run's id is
#    derived from its parent's step, so a replayed submit is this, and changes nothing)
SUBMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
if KEYS[5] then
  if redis.call('EXISTS', KEYS[5]) == 0 then return 0 end
  redis.call('EXPIRE', KEYS[5], ARGV[4], 'GT')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('XADD', KEYS[2], '*', 'e', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'run', ARGV[1])
return 1
"""

# Renew an attempt's lease (re-made if it ran out while nobody took the run: a
# server outage longer than a lease, then the heartbeat comes back first).
# KEYS: lease, meta  ARGV: token, lease_ms -> {held 0|1, cancel requested 0|1}
RENEW = """
local cancel = redis.call('HGET', KEYS[2], 'cancel_requested') == '1' and 1 or 0
if redis.call('HGET', KEYS[2], 'fence') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, cancel}
end
return {0, cancel}
"""

# Append (event_json, step or '', value or '') triples from ARGV[first] to
# ARGV[last]; with a step, its value is recorded in the same atomic step as its
# event, so a finished step is never both absent and reported. An empty event records
# the step alone (which step a call position made, for replays to compare). A step name that
# starts with '~' is a replay position (how many emits and progress marks one span
# has logged): kept at its highest, so a late write cannot lower it.
# Then (op, field, value) metadata updates from ARGV[last + 1] on: 's' sets,
# 'i' and 'f' add an integer or a float (token counts, cost, progress).
_APPEND_EVENTS = """
local function append_events(log, steps, first, last)
  for i = first, last, 3 do
    local step = ARGV[i + 1]
    if step == '' then
    elseif string.byte(step, 1) == 126 then
      if tonumber(ARGV[i + 2]) > tonumber(redis.call('HGET', steps, step) or '0') then
        redis.call('HSET', steps, step, ARGV[i + 2])
      end
    else
      redis.call('HSET', steps, step, ARGV[i + 2])
    end
    if ARGV[i] ~= '' then redis.call('XADD', log, '*', 'e', ARGV[i]) end
  end
end
local function update_meta(meta, first, last)
  for i = first, last, 3 do
    local op = ARGV[i]
    if op == 's' then redis.call('HSET', meta, ARGV[i + 1], ARGV[i + 2])
    elseif op == 'i' then redis.call('HINCRBY', meta, ARGV[i + 1], ARGV[i + 2])
    else redis.call('HINCRBYFLOAT', meta, ARGV[i + 1], ARGV[i + 2]) end
  end
end
-- Write an attempt's pending events and metadata updates: their counts n and m are at
-- ARGV[at] and ARGV[at + 1], the n event triples and m updates follow. Returns where the
-- arguments after them begin.
local function write_pending(log, steps, meta, at)
  local events_end = at + 1 + 3 * tonumber(ARGV[at])
  local updates_end = events_end + 3 * tonumber(ARGV[at + 1])
  append_events(log, steps, at + 2, events_end)
  update_meta(meta, events_end + 1, updates_end)
  return updates_end + 1
end
"""

# Append events for the attempt holding the run.
# KEYS: log, meta, steps  ARGV: token, n, m, then n event triples, then m metadata updates
# -> 1, or 0 if the attempt no longer holds the run (nothing written)
APPEND = (
    _APPEND_EVENTS
    + """
if redis.call('HGET', KEYS[2], 'fence') ~= ARGV[1] then return 0 end
write_pending(KEYS[1], KEYS[3], KEYS[2], 2)
return 1
"""
)

# End a run held by this attempt, after appending the events it still had pending.
# On a standalone server the run also leaves the lease index (KEYS[5]); on Cluster
# the worker removes it itself.
# KEYS: lease, meta, log, steps[, lease index]
# ARGV: token, status, event_json, retention_s, run_id, n, m, then n event triples,
#       m metadata updates, then the run's final metadata field/value pairs
# -> 1, or 0 if the attempt no longer holds the run (nothing written)
FINISH = (
    _APPEND_EVENTS
    + """
if redis.call('HGET', KEYS[2], 'fence') ~= ARGV[1] then return 0 end
local fields = write_pending(KEYS[3], KEYS[4], KEYS[2], 6)
redis.call('DEL', KEYS[1])
if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[5]) end
redis.call('HDEL', KEYS[2], 'fence')
redis.call('HSET', KEYS[2], 'status', ARGV[2])
for i = fields, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 1
"""
)

# Hand a run this attempt holds back to the queue (drain, a stuck neighbour). On a
# standalone server its work message and its leaving the lease index happen in the
# same step; on Cluster the worker does both after (KEYS[4] and KEYS[5] absent).
# KEYS: lease, meta, log[, work stream, lease index]  ARGV: token, event_json, run_id
# -> 1 if requeued, 0 if the attempt no longer holds the run
REQUEUE = """
if redis.call('HGET', KEYS[2], 'fence') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'fence')
redis.call('HSET', KEYS[2], 'status', 'queued')
redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
if KEYS[4] then
  redis.call('XADD', KEYS[4], '*', 'run', ARGV[3])
  redis.call('ZREM', KEYS[5], ARGV[3])
end
return 1
"""

# End an attempt at a wait: the run waits (for input, a timer or its children) and
# holds no worker; RESUME queues it again. Pending events go first, as with FINISH.
# KEYS: lease, meta, log, steps[, lease index, wake-ups]
# ARGV: token, wait_json, wait_step, event_json, run_id, wake_ms or '', n, m,
#       then n event triples, then m metadata updates
# -> 1, 0 if the attempt no longer holds the run (nothing written), -1 if the run was
#    asked to cancel (its events written, but it does not wait: it ends cancelled)
SUSPEND = (
    _APPEND_EVENTS
    + """
if redis.call('HGET', KEYS[2], 'fence') ~= ARGV[1] then return 0 end
write_pending(KEYS[3], KEYS[4], KEYS[2], 7)
if redis.call('HGET', KEYS[2], 'cancel_requested') == '1' then return -1 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'fence')
redis.call('HSET', KEYS[2], 'status', 'waiting', 'wait', ARGV[2], 'wait_step', ARGV[3])
redis.call('XADD', KEYS[3], '*', 'e', ARGV[4])
if KEYS[5] then
  redis.call('ZREM', KEYS[5], ARGV[5])
  if ARGV[6] ~= '' then redis.call('ZADD', KEYS[6], ARGV[6], ARGV[5]) end
end
return 1
"""
)

# Queue a waiting run again with what it waited for: step values recorded, events
# logged, a work message. Only for the wait it is in (``wait_step``): a second
# answer, or one for a wait that ended, changes nothing.
# KEYS: meta, log, steps[, work stream, wake-ups]
# ARGV: run_id, wait_step, n, then n event JSONs, then step/value pairs -> 1 or 0
RESUME = """
if redis.call('HGET', KEYS[1], 'status') ~= 'waiting' then return 0 end
if redis.call('HGET', KEYS[1], 'wait_step') ~= ARGV[2] then return 0 end
local last = 3 + tonumber(ARGV[3])
for i = last + 1, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
for i = 4, last do redis.call('XADD', KEYS[2], '*', 'e', ARGV[i]) end
redis.call('HDEL', KEYS[1], 'wait', 'wait_step')
redis.call('HSET', KEYS[1], 'status', 'queued')
if KEYS[4] then
  redis.call('XADD', KEYS[4], '*', 'run', ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
end
return 1
"""

# The sweeper's verdict on a run whose lease looked expired. A run the lease index
# names but whose lease ran out is requeued (its restart counted) or, past
# max_restarts, failed naming the step it was in; on a standalone server the work
# message and the index move happen in this same step, so no claim can slip in
# between (on Cluster the sweeper does them after, see sweeper.py).
# KEYS: lease, meta, log, steps[, lease index, work stream]
# ARGV: max_restarts, restarted_json, failed_json, retention_s, now_s, run_id
# -> 'alive' | 'done' | 'queued' | 'requeue' | 'failed'
SWEEP = """
local function unindex()
  if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[6]) end
end
local function enqueue()
  if KEYS[6] then redis.call('XADD', KEYS[6], '*', 'run', ARGV[6]) end
  unindex()
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'alive' end
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'queued' then
  -- handed back by a worker that died before it queued the work message (Cluster);
  -- on a standalone server a queued run is never in the index, so this is a repeat
  if KEYS[5] and not redis.call('ZSCORE', KEYS[5], ARGV[6]) then return 'done' end
  enqueue()
  return 'queued'
end
if status ~= 'running' then
  unindex()
  return 'done'
end
redis.call('HDEL', KEYS[2], 'fence')
local restarts = redis.call('HINCRBY', KEYS[2], 'restarts', 1)
if restarts > tonumber(ARGV[1]) then
  local step = redis.call('HGET', KEYS[2], 'step')
  local failed = cjson.decode(ARGV[3])
  failed['error'] = 'WorkerLost: the run lost its worker ' .. restarts .. ' times'
  if step then
    failed['error'] = failed['error'] .. ', last while running step ' .. step
    failed['step'] = step
  end
  redis.call('HSET', KEYS[2], 'status', 'failed', 'reason', 'worker_lost', 'ended_at', ARGV[5],
             'error', failed['error'], 'error_type', 'WorkerLost')
  redis.call('XADD', KEYS[3], '*', 'e', cjson.encode(failed))
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[4])
  unindex()
  return 'failed'
end
redis.call('HSET', KEYS[2], 'status', 'queued', 'reason', 'worker_lost')
redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
enqueue()
return 'requeue'
"""

# Cluster: drop a run from the lease index only if its entry is still the expired
# one the sweeper saw (a fresh claim re-adds it with a later deadline).
# KEYS: lease index  ARGV: run_id, now_ms -> 1 removed
UNINDEX_EXPIRED = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""

# KEYS: meta, log, steps[, wake-ups]  ARGV: requested_json, cancelled_json, retention_s, now_s,
# run_id -> 'cancelled' (was queued or waiting), 'requested' (running), 'finished', 'missing'
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
if status == 'queued' or status == 'waiting' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'ended_at', ARGV[4], 'reason', 'cancelled')
  redis.call('HDEL', KEYS[1], 'wait', 'wait_step')
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
  if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[5]) end
  return 'cancelled'
end
if redis.call('HGET', KEYS[1], 'cancel_requested') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[1])
end
return 'requested'
"""
