// Writes stop node-wide when a file says why: `NODE/state/writes-blocked`. A switchover
// in progress or a takeover elsewhere (event 829) sets it; every writer, in any process,
// looks for it after taking SQLite's write lock, so no commit slips past it.

import AuditTrail
import Foundation

public enum WriteBlock {
  public static func path(_ layout: NodeLayout) -> String { layout.state + "/writes-blocked" }

  /// Blocks writes on the node, durably, for `reason` (what the writer will be told).
  public static func set(_ layout: NodeLayout, reason: String) throws {
    try DurableFile.create(path: path(layout), contents: Array((reason + "\n").utf8))  // syncs the directory too
  }

  static func holderPath(_ layout: NodeLayout) -> String { layout.state + "/writes-blocked.holder" }

  /// A block for as long as this process lives: it holds an exclusive lock on
  /// `state/writes-blocked.holder` (the kernel drops it even on SIGKILL), so a primary's
  /// daemon can lift a block whose holder is gone (`liftOrphaned`). Keep the returned
  /// holder alive; `clear` ends the block.
  public static func setHeld(_ layout: NodeLayout, reason: String) throws -> Holder {
    let fd = open(holderPath(layout), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      if fd >= 0 { close(fd) }
      throw NodeError.badConfig(path: holderPath(layout), reason: "another process holds the write block")
    }
    // The holder names its block, so that only that block is ever lifted for it.
    let text = Array(reason.utf8)
    guard ftruncate(fd, 0) == 0, write(fd, text, text.count) == text.count else {
      close(fd)
      throw NodeError.badConfig(path: holderPath(layout), reason: "cannot write: errno \(errno)")
    }
    try set(layout, reason: reason)
    return Holder(layout: layout, fd: fd)
  }

  public final class Holder: Sendable {
    let layout: NodeLayout
    let fd: Int32
    init(layout: NodeLayout, fd: Int32) {
      self.layout = layout
      self.fd = fd
    }

    /// Ends the block: the holder file first, while still held, then the block.
    public func release() throws {
      unlink(WriteBlock.holderPath(layout))
      try WriteBlock.clear(layout)
    }

    deinit { close(fd) }
  }

  /// Lifts a held block whose holder process is gone (the block it named, nothing else);
  /// true if it did. One `access` call when no block is held.
  public static func liftOrphaned(_ layout: NodeLayout) -> Bool {
    let holder = holderPath(layout)
    guard access(holder, F_OK) == 0 else { return false }
    let fd = open(holder, O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return false }  // its holder lives
    let named = (try? String(contentsOfFile: holder, encoding: .utf8)) ?? ""
    unlink(holder)
    guard let current = reason(layout), current == named.trimmingCharacters(in: .whitespacesAndNewlines) else {
      return false
    }
    try? clear(layout)
    return true
  }

  public static func clear(_ layout: NodeLayout) throws {
    guard unlink(path(layout)) == 0 || errno == ENOENT else {
      throw NodeError.badConfig(path: path(layout), reason: "cannot remove: errno \(errno)")
    }
    try DurableFile.syncDirectory(layout.state)
  }

  /// Why writes are blocked, or nil. One `access` call when they are not.
  public static func reason(_ layout: NodeLayout) -> String? {
    let file = path(layout)
    guard access(file, F_OK) == 0 else { return nil }
    // A block whose reason cannot be read still blocks: the file's presence is the block.
    do {
      return try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    } catch {
      return "writes are blocked (\(file) exists, but its reason cannot be read: \(error.localizedDescription))"
    }
  }
}
