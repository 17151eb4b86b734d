// A small JSON Schema (draft-07 subset) checker for the schemas in Schemas/: type,
// required, properties, additionalProperties, items, enum, oneOf, minimum, pattern
// and local $ref. Enough to hold every command's JSON to its published shape.

import Foundation
import TestSupport

struct SchemaValidator {
  let root: [String: Any]

  init(schemaNamed name: String) throws {
    let url = packageRoot.appendingPathComponent("Schemas/\(name)")
    root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
  }

  /// The problems found, empty when `value` conforms.
  func problems(_ value: Any) -> [String] {
    var out: [String] = []
    check(value, against: root, at: "$", into: &out)
    return out
  }

  private func resolve(_ schema: [String: Any]) -> [String: Any] {
    guard let ref = schema["$ref"] as? String, ref.hasPrefix("#/definitions/") else { return schema }
    let definitions = root["definitions"] as? [String: Any] ?? [:]
    return definitions[String(ref.dropFirst("#/definitions/".count))] as? [String: Any] ?? [:]
  }

  private static func typeName(_ v: Any) -> String {
    if v is NSNull { return "null" }
    if type(of: v) == Bool.self { return "boolean" }
    if let n = v as? NSNumber {
      // Foundation on Linux parses true/false as NSNumber of ObjC type "c" (char).
      if String(cString: n.objCType) == "c" { return "boolean" }
      return n.doubleValue == n.doubleValue.rounded() && !String(describing: n).contains(".") ? "integer" : "number"
    }
    if v is String { return "string" }
    if v is [Any] { return "array" }
    if v is [String: Any] { return "object" }
    return "unknown"
  }

  private func check(_ v: Any, against raw: [String: Any], at path: String, into out: inout [String]) {
    let s = resolve(raw)
    if let options = s["oneOf"] as? [[String: Any]] {
      let matching = options.filter { option in
        var sub: [String] = []
        check(v, against: option, at: path, into: &sub)
        return sub.isEmpty
      }
      if matching.count != 1 { out.append("\(path): matches \(matching.count) of oneOf") }
      return
    }
    let actual = Self.typeName(v)
    if let t = s["type"] {
      let allowed = (t as? [String]) ?? [t as! String]
      let ok = allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))
      if !ok { out.append("\(path): \(actual) is not \(allowed)") }
    }
    if let values = s["enum"] as? [Any], !values.contains(where: { "\($0)" == "\(v)" }) {
      out.append("\(path): \(v) not in enum")
    }
    if let minimum = s["minimum"] as? Double, let n = v as? NSNumber, n.doubleValue < minimum {
      out.append("\(path): \(n) < \(minimum)")
    }
    if let pattern = s["pattern"] as? String, let text = v as? String,
      text.range(of: pattern, options: .regularExpression) == nil
    {
      out.append("\(path): '\(text)' does not match \(pattern)")
    }
    if let object = v as? [String: Any] {
      for key in s["required"] as? [String] ?? [] where object[key] == nil { out.append("\(path): missing \(key)") }
      let properties = s["properties"] as? [String: Any] ?? [:]
      for (key, value) in object {
        if let p = properties[key] as? [String: Any] {
          check(value, against: p, at: "\(path).\(key)", into: &out)
        } else if let extra = s["additionalProperties"] as? [String: Any] {
          check(value, against: extra, at: "\(path).\(key)", into: &out)
        } else if (s["additionalProperties"] as? Bool) == false {
          out.append("\(path): unexpected property \(key)")
        }
      }
    }
    if let array = v as? [Any], let items = s["items"] as? [String: Any] {
      for (i, item) in array.enumerated() { check(item, against: items, at: "\(path)[\(i)]", into: &out) }
    }
  }
}
