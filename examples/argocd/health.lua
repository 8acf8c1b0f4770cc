-- Argo CD health check for adsexport.io/ContinuousExport.
-- Install as resource.customizations.health.adsexport.io_ContinuousExport in
-- argocd-cm (see README.md). Argo CD runs it with `obj` set to the live object.
-- Plain Lua 5.1 (Argo CD uses gopher-lua); only base functions are used.

local hs = {}

-- Returns the condition of the given type, or nil.
local function condition(status, ctype)
  if status == nil or type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == ctype then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function is_false(c)
  return c ~= nil and c.status == "False"
end

-- The condition's message, else its reason, else the fallback.
local function describe(c, fallback)
  if c ~= nil then
    if type(c.message) == "string" and c.message ~= "" then
      return c.message
    end
    if type(c.reason) == "string" and c.reason ~= "" then
      return c.reason
    end
  end
  return fallback
end

local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for status"
  return hs
end

-- A status written for an older generation says nothing about the current spec.
local generation = nil
if type(obj.metadata) == "table" then
  generation = obj.metadata.generation
end
if generation ~= nil then
  local observed = status.observedGeneration
  if observed == nil or observed < generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    return hs
  end
end

local ready = condition(status, "Ready")
local reconciling = condition(status, "Reconciling")
local stalled = condition(status, "Stalled")
local synced = condition(status, "Synced")

if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  local fallback = "Ready"
  if type(status.exportId) == "string" and type(status.exportStatus) == "string" then
    fallback = "Export " .. status.exportId .. " is " .. status.exportStatus
  end
  if type(ready.message) == "string" and ready.message ~= "" then
    hs.message = ready.message
  else
    hs.message = fallback
  end
  return hs
end

if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

if is_false(synced) then
  hs.status = "Degraded"
  hs.message = describe(synced, "The last call to AWS failed")
  return hs
end

local export_status = status.exportStatus
if export_status == "ERROR" or export_status == "START_FAILED" or export_status == "STOP_FAILED" then
  hs.status = "Degraded"
  if type(status.statusDetail) == "string" and status.statusDetail ~= "" then
    hs.message = "Export is " .. export_status .. ": " .. status.statusDetail
  else
    hs.message = "Export is " .. export_status
  end
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for status"
return hs
