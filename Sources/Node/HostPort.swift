// A network address as operators write it.

import Foundation

/// `HOST:PORT`, parsed in one place.
public struct HostPort: Equatable, Sendable, CustomStringConvertible {
  public var host: String
  public var port: UInt16

  public init(parsing text: String) throws {
    guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0,
      colon > text.startIndex
    else {
      throw NodeError.badConfig(path: text, reason: "expected HOST:PORT with a port from 1 to 65535")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    self.host = host
    self.port = port
  }

  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
