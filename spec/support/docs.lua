-- The manual's own text for the walkthrough specs: a section of README.md
-- or docs/*.md by its heading, the fenced blocks in it, the shell lines
-- of a block, and substitutions that must each find their text (so a doc
-- edit that moves a port, a path or a command fails the spec that runs
-- it instead of being skipped silently). Also a scratch "checkout" to
-- run a walkthrough from: a directory whose build/shadowd is this
-- build's binary and whose example files are the real ones with their
-- fixed ports replaced, so commands written as `$PWD/examples/...` or
-- `"$repo/build/shadowd"` run unchanged.
local process = require "support.process"
local env = require "support.env"
local port = require "support.port"
local signal = require "posix.signal"

local M = {}

-- The repository root, and a path in it.
M.root = env.root
function M.path(rel) return M.root .. "/" .. rel end

function M.read(rel)
  return assert(process.read_file(M.path(rel)), "cannot read " .. rel)
end

-- The text of the section whose heading is exactly `heading` (any level),
-- up to the next heading of the same or a higher level. Lines inside
-- fenced blocks are never taken for headings (a `# comment` in sh).
function M.section(rel, heading)
  local text = M.read(rel)
  local out, level, fenced = nil, nil, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") then fenced = not fenced end
    local hashes, title = line:match("^(#+)%s+(.-)%s*$")
    if hashes and not (fenced or line:match("^%s*```")) then
      if out and #hashes <= level then break end
      if not out and title == heading then
        out, level = {}, #hashes
      end
    end
    if out then out[#out + 1] = line end
  end
  assert(out, ("%s has no heading %q"):format(rel, heading))
  return table.concat(out, "\n") .. "\n"
end

-- Whether the section of rel under heading says `phrase`, however the
-- text is wrapped (runs of blanks and newlines count as one space).
function M.says(rel, heading, phrase)
  local text = M.section(rel, heading):gsub("%s+", " ")
  return text:find((phrase:gsub("%s+", " ")), 1, true) ~= nil
end

-- The fenced blocks of text, in order: { lang =, body = }.
function M.blocks(text)
  local list, cur = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local fence, lang = line:match("^(%s*```)%s*([%w%-]*)%s*$")
    if cur then
      if fence then
        list[#list + 1] = { lang = cur.lang, body = table.concat(cur.lines,
                                                                 "\n") .. "\n" }
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    elseif fence then
      cur = { lang = lang, lines = {} }
    end
  end
  return list
end

-- The body of the n-th fenced block (of `lang` when given) in the section
-- of rel under heading.
function M.block(rel, heading, n, lang)
  local k = 0
  for _, b in ipairs(M.blocks(M.section(rel, heading))) do
    if not lang or b.lang == lang then
      k = k + 1
      if k == (n or 1) then return b.body end
    end
  end
  error(("%s, section %q: no fenced block %d%s"):format(rel, heading, n or 1,
        lang and (" of " .. lang) or ""), 2)
end

-- The commands of a shell block, one a line: continuation lines joined,
-- blank lines and whole-line comments left out (trailing comments stay:
-- the shell ignores them as it would when pasted).
function M.commands(body)
  local out, acc = {}, nil
  for line in body:gmatch("([^\n]*)\n") do
    if acc then line = acc .. " " .. line:gsub("^%s+", "") end
    if line:match("\\%s*$") then
      acc = line:gsub("%s*\\%s*$", "")
    else
      acc = nil
      if line:match("%S") and not line:match("^%s*#") then
        out[#out + 1] = line
      end
    end
  end
  assert(not acc, "a shell block ends in a continuation line")
  return out
end

-- The command among cmds that contains `needle` (plain); exactly one.
function M.command(cmds, needle)
  local found
  for _, c in ipairs(cmds) do
    if c:find(needle, 1, true) then
      assert(not found, ("two commands hold %q:\n%s\n%s"):format(needle,
             found, c))
      found = c
    end
  end
  assert(found, ("no command holds %q in:\n%s"):format(needle,
         table.concat(cmds, "\n")))
  return found
end

local function plain(s) return (s:gsub("%p", "%%%0")) end

-- text with each { from, to } of subs replaced everywhere, in order;
-- raises when a `from` is not in the text (what names it in the error).
function M.substitute(text, subs, what)
  for _, pair in ipairs(subs) do
    local n
    text, n = text:gsub(plain(pair[1]), (pair[2]:gsub("%%", "%%%%")))
    assert(n >= 1, ("%s no longer holds %q, which the spec replaces")
      :format(what or "the text", pair[1]))
  end
  return text
end

-- A port for a fixed port of the docs: the port itself when nothing
-- listens on it and `keep` is set, else a free one.
function M.port_for(fixed, keep)
  if keep and not port.accepts(fixed) then return fixed end
  return port.free()
end

-- A scratch checkout: build/shadowd links to this build's binary, and
-- files = { ["examples/demo.lua"] = text, ... } are written under it.
-- Returns its path; remove it with process.rmdir.
function M.checkout(files)
  local dir = process.tmpdir("shadow-docs")
  os.execute("chmod 755 '" .. dir .. "'")
  os.execute("mkdir -p '" .. dir .. "/build'")
  local bin = require("support.shadowd").binary()
  assert(os.execute(("ln -s '%s' '%s/build/shadowd'"):format(bin, dir)))
  for rel, text in pairs(files or {}) do
    local sub = rel:match("^(.*)/[^/]*$")
    if sub then os.execute(("mkdir -p '%s/%s'"):format(dir, sub)) end
    process.write_file(dir .. "/" .. rel, text)
  end
  return dir
end

-- Runs script with `sh -e` (Debian's dash, as a `sh` block says) in cwd,
-- as the leader of a process group of its own (setsid), so whatever the
-- script leaves running in the background is found and stopped by that
-- group's id afterwards. Returns exit code, stdout, stderr, and a note
-- when something of the script's was still running at its end (a
-- walkthrough that leaves a server behind is wrong). opts.env adds to
-- the environment.
function M.sh(script, cwd, opts, timeout)
  opts = opts or {}
  local dir = process.tmpdir("shadow-docs-sh")
  process.write_file(dir .. "/script.sh", script)
  local p = process.spawn({ "setsid", "sh", "-e", dir .. "/script.sh" },
    { cwd = cwd, env = opts.env, stdout = dir .. "/stdout",
      stderr = dir .. "/stderr" })
  local how, code = p:wait(timeout or 60)
  -- A process the script killed last may take a moment to go.
  local function gone() return signal.kill(-p.pid, 0) ~= 0 end
  local left
  if not port.wait_until(gone, 5) then
    left = "the script left processes running in its group"
    signal.kill(-p.pid, signal.SIGTERM)
    port.wait_until(function() return signal.kill(-p.pid, 0) ~= 0 end, 5)
    if signal.kill(-p.pid, 0) == 0 then signal.kill(-p.pid, signal.SIGKILL) end
  end
  if not how then
    p:stop(1)
    process.rmdir(dir)
    error(("the script did not finish in %ss:\n%s"):format(timeout or 60,
                                                          script))
  end
  local out = process.read_file(dir .. "/stdout") or ""
  local err = process.read_file(dir .. "/stderr") or ""
  process.rmdir(dir)
  return how == "exited" and code or -code, out, err, left
end

-- Every key of the JSON object `want` is in `got`, recursively through
-- objects; each element of an array in `want` must have its keys in some
-- element of the array in `got`. Returns the missing ones as pointers
-- ("/headers/diffs/*/name"), sorted.
function M.missing_keys(want, got, at, out)
  out, at = out or {}, at or ""
  if type(want) ~= "table" then return out end
  if type(got) ~= "table" then
    out[#out + 1] = at .. " (not an object or array)"
    return out
  end
  if want[1] ~= nil then
    for _, w in ipairs(want) do
      local best
      for _, g in ipairs(got) do
        local miss = M.missing_keys(w, g, at .. "/*")
        if not best or #miss < #best then best = miss end
      end
      for _, m in ipairs(best or { at .. "/* (empty array)" }) do
        out[#out + 1] = m
      end
    end
    table.sort(out)
    return out
  end
  for k, v in pairs(want) do
    if got[k] == nil then out[#out + 1] = at .. "/" .. k
    else M.missing_keys(v, got[k], at .. "/" .. k, out) end
  end
  table.sort(out)
  return out
end

return M
