--- sbot.report: a run record (results.json) as documents for people and CI.
--
--   report.html(record [, opts]) -> text   one self-contained HTML page:
--       summary, a timeline (Gantt chart) of every server's phases, the plan
--       as a diff, each failure with its message, links to the artifacts
--   report.junit(record) -> text            JUnit XML: one testcase per
--       server x step (site steps too), failures with their messages
--
-- Every value is redacted (sbot.log) and escaped on its own; the page loads
-- nothing from anywhere (inline CSS and SVG, no script).
local log = require "sbot.log"
local run = require "sbot.run"

local M = {}

local function red(v) return log.redact(tostring(v)) end

--- Text escaped for HTML (and XML): & < > " '.
function M.escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end
local esc = M.escape

-- A value for the page: redacted, then escaped.
local function h(v) return esc(red(v == nil and "" or v)) end

--- Milliseconds since the epoch of an ISO-8601 UTC time, or nil (run.parse_time).
M.parse_time = run.parse_time

local PHASES = { "discover", "process", "housekeep", "close" }

-- The first line of an error (no traceback), and the rest.
local function split_error(e)
  local s = tostring(e or "")
  local tb = s:find("\nstack traceback:", 1, true)
  local msg = tb and s:sub(1, tb - 1) or s
  return msg, tb and s:sub(tb + 1) or nil
end

local function label(r)
  local c = tostring(r.component or "-")
  if r.step and r.step ~= r.component then return c .. " (" .. tostring(r.step) .. ")" end
  return c
end

local function counts(results)
  local n = { ok = 0, failed = 0, skipped = 0, other = 0 }
  for _, r in ipairs(results) do
    local k = n[r.status] and r.status or "other"
    n[k] = n[k] + 1
  end
  return n
end

local function result_ms(r)
  local ms = 0
  for _, ph in pairs(r.phases or {}) do ms = ms + (tonumber(ph.ms) or 0) end
  return ms
end

