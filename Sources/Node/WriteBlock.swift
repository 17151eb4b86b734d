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
