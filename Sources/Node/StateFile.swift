// Small JSON files under `NODE/state/` that record a procedure's decisions (takeover,
// file recovery, switchover journals) and what a daemon knows (backups, attached, safe):
// written whole and durably (temp file, fsync, rename, directory fsync), so a reader
// sees the old or the new content, never half. Read strictly: no file is nil (each
// caller says what that means), a file that does not decode is an error naming it.

import AuditTrail
import Foundation

public struct StateFileError: Error, CustomStringConvertible {
  public var path: String
  public var reason: String

  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }

  public var description: String {
    "state file \(path) cannot be read: \(reason). Repair it from a copy or remove it if what it records is known to be obsolete"
  }
}

public enum StateFile {
  public static func read<T: Decodable>(_ type: T.Type, at path: String) throws -> T? {
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch CocoaError.fileReadNoSuchFile {
      return nil
    } catch {
      guard FileManager.default.fileExists(atPath: path) else { return nil }
      throw StateFileError(path: path, reason: "\(error.localizedDescription)")
    }
    do {
      return try JSONDecoder().decode(T.self, from: data)
    } catch let error as DecodingError {
      throw StateFileError(path: path, reason: describe(error, bytes: data.count))
    } catch {
      throw StateFileError(path: path, reason: "\(error)")
    }
  }

  public static func write<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try DurableFile.create(path: path, contents: Array(try encoder.encode(value) + Data("\n".utf8)))
  }

  static func describe(_ error: DecodingError, bytes: Int) -> String {
    func at(_ context: DecodingError.Context) -> String {
      let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
      return path.isEmpty ? "" : " at \(path)"
    }
    switch error {
    case .dataCorrupted(let c):
      return "not valid JSON (\(bytes) bytes)\(at(c)): \(c.underlyingError.map { "\($0)" } ?? c.debugDescription)"
    case .keyNotFound(let key, let c): return "field '\(key.stringValue)' is missing\(at(c))"
    case .typeMismatch(_, let c), .valueNotFound(_, let c): return "\(c.debugDescription)\(at(c))"
    @unknown default: return "\(error)"
    }
  }
}
