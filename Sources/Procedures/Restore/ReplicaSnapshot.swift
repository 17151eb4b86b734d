// A snapshot of a replica (`scrt_ra -X`) and a virtual restore (`scrt_ra -D|-S|-t`): a
// consistent SQLite copy of the backup database, tied to the MAT position it holds, taken
// while the updater keeps applying, and for a restore then rolled back to the target by
// undoing the image trail's records newest first. The replica itself is never touched.
// One per node at a time, in `NODE/snapshot/` (`replica.db` and `snapshot.json`), until
// released (`scrt_ra -W`).
//
// The copy is SQLite's online backup in one read transaction: in WAL mode a reader blocks
// no writer, so the updater is not stalled at all; what it commits meanwhile is simply not
// in the copy. On filesystems that can share extents (reflink) a clone would make the copy
// itself nearly free; ext4, where this was built and measured, cannot, so the page copy
// is what runs here.

import Apply
import AuditTrail
import Backup
import Foundation
import Node
import SQLiteSupport

public struct ReplicaSnapshot: Codable, Sendable, Equatable {
  public var path: String
  /// The MAT position it holds: every transaction whose commit record starts before it.
  public var position: MATPosition
  public var lastTxid: TransactionID
  /// The commit time of the last record it holds (nil when that record is older than the window).
  public var micros: Int64?
  public var checksum: String
  /// What was asked: `current` for `-X`, or the restore target.
  public var target: String
  /// Transactions undone on the copy to reach the target.
  public var undone: Int
  public var createdMicros: Int64
  /// Seconds spent copying the replica and undoing.
  public var copySeconds: Double
  public var undoSeconds: Double

  public var json: JSON {
    .object([
      ("path", .string(path)), ("position", position.json), ("lastTxid", .int(Int64(lastTxid.rawValue))),
      ("time", micros.map { .string(RestoreTime.text($0)) } ?? .null), ("micros", micros.map { .int($0) } ?? .null),
      ("checksum", .string(checksum)), ("target", .string(target)), ("undone", .int(Int64(undone))),
      ("copySeconds", .double(copySeconds)), ("undoSeconds", .double(undoSeconds)),
    ])
  }

  static func directory(_ layout: NodeLayout) -> String { layout.root + "/snapshot" }
  static func infoPath(_ layout: NodeLayout) -> String { directory(layout) + "/snapshot.json" }
  public static func databasePath(_ layout: NodeLayout) -> String {
    NodeSetup.absolute(directory(layout) + "/replica.db")
  }

  /// The snapshot the node holds, if any.
  public static func held(_ layout: NodeLayout) throws -> ReplicaSnapshot? {
    try StateFile.read(ReplicaSnapshot.self, at: infoPath(layout))
  }

