// A backup's first start: the primary's database, copied online as a consistent
// snapshot that carries its own MAT position, checked by SHA-256 of the bytes and by the
// logical checksum, then renamed into place. Until the rename the backup has no
// database, so a copy cut short is simply started again.

import Apply
import AuditTrail
import Crypto
import Foundation
import Link
import Node
import SQLiteSupport

struct InitialCopy {
  let layout: NodeLayout
  let config: NodeConfig
  let link: Link.Connection
  let peer: LinkPeer
  let events: EventLog
  let stop: StopFlag
  let progress: BackupProgress
  let show: Bool

  func run() throws {
    let database = config.database
    let temp = database + ".understudy-copy"
    for leftover in [temp, database + "-wal", database + "-shm", database + "-journal"] { unlink(leftover) }
    // A new base: image-trail files of an earlier copy belong to another history.
    for sno in (try? layout.image.snos()) ?? [] { unlink(layout.image.filePath(sno: sno)) }
    events.log(.initialCopyStarted, "initial copy of the primary's database from \(link.peer) into \(database)")
    try link.send(.copyRequest)
    guard case .copyBegin(let size, let position, let checksum) = try link.receive(timeout: 600) else {
      throw LinkError.badFrame(peer: link.peer, reason: "expected the start of a database copy")
    }
    let file = try AuditTrail.FileHandle(path: temp, flags: O_WRONLY | O_CREAT | O_TRUNC)
    var hash = SHA256()
    var received: UInt64 = 0
    var lastShown = 0.0
    while received < size {
      if stop.isSet { throw LinkError.closed(peer: link.peer) }
      guard case .copyData(let offset, let bytes) = try link.receive(timeout: 60), offset == received,
        received + UInt64(bytes.count) <= size
      else {
        throw LinkError.badFrame(
          peer: link.peer, reason: "database copy data out of order at byte \(received) of \(size)")
      }
      try file.write(bytes, at: Int(offset))
      hash.update(data: bytes)
      received += UInt64(bytes.count)
      let fraction = Double(received) / Double(size)
      progress.update { $0.copying = fraction }
      if show, Clock.monotonicSeconds() - lastShown > 0.2 || received == size {
        lastShown = Clock.monotonicSeconds()
        FileHandle.standardError.write(
          Data("\r\u{1B}[Kinitial copy: \(received >> 10) of \(size >> 10) KiB (\(Int(fraction * 100))%)".utf8))
      }
    }
    guard case .copyEnd(let digest) = try link.receive(timeout: 60), Array(hash.finalize()) == digest else {
      throw LinkError.badFrame(
        peer: link.peer, reason: "the database copy's SHA-256 does not match what the primary sent")
    }
    if show { FileHandle.standardError.write(Data("\n".utf8)) }
    try file.sync()

    // The copy must be what the primary says it is, before it becomes the backup.
    do {
      let db = try SQLiteSupport.Connection(path: temp, mode: .readOnly)
      let state = try CommitState.read(db)
      let actual = try DatabaseChecksum.compute(db).checksum
      guard state.end == position, state.nodeID == peer.origin, actual == checksum else {
        throw NodeError.badConfig(
          path: temp,
          reason:
            "the copied database does not match the primary's description (position \(state.end) vs \(position), checksum \(actual) vs \(checksum))"
        )
      }
    }
    // The copy brought the primary's kept checksum along: from here it is this node's, and
    // it must be what this node holds (the full scan above), before the copy is in place.
    do {
      let db = try SQLiteSupport.Connection(path: temp)
      if try IncrementalChecksum.read(db)?.checksum != checksum {
        try db.execute("BEGIN IMMEDIATE")
        try IncrementalChecksum.recompute(on: db)
        try db.execute("COMMIT")
      }
    }
    guard rename(temp, database) == 0 else {
      throw NodeError.badConfig(path: database, reason: "cannot rename the copy into place: errno \(errno)")
    }
    try DurableFile.syncDirectory(DurableFile.parent(of: database))
    let db = try SQLiteSupport.Connection(path: database)
    try db.execute("PRAGMA journal_mode = WAL")
    var updated = config
    updated.generation = peer.generation
    updated.base = .init(position: position, checksum: checksum, empty: false)
    try layout.saveConfig(updated)
    progress.update { $0.copying = nil }
    events.log(
      .initialCopyComplete,
      "initial copy complete: \(size) bytes, consistent with MAT position \(position), checksum \(checksum)",
      [("position", position.json), ("checksum", .string(checksum)), ("bytes", .int(Int64(size)))])
  }
}
