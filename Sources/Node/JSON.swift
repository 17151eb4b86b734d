// A small JSON value with keys kept in the order written, so that every command's
// output is stable and reads in the order its schema lists.

import AuditTrail
import Foundation
import SQLiteSupport

public indirect enum JSON: Equatable, Sendable {
  case null
  case bool(Bool)
  case int(Int64)
  case double(Double)
  case string(String)
  case array([JSON])
  case object([(String, JSON)])

  public static func == (a: JSON, b: JSON) -> Bool { a.serialized() == b.serialized() }

  public func serialized() -> String {
    var out = ""
    write(to: &out)
    return out
  }

  private func write(to out: inout String) {
    switch self {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .int(let i): out += String(i)
    case .double(let d):
      if d.isFinite {
        out += d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)"
      } else {
        out += "null"
      }
    case .string(let s): Self.quote(s, into: &out)
    case .array(let items):
      out += "["
      for (i, item) in items.enumerated() {
        if i > 0 { out += "," }
        item.write(to: &out)
      }
      out += "]"
    case .object(let fields):
      out += "{"
      for (i, (key, value)) in fields.enumerated() {
        if i > 0 { out += "," }
        Self.quote(key, into: &out)
        out += ":"
        value.write(to: &out)
      }
      out += "}"
    }
  }

  private static func quote(_ s: String, into out: inout String) {
    out += "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case let c where c.value < 0x20:
        out += String(format: "\\u%04x", c.value)
      default: out.unicodeScalars.append(scalar)
      }
    }
    out += "\""
  }
}

extension MATPosition {
  public var json: JSON { .object([("sno", .int(Int64(sno))), ("rba", .int(Int64(rba)))]) }
}

extension SQLiteValue {
  /// SQL values in JSON: numbers and strings as themselves, blobs as `{"blob":"<hex>"}`.
  public var json: JSON {
    switch self {
    case .null: .null
    case .integer(let i): .int(i)
    case .real(let d): .double(d)
    case .text(let s): .string(s)
    case .blob(let b): .object([("blob", .string(b.map { String(format: "%02x", $0) }.joined()))])
    }
  }
}

extension DatabaseChecksum {
  public var json: JSON {
    .object([
      ("checksum", .string(checksum)),
      (
        "tables",
        .object(
          tables.keys.sorted().map { name in
            (name, .object([("rows", .int(Int64(tables[name]!.rows))), ("checksum", .string(tables[name]!.checksum))]))
          })
      ),
    ])
  }
}

/// Microseconds since 1970 as ISO 8601 with microseconds, UTC.
public func isoTime(micros: Int64) -> String {
  let seconds = time_t(micros / 1_000_000)
  var tm = tm()
  var s = seconds
  gmtime_r(&s, &tm)
  return String(
    format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
    tm.tm_sec, Int(micros % 1_000_000))
}
