-- Wireshark dissector for ollana's LAN discovery datagrams (UDP 11436, protocol version 2).
--
-- Wire format (src/protocol/lan.ts, src/net/datagram.ts): 4 magic bytes "OLNA", 1 version byte, a
-- 2-byte big-endian body length, the body (one msgpack map: kind, id, boot, role, port, seq, load,
-- models, term, leader, draining, cert), then a 64-byte ECDSA P-256 signature (r || s) over everything
-- before it. At most 1200 bytes.
--
-- Use:  wireshark -X lua_script:tools/wireshark/ollana.lua
--       tshark -X lua_script:tools/wireshark/ollana.lua -i eth0 -f 'udp port 11436' -O ollana
-- or copy this file into ~/.local/lib/wireshark/plugins/. Display filter: `ollana`, e.g.
-- `ollana.kind == "announce"`, `ollana.id contains "ABCD"`, `_ws.expert` for the malformed ones.
--
-- The signature is shown, not verified (Wireshark's Lua has no ECDSA). A datagram this dissector flags
-- is one the node drops as "magic", "version", "malformed" or "oversize" (ollana status --json).
-- The msgpack decoder is here rather than Wireshark's msgpack dissector so that every field gets a
-- filterable name and every decoding error an expert item on the byte where it happened.

local MAGIC = "OLNA"
local VERSION = 2
local HEADER_LEN = 7
local SIGNATURE_LEN = 64
local MAX_DATAGRAM = 1200
local PORT = 11436

local p = Proto("ollana", "ollana LAN discovery")

local f = {
  magic = ProtoField.string("ollana.magic", "Magic"),
  version = ProtoField.uint8("ollana.version", "Protocol version"),
  body_len = ProtoField.uint16("ollana.body_len", "Body length"),
  body = ProtoField.bytes("ollana.body", "Body (msgpack)"),
  load = ProtoField.none("ollana.load", "Load"),
  kind = ProtoField.string("ollana.kind", "Kind"),
  id = ProtoField.string("ollana.id", "Device id"),
  boot = ProtoField.string("ollana.boot", "Boot id"),
  role = ProtoField.string("ollana.role", "Role"),
  port = ProtoField.uint16("ollana.port", "Proxy port"),
  seq = ProtoField.uint64("ollana.seq", "Sequence number"),
  inflight = ProtoField.uint64("ollana.load.inflight", "Requests in flight"),
  workers = ProtoField.uint64("ollana.load.workers", "Proxy workers"),
  models = ProtoField.string("ollana.models", "Models digest"),
  term = ProtoField.uint64("ollana.term", "Election term"),
  leader = ProtoField.string("ollana.leader", "Leader"),
  draining = ProtoField.bool("ollana.draining", "Draining"),
  cert = ProtoField.bytes("ollana.cert", "Certificate (DER)"),
  unknown = ProtoField.string("ollana.unknown_key", "Unknown key"),
  signature = ProtoField.bytes("ollana.signature", "Signature (ECDSA P-256, r || s)"),
}
p.fields = {
  f.magic, f.version, f.body_len, f.body, f.load, f.kind, f.id, f.boot, f.role, f.port, f.seq, f.inflight,
  f.workers, f.models, f.term, f.leader, f.draining, f.cert, f.unknown, f.signature,
}

local e = {
  magic = ProtoExpert.new("ollana.bad_magic", "Not an ollana datagram (magic is not OLNA)",
    expert.group.MALFORMED, expert.severity.ERROR),
  version = ProtoExpert.new("ollana.bad_version", "Unknown protocol version (a node drops it as 'version')",
    expert.group.PROTOCOL, expert.severity.WARN),
  length = ProtoExpert.new("ollana.bad_length", "Body length does not match the datagram's size",
    expert.group.MALFORMED, expert.severity.ERROR),
  oversize = ProtoExpert.new("ollana.oversize", "Datagram over 1200 bytes",
    expert.group.MALFORMED, expert.severity.ERROR),
  msgpack = ProtoExpert.new("ollana.bad_msgpack", "Body is not valid msgpack",
    expert.group.MALFORMED, expert.severity.ERROR),
  field = ProtoExpert.new("ollana.bad_field", "A field is missing or has the wrong type or value",
    expert.group.MALFORMED, expert.severity.ERROR),
}
p.experts = { e.magic, e.version, e.length, e.oversize, e.msgpack, e.field }

-- msgpack -------------------------------------------------------------------------------------------
-- decode(tvb, offset, limit) returns a value table {t = type, v = value, off = start, len = bytes}
-- and the offset after it, or nil and a reason. Types: nil, bool, uint, int, float, str, bin, map,
-- array, ext. Integers stay as UInt64/Int64 objects (a sequence number is a millisecond clock) and
-- maps keep their entries in wire order.

local decode

local function need(off, n, limit)
  if off + n > limit then error({ msg = "truncated", off = off }) end
end

local function uint(tvb, off, n)
  if n == 8 then return tvb(off, 8):uint64() end
  return UInt64(tvb(off, n):uint())
end

local function int(tvb, off, n)
  if n == 8 then return tvb(off, 8):int64() end
  return Int64(tvb(off, n):int())
end

local function str_or_bin(tvb, off, limit, start, lenbytes, t)
  need(off, lenbytes, limit)
  local n = tvb(off, lenbytes):uint()
  off = off + lenbytes
  need(off, n, limit)
  local v
  if t == "str" then v = n > 0 and tvb(off, n):string() or "" else v = n > 0 and tvb(off, n):bytes() or ByteArray.new() end
  return { t = t, v = v, off = start, len = off + n - start, voff = off, vlen = n }, off + n
end

local function container(tvb, off, limit, start, count, t, depth)
  local items = {}
  for i = 1, count * (t == "map" and 2 or 1) do
    local item
    item, off = decode(tvb, off, limit, depth + 1)
    items[i] = item
  end
  return { t = t, v = items, off = start, len = off - start }, off
end

decode = function(tvb, off, limit, depth)
  depth = depth or 0
  if depth > 16 then error({ msg = "nested too deep", off = off }) end
  need(off, 1, limit)
  local start = off
  local b = tvb(off, 1):uint()
  off = off + 1
  if b <= 0x7f then return { t = "uint", v = UInt64(b), off = start, len = 1 }, off end
  if b >= 0xe0 then return { t = "int", v = Int64(b - 256), off = start, len = 1 }, off end
  if b >= 0x80 and b <= 0x8f then return container(tvb, off, limit, start, b - 0x80, "map", depth) end
  if b >= 0x90 and b <= 0x9f then return container(tvb, off, limit, start, b - 0x90, "array", depth) end
  if b >= 0xa0 and b <= 0xbf then
    local n = b - 0xa0
    need(off, n, limit)
    return { t = "str", v = n > 0 and tvb(off, n):string() or "", off = start, len = 1 + n, voff = off, vlen = n }, off + n
  end
  if b == 0xc0 then return { t = "nil", off = start, len = 1 }, off end
  if b == 0xc2 or b == 0xc3 then return { t = "bool", v = b == 0xc3, off = start, len = 1 }, off end
  if b >= 0xc4 and b <= 0xc6 then return str_or_bin(tvb, off, limit, start, ({ 1, 2, 4 })[b - 0xc3], "bin") end
  if b >= 0xc7 and b <= 0xc9 then
    local lb = ({ 1, 2, 4 })[b - 0xc6]
    need(off, lb + 1, limit)
    local n = tvb(off, lb):uint()
    need(off + lb + 1, n, limit)
    return { t = "ext", off = start, len = 1 + lb + 1 + n }, off + lb + 1 + n
  end
  if b == 0xca then need(off, 4, limit); return { t = "float", v = tvb(off, 4):float(), off = start, len = 5 }, off + 4 end
  if b == 0xcb then need(off, 8, limit); return { t = "float", v = tvb(off, 8):float(), off = start, len = 9 }, off + 8 end
  if b >= 0xcc and b <= 0xcf then
    local n = ({ 1, 2, 4, 8 })[b - 0xcb]
    need(off, n, limit)
    return { t = "uint", v = uint(tvb, off, n), off = start, len = 1 + n }, off + n
  end
  if b >= 0xd0 and b <= 0xd3 then
    local n = ({ 1, 2, 4, 8 })[b - 0xcf]
    need(off, n, limit)
    return { t = "int", v = int(tvb, off, n), off = start, len = 1 + n }, off + n
  end
  if b >= 0xd4 and b <= 0xd8 then
    local n = ({ 1, 2, 4, 8, 16 })[b - 0xd3]
    need(off, n + 1, limit)
    return { t = "ext", off = start, len = 2 + n }, off + 1 + n
  end
  if b >= 0xd9 and b <= 0xdb then return str_or_bin(tvb, off, limit, start, ({ 1, 2, 4 })[b - 0xd8], "str") end
  if b == 0xdc or b == 0xdd then
    local lb = b == 0xdc and 2 or 4
    need(off, lb, limit)
    return container(tvb, off + lb, limit, start, tvb(off, lb):uint(), "array", depth)
  end
  if b == 0xde or b == 0xdf then
    local lb = b == 0xde and 2 or 4
    need(off, lb, limit)
    return container(tvb, off + lb, limit, start, tvb(off, lb):uint(), "map", depth)
  end
  error({ msg = string.format("byte 0x%02x is not a msgpack type", b), off = start })
end

-- fields ----------------------------------------------------------------------------------------------

-- What each key of the body must hold, as the node checks it (datagram.ts checkDatagram).
local TOKEN = "^[0-9a-zA-Z:._-]*$"
local function token(min, max)
  return function(v)
    return v.t == "str" and #v.v >= min and #v.v <= max and string.find(v.v, TOKEN) ~= nil
  end
end
local function one_of(...)
  local allowed = { ... }
  return function(v)
    if v.t ~= "str" then return false end
    for _, a in ipairs(allowed) do if v.v == a then return true end end
    return false
  end
end
local function count(v) return v.t == "uint" end
local MAX_PORT = UInt64(65535)

local KEYS = {
  { name = "kind", field = f.kind, ok = one_of("query", "announce", "bye") },
  { name = "id", field = f.id, ok = token(1, 64) },
  { name = "boot", field = f.boot, ok = token(1, 64) },
  { name = "role", field = f.role, ok = one_of("server", "client") },
  { name = "port", field = f.port, ok = function(v) return v.t == "uint" and v.v <= MAX_PORT end },
  { name = "seq", field = f.seq, ok = count },
  { name = "load", ok = function(v) return v.t == "map" end },
  { name = "models", field = f.models, ok = token(0, 128) },
  { name = "term", field = f.term, ok = count },
  { name = "leader", field = f.leader, ok = token(0, 64) },
  { name = "draining", field = f.draining, ok = function(v) return v.t == "bool" end },
  { name = "cert", field = f.cert, ok = function(v) return v.t == "bin" and v.vlen > 0 and v.vlen <= 900 end },
}
local BY_NAME = {}
for _, k in ipairs(KEYS) do BY_NAME[k.name] = k end

local function add_value(tree, tvb, field, v)
  local range = tvb(v.off, v.len)
  if v.t == "str" then
    return tree:add(field, range, v.v)
  elseif v.t == "bin" then
    return tree:add(field, v.vlen > 0 and tvb(v.voff, v.vlen) or range)
  elseif v.t == "uint" and field == f.port then
    return tree:add(field, range, v.v:tonumber())
  else
    return tree:add(field, range, v.v)
  end
end

local function map_entries(m)
  local entries = {}
  for i = 1, #m.v, 2 do entries[#entries + 1] = { key = m.v[i], value = m.v[i + 1] } end
  return entries
end

local function add_load(tree, tvb, v)
  local sub = tree:add(f.load, tvb(v.off, v.len))
  local seen = {}
  for _, entry in ipairs(map_entries(v)) do
    local key = entry.key.t == "str" and entry.key.v or nil
    local field = key == "inFlight" and f.inflight or key == "workers" and f.workers or nil
    if field ~= nil then
      seen[key] = true
      if count(entry.value) then add_value(sub, tvb, field, entry.value)
      else sub:add_proto_expert_info(e.field, "load." .. key .. " must be a non-negative integer") end
    end
  end
  for _, key in ipairs({ "inFlight", "workers" }) do
    if not seen[key] then sub:add_proto_expert_info(e.field, "load." .. key .. " is missing") end
  end
end

-- Adds the body's fields; returns the decoded kind (or nil) and whether every field was right.
local function add_body(tree, tvb, off, len)
  local ok, m, after = pcall(decode, tvb, off, off + len)
  if not ok then
    local err = type(m) == "table" and m or { msg = tostring(m), off = off }
    local at = math.min(err.off or off, off + len - 1)
    tree:add_tvb_expert_info(e.msgpack, tvb(at, math.max(1, off + len - at)), "Body is not valid msgpack: " .. err.msg)
    return nil, false
  end
  if after ~= off + len then
    tree:add_tvb_expert_info(e.msgpack, tvb(after, off + len - after), "Bytes after the msgpack map")
    return nil, false
  end
  if m.t ~= "map" then
    tree:add_tvb_expert_info(e.field, tvb(off, len), "The body must be a msgpack map, not " .. m.t)
    return nil, false
  end
  local good = true
  local kind = nil
  local seen = {}
  for _, entry in ipairs(map_entries(m)) do
    local key = entry.key.t == "str" and entry.key.v or nil
    local spec = key and BY_NAME[key]
    if spec == nil then
      tree:add(f.unknown, tvb(entry.key.off, entry.key.len), tostring(key or ("(" .. entry.key.t .. ")")))
    else
      seen[key] = true
      if not spec.ok(entry.value) then
        good = false
        tree:add_tvb_expert_info(e.field, tvb(entry.value.off, entry.value.len), key .. " has a wrong type or value")
      elseif key == "load" then
        add_load(tree, tvb, entry.value)
      else
        add_value(tree, tvb, spec.field, entry.value)
        if key == "kind" then kind = entry.value.v end
      end
    end
  end
  for _, spec in ipairs(KEYS) do
    if not seen[spec.name] then
      good = false
      tree:add_proto_expert_info(e.field, spec.name .. " is missing")
    end
  end
  return kind, good
end

function p.dissector(tvb, pinfo, root)
  local n = tvb:len()
  if n == 0 then return 0 end
  pinfo.cols.protocol = "ollana"
  local tree = root:add(p, tvb(), "ollana LAN discovery")
  local function bad(expert_item, range, text)
    tree:add_tvb_expert_info(expert_item, range, text)
    pinfo.cols.info = "Malformed: " .. text
    return n
  end

  -- In the order the node checks (datagram.ts decodeDatagram): size, magic, version, length, body.
  if n > MAX_DATAGRAM then return bad(e.oversize, tvb(), string.format("Datagram of %d bytes, over 1200", n)) end
  if n < #MAGIC or tvb(0, #MAGIC):string() ~= MAGIC then
    return bad(e.magic, tvb(0, math.min(n, #MAGIC)), "Not an ollana datagram (magic is not OLNA)")
  end
  tree:add(f.magic, tvb(0, 4))
  if n < 5 then return bad(e.length, tvb(0, n), "Datagram ends after the magic") end
  local version = tvb(4, 1):uint()
  local vitem = tree:add(f.version, tvb(4, 1))
  if version ~= VERSION then
    vitem:add_proto_expert_info(e.version, string.format("Protocol version %d; this dissector reads version %d", version, VERSION))
    pinfo.cols.info = string.format("Protocol version %d (not decoded)", version)
    return n
  end
  if n < HEADER_LEN then return bad(e.length, tvb(0, n), "Datagram ends inside the header") end
  local body_len = tvb(5, 2):uint()
  local litem = tree:add(f.body_len, tvb(5, 2))
  if n ~= HEADER_LEN + body_len + SIGNATURE_LEN then
    litem:add_proto_expert_info(e.length, string.format(
      "Body length %d + 7 header + 64 signature bytes = %d, but the datagram has %d bytes",
      body_len, HEADER_LEN + body_len + SIGNATURE_LEN, n))
    pinfo.cols.info = "Malformed: body length does not match the datagram's size"
    return n
  end
  local btree = tree:add(f.body, tvb(HEADER_LEN, body_len))
  local kind, good = add_body(btree, tvb, HEADER_LEN, body_len)
  tree:add(f.signature, tvb(HEADER_LEN + body_len, SIGNATURE_LEN))
  if good then
    pinfo.cols.info = string.format("%s", kind)
  else
    pinfo.cols.info = "Malformed: " .. (kind or "body")
  end
  return n
end

DissectorTable.get("udp.port"):add(PORT, p)