  /// Takes the node's snapshot: the replica as it is (`target` nil), or as it was at `target`.
  public static func take(
    node: String, target: RestoreTarget?, progress: (String) -> Void = { _ in }
  ) throws -> ReplicaSnapshot {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    let database = config.database
    // A refused target leaves nothing behind: check it against the replica before copying.
    let live = try RestoreWindow.find(layout, database: database, withMarkers: target.isMarker)
    if let target { try live.check(target) }
    let dir = directory(layout)
    // Held while taking: a `-W` meanwhile waits for it, and never removes the files of a
    // snapshot still being made (whose description would then land beside another's).
    let taking = try SnapshotLock.acquire(layout, waitSeconds: 0, node: node)
    defer { withExtendedLifetime(taking) {} }
    guard mkdir(dir, 0o755) == 0 else {
      guard errno == EEXIST else { throw TrailError.io(operation: "create", path: dir, errno: errno) }
      let held = try? held(layout)
      throw RestoreError.snapshotHeld(
        node: node, path: held?.path ?? dir,
        target: held.map { "at \($0.position), \($0.target)" } ?? "being taken, or cut short by a kill")
    }
    do {
      try RestorePin.hold(layout, from: live.oldest, what: "snapshot of \(node)")
      defer { RestorePin.release(layout) }
      let path = databasePath(layout)
      progress("copying the replica \(database)")
      var mark = Clock.monotonicSeconds()
      try Connection(path: database, mode: .readOnly).backup(into: path)
      let copySeconds = Clock.monotonicSeconds() - mark
      mark = Clock.monotonicSeconds()
      let db = try Connection(path: path)
      // The copy is disposable until its info file says it is whole (a kill before that
      // leaves a snapshot `-W` removes), so the undo writes each page once, in place:
      // no WAL to write it to and then checkpoint, no cache spills, one sync at the end.
      // `bench restore` measured each touched page written about three times in WAL mode.
      try db.execute("PRAGMA journal_mode = MEMORY")
      try db.execute("PRAGMA synchronous = OFF")
      try db.execute("PRAGMA cache_size = -262144")
      try db.execute("BEGIN IMMEDIATE")
      let state = try CommitState.read(db)
      var info = ReplicaSnapshot(
        path: path, position: state.end, lastTxid: state.lastTxid, micros: nil, checksum: "",
        target: target?.description ?? "current", undone: 0, createdMicros: Clock.nowMicros(),
        copySeconds: copySeconds, undoSeconds: 0)
      do {
        let window = try RestoreWindow.find(layout, config: config, state: state, withMarkers: target.isMarker)
        info.micros = window.newestMicros
        if let target {
          let cut = try RestoreCut.resolve(target, in: window, image: layout.image, state: state)
          progress("undoing \(cut.undone) transactions on the copy, newest first, back to \(cut.position)")
          do {
            try FileRecovery.undoKeepingChecksum(cut.records, on: db)
          } catch let refused as UndoError {
            throw RestoreError.cannotUndo(target: target.description, reason: refused, replica: "no snapshot is left")
          }
          try cut.state(from: state).save(db)
          (info.position, info.lastTxid, info.micros, info.undone) = (
            cut.position, cut.lastTxid, cut.lastMicros, cut.undone
          )
        }
        try db.execute("COMMIT")
      } catch {
        try? db.execute("ROLLBACK")
        throw error
      }
      info.checksum = try DatabaseChecksum.current(db).checksum
      try AuditTrail.FileHandle(path: path, flags: O_RDWR).sync()
      info.undoSeconds = Clock.monotonicSeconds() - mark
      try StateFile.write(info, to: infoPath(layout))
      return info
    } catch {
      removeDirectory(layout)
      throw error
    }
  }

  /// Releases the snapshot (`scrt_ra -W`); the application must have closed it.
  public static func release(node: String) throws -> ReplicaSnapshot? {
    let layout = NodeLayout(root: node)
    _ = try layout.loadConfig()
    let lock = try SnapshotLock.acquire(layout, waitSeconds: 30, node: node)
    defer { withExtendedLifetime(lock) {} }
    guard FileManager.default.fileExists(atPath: directory(layout)) else { throw RestoreError.noSnapshot(node: node) }
    let info = try? held(layout)
    removeDirectory(layout)
    return info
  }

  static func removeDirectory(_ layout: NodeLayout) {
    let dir = directory(layout)
    // The info file goes first: a release cut short leaves no snapshot that looks whole.
    unlink(infoPath(layout))
    for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] { unlink(dir + "/" + name) }
    rmdir(dir)
  }
}

/// `NODE/state/snapshot.lock`, held by whoever takes or releases the node's snapshot.
enum SnapshotLock {
  static func acquire(_ layout: NodeLayout, waitSeconds: Double, node: String) throws -> HeldFileLock {
    let path = layout.state + "/snapshot.lock"
    do {
      return try HeldFileLock.acquire(path: path, timeout: waitSeconds) { _ in }
    } catch HeldFileLock.Failure.held(let holder) {
      throw RestoreError.snapshotHeld(
        node: node, path: ReplicaSnapshot.databasePath(layout),
        target: "being taken by another scrt_ra now\(holder.map { " (pid \($0))" } ?? "")")
    } catch HeldFileLock.Failure.cannotOpen(let reason), HeldFileLock.Failure.cannotLock(let reason) {
      throw StateFileError(path: path, reason: "cannot lock it: " + reason)
    }
  }
}

extension Optional where Wrapped == RestoreTarget {
  var isMarker: Bool { self?.isMarker ?? false }
}
