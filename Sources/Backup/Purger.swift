// The purger: records the safe MAT position durably (every transaction whose commit
// record ends at or before it is applied) and removes image-trail files that lie wholly
// before it once they are older than the retention window. The file holding the safe
// position is always kept: the receiver and updater restart from inside it; so are the
// files a running restore reads (`RestorePin`).

import AuditTrail
import Foundation
import Node

public struct SafePosition: Codable, Sendable, Equatable {
  public var safe: MATPosition
  public var recordedMicros: Int64

  static func path(_ layout: NodeLayout) -> String { layout.state + "/safe.json" }

  /// No file: the purger has recorded nothing yet (no transaction applied).
  public static func read(_ layout: NodeLayout) throws -> SafePosition? {
    try StateFile.read(SafePosition.self, at: path(layout))
  }

  /// For a failover restore, which moves it back (the purger only ever follows the database).
  public static func record(_ safe: MATPosition, _ layout: NodeLayout) throws {
    try StateFile.write(SafePosition(safe: safe, recordedMicros: Clock.nowMicros()), to: path(layout))
  }
}

// Safe: one thread at a time ticks it, the daemon's purger thread while it runs, then
// the daemon's last tick once that thread has ended.
final class Purger: @unchecked Sendable {
  let layout: NodeLayout
  let retention: Int
  let events: EventLog
  private var recorded: MATPosition?

  init(layout: NodeLayout, retention: Int, events: EventLog) throws {
    self.layout = layout
    self.retention = retention
    self.events = events
    recorded = try SafePosition.read(layout)?.safe
  }

  /// `relayed`: the earliest position a next hop still needs (a cascade); files it needs stay.
  func tick(applied: MATPosition?, relayed: MATPosition? = nil) throws {
    guard let applied else { return }
    if recorded != applied {
      try StateFile.write(SafePosition(safe: applied, recordedMicros: Clock.nowMicros()), to: SafePosition.path(layout))
      recorded = applied
    }
    var removed: [String] = []
    let now = Date()
    // A running restore reads back from its pin; a pin that cannot be read keeps everything.
    let pinned: MATPosition?
    do { pinned = try RestorePin.held(layout) } catch { pinned = MATPosition(sno: 0, rba: 0) }
    let keep = min(applied.sno, relayed?.sno ?? applied.sno, pinned?.sno ?? applied.sno)
    for sno in try layout.image.snos() where sno < keep {
      let path = layout.image.filePath(sno: sno)
      // An age that cannot be read counts as new: the file is kept, never removed early.
      let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? now
      guard now.timeIntervalSince(modified) >= Double(retention) else { continue }
      if unlink(path) == 0 { removed.append(TrailFormat.fileName(sno: sno)) }
    }
    if !removed.isEmpty {
      try DurableFile.syncDirectory(layout.image.path)
      events.log(
        .imageFilesPurged,
        "removed image trail files \(removed.joined(separator: ", ")) (wholly before the safe position \(applied))",
        [("files", .array(removed.map(JSON.string))), ("safe", applied.json)])
    }
  }
}
