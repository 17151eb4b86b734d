// The pre-shared key of the replication link, `NODE/secret.key` (mode 0600). Both ends
// prove they hold it by HMAC over fresh nonces; the key itself never crosses the wire.

import AuditTrail
import Foundation

public enum Secret {
  public static let minimumBytes = 16

  public enum Problem: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case tooShort(path: String, bytes: Int)
    case notPrivate(path: String, mode: UInt16)

    public var description: String {
      switch self {
      case .unreadable(let path, let reason): "cannot read the link secret \(path): \(reason)"
      case .tooShort(let path, let bytes):
        "the link secret \(path) holds \(bytes) bytes; at least \(Secret.minimumBytes) are needed"
      case .notPrivate(let path, let mode):
        "the link secret \(path) is readable or writable by others (mode \(String(mode, radix: 8))); anyone who reads it can pose as a node. Fix it with: chmod 600 \(path)"
      }
    }
  }

  /// 32 random bytes, hex, as a new node's key.
  public static func generate() -> [UInt8] {
    var rng = SystemRandomNumberGenerator()
    let hex = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
    return Array((hex + "\n").utf8)
  }

  /// The key bytes of a secret file: its content without surrounding whitespace.
  /// A file named `secret.key` (a node's own key, or a copy of one) must be private to
  /// its owner, as `init` and `follow` write it; another file is only read (its key is
  /// installed as a private `secret.key`).
  public static func load(path: String) throws -> [UInt8] {
    var info = stat()
    if (path as NSString).lastPathComponent == "secret.key", stat(path, &info) == 0, info.st_mode & 0o077 != 0 {
      throw Problem.notPrivate(path: path, mode: UInt16(info.st_mode & 0o777))
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw Problem.unreadable(path: path, reason: DurableFile.exists(path) ? "permission denied" : "no such file")
    }
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    let key = Array(text.utf8)
    guard key.count >= minimumBytes else { throw Problem.tooShort(path: path, bytes: key.count) }
    return key
  }

  /// Installs a key as the node's `secret.key`, readable by its owner only.
  public static func install(_ contents: [UInt8], in layout: NodeLayout) throws {
    try DurableFile.create(path: layout.secretKey, contents: contents, mode: 0o600)
    chmod(layout.secretKey, 0o600)  // whatever the umask did
  }
}

#if canImport(Glibc)
  import Glibc
#endif
