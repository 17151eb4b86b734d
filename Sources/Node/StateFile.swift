// Small JSON files under `NODE/state/` that record a procedure's decisions (takeover,
// file recovery, switchover journals): written whole and durably (temp file, fsync,
// rename, directory fsync), so a reader sees the old or the new content, never half.

import AuditTrail
import Foundation

public enum StateFile {
  public static func read<T: Decodable>(_ type: T.Type, at path: String) throws -> T? {
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    do {
      return try JSONDecoder().decode(T.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    } catch {
      throw NodeError.badConfig(path: path, reason: "unreadable: \(error)")
    }
  }

  public static func write<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try DurableFile.create(path: path, contents: Array(try encoder.encode(value) + Data("\n".utf8)))
  }
}