local CSS = [[
:root { --ok: #1a7f37; --failed: #cf222e; --skipped: #9a6700; --muted: #57606a; --line: #d0d7de;
  --discover: #0969da; --process: #bc4c00; --housekeep: #1a7f37; --close: #8c959f; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
  margin: 0 auto; padding: 24px 32px 48px; max-width: 1280px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 12px; color: #fff; font-weight: 600;
  font-size: 13px; vertical-align: 3px; }
.badge.ok { background: var(--ok); } .badge.failed { background: var(--failed); }
.badge.plan { background: var(--discover); }
.meta { color: var(--muted); margin: 2px 0; }
.cards { display: flex; gap: 12px; margin: 14px 0 4px; flex-wrap: wrap; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; } .card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; } .status.ok { color: var(--ok); } .status.failed { color: var(--failed); }
.status.skipped { color: var(--skipped); }
.timeline { border: 1px solid var(--line); border-radius: 6px; padding: 8px; overflow-x: auto; }
.timeline text { font: 12px system-ui, sans-serif; fill: #1f2328; }
.timeline .axis text { fill: var(--muted); font-size: 11px; }
.legend { display: flex; gap: 16px; margin: 6px 0 0; color: var(--muted); font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 5px;
  vertical-align: -2px; }
.diff { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; overflow: hidden; }
.diff header { background: #f6f8fa; padding: 6px 10px; font-weight: 600; border-bottom: 1px solid var(--line); }
.diff pre { margin: 0; padding: 6px 0; overflow-x: auto; }
.diff pre span { display: block; padding: 0 10px; white-space: pre; }
.add { background: #dafbe1; } .del { background: #ffebe9; } .upd { background: #fff8c5; }
.note { color: var(--muted); }
.failure { border: 1px solid #ff818266; border-left: 4px solid var(--failed); border-radius: 6px;
  padding: 8px 12px; margin: 8px 0; background: #fff5f5; }
.failure h3 { margin: 0 0 4px; font-size: 14px; } .failure pre { white-space: pre-wrap; margin: 4px 0 0; }
details summary { cursor: pointer; color: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
]]

-- The timeline: one row per result (server x step), a bar per phase placed
-- by its start and end. Inline SVG.
local function timeline(record, out)
  local t0, t1 = M.parse_time(record.started), M.parse_time(record.ended)
  local rows = {}
  for _, r in ipairs(record.results or {}) do
    local bars = {}
    for _, name in ipairs(PHASES) do
      local ph = r.phases and r.phases[name]
      if type(ph) == "table" and not ph.skipped then
        local s, e = M.parse_time(ph.started), M.parse_time(ph.ended)
        if s and e then
          bars[#bars + 1] = { phase = name, s = s, e = e, ok = ph.ok ~= false, ms = ph.ms, error = ph.error }
          t0 = t0 and math.min(t0, s) or s
          t1 = t1 and math.max(t1, e) or e
        end
      end
    end
    rows[#rows + 1] = { r = r, bars = bars }
  end
  if not t0 or not t1 or #rows == 0 then
    out[#out + 1] = '<p class="empty">No phase times in this record.</p>'
    return
  end
  local span = math.max(t1 - t0, 1)
  local label_w, chart_w, row_h, top = 300, 860, 24, 26
  local width, height = label_w + chart_w + 20, top + #rows * row_h + 10
  local function x(t) return label_w + (t - t0) / span * chart_w end
  out[#out + 1] = string.format('<div class="timeline"><svg id="gantt" xmlns="http://www.w3.org/2000/svg" '
    .. 'width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="timeline of every server\'s phases">',
    width, height, width, height)
  -- axis: about 8 ticks at round steps
  local steps = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000,
    300000, 600000, 900000, 1800000, 3600000 }
  local step = steps[#steps]
  for _, s in ipairs(steps) do if span / s <= 8 then step = s; break end end
  out[#out + 1] = '<g class="axis">'
  for t = 0, span, step do
    local px = x(t0 + t)
    out[#out + 1] = string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eaeef2"/>', px, top - 6, px,
      height - 6)
    out[#out + 1] = string.format('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', px, top - 10,
      esc(run.duration(t)))
  end
  out[#out + 1] = '</g>'
  for i, row in ipairs(rows) do
    local y = top + (i - 1) * row_h
    local r = row.r
    local status = r.status == "ok" and "ok" or r.status == "failed" and "failed" or "skipped"
    if i % 2 == 0 then
      out[#out + 1] = string.format('<rect x="0" y="%d" width="%d" height="%d" fill="#f6f8fa"/>', y, width, row_h)
    end
    out[#out + 1] = string.format('<text x="6" y="%d" class="row-label">%s / %s</text>', y + 16,
      h(r.id or "-"), h(label(r)))
    out[#out + 1] = string.format('<circle cx="%d" cy="%d" r="4" fill="var(--%s)"><title>%s</title></circle>',
      label_w - 10, y + 12, status, h(r.status))
    for _, b in ipairs(row.bars) do
      local bx, bw = x(b.s), math.max(x(b.e) - x(b.s), 2)
      local tip = b.phase .. ": " .. run.duration(b.ms or (b.e - b.s)) .. (b.ok and "" or (" — FAILED: "
        .. (split_error(b.error))))
      out[#out + 1] = string.format('<rect class="phase %s%s" data-phase="%s" x="%.1f" y="%d" width="%.1f" '
        .. 'height="%d" rx="2" fill="var(--%s)"%s><title>%s</title></rect>', b.phase, b.ok and "" or " failed",
        b.phase, bx, y + 5, bw, row_h - 10, b.phase,
        b.ok and "" or ' stroke="var(--failed)" stroke-width="2.5"', h(tip))
    end
  end
  out[#out + 1] = '</svg><div class="legend">'
  for _, name in ipairs(PHASES) do
    out[#out + 1] = string.format('<span><i style="background:var(--%s)"></i>%s</span>', name, name)
  end
  out[#out + 1] = '<span><i style="background:#fff;border:2.5px solid var(--failed)"></i>failed phase</span>'
    .. string.format('<span>0 = %s, %s in all</span></div></div>', h(record.started), h(run.duration(span)))
end

-- The plan of every result as a diff (the same lines as `--plan` prints).
local function plan_diff(record, out)
  local any = false
  for _, r in ipairs(record.results or {}) do
    if type(r.plan) == "table" and #r.plan > 0 then
      any = true
      local spans = {} -- one block per line, nothing between them (a <pre> keeps newlines)
      for _, c in ipairs(r.plan) do
        for line in (run.format_change(c) .. "\n"):gmatch("([^\n]*)\n") do
          local t = line:match("^%s*(.)")
          local cls = t == "+" and "add" or t == "-" and "del" or t == "~" and "upd" or
            (line:match("^%s*%(") and "note" or "")
          spans[#spans + 1] = string.format('<span class="%s">%s</span>', cls, h(line))
        end
      end
      out[#out + 1] = string.format('<div class="diff"><header>%s / %s: %d change(s)</header><pre>%s</pre></div>',
        h(r.id or "-"), h(label(r)), #r.plan, table.concat(spans))
    end
  end
  if not any then out[#out + 1] = '<p class="empty">No changes were planned.</p>' end
end

--- The HTML page of a run record. opts: {title = text}.
function M.html(record, opts)
  opts = opts or {}
  if type(record) ~= "table" or type(record.results) ~= "table" then
    error("report.html: record must be a run record (results.json) with results", 2)
  end
  local results = record.results
  local n = counts(results)
  local servers = record.servers or {}
  local out = {}
  local title = opts.title or ("sbot run " .. tostring(record.run_id))
  out[#out + 1] = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
  out[#out + 1] = '<meta name="viewport" content="width=device-width, initial-scale=1">'
  out[#out + 1] = '<title>' .. h(title) .. '</title><style>' .. CSS .. '</style></head><body>'
  local outcome = record.ok and "ok" or "failed"
  out[#out + 1] = string.format('<header id="head"><h1>Run <span class="mono">%s</span> '
    .. '<span class="badge %s" id="outcome">%s</span>%s</h1>', h(record.run_id), outcome,
    record.ok and "OK" or "FAILED", record.mode == "plan" and ' <span class="badge plan">PLAN</span>' or "")
  out[#out + 1] = string.format('<p class="meta">workflow <b>%s</b> (%s) · site <code>%s</code> · host %s · pid %s</p>',
    h(record.workflow or "-"), h(record.mode or "-"), h(record.site or "-"), h(record.host or "-"), h(record.pid and run.num(record.pid) or "-"))
  out[#out + 1] = string.format('<p class="meta">started %s · ended %s · took %s</p></header>',
    h(record.started or "-"), h(record.ended or "-"), h(run.duration(record.ms)))

  out[#out + 1] = '<section id="summary"><h2>Summary</h2><div class="cards">'
  for _, c in ipairs { { #servers, "servers" }, { #results, "steps" }, { n.ok, "ok" }, { n.failed, "failed" },
    { n.skipped, "skipped" } } do
    out[#out + 1] = string.format('<div class="card"><b>%d</b><span>%s</span></div>', c[1], c[2])
  end
  out[#out + 1] = '</div><table id="results"><thead><tr><th>Server</th><th>Component</th><th>Status</th>'
    .. '<th class="num">Planned</th><th class="num">Applied</th><th class="num">Time</th></tr></thead><tbody>'
  for _, r in ipairs(results) do
    local p = type(r.processing) == "table" and r.processing or {}
    out[#out + 1] = string.format('<tr><td class="mono">%s</td><td>%s</td><td class="status %s">%s</td>'
      .. '<td class="num">%s</td><td class="num">%s</td><td class="num">%s</td></tr>',
      h(r.id or "-"), h(label(r)), h(r.status), h(r.status),
      h(type(r.plan) == "table" and #r.plan or (p.planned and run.num(p.planned) or "-")),
      h(type(p.applied) == "table" and #p.applied or "-"), h(run.duration(result_ms(r))))
  end
  out[#out + 1] = '</tbody></table>'
  if record.artifact_error then
    out[#out + 1] = '<div class="failure"><h3>artifacts</h3><pre>' .. h(record.artifact_error) .. '</pre></div>'
  end
  if record.record_error then
    out[#out + 1] = '<div class="failure"><h3>run record</h3><pre>' .. h(record.record_error) .. '</pre></div>'
  end
  out[#out + 1] = '</section>'

  out[#out + 1] = '<section id="timeline"><h2>Timeline</h2>'
  timeline(record, out)
  out[#out + 1] = '</section>'

  out[#out + 1] = '<section id="failures"><h2>Failures</h2>'
  local failures = 0
  for _, r in ipairs(results) do
    if r.status == "failed" then
      failures = failures + 1
      local msg, tb = split_error(r.error)
      out[#out + 1] = string.format('<div class="failure"><h3>%s / %s</h3><pre class="message">%s</pre>',
        h(r.id or "-"), h(label(r)), h(msg))
      local failed = type(r.processing) == "table" and r.processing.failed
      if type(failed) == "table" and failed.resource then
        out[#out + 1] = string.format('<p class="meta">change %s (%s %s) failed</p>', h(failed.index and run.num(failed.index) or "?"),
          h(failed.action or "?"), h(failed.resource))
      end
      if tb then
        out[#out + 1] = '<details><summary>traceback</summary><pre>' .. h(tb) .. '</pre></details>'
      end
      out[#out + 1] = '</div>'
    end
  end
  local skipped = {}
  for _, r in ipairs(results) do
    if r.status == "skipped" then
      skipped[#skipped + 1] = string.format('<li><span class="mono">%s</span> / %s: %s</li>', h(r.id or "-"),
        h(label(r)), h(r.reason or "skipped"))
    end
  end
  if failures == 0 then out[#out + 1] = '<p class="empty">No failures.</p>' end
  if #skipped > 0 then
    out[#out + 1] = '<p><b>Skipped</b></p><ul id="skipped">' .. table.concat(skipped) .. '</ul>'
  end
  out[#out + 1] = '</section>'

  out[#out + 1] = '<section id="plan"><h2>Plan</h2>'
  plan_diff(record, out)
  out[#out + 1] = '</section>'

  out[#out + 1] = '<section id="artifacts"><h2>Artifacts</h2>'
  local arts = {}
  for _, r in ipairs(results) do
    for _, a in ipairs(type(r.artifacts) == "table" and r.artifacts or {}) do
      local where = a.stored or (a.path and ("file://" .. a.path)) or nil
      local link = where and (where:match("^file://") or where:match("^https?://"))
        and string.format('<a href="%s">%s</a>', h(where), h(where)) or ('<code>' .. h(where or "-") .. '</code>')
      arts[#arts + 1] = string.format('<tr><td class="mono">%s</td><td>%s</td><td class="mono">%s</td><td>%s</td>'
        .. '<td class="num">%s</td><td class="mono" title="%s">%s</td><td>%s</td></tr>', h(r.id or "-"),
        h(label(r)), h(a.key or "-"), h(a.type or "-"), h(a.size and run.num(a.size) or "-"), h(a.sha256 or ""),
        h(tostring(a.sha256 or ""):sub(1, 12)), link)
    end
  end
  if #arts == 0 then
    out[#out + 1] = '<p class="empty">No artifacts.</p>'
  else
    out[#out + 1] = '<table id="artifact-list"><thead><tr><th>Server</th><th>Component</th><th>Key</th><th>Type</th>'
      .. '<th class="num">Bytes</th><th>SHA-256</th><th>Stored</th></tr></thead><tbody>'
      .. table.concat(arts) .. '</tbody></table>'
  end
  out[#out + 1] = '</section>'
  out[#out + 1] = string.format('<footer>sbot run record schema %s · generated by sbot runs report</footer>',
    h(record.schema_version and run.num(record.schema_version) or "-"))
  out[#out + 1] = '</body></html>\n'
  return table.concat(out, "\n")
end

-- XML 1.0 cannot hold most control characters: they go, then escape.
local function x(v)
  return esc((red(v == nil and "" or v):gsub("[%z\1-\8\11\12\14-\31]", "?")))
end

--- JUnit XML of a run record: a testsuite per server (site steps under
-- "(site)"), a testcase per step (classname = server, name = the step), a
-- <failure> with the message for a failed one, <skipped> with the reason.
function M.junit(record)
  if type(record) ~= "table" or type(record.results) ~= "table" then
    error("report.junit: record must be a run record (results.json) with results", 2)
  end
  local suites, order = {}, {}
  for _, r in ipairs(record.results) do
    local id = tostring(r.id or "-")
    if not suites[id] then suites[id] = {}; order[#order + 1] = id end
    table.insert(suites[id], r)
  end
  local n = counts(record.results)
  local out = { '<?xml version="1.0" encoding="UTF-8"?>' }
  out[#out + 1] = string.format('<testsuites name="sbot %s" tests="%d" failures="%d" errors="0" skipped="%d" '
    .. 'time="%.3f" timestamp="%s">', x(record.workflow or "run"), #record.results, n.failed + n.other,
    n.skipped, (tonumber(record.ms) or 0) / 1000, x((tostring(record.started or "")):gsub("Z$", "")))
  for _, id in ipairs(order) do
    local list = suites[id]
    local c = counts(list)
    local ms = 0
    for _, r in ipairs(list) do ms = ms + result_ms(r) end
    out[#out + 1] = string.format('  <testsuite name="%s" tests="%d" failures="%d" errors="0" skipped="%d" time="%.3f">',
      x(id), #list, c.failed + c.other, c.skipped, ms / 1000)
    out[#out + 1] = string.format('    <properties><property name="run_id" value="%s"/><property name="mode" '
      .. 'value="%s"/></properties>', x(record.run_id), x(record.mode))
    for _, r in ipairs(list) do
      local name = r.step or r.component or "-"
      out[#out + 1] = string.format('    <testcase classname="%s" name="%s" time="%.3f">', x(id), x(name),
        result_ms(r) / 1000)
      if r.status == "skipped" then
        out[#out + 1] = string.format('      <skipped message="%s"/>', x(r.reason or "skipped"))
      elseif r.status ~= "ok" then
        local msg = split_error(r.error or ("status " .. tostring(r.status)))
        out[#out + 1] = string.format('      <failure message="%s" type="%s">%s</failure>', x(msg),
          x(tostring(r.error or ""):match("^(%a+):") or r.status or "failed"), x(tostring(r.error or msg)))
      end
      local plan = type(r.plan) == "table" and #r.plan > 0 and r.plan or nil
      if plan then
        local lines = {}
        for _, ch in ipairs(plan) do lines[#lines + 1] = run.format_change(ch) end
        out[#out + 1] = '      <system-out>' .. x(table.concat(lines, "\n")) .. '</system-out>'
      end
      out[#out + 1] = '    </testcase>'
    end
    out[#out + 1] = '  </testsuite>'
  end
  out[#out + 1] = '</testsuites>'
  return table.concat(out, "\n") .. "\n"
end

return M
