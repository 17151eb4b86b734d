// A database's initial copy over the link: a consistent copy (VACUUM INTO, one read
// transaction) that holds its own MAT position in its state table, sent in chunks with
// its logical checksum first and its SHA-256 last. A primary sends its own database; a
// relaying backup sends its copy, whose positions are its primary's.

import AuditTrail
import Crypto
import Foundation
import Link
import Node
import SQLiteSupport

public enum DatabaseSnapshot {
  /// Sends the copy; returns the MAT position it is consistent with. The copy is made in
  /// `scratch` and removed after.
  public static func send(database: String, scratch: String, on link: Link.Connection, stop: StopFlag) throws
    -> MATPosition
  {
    let path = scratch + "/snapshot-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).db"
    defer { unlink(path) }
    do {
      let db = try SQLiteSupport.Connection(path: database, mode: .readOnly)
      try db.query("VACUUM INTO ?", [.text(path)])
    }
    let snapshot = try SQLiteSupport.Connection(path: path, mode: .readOnly)
    let state = try CommitState.read(snapshot)
    let checksum = try DatabaseChecksum.compute(snapshot).checksum
    let file = try AuditTrail.FileHandle(path: path, flags: O_RDONLY)
    let size = try file.size()
    try link.send(.copyBegin(size: UInt64(size), position: state.end, checksum: checksum))
    var hash = SHA256()
    var offset = 0
    let chunk = 256 << 10
    while offset < size {
      if stop.isSet { throw LinkError.closed(peer: link.peer) }
      let bytes = try file.read(count: min(chunk, size - offset), at: offset)
      hash.update(data: bytes)
      try link.send(.copyData(offset: UInt64(offset), bytes: bytes))
      offset += bytes.count
    }
    try link.send(.copyEnd(sha256: Array(hash.finalize())))
    return state.end
  }
}
