// The statemap of a node (MIMIX's word): clean, or dirty with the reason. A dirty
// statemap on the acting production means its follower's data cannot be trusted, so the
// next resync is a complete copy, never an incremental one (`scconfig -M`). It lives in
// `state/statemap.json` so that it survives restarts; a completed full copy makes it clean.

import AuditTrail
import Foundation

public struct Statemap: Codable, Sendable, Equatable {
  public var dirty: Bool
  /// Why it is dirty: who marked it, where and when, in words.
  public var why: String?
  public var markedMicros: Int64?

  public static let clean = Statemap(dirty: false, why: nil, markedMicros: nil)

  public init(dirty: Bool, why: String?, markedMicros: Int64?) {
    self.dirty = dirty
    self.why = why
    self.markedMicros = markedMicros
  }

  public static func path(_ layout: NodeLayout) -> String { layout.state + "/statemap.json" }

  /// No file: clean. A file that cannot be read is an error naming it: a dirty mark
  /// must never be lost to a silent default.
  public static func read(_ layout: NodeLayout) throws -> Statemap {
    try StateFile.read(Statemap.self, at: path(layout)) ?? .clean
  }

  public static func markDirty(_ layout: NodeLayout, why: String) throws -> Statemap {
    let map = Statemap(dirty: true, why: why, markedMicros: Clock.nowMicros())
    try StateFile.write(map, to: path(layout))
    return map
  }

  public static func markClean(_ layout: NodeLayout) throws {
    try StateFile.write(Statemap.clean, to: path(layout))
  }
}
