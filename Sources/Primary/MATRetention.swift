// The primary's MAT is bounded. A MAT file is removed once nothing can need it again:
// the database has committed past it (recovery on open reads from its last commit), every
// registered backup has acknowledged past it (the extractor streams from there, and file
// recovery after a takeover undoes from the backup's position on), and it is older than
// the optional retention window. A backup that would hold back more than
// `maxRetainedBytes` of MAT is dropped from the registry instead (event 9042): like a
// PostgreSQL slot past `max_slot_wal_keep_size`, it then needs a full copy.
//
// The registry is `state/retained.json`. It is written before anything is removed on its
// account; a position in it is never ahead of what its backup holds durably (the
// receiver acknowledges only what it has synced), so a stale entry only keeps more.

import Apply
import AuditTrail
import Foundation
import Node

/// A backup the primary keeps MAT for, from `needs` on.
public struct RetainedBackup: Codable, Sendable, Equatable {
  public var node: NodeID
  /// Where the backup's image trail ends (its last acknowledgement, or where it started).
  public var needs: MATPosition
  public var updatedMicros: Int64
  /// Set when the byte cap dropped it: it holds nothing back until it registers anew.
  public var droppedMicros: Int64?
}

public enum MATRetention {
  static func path(_ layout: NodeLayout) -> String { layout.state + "/retained.json" }

  /// No file: no backup registered yet.
  public static func registered(_ layout: NodeLayout) throws -> [RetainedBackup] {
    try StateFile.read([RetainedBackup].self, at: path(layout)) ?? []
  }

  /// The MAT files on disk: their total size and the first position still kept.
  public static func footprint(_ layout: NodeLayout) throws -> (bytes: Int, oldest: MATPosition?) {
    var bytes = 0
    var oldest: UInt32?
    for sno in try layout.mat.snos() {
      guard let size = try fileSize(layout.mat.filePath(sno: sno)) else { continue }  // purged meanwhile
      bytes += size
      oldest = oldest ?? sno
    }
    return (bytes, oldest.map { MATPosition(sno: $0, rba: TrailFormat.firstRBA) })
  }

  /// nil when the file is gone.
  static func fileSize(_ path: String) throws -> Int? {
    var status = stat()
    guard stat(path, &status) == 0 else {
      if errno == ENOENT { return nil }
      throw TrailError.io(operation: "stat", path: path, errno: errno)
    }
    return Int(status.st_size)
  }
}

/// The primary daemon's side: extractors note what their backups need, the daemon's
/// loop calls `tick`, which records the registry and removes what nothing needs.
final class MATPurger: @unchecked Sendable {
  // @unchecked: `registry` and `recorded` are read and written under `lock`; `lastTick`
  // is the daemon loop's own (only `tick` touches it, from one thread).
  let layout: NodeLayout
  let config: NodeConfig
  let events: EventLog
  private let lock = NSLock()
  private var registry: [NodeID: RetainedBackup] = [:]
  private var recorded: [RetainedBackup]
  private var lastTick = 0.0
  static let interval = 1.0

  init(layout: NodeLayout, config: NodeConfig, events: EventLog) throws {
    self.layout = layout
    self.config = config
    self.events = events
    recorded = try MATRetention.registered(layout)
    // Positions before this generation's MAT segment serve no backup of it.
    let segmentStart = config.matStart ?? MATPosition(sno: 1, rba: TrailFormat.firstRBA)
    for var entry in recorded {
      entry.needs = max(entry.needs, segmentStart)
      registry[entry.node] = entry
    }
    // The node this generation took over from comes back as its follower, from the
    // segment's start: keep it until it has (or the byte cap drops it).
    if let base = config.generationBase, base.generation == config.generation, registry[base.priorNode] == nil {
      registry[base.priorNode] = RetainedBackup(
        node: base.priorNode, needs: base.matStart, updatedMicros: Clock.nowMicros())
    }
  }

  /// A backup needs the MAT from `position` on (it starts there, or acknowledged it). A
  /// backup new to the registry is recorded at once: a daemon killed before its next tick
  /// would otherwise forget it and, restarted, remove the files it streams from.
  func note(_ node: NodeID, needs position: MATPosition) throws {
    lock.lock()
    defer { lock.unlock() }
    let known = recorded.contains { $0.node == node && $0.needs <= position && $0.droppedMicros == nil }
    registry[node] = RetainedBackup(node: node, needs: position, updatedMicros: Clock.nowMicros())
    if !known { try record() }
  }

  /// With `lock` held: writes the registry if it changed.
  private func record() throws {
    let entries = registry.values.sorted { $0.node.description < $1.node.description }
    func key(_ e: RetainedBackup) -> String { "\(e.node) \(e.needs) \(e.droppedMicros != nil)" }
    guard entries.map(key) != recorded.map(key) else { return }
    try StateFile.write(entries, to: MATRetention.path(layout))
    recorded = entries
  }

  /// At most once a second: record the registry, drop a backup past the byte cap, remove
  /// MAT files wholly before everything that is needed.
  func tick() throws {
    let now = Clock.monotonicSeconds()
    guard now - lastTick >= Self.interval else { return }
    lastTick = now
    let state = try CommitState.read(databaseAt: config.database)
    var keep = state.last ?? state.end
    let snos = try layout.mat.snos()
    var sizes: [UInt32: Int] = [:]
    for sno in snos { sizes[sno] = try MATRetention.fileSize(layout.mat.filePath(sno: sno)) ?? 0 }

    lock.lock()
    if let cap = config.maxRetainedBytes {
      for entry in registry.values where entry.droppedMicros == nil {
        let held = sizes.filter { $0.key >= entry.needs.sno }.values.reduce(0, +)
        guard held > cap else { continue }
        registry[entry.node]?.droppedMicros = Clock.nowMicros()
        events.log(
          .backupDroppedFromRetention,
          "backup \(entry.node) holds back \(held) bytes of MAT from \(entry.needs), past the cap of \(cap) (maxRetainedBytes): no longer kept for; unless it catches up first it needs a full copy (on it: `understudy follow --node NODE --full-copy --primary HOST:PORT --secret-file FILE`)",
          [("position", entry.needs.json), ("bytes", .int(Int64(held)))])
      }
    }
    do {
      try record()
    } catch {
      lock.unlock()
      throw error
    }
    let entries = recorded
    lock.unlock()
    for entry in entries where entry.droppedMicros == nil { keep = min(keep, entry.needs) }
    // A backup this primary served before the registry existed is not in it: until it
    // reconnects, nothing is known to be safe to remove.
    let registered = Set(entries.map(\.node))
    if try Fencing.knownBackups(layout).contains(where: { !registered.contains($0.node) }) { return }

    var removed: [String] = []
    let window = Double(config.matRetentionSeconds ?? 0)
    let wall = Date()
    for sno in snos where sno < keep.sno {
      let path = layout.mat.filePath(sno: sno)
      if window > 0 {
        let modified = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
        // Files age in order: the first one too young ends the run (no holes).
        guard let modified, wall.timeIntervalSince(modified) >= window else { break }
      }
      guard unlink(path) == 0 else { throw TrailError.io(operation: "remove", path: path, errno: errno) }
      removed.append(TrailFormat.fileName(sno: sno))
    }
    guard !removed.isEmpty else { return }
    try DurableFile.syncDirectory(layout.mat.path)
    events.log(
      .matFilesPurged,
      "removed MAT files \(removed.joined(separator: ", ")): wholly before \(keep), which the database and every registered backup have passed",
      [("files", .array(removed.map(JSON.string))), ("position", keep.json)])
  }
}
