-- The `shadow` module: libshadow's engine (diff, sampling, ring log, verdict)
-- through LuaJIT's FFI, and the helpers configs use. Requiring it never
-- touches the C library: that is loaded (and its ABI checked) on the first
-- call that needs it, so shadow.http works without libshadow installed.
local http = require "shadow.http"
local redis = require "shadow.redis"
local diff = require "shadow.diff"
local ring = require "shadow.ring"
local sample = require "shadow.sample"
local shadower = require "shadow.shadower"
local verdict = require "shadow.verdict"

return {
  _VERSION = "0.1.0",
  http = http,
  redis = redis,
  diff = diff.diff,
  diff_json = diff.diff_json,
  sampled = sample.sampled,
  ring = ring.new,
  shadower = shadower.new,
  verdict = verdict.verdict,
}
